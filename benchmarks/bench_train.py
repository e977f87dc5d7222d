#!/usr/bin/env python3
"""Training and inference speed of every registered model on this machine's CPU.

For each model, in a fresh subprocess (so peak RSS is the model's own): training samples/s
(forward + backward + AdamW step on a random batch), forward-only inference samples/s
(``torch.inference_mode``, eval mode), parameter count, weight size and peak RSS. Models
that declare ``channels_last = True`` convert their weights and inputs to
``channels_last_3d`` themselves; the table says which do. Each figure is the median of
``--rounds`` timed rounds (each at least ``--round-seconds`` long) after warm-up steps;
the best round is reported too. Prints a table and writes JSON.

    python benchmarks/bench_train.py [--models r2plus1d c3d] [--batch-size 32] [--threads 2]
                                     [--json benchmarks/results/bench_train.json]

Target: the default model trains at >= 100 samples/s (batch 32, 2 threads) on the 2-core
development machine. CPU timings are sensitive to other processes: the load average
before and after each model is recorded, and a busy machine is warned about.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_train.json"
TARGET_TRAIN_SAMPLES_PER_S = 100.0


def _timed_rounds(step, rounds: int, round_seconds: float, batch: int) -> list[float]:
    rates = []
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            step()
            n += 1
            elapsed = time.perf_counter() - t0
            if n >= 2 and elapsed >= round_seconds:
                break
        rates.append(n * batch / elapsed)
    return rates


def bench_one(name: str, batch: int, threads: int, warmup: int, rounds: int, round_seconds: float,
              shape: tuple[int, int, int]) -> dict:
    import torch

    from omgclip.learn.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    net = create_model(name)
    n_params = sum(p.numel() for p in net.parameters())
    n_bytes = sum(t.numel() * t.element_size() for t in list(net.parameters()) + list(net.buffers()))
    x = torch.rand(batch, 1, *shape)
    y = torch.randint(0, 7, (batch,))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    net.train()
    for _ in range(warmup):
        train_step()
    train_rates = _timed_rounds(train_step, rounds, round_seconds, batch)

    net.eval()

    def infer_step() -> None:
        with torch.inference_mode():
            net(x)

    for _ in range(warmup):
        infer_step()
    infer_rates = _timed_rounds(infer_step, rounds, round_seconds, batch)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "model": name,
        "channels_last": bool(getattr(net, "channels_last", False)),
        "params": n_params,
        "weights_mb": n_bytes / 1e6,
        "train_samples_per_s": statistics.median(train_rates),
        "train_samples_per_s_best": max(train_rates),
        "train_rounds": train_rates,
        "infer_samples_per_s": statistics.median(infer_rates),
        "infer_samples_per_s_best": max(infer_rates),
        "infer_rounds": infer_rates,
        "peak_rss_mb": peak_kb / 1024,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    from omgclip.learn.models import DEFAULT_MODEL, list_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="default: every registered model")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-seconds", type=float, default=4.0)
    ap.add_argument("--shape", type=int, nargs=3, default=(20, 80, 80), metavar=("T", "H", "W"))
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--single", help=argparse.SUPPRESS)  # internal: run one model, print JSON
    args = ap.parse_args(argv)

    if args.single:
        print(json.dumps(bench_one(args.single, args.batch_size, args.threads, args.warmup, args.rounds,
                                   args.round_seconds, tuple(args.shape))))
        return 0

    import torch

    models = args.models or list_models()
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}")
    if os.getloadavg()[0] > 0.7:
        print(f"warning: load average {os.getloadavg()[0]:.2f} before starting: other processes will "
              f"slow these timings down", file=sys.stderr)
    rows = []
    for name in models:
        cmd = [sys.executable, __file__, "--single", name, "--batch-size", str(args.batch_size),
               "--threads", str(args.threads), "--warmup", str(args.warmup), "--rounds", str(args.rounds),
               "--round-seconds", str(args.round_seconds), "--shape", *map(str, args.shape)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name}: train {row['train_samples_per_s']:.1f}/s, infer {row['infer_samples_per_s']:.1f}/s",
              file=sys.stderr, flush=True)

    header = (f"{'model':<10} {'train/s':>8} {'(best)':>7} {'infer/s':>8} {'(best)':>7} {'params':>8} "
              f"{'MB':>5} {'RSS MB':>7} {'ch-last':>7} {'load':>9}")
    print(f"batch {args.batch_size}, {args.threads} threads, input (N, 1, {', '.join(map(str, args.shape))}), "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(header)
    print("-" * len(header))
    for r in rows:
        mark = " *" if r["model"] == DEFAULT_MODEL else ""
        print(f"{r['model']:<10} {r['train_samples_per_s']:>8.1f} {r['train_samples_per_s_best']:>7.1f} "
              f"{r['infer_samples_per_s']:>8.1f} {r['infer_samples_per_s_best']:>7.1f} {r['params']:>8d} "
              f"{r['weights_mb']:>5.2f} {r['peak_rss_mb']:>7.0f} {str(r['channels_last']):>7} "
              f"{r['load_avg_before']:>4.1f}/{r['load_avg_after']:<4.1f}{mark}")
    default = next((r for r in rows if r["model"] == DEFAULT_MODEL), None)
    if default is not None:
        ok = default["train_samples_per_s"] >= TARGET_TRAIN_SAMPLES_PER_S
        print(f"* default model: {default['train_samples_per_s']:.1f} training samples/s "
              f"({'meets' if ok else 'BELOW'} the {TARGET_TRAIN_SAMPLES_PER_S:.0f}/s target)")
    report = {
        "batch_size": args.batch_size, "threads": args.threads, "input_shape": [1, *args.shape],
        "warmup": args.warmup, "rounds": args.rounds, "round_seconds": args.round_seconds,
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "machine": platform.machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "default_model": DEFAULT_MODEL, "target_train_samples_per_s": TARGET_TRAIN_SAMPLES_PER_S,
        "models": rows,
    }
    sys.path.insert(0, str(ROOT))
    from omgclip.fsutil import atomic_write_json

    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
