#!/usr/bin/env python3
"""On paper: build-dataset on N machines, simulated from measured per-video task times.

A discrete-event simulation of what the Dask engine does: one task per video, each task
first downloads its video and then decodes/detects/writes (one worker busy for both), and
the scheduler hands the next task to whichever worker is free. Task compute times are
drawn (bootstrap) from the per-video times that ``bench_build_scaling.py`` measured;
download times are an assumption (``--download-s``, log-normal). It prints three tables:

1. scaling: machines x workers each -> hours, videos/s, efficiency vs 1 machine;
2. stragglers: some tasks much slower, or one machine slower;
3. download rate limits: YouTube answers HTTP 429 to bursts from one address (a token
   bucket per address, ``--rate`` videos/s sustained, ``--burst``); yt-dlp then fails that
   video (recorded, retried by the next run). With one address for the whole cluster (a NAT)
   or one per machine, with and without the client-side throttle
   (``build-dataset --download-interval S``: at most one download start per S seconds from
   one download folder, i.e. per machine with a node-local --video-dir, per cluster with a
   shared one).

YouTube does not publish its limits: ``--rate``/``--burst`` are assumptions to vary, not
measurements. Writes JSON too.

    python benchmarks/sim_cluster.py [--measured benchmarks/results/bench_build_scaling.json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scenario:
    machines: int
    workers: int = 16                 #: worker processes per machine (one core each)
    videos: int = 16000               #: a DFEW-sized corpus
    download_s: float = 4.0           #: median download time of one video
    straggler_frac: float = 0.0       #: fraction of tasks that take straggler_x times longer
    straggler_x: float = 1.0
    slow_machine_x: float = 1.0       #: machine 0 runs this many times slower
    rate: float | None = None         #: 429 limit: sustained downloads/s per address (None: no limit)
    burst: int = 20
    one_address: bool = False         #: the whole cluster behind one address (NAT)
    interval: float = 0.0             #: client throttle: seconds between download starts per scope
    fail_s: float = 1.0               #: time a 429'd task costs before it gives up
    longest_first: bool = False       #: send the tasks with the most work first (known from the manifest)


class Bucket:
    """Token bucket of one address: True if a request at time ``t`` is let through."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst, self.tokens, self.t = rate, burst, float(burst), 0.0

    def take(self, t: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (t - self.t) * self.rate)
        self.t = t
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def simulate(sc: Scenario, compute: list[float], seed: int = 0) -> dict:
    """Makespan and failures of one scenario (times in seconds)."""
    rng = random.Random(seed)
    tasks = []
    for _ in range(sc.videos):
        c = rng.choice(compute)
        if rng.random() < sc.straggler_frac:
            c *= sc.straggler_x
        tasks.append((rng.lognormvariate(0, 0.5) * sc.download_s, c))
    if sc.longest_first:
        tasks.sort(key=lambda task: -task[1])
    n_addr = 1 if sc.one_address else sc.machines
    buckets = [Bucket(sc.rate, sc.burst) for _ in range(n_addr)] if sc.rate else None
    next_start = [0.0] * n_addr          # throttle: earliest next download start per scope
    free = [(0.0, m, w) for m in range(sc.machines) for w in range(sc.workers)]
    heapq.heapify(free)
    failed, end = 0, 0.0
    for download, compute_s in tasks:
        t, m, w = heapq.heappop(free)
        addr = 0 if sc.one_address else m
        if sc.interval > 0:
            t = max(t, next_start[addr])
            next_start[addr] = t + sc.interval
        slow = sc.slow_machine_x if m == 0 else 1.0
        if buckets is not None and not buckets[addr].take(t):
            failed += 1
            done = t + sc.fail_s
        else:
            done = t + download + compute_s * slow
        end = max(end, done)
        heapq.heappush(free, (done, m, w))
    return {"hours": end / 3600, "videos_per_s": (sc.videos - failed) / end, "failed": failed,
            "failed_frac": failed / sc.videos}


def load_compute(path: Path) -> list[float]:
    data = json.loads(path.read_text())
    return [v["task_s"] for v in data["per_video"]]


def _print(title: str, head: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    widths = [max(len(h), *(len(str(r[i])) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measured", type=Path, default=ROOT / "benchmarks" / "results" / "bench_build_scaling.json")
    ap.add_argument("--videos", type=int, default=16000)
    ap.add_argument("--workers", type=int, default=16, help="worker processes per machine")
    ap.add_argument("--download-s", type=float, default=4.0, help="median download time per video (assumed)")
    ap.add_argument("--rate", type=float, default=0.2, help="429 limit: sustained videos/s per address (assumed)")
    ap.add_argument("--burst", type=int, default=20, help="429 limit: burst per address (assumed)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "sim_cluster.json")
    args = ap.parse_args(argv)
    if not args.measured.is_file():
        print(f"{args.measured} not found: run benchmarks/bench_build_scaling.py first", file=sys.stderr)
        return 2
    compute = load_compute(args.measured)
    base = dict(workers=args.workers, videos=args.videos, download_s=args.download_s)
    out: dict = {"measured": str(args.measured), "per_video_s": compute, "base": base, "tables": {}}

    one = simulate(Scenario(machines=1, **base), compute)
    rows = []
    for n in (1, 2, 4, 8, 16, 32, 64):
        r = simulate(Scenario(machines=n, **base), compute)
        rows.append([n, n * args.workers, f"{r['hours']:.3f}", f"{r['videos_per_s']:.1f}",
                     f"{one['hours'] / (n * r['hours']):.0%}"])
    _print(f"1. scaling, {args.videos} videos, {args.workers} workers per machine, no limits",
           ["machines", "workers", "hours", "videos/s", "efficiency"], rows)
    out["tables"]["scaling"] = rows

    rows = []
    for label, kw in (("none", {}), ("1% of tasks 20x slower", dict(straggler_frac=0.01, straggler_x=20)),
                      ("0.1% of tasks 200x slower", dict(straggler_frac=0.001, straggler_x=200)),
                      ("0.1% of tasks 200x slower, sent first", dict(straggler_frac=0.001, straggler_x=200,
                                                                      longest_first=True)),
                      ("one machine 3x slower", dict(slow_machine_x=3))):
        for n in (8, 64):
            ref = simulate(Scenario(machines=n, **base), compute)
            r = simulate(Scenario(machines=n, **base, **kw), compute)
            rows.append([label, n, f"{r['hours']:.3f}", f"{r['hours'] / ref['hours']:.2f}x"])
    _print("2. stragglers (dynamic scheduling: a free worker takes the next video)",
           ["stragglers", "machines", "hours", "vs none"], rows)
    out["tables"]["stragglers"] = rows

    rows = []
    lim = dict(rate=args.rate, burst=args.burst)
    safe = 1.0 / args.rate
    for n in (1, 8, 64):
        for addr, one_address in (("one per machine", False), ("one (NAT)", True)):
            for throttle in (0.0, safe):
                r = simulate(Scenario(machines=n, one_address=one_address, interval=throttle, **lim, **base),
                             compute)
                rows.append([n, addr, f"{throttle:g}", f"{r['failed_frac']:.1%}", f"{r['hours']:.3f}",
                             f"{r['videos_per_s']:.2f}"])
    _print(f"3. download limit {args.rate:g} videos/s, burst {args.burst} per address (assumed); "
           f"throttle = --download-interval", ["machines", "addresses", "throttle s", "429 failed", "hours",
                                               "videos/s"], rows)
    out["tables"]["rate_limits"] = rows
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
