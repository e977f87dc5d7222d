#!/usr/bin/env python3
"""Speed of ``omgclip live``: latency from frame capture to label, and the input frame rate
it keeps up with, at 640x480 on 2 CPU cores.

A real talking-head clip (640x360) is letterboxed to 640x480 and written as H.264 at 25 fps
and at 50 fps (same frames, twice the rate) into a temporary folder. ``omgclip live``'s own
loop (:func:`omgclip.apps.live.run_live`, capture thread + rolling-window labeler) plays each
file in real time, as a camera delivers frames: when processing falls behind, frames are
dropped and counted. A third run reads the file as fast as it can be processed
(``pace=False``, nothing dropped): the sustained processing rate.

* latency: from the moment the capture thread has a frame to the moment the label whose
  window ends at that frame is written (median, 95th percentile, max). Buffering before
  the frame leaves the decoder (network, camera driver) is not included.
* kept up: at most 2% of the input frames dropped.

    python benchmarks/bench_live.py [--video V.mp4] [--repeat 3] [--json J] [--reference]

Prints a table and met/missed per target, and writes ``benchmarks/results/bench_live.json``
(``--reference``: also ``benchmarks/reference/bench_live.json``, which the README table is
rendered from).

Targets: latency <= 1 s; 25 fps input kept up with.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, Run, fmt_spread, spread, verdict, write  # noqa: E402

DEFAULT_VIDEO = SHARED / "unlabeled_faces/videos/pyfeat_WolfgangLanger_Pexels.mp4"
TARGET_LATENCY_S = 1.0
TARGET_FPS = 25.0
KEPT_UP_DROP = 0.02


def make_input(src: Path, dst: Path, fps: float, width: int = 640, height: int = 480) -> Path:
    """``src`` letterboxed to ``width x height``, written at ``fps`` (H.264 when ffmpeg is
    available, else mp4v)."""
    import subprocess

    import cv2

    from omgclip.apps.annotate import find_ffmpeg
    from omgclip.faces.video_io import iter_bgr_frames

    raw = dst.with_name(dst.stem + "_mp4v.mp4")
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for _, frame in iter_bgr_frames(src):
        h, w = frame.shape[:2]
        k = min(width / w, height / h)
        small = cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
        canvas = cv2.copyMakeBorder(small, top, height - small.shape[0] - top, left,
                                    width - small.shape[1] - left, cv2.BORDER_CONSTANT)
        writer.write(canvas)
    writer.release()
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        return raw
    subprocess.run([ffmpeg, "-y", "-v", "error", "-nostdin", "-i", str(raw), "-c:v", "libx264",
                    "-preset", "medium", "-crf", "20", "-pix_fmt", "yuv420p", str(dst)], check=True)
    return dst


def run_one(path: Path, pace: bool, model, torch_threads: int) -> dict:
    from omgclip.apps.live import LiveConfig, run_live

    out = path.with_suffix(".rows.jsonl")
    s = run_live(LiveConfig(str(path), headless=True, out=str(out), pace=pace,
                            threads=torch_threads), model=model)
    return {"frames": s.frames_read, "dropped_pct": 100.0 * s.frames_dropped / max(s.frames_read, 1),
            "processed_fps": s.processed_fps, "labels": float(s.rows),
            "latency_p50_s": s.latency(0.5), "latency_p95_s": s.latency(0.95),
            "latency_max_s": s.latency(1.0), "ended": s.ended}


SPREAD_KEYS = ("dropped_pct", "processed_fps", "labels", "latency_p50_s", "latency_p95_s", "latency_max_s")


def measure(path: Path, fps: float, pace: bool, model, args) -> dict:
    runs = [run_one(path, pace, model, args.torch_threads) for _ in range(args.repeat)]
    row = {"input": f"{fps:g} fps" if pace else "as fast as possible", "input_fps": fps if pace else None,
           "paced": pace, "frames": runs[0]["frames"], "ended": sorted({r["ended"] for r in runs})}
    row.update({k: spread([r[k] for r in runs]) for k in SPREAD_KEYS})
    row["kept_up"] = bool(pace and row["dropped_pct"]["median"] <= 100 * KEPT_UP_DROP)
    print(f"{row['input']}: dropped {fmt_spread(row['dropped_pct'], unit='%')}, latency max "
          f"{fmt_spread(row['latency_max_s'], 3, ' s')}", flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--threads", type=int, default=2, help="OpenCV threads")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="model threads (omgclip live's default: 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; medians are reported")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reference", action="store_true", help="also write benchmarks/reference/bench_live.json")
    args = ap.parse_args(argv)
    if not args.video.is_file():
        print(f"bench_live: {args.video} not found (needs the shared data folder)", file=sys.stderr)
        return 2
    import cv2
    import torch

    from omgclip.apps.predict import load_predict_model

    run = Run("bench_live")
    cv2.setNumThreads(args.threads)
    model = load_predict_model(None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="omgclip-bench-live-") as tmp:
        for fps, pace in ((25.0, True), (50.0, True), (25.0, False)):
            rows.append(measure(make_input(args.video, Path(tmp) / f"input_{fps:g}fps.mp4", fps),
                                fps, pace, model, args))
    _print(rows, args)
    base = rows[0]
    verdicts = [verdict("latency (max) at 25 fps", base["latency_max_s"]["median"], TARGET_LATENCY_S,
                        higher_is_better=False, unit=" s"),
                verdict("frames dropped at 25 fps", base["dropped_pct"]["median"], 100 * KEPT_UP_DROP,
                        higher_is_better=False, unit="%")]
    record = run.record(rows, verdicts, video=args.video.name, size="640x480", repeat=args.repeat,
                        opencv_threads=args.threads, torch_threads=args.torch_threads,
                        torch=torch.__version__, opencv=cv2.__version__)
    write(record, args.json, args.reference)
    return 0


def _print(rows: list[dict], args) -> None:
    print(f"omgclip live at 640x480, OpenCV {args.threads} / model {args.torch_threads} thread(s), "
          f"bundled model, {args.video.name}; median (range) of {args.repeat} runs")
    print(f"{'input':>20} {'frames':>7} {'dropped':>18} {'processed fps':>20} {'latency p50':>12} "
          f"{'p95':>7} {'max':>7}  kept up")
    for r in rows:
        kept = ("yes" if r["kept_up"] else "no") if r["paced"] else "-"
        print(f"{r['input']:>20} {r['frames']:>7} {fmt_spread(r['dropped_pct'], unit='%'):>18} "
              f"{fmt_spread(r['processed_fps']):>20} {r['latency_p50_s']['median']:>11.3f}s "
              f"{r['latency_p95_s']['median']:>6.3f}s {r['latency_max_s']['median']:>6.3f}s  {kept}")


if __name__ == "__main__":
    sys.exit(main())
