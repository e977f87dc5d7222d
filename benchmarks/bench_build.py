#!/usr/bin/env python3
"""Speed and agreement of build-dataset's face pipeline against the naive way.

For each real face video: frames/s of decode -> detect -> crop -> write ``.npy`` blocks,
for omgclip (key-frame detection on a downscaled frame with a cascade, tracked and
interpolated boxes) and for the naive way (dlib HOG with upsample 1 on every
full-resolution frame, largest face, same crop and write), in one run on this machine.
Also: how many frames each finds a face in, and the median IoU of the two boxes where both
do. Prints a table and writes JSON.

    python benchmarks/bench_build.py [--videos a.mp4 b.mp4] [--max-frames N] [--json PATH]
    python benchmarks/bench_build.py --scaling [--repeats 3]     # see bench_build_scaling.py

Target (issue #2): >= 20x the naive rate on 2 cores, median IoU >= 0.7, no fewer faces.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_VIDEOS = [
    SHARED / "unlabeled_faces/videos/pyfeat_WolfgangLanger_Pexels.mp4",   # 640x360
    SHARED / "unlabeled_faces/videos/pyfeat_single_face.mp4",             # 640x360
    SHARED / "unlabeled_faces/videos/face_recognition_short_hamilton_clip.mp4",  # 640x360, several faces
    SHARED / "mead_clips/videos/eamm_crop_M030_sad_3_001.mp4",            # 1920x1080
]


def run_omgclip(path: Path, n_frames: int, cfg: FaceConfig, out: Path):
    """Returns (seconds, {frame: box in source pixels})."""
    t0 = time.perf_counter()
    info = video_io.probe(path)
    scale = video_io.work_scale(info.width, cfg.work_width)
    windows = consecutive_segments(n_frames, 20, keep_tail=False)
    boxes = {}
    frames = video_io.iter_gray_frames(path, cfg.work_width, stop=n_frames)
    for i, result in enumerate(clips.face_clips(frames, windows, cfg, FaceDetector(cfg), follow="largest")):
        if result.clips and result.complete:
            clip = result.clips[0]
            atomic_save_npy(out / f"ours_{i:04d}.npy", clip.crops)
            for f, box in zip(result.block.frames(), clip.boxes):
                boxes[f] = box.scaled(1.0 / scale)
    return time.perf_counter() - t0, boxes


def run_naive(path: Path, n_frames: int, cfg: FaceConfig, out: Path):
    t0 = time.perf_counter()
    boxes, crops = {}, []
    detector = FaceDetector(cfg)
    for index, gray in video_io.iter_gray_frames(path, None, stop=n_frames):
        found = detector.detect_naive(gray, upsample=1)
        if found:
            boxes[index] = found[0]
            crops.append(crop_face(gray, found[0], cfg.crop_size, cfg.margin))
        if len(crops) == 20:
            atomic_save_npy(out / f"naive_{index:05d}.npy", np.stack(crops))
            crops = []
    return time.perf_counter() - t0, boxes


def bench(path: Path, max_frames: int | None, cfg: FaceConfig) -> dict:
    info = video_io.probe(path)
    n = video_io.count_frames(path)
    if max_frames:
        n = min(n, max_frames)
    n -= n % 20
    with tempfile.TemporaryDirectory() as tmp:
        ours_s, ours = run_omgclip(path, n, cfg, Path(tmp))
        naive_s, naive = run_naive(path, n, cfg, Path(tmp))
    both = sorted(set(ours) & set(naive))
    ious = [ours[f].iou(naive[f]) for f in both]
    return {
        "video": path.name, "size": f"{info.width}x{info.height}", "frames": n,
        "omgclip_fps": n / ours_s, "naive_fps": n / naive_s, "speedup": naive_s / ours_s,
        "omgclip_face_frames": len(ours), "naive_face_frames": len(naive),
        "both_face_frames": len(both),
        "median_iou": statistics.median(ious) if ious else float("nan"),
    }


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--scaling" in argv:  # --workers 1 / --workers 2 / --scheduler local:2 on one manifest
        from bench_build_scaling import main as scaling

        return scaling([a for a in argv if a != "--scaling"])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="*", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--max-frames", type=int, default=300, help="per video (the naive way is slow)")
    ap.add_argument("--detect-every", type=int, default=FaceConfig.detect_every)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "bench_build.json")
    args = ap.parse_args(argv)
    import cv2

    videos = [v for v in args.videos if v.exists()]
    if not videos:
        print("no benchmark video found (needs ../shared/data or --videos)", file=sys.stderr)
        return 2
    cfg = FaceConfig(detect_every=args.detect_every)
    FaceDetector(cfg).detect(np.zeros((64, 64), np.uint8))  # load dlib before timing
    rows = [bench(v, args.max_frames, cfg) for v in videos]
    head = f"{'video':44} {'size':>9} {'frames':>6} {'omgclip f/s':>11} {'naive f/s':>9} {'speedup':>7} {'faces ours/naive':>16} {'med IoU':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['video'][:44]:44} {r['size']:>9} {r['frames']:>6} {r['omgclip_fps']:>11.1f} "
              f"{r['naive_fps']:>9.1f} {r['speedup']:>6.1f}x {r['omgclip_face_frames']:>7}/{r['naive_face_frames']:<8} "
              f"{r['median_iou']:>7.3f}")
    env = {"cores": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
           "opencv": cv2.__version__, "detect_every": cfg.detect_every, "detect_width": cfg.detect_width}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"env": env, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
