#!/usr/bin/env python3
"""Speed of ``omgclip predict``: real-time factor (video seconds per wall second).

Runs predict's own per-video code (:func:`omgclip.apps.predict.predict_video`: decode -> faces
(detect, track, crop) -> batched model) on a real talking-head video at 640x360 and on a
1280x720 version of it (upscaled with OpenCV into a temporary folder at bench time, then
H.264-encoded when ffmpeg is available, so decoding costs what a real 720p file costs), with
torch and OpenCV limited to ``--threads`` (default 2) threads. Prints a table split into
decode / faces / model time and writes JSON.

    python benchmarks/bench_predict.py [--video V.mp4] [--checkpoint C] [--repeat 3]
                                       [--json benchmarks/results/bench_predict.json]

Without ``--checkpoint`` it uses the bundled model, or (if none is installed) the default
architecture with random weights: speed does not depend on the weights.
Target: >= 5x real time at 640x360 on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[0].parent / "shared" / "data"
DEFAULT_VIDEO = SHARED / "unlabeled_faces/videos/pyfeat_WolfgangLanger_Pexels.mp4"
DEFAULT_JSON = HERE / "results" / "bench_predict.json"
HAMILTON = SHARED / "unlabeled_faces/videos/face_recognition_short_hamilton_clip.mp4"
TARGET_RTF = 5.0


def load_model(checkpoint: str | None):
    """(LoadedModel, description)."""
    from omgclip.learn.checkpoint import LoadedModel, default_checkpoint, load_model as load
    from omgclip.errors import OmgclipError
    from omgclip.labels import EMOTIONS
    from omgclip.learn.models import DEFAULT_MODEL, create_model

    if checkpoint:
        return load(checkpoint), str(checkpoint)
    try:
        return load(default_checkpoint()), "bundled default"
    except OmgclipError:
        net = create_model(DEFAULT_MODEL).eval()
        return (LoadedModel(net=net, model_name=DEFAULT_MODEL, labels=EMOTIONS, block_len=20,
                            crop_size=80, meta={}),
                f"{DEFAULT_MODEL} (random weights; no bundled model installed)")


def make_upscaled(src: Path, dst_dir: Path, width: int, height: int) -> tuple[Path, str]:
    """``src`` resized to ``width x height`` with OpenCV (cubic), re-encoded to H.264 when
    ffmpeg is available. Returns (path, codec)."""
    import cv2

    from omgclip.apps.annotate import find_ffmpeg
    from omgclip.faces.video_io import iter_bgr_frames, probe

    info = probe(src)
    raw = dst_dir / f"{src.stem}_{width}x{height}_mp4v.mp4"
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, (width, height))
    for _, frame in iter_bgr_frames(src):
        writer.write(cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC))
    writer.release()
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        return raw, "mp4v"
    import subprocess

    out = dst_dir / f"{src.stem}_{width}x{height}.mp4"
    proc = subprocess.run([ffmpeg, "-y", "-v", "error", "-nostdin", "-i", str(raw), "-c:v", "libx264",
                           "-preset", "medium", "-crf", "20", "-pix_fmt", "yuv420p", "-fps_mode",
                           "passthrough", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        return raw, "mp4v"
    return out, "h264"


def bench_one(path: Path, model, repeat: int, batch_size: int) -> dict:
    from omgclip.faces.detect import FaceDetector
    from omgclip.apps.predict import PredictConfig, face_config_for, predict_video
    from omgclip.faces.video_io import probe

    cfg = PredictConfig(inputs=(str(path),), batch_size=batch_size, progress=False)
    face = face_config_for(model, cfg)
    info = probe(path)
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = predict_video(path, model, cfg, face=face, detector=FaceDetector(face))
        wall = time.perf_counter() - t0
        t = result.times
        runs.append({"wall_s": wall, "decode_s": t.decode, "faces_s": t.faces, "model_s": t.model,
                     "video_s": t.video_s, "frames": t.frames,
                     "face_rows": sum(1 for r in result.rows if r["track_id"] >= 0),
                     "segments": len({r["segment"] for r in result.rows})})
    best = min(runs, key=lambda r: r["wall_s"])
    video_s = best["video_s"]
    return {
        "video": str(path), "width": info.width, "height": info.height, "fps": info.fps,
        "frames": best["frames"], "video_s": video_s, "segments": best["segments"],
        "face_rows": best["face_rows"],
        "wall_s": best["wall_s"], "decode_s": best["decode_s"], "faces_s": best["faces_s"],
        "model_s": best["model_s"],
        "other_s": max(0.0, best["wall_s"] - best["decode_s"] - best["faces_s"] - best["model_s"]),
        "rtf": video_s / best["wall_s"],
        "rtf_median": statistics.median(r["video_s"] / r["wall_s"] for r in runs),
        "runs": runs,
    }


def compare_detectors(video: Path, every: int = 5) -> list[dict]:
    """``--detector hog`` vs ``cnn``: faces found and seconds per key frame of the whole-frame
    cascade (predict's full pass) on the Hamilton clip's audience shot (frames 211-274:
    three-quarter and profile faces) and on the first 100 frames of the benchmark video."""
    from omgclip.faces.detect import FaceConfig, FaceDetector
    from omgclip.faces.video_io import iter_gray_frames, probe

    out = []
    for name, path, start, stop in (("hamilton audience", HAMILTON, 211, 275),
                                    (video.name, video, 0, 100)):
        if not path.is_file():
            continue
        fps = probe(path).fps
        frames = [g for i, g in iter_gray_frames(path, 640, start, stop) if i % every == 0]
        for kind in ("hog", "cnn"):
            det = FaceDetector(FaceConfig(), kind=kind)
            det.detect(frames[0])  # loads the model
            t0 = time.perf_counter()
            found = [len(det.detect(g)) for g in frames]
            per_frame = (time.perf_counter() - t0) / len(frames)
            out.append({"clip": name, "detector": kind, "key_frames": len(frames),
                        "faces": sum(found), "faces_per_frame": sum(found) / len(frames),
                        "frames_with_face": sum(f > 0 for f in found), "max_faces": max(found),
                        "s_per_key_frame": per_frame,
                        "detect_only_rtf": every / fps / per_frame if per_frame > 0 else float("nan")})
    return out


def print_detectors(rows: list[dict]) -> None:
    print("face detectors (whole-frame cascade at 640 px wide, every 5th frame):")
    print(f"{'clip':<34} {'det':<4} {'frames':>6} {'with face':>9} {'faces/frame':>11} "
          f"{'max':>4} {'s/frame':>8} {'RTF (detect)':>12}")
    for r in rows:
        print(f"{r['clip'][:34]:<34} {r['detector']:<4} {r['key_frames']:>6} {r['frames_with_face']:>9} "
              f"{r['faces_per_frame']:>11.2f} {r['max_faces']:>4} {r['s_per_key_frame']:>8.3f} "
              f"{r["detect_only_rtf"]:>11.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; the fastest is reported")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--skip-detectors", action="store_true",
                    help="leave out the hog vs cnn detector comparison (~1-2 min)")
    args = ap.parse_args(argv)
    if not args.video.is_file():
        print(f"bench_predict: {args.video} not found (needs the shared data folder)", file=sys.stderr)
        return 2

    import cv2
    import torch

    from omgclip.fsutil import atomic_write_json
    from omgclip.faces.video_io import probe

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    model, model_desc = load_model(args.checkpoint)
    info = probe(args.video)
    results = []
    with tempfile.TemporaryDirectory(prefix="omgclip-bench-") as tmp:
        big, codec = make_upscaled(args.video, Path(tmp), 1280, 720)
        # a warm-up pass: dlib's detector and torch's kernels initialise on first use
        bench_one(args.video, model, 1, args.batch_size)
        for label, path, enc in ((f"{info.width}x{info.height}", args.video, "source"),
                                 ("1280x720", big, f"upscaled, {codec}")):
            r = bench_one(path, model, args.repeat, args.batch_size)
            r.update(size=label, encoding=enc)
            results.append(r)

    header = (f"{'size':<10} {'frames':>6} {'video s':>8} {'wall s':>7} {'decode':>7} {'faces':>7} "
              f"{'model':>7} {'other':>6} {'RTF':>6}")
    print(f"omgclip predict on {args.video.name}, model {model_desc}, "
          f"{args.threads} thread(s), best of {args.repeat}")
    print(header)
    for r in results:
        print(f"{r['size']:<10} {r['frames']:>6} {r['video_s']:>8.2f} {r['wall_s']:>7.2f} "
              f"{r['decode_s']:>7.2f} {r['faces_s']:>7.2f} {r['model_s']:>7.2f} {r['other_s']:>6.2f} "
              f"{r['rtf']:>5.1f}x")
    print("stage shares: " + "; ".join(
        f"{r['size']}: decode {r['decode_s'] / r['wall_s']:.0%}, faces {r['faces_s'] / r['wall_s']:.0%}, "
        f"model {r['model_s'] / r['wall_s']:.0%}" for r in results))
    ok = results[0]["rtf"] >= TARGET_RTF
    print(f"target >= {TARGET_RTF:.0f}x real time at {results[0]['size']}: "
          f"{'met' if ok else 'NOT met'} ({results[0]['rtf']:.1f}x)")
    detectors = [] if args.skip_detectors else compare_detectors(args.video)
    if detectors:
        print_detectors(detectors)
    atomic_write_json(args.json, {
        "benchmark": "predict", "target_rtf": TARGET_RTF, "target_met": ok,
        "model": model_desc, "threads": args.threads, "repeat": args.repeat,
        "batch_size": args.batch_size, "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "opencv": cv2.__version__,
        "results": results, "detectors": detectors,
    })
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
