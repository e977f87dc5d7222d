"""``omgclip predict``, ``live``, ``serve`` and ``export``: their options and one call each."""

from __future__ import annotations

import sys

from omgclip.cli.common import add_command, config_default
from omgclip.errors import OmgclipError


# ----------------------------------------------------------------------------- predict
def add_predict(sub) -> None:
    from omgclip.apps.predict import PredictConfig as P

    p = add_command(sub, "predict", "per-segment emotion labels for videos, images or URLs",
                     "Label the emotion of every face in every 20-frame segment: a table, CSV/JSON "
                     "rows, an annotated video and a timeline picture.",
                     "  omgclip predict talk.mp4\n"
                     "  omgclip predict 'clips/*.mp4' face.jpg --out rows.csv\n"
                     "  omgclip predict talk.mp4 --annotate labeled.mp4 --plot timeline.png --smooth 3")
    p.add_argument("inputs", nargs="+", metavar="VIDEO|IMAGE|GLOB|URL",
                   help="video or image files, folders, quoted globs or http(s) URLs")
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--stride", type=int, help="segment stride in frames (default: the segment length)")
    p.add_argument("--batch-size", type=int, default=config_default(P, "batch_size"),
                   help="face clips per forward pass")
    p.add_argument("--smooth", type=int, default=config_default(P, "smooth"), metavar="N",
                   help="average each track's probabilities over N neighbouring segments")
    p.add_argument("--out", help="write rows to x.csv or x.json")
    p.add_argument("--annotate", metavar="OUT.mp4", help="write the video with boxes and labels")
    p.add_argument("--plot", metavar="TIMELINE.png", help="draw each track's emotion over time")
    p.add_argument("--detect-every", type=int, default=config_default(P, "detect_every"),
                   help="run the face detector every k-th frame; boxes are tracked in between")
    p.add_argument("--cache-dir", help="where URLs are downloaded (default ~/.cache/omgclip/videos)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="one task per input on a Dask cluster (tcp://HOST:PORT or local[:N]); rows "
                        "come back here, --annotate/--plot files are written by the workers")
    p.add_argument("--detector", choices=("hog", "cnn"), default=config_default(P, "detector"),
                   help="face detector: hog (fast, frontal faces) or cnn (dlib MMOD: also "
                        "three-quarter and profile faces, ~40x slower)")
    p.add_argument("--crop", choices=("detect", "none"), default=config_default(P, "crop"),
                   help="detect: find and crop every face (default); none: the inputs are already "
                        "face crops (e.g. FER2013 photos): each whole frame is the face, nothing is detected")
    p.add_argument("--people", metavar="DIR",
                   help="reference photos DIR/<name>/*.jpg: name the matching persons")
    p.add_argument("--no-persons", action="store_true",
                   help="no person ids (person_id -1): skips the face descriptors")
    p.add_argument("--no-flip", action="store_true",
                   help="where the weights ask for a test-time flip (the clip and its mirror image), "
                        "one pass instead: the model's time halves, labels are slightly less accurate "
                        "(the bundled two-net weights ask for it on still images only)")
    p.add_argument("--no-read-ahead", action="store_true",
                   help="decode frames in line instead of in a thread beside the face stage "
                        "(same rows; slower on 2+ cores; for a 1-core machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run_predict)


def run_predict(args) -> int:
    from omgclip.apps.predict import PartialPredictError, PredictConfig, predict
    from omgclip.apps.report import format_table
    from omgclip.fsutil import sigterm_raises

    cfg = PredictConfig(inputs=tuple(args.inputs), checkpoint=args.checkpoint, stride=args.stride,
                        batch_size=args.batch_size, smooth=args.smooth, out=args.out,
                        annotate=args.annotate, plot=args.plot, detect_every=args.detect_every,
                        cache_dir=args.cache_dir, progress=not args.no_progress,
                        scheduler=args.scheduler, detector=args.detector, crop=args.crop, people=args.people,
                        persons=not args.no_persons, flip=not args.no_flip,
                        read_ahead=not args.no_read_ahead)
    try:
        with sigterm_raises():  # SIGTERM cleans up its temporary files like Ctrl-C
            rows = predict(cfg)
    except PartialPredictError as exc:  # print what did work, then exit non-zero
        print(format_table(exc.rows))
        raise
    print(format_table(rows))
    return 0


# ----------------------------------------------------------------------------- live / serve
def add_live(sub) -> None:
    from omgclip.apps.live import LiveConfig as L

    p = add_command(sub, "live", "label faces live from a webcam, a video file or a stream",
                     "Follow every face of a camera, file or stream (rtsp://, http(s)://) and label it "
                     "from its last 20 frames, every --hop frames. Ends at the end of the stream, after "
                     "--duration, or on Ctrl-C; rows are always flushed. Frames that processing cannot "
                     "keep up with are dropped (and counted), so labels stay current.",
                     "  omgclip live 0                                  webcam 0, in a window\n"
                     "  omgclip live rtsp://cam.local/stream --headless --out rows.jsonl\n"
                     "  omgclip live talk.mp4 --headless --out - --duration 30 --smooth 3")
    p.add_argument("source", metavar="CAMERA|FILE|URL",
                   help="a camera index (0), a video file, or an rtsp:// or http(s):// stream")
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--hop", type=int, default=config_default(L, "hop"),
                   help="a label every HOP frames per face, once 20 frames are in its window")
    p.add_argument("--smooth", type=int, default=config_default(L, "smooth"), metavar="N",
                   help="average each face's last N probability vectors")
    p.add_argument("--headless", action="store_true", help="no window; rows go to --out")
    p.add_argument("--out", help="rows.jsonl, rows.csv, or - for JSON lines on stdout "
                                 "(default with --headless: -)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--reconnect", type=int, default=config_default(L, "reconnect"), metavar="N",
                   help="reopen a stream that stops at most N times in a row")
    p.add_argument("--reconnect-delay", type=float, default=config_default(L, "reconnect_delay"),
                   metavar="S", help="seconds before the first reopen (doubling, at most 8)")
    p.add_argument("--timeout", type=float, default=config_default(L, "timeout"), metavar="S",
                   help="seconds a stream may take to open or to deliver a frame")
    p.add_argument("--buffer", type=int, default=config_default(L, "buffer"),
                   help="frames that may wait for processing; older ones are dropped")
    p.add_argument("--no-pace", action="store_true",
                   help="read a file as fast as it can be processed (no drops) instead of at its "
                        "frame rate")
    p.add_argument("--detect-every", type=int, default=config_default(L, "detect_every"),
                   help="run the face detector every k-th frame; boxes are carried in between")
    p.add_argument("--threads", type=int, default=config_default(L, "threads"),
                   help="threads for the model (more rarely helps one clip at a time)")
    p.add_argument("--no-persons", action="store_true",
                   help="no person ids (they cost one face descriptor per new track)")
    p.add_argument("--no-flip", action="store_true",
                   help="where the weights ask for a test-time flip (the window and its mirror image), "
                        "one pass instead: half the model time, slightly less accurate (the bundled "
                        "two-net weights ask for none: no change)")
    p.set_defaults(run=run_live)


def run_live(args) -> int:
    from omgclip.apps.live import LiveConfig, run_live

    summary = run_live(LiveConfig(
        source=args.source, checkpoint=args.checkpoint, hop=args.hop, smooth=args.smooth,
        headless=args.headless, out=args.out, duration=args.duration, reconnect=args.reconnect,
        reconnect_delay=args.reconnect_delay, timeout=args.timeout, buffer=args.buffer,
        pace=not args.no_pace, detect_every=args.detect_every, threads=args.threads,
        persons=not args.no_persons, flip=not args.no_flip))
    print(summary.line(), file=sys.stderr)
    return 0


def add_serve(sub) -> None:
    from omgclip.apps.serve import ServeConfig as S

    p = add_command(sub, "serve", "a web page and JSON API for predictions (needs omgclip[web])",
                     "Serve a page (upload a video or paste a URL; see the table, the timeline and the "
                     "annotated video; download CSV/JSON; or label your webcam live) and a JSON API: "
                     "POST /api/predict (multipart field 'file') -> {\"rows\": [...]}, GET /healthz.",
                     "  omgclip serve                                   http://127.0.0.1:7860/\n"
                     "  curl -F file=@talk.mp4 http://127.0.0.1:7860/api/predict")
    p.add_argument("--host", default=config_default(S, "host"),
                   help="address to bind (loopback by default; anything else is reachable by "
                        "others, without authentication)")
    p.add_argument("--port", type=int, default=config_default(S, "port"))
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--max-upload-mb", type=float, default=config_default(S, "max_upload_mb"),
                   help="larger uploads get HTTP 413")
    p.add_argument("--queue-size", type=int, default=config_default(S, "queue_size"),
                   help="jobs that may wait for the model; more get HTTP 503")
    p.add_argument("--detect-every", type=int, default=config_default(S, "detect_every"),
                   help="run the face detector every k-th frame")
    p.add_argument("--threads", type=int, default=config_default(S, "threads"), help="threads for the model")
    p.set_defaults(run=run_serve)


def run_serve(args) -> int:
    try:
        from omgclip.apps.serve import ServeConfig, serve
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise OmgclipError(f"omgclip serve needs the web extra ({exc.name} is missing): "
                           f"pip install 'omgclip[web]'") from None
    serve(ServeConfig(host=args.host, port=args.port, checkpoint=args.checkpoint,
                      max_upload_mb=args.max_upload_mb, queue_size=args.queue_size,
                      detect_every=args.detect_every, threads=args.threads))
    return 0


# ----------------------------------------------------------------------------- export
def add_export(sub) -> None:
    p = add_command(sub, "export", "the model as ONNX or TorchScript, for use outside Python",
                     "Export a model (input (N, 1, 20, 80, 80) in [0, 1], 7 logits); the file is "
                     "reloaded and checked against PyTorch.",
                     "  omgclip export --out model.onnx\n"
                     "  omgclip export --checkpoint runs/<run>/best.pt --format torchscript --out model.pt")
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="file format")
    p.add_argument("--out", required=True, help="file to write (.onnx, or .pt/.ts for TorchScript)")
    p.set_defaults(run=run_export)


def run_export(args) -> int:
    from omgclip.apps.export import ExportConfig, export

    path = export(ExportConfig(checkpoint=args.checkpoint, format=args.format, out=args.out))
    print(f"wrote {path}")
    return 0
