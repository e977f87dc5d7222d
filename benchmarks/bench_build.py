#!/usr/bin/env python3
"""Speed and agreement of build-dataset's face pipeline against two naive baselines.

For each real face video: frames/s of decode -> detect -> crop -> write ``.npy`` blocks,
for omgclip (key-frame detection on a downscaled frame with a cascade, tracked and
interpolated boxes) and for two naive ways, same crop and write, in one run:

* **naive 640** -- what a user would write: dlib HOG with upsample 1 on *every* frame,
  downscaled to 640 px wide (omgclip's finest detection scale). The headline speed-up.
* **naive full-res** -- dlib HOG with upsample 1 on every full-resolution frame (issue #2's
  baseline; a finer search than omgclip ever does, so the speed-up against it is inflated
  on videos wider than 640 px). On 640-px videos both baselines are the same run.

omgclip's face frames are split into *detected* (a key frame where dlib found the face),
*interpolated* (between two detections at most ``detect_every`` apart, or after the last
one before the next key frame) and *carried* (held over a detector miss); the naive ways
only detect. Every figure is the median of ``--repeats`` runs with the range in brackets.
Prints a table, met/missed per target, and writes JSON (``--reference``: also
``benchmarks/reference/bench_build.json``, which the README table is rendered from).

    python benchmarks/bench_build.py [--videos a.mp4 b.mp4] [--max-frames N] [--repeats 3] [--reference]
    python benchmarks/bench_build.py --scaling [--repeats 3]     # see bench_build_scaling.py

Targets (issue #2): >= 20x the naive full-res rate on 2 cores; median IoU >= 0.7 against
naive 640; no fewer really found faces (detected + interpolated) than naive 640.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from omgclip.faces import clips

from omgclip.faces import video_io
from omgclip.faces.detect import FaceConfig, FaceDetector, crop_face
from omgclip.fsutil import atomic_save_npy
from omgclip.dataset.segment import consecutive_segments

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, Run, fmt_spread, spread, verdict, write  # noqa: E402

DEFAULT_VIDEOS = [
    SHARED / "unlabeled_faces/videos/pyfeat_WolfgangLanger_Pexels.mp4",   # 640x360
    SHARED / "unlabeled_faces/videos/pyfeat_single_face.mp4",             # 640x360
    SHARED / "unlabeled_faces/videos/face_recognition_short_hamilton_clip.mp4",  # 640x360, several faces
    SHARED / "mead_clips/videos/eamm_crop_M030_sad_3_001.mp4",            # 1920x1080
]


TARGET_SPEEDUP_FULL = 20.0
TARGET_IOU = 0.7


def run_omgclip(path: Path, n_frames: int, cfg: FaceConfig, out: Path):
    """Returns (seconds, {frame: box in source pixels}, {frame: 'detected'|'interpolated'|'carried'})."""
    t0 = time.perf_counter()
    info = video_io.probe(path)
    scale = video_io.work_scale(info.width, cfg.work_width)
    windows = consecutive_segments(n_frames, 20, keep_tail=False)
    boxes, kinds = {}, {}
    frames = video_io.iter_gray_frames(path, cfg.work_width, stop=n_frames)
    for i, result in enumerate(clips.face_clips(frames, windows, cfg, FaceDetector(cfg), follow="largest")):
        if result.clips and result.complete:
            clip = result.clips[0]
            atomic_save_npy(out / f"ours_{i:04d}.npy", clip.crops)
            for f, box, real in zip(result.block.frames(), clip.boxes, clip.real):
                boxes[f] = box.scaled(1.0 / scale)
                kinds[f] = "carried" if not real else ("detected" if f % cfg.detect_every == 0 else "interpolated")
    return time.perf_counter() - t0, boxes, kinds


def run_naive(path: Path, n_frames: int, cfg: FaceConfig, out: Path, width: int | None):
    """dlib HOG, upsample 1, on every frame decoded at ``width`` (None: full resolution).
    Returns (seconds, {frame: box in source pixels})."""
    t0 = time.perf_counter()
    info = video_io.probe(path)
    scale = video_io.work_scale(info.width, width) if width else 1.0
    boxes, crops = {}, []
    detector = FaceDetector(cfg)
    for index, gray in video_io.iter_gray_frames(path, width, stop=n_frames):
        found = detector.detect_naive(gray, upsample=1)
        if found:
            box = max(found, key=lambda b: b.area)
            boxes[index] = box.scaled(1.0 / scale)
            crops.append(crop_face(gray, box, cfg.crop_size, cfg.margin))
        if len(crops) == 20:
            atomic_save_npy(out / f"naive_{index:05d}.npy", np.stack(crops))
            crops = []
    return time.perf_counter() - t0, boxes


def bench(path: Path, max_frames: int | None, cfg: FaceConfig, repeats: int) -> dict:
    info = video_io.probe(path)
    n = video_io.count_frames(path)
    if max_frames:
        n = min(n, max_frames)
    n -= n % 20
    same = info.width <= cfg.work_width  # then naive 640 and naive full-res are one run
    ours_t, n640_t, full_t = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            s, ours, kinds = run_omgclip(path, n, cfg, Path(tmp))
            ours_t.append(s)
            s, n640 = run_naive(path, n, cfg, Path(tmp), cfg.work_width)
            n640_t.append(s)
            if not same:
                s, full = run_naive(path, n, cfg, Path(tmp), None)
                full_t.append(s)
    full_t = full_t or n640_t
    both = sorted(set(ours) & set(n640))
    ious = [ours[f].iou(n640[f]) for f in both]
    count = {k: sum(1 for v in kinds.values() if v == k) for k in ("detected", "interpolated", "carried")}
    return {
        "video": path.name, "size": f"{info.width}x{info.height}", "frames": n, "repeats": repeats,
        "omgclip_fps": spread([n / t for t in ours_t]),
        "naive640_fps": spread([n / t for t in n640_t]),
        "naive_full_fps": spread([n / t for t in full_t]),
        "naive_full_is_naive640": same,
        "speedup_vs_naive640": spread([b / a for a, b in zip(ours_t, n640_t)]),
        "speedup_vs_naive_full": spread([b / a for a, b in zip(ours_t, full_t)]),
        "omgclip_faces": count, "omgclip_real_faces": count["detected"] + count["interpolated"],
        "naive640_faces": len(n640), "both_face_frames": len(both),
        "median_iou_vs_naive640": statistics.median(ious) if ious else float("nan"),
    }


def print_table(rows: list[dict]) -> None:
    head = (f"{'video':36} {'size':>9} {'frames':>6} {'omgclip f/s':>17} {'naive640 f/s':>17} "
            f"{'x vs 640':>17} {'x vs full-res':>18} {'faces det/int/carr':>18} {'naive640':>8} {'IoU':>5}")
    print(head)
    print("-" * len(head))
    for r in rows:
        f = r["omgclip_faces"]
        print(f"{r['video'][:36]:36} {r['size']:>9} {r['frames']:>6} {fmt_spread(r['omgclip_fps']):>17} "
              f"{fmt_spread(r['naive640_fps']):>17} {fmt_spread(r['speedup_vs_naive640']):>17} "
              f"{fmt_spread(r['speedup_vs_naive_full']):>18} "
              f"{f['detected']:>6}/{f['interpolated']}/{f['carried']:<5} {r['naive640_faces']:>8} "
              f"{r['median_iou_vs_naive640']:>5.2f}")


def targets(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        v = r["video"][:30]
        out.append(verdict(f"{v}: speed-up vs naive full-res", r["speedup_vs_naive_full"]["median"],
                           TARGET_SPEEDUP_FULL, unit="x"))
        out.append(verdict(f"{v}: median IoU vs naive 640", r["median_iou_vs_naive640"], TARGET_IOU))
        out.append(verdict(f"{v}: really found faces (detected+interpolated) vs naive 640",
                           r["omgclip_real_faces"], r["naive640_faces"]))
    return out


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--scaling" in argv:  # --workers 1 / --workers 2 / --scheduler local:2 on one manifest
        from bench_build_scaling import main as scaling

        return scaling([a for a in argv if a != "--scaling"])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="*", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--max-frames", type=int, default=200, help="per video (the naive ways are slow)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per video and method; medians are reported")
    ap.add_argument("--detect-every", type=int, default=FaceConfig.detect_every)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reference", action="store_true", help="also write benchmarks/reference/bench_build.json")
    args = ap.parse_args(argv)
    import cv2

    videos = [v for v in args.videos if v.exists()]
    if not videos:
        print("no benchmark video found (needs ../shared/data or --videos)", file=sys.stderr)
        return 2
    run = Run("bench_build")
    cv2.setNumThreads(2)
    cfg = FaceConfig(detect_every=args.detect_every)
    FaceDetector(cfg).detect(np.zeros((64, 64), np.uint8))  # load dlib before timing
    rows = [bench(v, args.max_frames, cfg, args.repeats) for v in videos]
    print_table(rows)
    verdicts = targets(rows)
    write(run.record(rows, verdicts, repeats=args.repeats, max_frames=args.max_frames,
                     detect_every=cfg.detect_every, detect_width=cfg.detect_width, work_width=cfg.work_width,
                     opencv=cv2.__version__), args.json, args.reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
