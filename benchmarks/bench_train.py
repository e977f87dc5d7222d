#!/usr/bin/env python3
"""Training speed on this machine's CPU: model compute speed, and real ``omgclip train``.

1. **Model compute speed** (per registered model, each in a fresh subprocess so peak RSS is
   the model's own): training samples/s of forward + backward + AdamW step on one random
   batch held in memory -- no data loading, no augmentation, no Lightning -- and forward-only
   inference samples/s, parameter count, weight size and peak RSS. Each figure is the
   median of ``--rounds`` timed rounds (each at least ``--round-seconds`` long) after
   warm-up steps, with the range in brackets.
2. **Real ``omgclip train`` throughput** (default model): the command itself on a generated
   dataset of ``--train-blocks`` ``.npy`` blocks (memory-mapped reads, augmentation, the
   DataModule, Lightning, validation, checkpoints), run for 1 and for 3 epochs, each
   ``--train-repeats`` times. Reported: training samples/s of the whole command (3 epochs),
   and the steady rate of the extra epochs ``2 * train_blocks / (t_3 - t_1)``.

    python benchmarks/bench_train.py [--models r2plus1d c3d] [--batch-size 32] [--threads 2] [--reference]

Target: the default model trains at >= 100 samples/s (batch 32, 2 threads) on the 2-core
development machine, as model compute speed; the real command's rate is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import Run, fmt_spread, spread, verdict, write  # noqa: E402

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
        "train_samples_per_s": spread(train_rates),
        "infer_samples_per_s": spread(infer_rates),
        "peak_rss_mb": peak_kb / 1024,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
    }


def make_dataset(root: Path, blocks: int, groups: int = 16) -> None:
    """``blocks`` random uint8 (20, 80, 80) blocks in ``groups`` groups, classes cycling."""
    import numpy as np
    import pandas as pd

    from omgclip.dataset.format import INDEX_COLUMNS, INDEX_FILE
    from omgclip.labels import EMOTIONS

    rng = np.random.default_rng(0)
    rows = []
    for i in range(blocks):
        g, label = i % groups, (i // groups) % len(EMOTIONS)
        rel = f"blocks/train/g{g:02d}/{i:05d}.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, rng.integers(0, 256, (20, 80, 80), dtype=np.uint8))
        rows.append({"block_id": f"g{g:02d}/{i:05d}", "split": "train", "group": f"g{g:02d}", "source": f"v{g}",
                     "video": f"v{g}", "utterance": f"u{i // groups}", "label": label, "label_name": EMOTIONS[label],
                     "start_frame": 0, "num_frames": 20, "fps": 25.0, "detect_frac": 1.0, "path": rel})
    pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).to_csv(root / INDEX_FILE, index=False)


def real_train(blocks: int, repeats: int, batch: int, threads: int) -> dict:
    """Time ``omgclip train`` (1 and 3 epochs) on a generated dataset."""
    import tempfile

    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="omgclip-bench-train-") as tmp:
        data = Path(tmp) / "ds"
        make_dataset(data, blocks)
        walls: dict[int, list[float]] = {1: [], 3: []}
        n_train = None
        for r in range(repeats):
            for epochs in (1, 3):
                name = f"e{epochs}r{r}"
                cmd = [sys.executable, "-m", "omgclip", "-q", "train", "--data", str(data), "--out", tmp,
                       "--run-name", name, "--epochs", str(epochs), "--batch-size", str(batch), "--no-progress"]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
                walls[epochs].append(time.perf_counter() - t0)
                cfg = json.loads((Path(tmp) / name / "train_config.json").read_text())
                n_train = cfg["resolved"]["train_blocks"]
    return {"dataset_blocks": blocks, "train_blocks": n_train, "repeats": repeats,
            "wall_1_epoch_s": spread(walls[1]), "wall_3_epochs_s": spread(walls[3]),
            "command_samples_per_s": spread([3 * n_train / w for w in walls[3]]),
            "epoch_samples_per_s": spread([2 * n_train / (b - a) for a, b in zip(walls[1], walls[3]) if b > a])}


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
    ap.add_argument("--train-blocks", type=int, default=320, help="generated dataset size for real omgclip train")
    ap.add_argument("--train-repeats", type=int, default=3, help="runs of omgclip train per epoch count (0: skip)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reference", action="store_true", help="also write benchmarks/reference/bench_train.json")
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
    run = Run("bench_train")
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
        print(f"{name}: train {fmt_spread(row['train_samples_per_s'])}/s, "
              f"infer {fmt_spread(row['infer_samples_per_s'])}/s", file=sys.stderr, flush=True)
    real = real_train(args.train_blocks, args.train_repeats, args.batch_size, args.threads) \
        if args.train_repeats > 0 else None

    print(f"model compute speed (one random batch in memory: no data loading, augmentation or Lightning); "
          f"batch {args.batch_size}, {args.threads} threads, input (N, 1, {', '.join(map(str, args.shape))}), "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs; median (range) of {args.rounds} rounds")
    header = f"{'model':<10} {'train samples/s':>20} {'infer samples/s':>20} {'params':>8} {'MB':>5} {'RSS MB':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        mark = " *" if r["model"] == DEFAULT_MODEL else ""
        print(f"{r['model']:<10} {fmt_spread(r['train_samples_per_s']):>20} {fmt_spread(r['infer_samples_per_s']):>20} "
              f"{r['params']:>8d} {r['weights_mb']:>5.2f} {r['peak_rss_mb']:>7.0f}{mark}")
    if real:
        print(f"real `omgclip train` ({DEFAULT_MODEL}, {real['train_blocks']} training blocks of {real['dataset_blocks']}): "
              f"{fmt_spread(real['command_samples_per_s'])} samples/s for the whole 3-epoch command, "
              f"{fmt_spread(real['epoch_samples_per_s'])} samples/s per extra epoch")
    verdicts = []
    default = next((r for r in rows if r["model"] == DEFAULT_MODEL), None)
    if default is not None:
        verdicts.append(verdict(f"{DEFAULT_MODEL} model compute (training samples/s)",
                                default["train_samples_per_s"]["median"], TARGET_TRAIN_SAMPLES_PER_S))
    write(run.record({"models": rows, "omgclip_train": real}, verdicts, batch_size=args.batch_size,
                     threads=args.threads, input_shape=[1, *args.shape], warmup=args.warmup, rounds=args.rounds,
                     round_seconds=args.round_seconds, torch=torch.__version__, default_model=DEFAULT_MODEL),
          args.json, args.reference)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
