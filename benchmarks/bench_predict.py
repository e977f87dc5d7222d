#!/usr/bin/env python3
"""Speed of ``omgclip predict``: real-time factor (RTF, video seconds per wall second).

Two figures per video, each the median of ``--repeat`` runs with the range in brackets:

* **whole command** -- ``python -m omgclip predict VIDEO --out rows.csv`` timed from the
  outside: Python start-up, imports, model load, decoding, faces, model, writing the CSV.
  This is what a user waits for.
* **steady state** -- predict's per-video code (:func:`omgclip.apps.predict.predict_video`)
  in a warm process: decode -> faces (detect, track, crop) -> batched model, split into
  decode / faces / model time. Frames decode in a thread beside the face stage (predict's
  default read-ahead), so "decode" is the time the pipeline waited for frames; the
  decoding thread's own seconds are in the JSON (``decode_thread_s``).

Videos: a real 19.7-s talking-head clip at 640x360, the same clip upscaled to 1280x720
(H.264 when ffmpeg is available), and a long video (``--long-minutes``, default 10) made by
looping the clip, where start-up is paid once. torch and OpenCV use ``--threads`` threads
(default 2). Prints a table, met/missed per target, and writes JSON (``--reference``: also
``benchmarks/reference/bench_predict.json``, which the README table is rendered from).

    python benchmarks/bench_predict.py [--video V.mp4] [--checkpoint C] [--repeat 3] [--reference]

Without ``--checkpoint`` it uses the bundled model. Target: >= 5x real time at 640x360 on
2 CPU cores, for the whole command and in steady state.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import ROOT, SHARED, Run, fmt_spread, spread, verdict, write  # noqa: E402

DEFAULT_VIDEO = SHARED / "unlabeled_faces/videos/pyfeat_WolfgangLanger_Pexels.mp4"
HAMILTON = SHARED / "unlabeled_faces/videos/face_recognition_short_hamilton_clip.mp4"
TARGET_RTF = 5.0
TARGET_STEADY_RTF = 15.0  # issue 7: the better model must not cost predict its speed


def load_model(checkpoint: str | None):
    """(LoadedModel, description): the model as predict runs it (test-time flip where its
    weights ask for it)."""
    from omgclip.learn.checkpoint import LoadedModel, default_checkpoint, load_for_inference as load
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


def make_long(src: Path, dst_dir: Path, minutes: float) -> Path:
    """``src`` played again and again (no re-encoding) for about ``minutes`` minutes."""
    import math
    import subprocess

    from omgclip.apps.annotate import find_ffmpeg
    from omgclip.faces.video_io import probe

    info = probe(src)
    loops = max(1, math.ceil(minutes * 60 / (info.frame_count / info.fps)))
    out = dst_dir / f"{src.stem}_x{loops}.mp4"
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        raise SystemExit("bench_predict: the long-video row needs ffmpeg (imageio-ffmpeg)")
    subprocess.run([ffmpeg, "-y", "-v", "error", "-nostdin", "-stream_loop", str(loops - 1), "-i", str(src),
                    "-c", "copy", str(out)], check=True)
    return out


def steady_state(path: Path, model, repeat: int, batch_size: int) -> dict:
    """predict_video in this (warm) process, ``repeat`` times."""
    from omgclip.faces.detect import FaceDetector
    from omgclip.apps.predict import PredictConfig, face_config_for, predict_video

    cfg = PredictConfig(inputs=(str(path),), batch_size=batch_size, progress=False)
    face = face_config_for(model, cfg)
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = predict_video(path, model, cfg, face=face, detector=FaceDetector(face))
        wall = time.perf_counter() - t0
        t = result.times
        runs.append({"wall_s": wall, "decode_s": t.decode, "decode_thread_s": t.decode_thread,
                     "faces_s": t.faces, "model_s": t.model,
                     "video_s": t.video_s, "frames": t.frames,
                     "face_rows": sum(1 for r in result.rows if r["track_id"] >= 0),
                     "segments": len({r["segment"] for r in result.rows})})
    mid = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    return {"rtf": spread([r["video_s"] / r["wall_s"] for r in runs]), "frames": mid["frames"],
            "video_s": mid["video_s"], "segments": mid["segments"], "face_rows": mid["face_rows"],
            "shares": {k: mid[f"{k}_s"] / mid["wall_s"] for k in ("decode", "faces", "model")}, "runs": runs}


def whole_command(path: Path, video_s: float, repeat: int, threads: int, checkpoint: str | None,
                  extra: list[str]) -> dict:
    """``python -m omgclip predict PATH --out rows.csv`` in a fresh process, ``repeat`` times."""
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    walls = []
    with tempfile.TemporaryDirectory(prefix="omgclip-bench-") as tmp:
        for i in range(repeat):
            cmd = [sys.executable, "-m", "omgclip", "-q", "predict", str(path), "--no-progress",
                   "--out", str(Path(tmp) / f"rows{i}.csv")]
            if checkpoint:
                cmd += ["--checkpoint", checkpoint]
            cmd += extra
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
            walls.append(time.perf_counter() - t0)
    return {"rtf": spread([video_s / w for w in walls]), "wall_s": spread(walls)}


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
              f"{r['detect_only_rtf']:>11.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; medians are reported")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="length of the looped long video (0: none)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--reference", action="store_true", help="also write benchmarks/reference/bench_predict.json")
    ap.add_argument("--skip-detectors", action="store_true",
                    help="leave out the hog vs cnn detector comparison (~1-2 min)")
    args = ap.parse_args(argv)
    if not args.video.is_file():
        print(f"bench_predict: {args.video} not found (needs the shared data folder)", file=sys.stderr)
        return 2

    import cv2
    import torch

    from omgclip.faces.video_io import probe
    from omgclip.learn.checkpoint import load_for_inference
    from omgclip.learn.models.layers import FlipAverage, find_wrapper

    run = Run("bench_predict")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    model, model_desc = load_model(args.checkpoint)
    info = probe(args.video)
    rows = []
    with tempfile.TemporaryDirectory(prefix="omgclip-bench-") as tmp:
        big, codec = make_upscaled(args.video, Path(tmp), 1280, 720)
        videos = [(f"{info.width}x{info.height}", args.video, "source", model, []),
                  ("1280x720", big, f"upscaled, {codec}", model, [])]
        if args.long_minutes > 0:
            long = make_long(args.video, Path(tmp), args.long_minutes)
            minutes = probe(long).duration / 60
            videos.append((f"{info.width}x{info.height}, {minutes:.{0 if minutes >= 2 else 1}f} min", long, "looped",
                           model, []))
        if find_wrapper(model.net, FlipAverage) is not None:  # the weights ask for a test-time flip: also without it
            one_pass = dataclasses.replace(model, net=load_for_inference(model.path, flip=False).net)
            videos.append((f"{info.width}x{info.height}, --no-flip", args.video, "source", one_pass, ["--no-flip"]))
        steady_state(args.video, model, 1, args.batch_size)  # warm-up: dlib and torch initialise
        for label, path, enc, row_model, extra in videos:
            p = probe(path)
            row = {"size": label, "encoding": enc, "video": path.name, "width": p.width, "height": p.height,
                   "fps": p.fps, "video_s": p.frame_count / p.fps}
            if enc != "looped":  # the long row is whole-command only (start-up paid once)
                row["steady"] = steady_state(path, row_model, args.repeat, args.batch_size)
                row["video_s"] = row["steady"]["video_s"]
            row["whole"] = whole_command(path, row["video_s"], args.repeat, args.threads, args.checkpoint, extra)
            rows.append(row)
            print(f"{label}: whole command {fmt_spread(row['whole']['rtf'], unit='x')}", flush=True)

    print(f"omgclip predict on {args.video.name}, model {model_desc}, {args.threads} thread(s), "
          f"median (range) of {args.repeat} runs")
    print(f"{'size':<18} {'video s':>8} {'whole command RTF':>20} {'whole s':>8} {'steady-state RTF':>20} "
          f"{'decode':>6} {'faces':>6} {'model':>6}")
    for r in rows:
        st = r.get("steady")
        shares = "".join(f"{st['shares'][k]:>7.0%}" for k in ("decode", "faces", "model")) if st else ""
        print(f"{r['size']:<18} {r['video_s']:>8.1f} {fmt_spread(r['whole']['rtf'], unit='x'):>20} "
              f"{r['whole']['wall_s']['median']:>8.1f} {fmt_spread(st['rtf'], unit='x') if st else '-':>20}{shares}")
    verdicts = [verdict(f"whole command at {rows[0]['size']}", rows[0]["whole"]["rtf"]["median"], TARGET_RTF, unit="x"),
                verdict(f"steady state at {rows[0]['size']}", rows[0]["steady"]["rtf"]["median"], TARGET_RTF, unit="x"),
                verdict(f"steady state at {rows[0]['size']} (issue 7: speed holds)", rows[0]["steady"]["rtf"]["median"],
                        TARGET_STEADY_RTF, unit="x")]
    detectors = [] if args.skip_detectors else compare_detectors(args.video)
    if detectors:
        print_detectors(detectors)
    record = run.record(rows, verdicts, model=model_desc, threads=args.threads, repeat=args.repeat,
                        batch_size=args.batch_size, torch=torch.__version__, opencv=cv2.__version__)
    record["detectors"] = detectors
    write(record, args.json, args.reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
