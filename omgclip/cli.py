"""``omgclip`` command line.

For developers: argv -> a frozen config -> one call; no logic lives here. Defaults come from
the config dataclasses' fields (written once). Expected mistakes (``OmgclipError``) print one
line, ``omgclip: error: ...``, and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

import dataclasses

from omgclip import __version__
from omgclip.errors import OmgclipError

DESCRIPTION = """Which of 7 emotions (anger, disgust, fear, happy, neutral, sad, surprise) each face
shows in each 20-frame stretch of a video: build a dataset from OMG-Emotion manifests (or
your own), train a temporal model, and label new videos segment by segment."""

EPILOG = """examples:
  omgclip predict talk.mp4                      label a video with the bundled model
  omgclip predict 'clips/*.mp4' --out rows.csv  many inputs, rows to CSV (or .json)
  omgclip build-dataset --manifest omg:train --out data/omg
  omgclip train --data data/omg --out runs
  omgclip evaluate --checkpoint runs/<run>/best.pt --data data/omg
  omgclip live 0                                label your webcam live
  omgclip serve                                 a web page at http://127.0.0.1:7860/
run `omgclip COMMAND --help` for a command's options and examples."""


def _default(config_cls, name: str):
    """The default of field ``name`` of a config dataclass: defaults are written once."""
    for f in dataclasses.fields(config_cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return f.default_factory()  # type: ignore[misc]
    raise KeyError(f"{config_cls.__name__} has no default for {name!r}")


def _parser(sub, name: str, help: str, description: str, examples: str):
    return sub.add_parser(name, help=help, description=description,
                          epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _key_value_ints(items: Sequence[str] | None) -> dict[int, int] | None:
    """``['1=10', 'fear=10']`` -> ``{1: 10, 2: 10}``."""
    if not items:
        return None
    from omgclip.labels import parse_label

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise OmgclipError(f"--rare-stride expects CLASS=STRIDE, got {item!r}")
        try:
            out[parse_label(key)] = int(value)
        except ValueError as exc:
            raise OmgclipError(f"--rare-stride {item!r}: {exc}") from None
    return out


# ----------------------------------------------------------------------------- build-dataset
def _add_build(sub) -> None:
    from omgclip.dataset.build import BuildConfig
    from omgclip.faces.detect import FaceConfig

    B, F = BuildConfig, FaceConfig
    p = _parser(sub, "build-dataset", "manifests -> downloaded videos -> 20-frame face blocks",
                "Build a training-ready dataset of T-frame, SxS grayscale face blocks from "
                "OMG-Emotion manifests or your own. Re-running the same command resumes.",
                "  omgclip build-dataset --manifest omg:train --manifest omg:validation --out data/omg\n"
                "  omgclip build-dataset --manifest my_clips.csv --out data/mine --limit 20 --workers 2\n"
                "  omgclip build-dataset --manifest big.csv --out /shared/data/big --scheduler tcp://head:8786")
    p.add_argument("--manifest", action="append", required=True, metavar="PATH|omg:SPLIT",
                   help="a manifest CSV, or omg:train / omg:validation / omg:test (repeatable)")
    p.add_argument("--out", required=True, help="dataset folder (created; re-running resumes)")
    p.add_argument("--video-dir", help="where downloaded videos go (default OUT/videos)")
    p.add_argument("--workers", type=int, default=_default(B, "workers"), help="videos processed in parallel")
    p.add_argument("--limit", type=int, help="only the first N utterances of each manifest")
    p.add_argument("--block-len", type=int, default=_default(B, "block_len"), help="frames per block")
    p.add_argument("--stride", type=int, default=_default(B, "stride"), help="block stride for common classes")
    p.add_argument("--rare-stride", action="append", metavar="CLASS=STRIDE",
                   help="stride for a rare class (repeatable; default: half of --stride for "
                        "disgust, fear and surprise, i.e. 1=10 2=10 6=10)")
    p.add_argument("--auto-stride", action="store_true",
                   help="choose per-class strides from the class frequencies instead")
    p.add_argument("--split-by", choices=("manifest", "link"), default=_default(B, "split_by"),
                   help="keep the manifest's split, or re-split train/validation by source link")
    p.add_argument("--val-fraction", type=float, default=_default(B, "val_fraction"),
                   help="share of source links moved to validation with --split-by link")
    p.add_argument("--seed", type=int, default=_default(B, "seed"), help="seed of --split-by link")
    p.add_argument("--detect-every", type=int, default=_default(F, "detect_every"),
                   help="run the face detector every k-th frame; boxes are tracked in between")
    p.add_argument("--detect-width", type=int, default=_default(F, "detect_width"),
                   help="downscale key frames to this width for detection")
    p.add_argument("--min-detect-frac", type=float, default=_default(F, "min_detect_frac"),
                   help="skip blocks with a smaller fraction of really detected frames")
    p.add_argument("--max-gap", type=int, default=_default(F, "max_gap"),
                   help="frames a face box may be carried over missed detections")
    p.add_argument("--margin", type=float, default=_default(F, "margin"),
                   help="context around the dlib face box, per side, as a fraction of its size")
    p.add_argument("--retries", type=int, default=_default(B, "retries"), help="download retries")
    p.add_argument("--sleep", type=float, default=_default(B, "sleep"), help="polite seconds between downloads")
    p.add_argument("--download-interval", type=float, default=_default(B, "download_interval"), metavar="S",
                   help="at least S seconds between download starts from one host, over every process "
                        "using the same --video-dir (avoids HTTP 429 from YouTube)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run one task per video on a Dask cluster: tcp://HOST:PORT of a dask scheduler, "
                        "or local[:N] for N local worker processes; --out must be on a filesystem "
                        "shared by every worker (needs omgclip[dask])")
    p.add_argument("--task-retries", type=int, default=_default(B, "task_retries"),
                   help="with --scheduler: reruns of a task that failed")
    p.add_argument("--retry-failed", action="store_true",
                   help="request again the URLs that failed in earlier runs (they are skipped otherwise)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_build)


def _run_build(args) -> int:
    from omgclip.dataset.build import BuildConfig, build_dataset
    from omgclip.faces.detect import FaceConfig

    cfg = BuildConfig(
        manifests=tuple(args.manifest), out=args.out, video_dir=args.video_dir,
        workers=args.workers, limit=args.limit, block_len=args.block_len, stride=args.stride,
        rare_strides=_key_value_ints(args.rare_stride), auto_strides=args.auto_stride,
        split_by=args.split_by, val_fraction=args.val_fraction, seed=args.seed,
        face=FaceConfig(detect_every=args.detect_every, detect_width=args.detect_width,
                        min_detect_frac=args.min_detect_frac, max_gap=args.max_gap,
                        margin=args.margin),
        retries=args.retries, sleep=args.sleep, progress=not args.no_progress,
        download_interval=args.download_interval, scheduler=args.scheduler, task_retries=args.task_retries,
        retry_failed=args.retry_failed)
    report = build_dataset(cfg)
    print(report.summary())
    return 0


# ----------------------------------------------------------------------------- train
def _add_train(sub) -> None:
    from omgclip.learn.train import TrainConfig as C

    p = _parser(sub, "train", "train a 3D-CNN / ConvLSTM on a built dataset",
                "Train a temporal model on the blocks of a built dataset, with person/link-"
                "disjoint validation and early stopping on validation UAR.",
                "  omgclip train --data data/omg --out runs --epochs 30\n"
                "  omgclip train --data data/omg --out runs --model convlstm --max-time 60")
    p.add_argument("--data", required=True, help="a folder made by build-dataset")
    p.add_argument("--out", required=True, help="runs folder; each run gets a subfolder with "
                                                "checkpoints, logs and its config")
    p.add_argument("--model", help="a registered model (see `omgclip models`; default r2plus1d, or with "
                                   "--init-from the model in that file)")
    p.add_argument("--epochs", type=int, default=_default(C, "epochs"), help="maximum epochs")
    p.add_argument("--max-time", help="stop after this long: minutes, or DD:HH:MM:SS")
    p.add_argument("--batch-size", type=int, default=_default(C, "batch_size"), help="blocks per step")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {_default(C, 'lr')})")
    p.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {_default(C, 'weight_decay')})")
    p.add_argument("--schedule", choices=("cosine", "onecycle", "constant"),
                   help=f"learning-rate schedule (default {_default(C, 'schedule')})")
    p.add_argument("--label-smoothing", type=float,
                   help=f"cross-entropy label smoothing (default {_default(C, 'label_smoothing')})")
    p.add_argument("--seed", type=int, default=_default(C, "seed"), help="seed: same seed, same run")
    p.add_argument("--workers", type=int, help="data-loading workers (default: min(4, cpus - 2))")
    p.add_argument("--val-split", choices=("group", "manifest"), default=_default(C, "val_split"),
                   help="validation by whole groups (source link / person), or the manifest's split")
    p.add_argument("--val-fraction", type=float, default=_default(C, "val_fraction"),
                   help="share of groups held out for validation with --val-split group")
    p.add_argument("--balance", choices=("loss", "sampler", "none"), default=_default(C, "balance"),
                   help="class imbalance: weighted loss (default) or a balanced sampler")
    p.add_argument("--patience", type=int, default=_default(C, "patience"),
                   help="early stopping: epochs without a better validation UAR")
    p.add_argument("--accelerator", default=_default(C, "accelerator"), help="auto, cpu, gpu, ...")
    p.add_argument("--devices", default=_default(C, "devices"), help="devices to train on (auto, 1, 2, ...)")
    p.add_argument("--strategy", default=_default(C, "strategy"), help="e.g. ddp for several GPUs or nodes")
    p.add_argument("--num-nodes", type=int, default=_default(C, "num_nodes"),
                   help="machines taking part (DDP; each runs --devices processes)")
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on GPU, else 32-true)")
    p.add_argument("--run-name", help="run folder name inside --out (default: <UTC time>-<model>)")
    p.add_argument("--resume-from", help="a checkpoints/last.ckpt to continue from")
    p.add_argument("--init-from", metavar="default|PATH",
                   help="start from trained weights: 'default' (the bundled model) or a .pt/.ckpt; the model "
                        "comes from that file and --lr defaults to 5e-4")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from omgclip.learn.train import TrainConfig, train

    fields = dict(data=args.data, out=args.out, epochs=args.epochs, max_time=args.max_time,
                  batch_size=args.batch_size, seed=args.seed, val_split=args.val_split,
                  val_fraction=args.val_fraction, balance=args.balance, patience=args.patience,
                  accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                  num_nodes=args.num_nodes, progress=not args.no_progress)
    optional = dict(model=args.model, lr=args.lr, num_workers=args.workers,
                    weight_decay=args.weight_decay, schedule=args.schedule,
                    label_smoothing=args.label_smoothing, precision=args.precision,
                    run_name=args.run_name, resume_from=args.resume_from, init_from=args.init_from)
    if args.init_from is not None and args.lr is None:
        optional["lr"] = 5e-4  # fine-tuning: a gentler rate than training from scratch
    fields.update({k: v for k, v in optional.items() if v is not None})
    result = train(TrainConfig(**fields))
    if result.best_weights is None:  # a DDP process other than global rank 0: it reports nothing
        return 0
    print(f"best checkpoint: {result.best_checkpoint}  (validation UAR {result.best_val_uar:.3f})")
    print(f"compact weights for predict/evaluate: {result.best_weights}")
    return 0


# ----------------------------------------------------------------------------- evaluate
def _add_evaluate(sub) -> None:
    from omgclip.learn.evaluate import EvalConfig as E

    p = _parser(sub, "evaluate", "WAR, UAR, macro-F1, confusion matrix, majority baseline",
                "Score a model on a built dataset, per block and per clip, with the "
                "majority-class baseline beside every number.",
                "  omgclip evaluate --checkpoint runs/<run>/best.pt --data data/omg --split validation\n"
                "  omgclip evaluate --data data/mine --split all --out eval.json --confusion-png cm.png")
    p.add_argument("--checkpoint", help="a .ckpt / .pt from train (default: the bundled model)")
    p.add_argument("--data", required=True, help="a folder made by build-dataset")
    p.add_argument("--split", default=_default(E, "split"),
                   help="index rows of this split; 'heldout' = the groups the checkpoint's training "
                        "run held out; 'all' = every labeled row; 'auto' (default) = 'validation' when "
                        "the dataset has it, else 'heldout'")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.add_argument("--confusion-png", help="write the confusion matrix picture here")
    p.add_argument("--batch-size", type=int, default=_default(E, "batch_size"), help="blocks per forward pass")
    p.add_argument("--workers", type=int, help="data-loading workers")
    p.add_argument("--device", default=_default(E, "device"), help="auto, cpu, cuda, ...")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from omgclip.learn.evaluate import EvalConfig, evaluate, format_report

    result = evaluate(EvalConfig(checkpoint=args.checkpoint, data=args.data, split=args.split,
                                 out_json=args.out, confusion_png=args.confusion_png,
                                 batch_size=args.batch_size, num_workers=args.workers,
                                 device=args.device))
    print(format_report(result))
    return 0


# ----------------------------------------------------------------------------- predict
def _add_predict(sub) -> None:
    from omgclip.apps.predict import PredictConfig as P

    p = _parser(sub, "predict", "per-segment emotion labels for videos, images or URLs",
                "Label the emotion of every face in every 20-frame segment: a table, CSV/JSON "
                "rows, an annotated video and a timeline picture.",
                "  omgclip predict talk.mp4\n"
                "  omgclip predict 'clips/*.mp4' face.jpg --out rows.csv\n"
                "  omgclip predict talk.mp4 --annotate labeled.mp4 --plot timeline.png --smooth 3")
    p.add_argument("inputs", nargs="+", metavar="VIDEO|IMAGE|GLOB|URL",
                   help="video or image files, folders, quoted globs or http(s) URLs")
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--stride", type=int, help="segment stride in frames (default: the segment length)")
    p.add_argument("--batch-size", type=int, default=_default(P, "batch_size"),
                   help="face clips per forward pass")
    p.add_argument("--smooth", type=int, default=_default(P, "smooth"), metavar="N",
                   help="average each track's probabilities over N neighbouring segments")
    p.add_argument("--out", help="write rows to x.csv or x.json")
    p.add_argument("--annotate", metavar="OUT.mp4", help="write the video with boxes and labels")
    p.add_argument("--plot", metavar="TIMELINE.png", help="draw each track's emotion over time")
    p.add_argument("--detect-every", type=int, default=_default(P, "detect_every"),
                   help="run the face detector every k-th frame; boxes are tracked in between")
    p.add_argument("--cache-dir", help="where URLs are downloaded (default ~/.cache/omgclip/videos)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="one task per input on a Dask cluster (tcp://HOST:PORT or local[:N]); rows "
                        "come back here, --annotate/--plot files are written by the workers")
    p.add_argument("--detector", choices=("hog", "cnn"), default=_default(P, "detector"),
                   help="face detector: hog (fast, frontal faces) or cnn (dlib MMOD: also "
                        "three-quarter and profile faces, ~40x slower)")
    p.add_argument("--people", metavar="DIR",
                   help="reference photos DIR/<name>/*.jpg: name the matching persons")
    p.add_argument("--no-persons", action="store_true",
                   help="no person ids (person_id -1): skips the face descriptors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_predict)


def _run_predict(args) -> int:
    from omgclip.apps.predict import PartialPredictError, PredictConfig, predict
    from omgclip.apps.report import format_table
    from omgclip.fsutil import sigterm_raises

    cfg = PredictConfig(inputs=tuple(args.inputs), checkpoint=args.checkpoint, stride=args.stride,
                        batch_size=args.batch_size, smooth=args.smooth, out=args.out,
                        annotate=args.annotate, plot=args.plot, detect_every=args.detect_every,
                        cache_dir=args.cache_dir, progress=not args.no_progress,
                        scheduler=args.scheduler, detector=args.detector, people=args.people,
                        persons=not args.no_persons)
    try:
        with sigterm_raises():  # SIGTERM cleans up its temporary files like Ctrl-C
            rows = predict(cfg)
    except PartialPredictError as exc:  # print what did work, then exit non-zero
        print(format_table(exc.rows))
        raise
    print(format_table(rows))
    return 0


# ----------------------------------------------------------------------------- live / serve
def _add_live(sub) -> None:
    from omgclip.apps.live import LiveConfig as L

    p = _parser(sub, "live", "label faces live from a webcam, a video file or a stream",
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
    p.add_argument("--hop", type=int, default=_default(L, "hop"),
                   help="a label every HOP frames per face, once 20 frames are in its window")
    p.add_argument("--smooth", type=int, default=_default(L, "smooth"), metavar="N",
                   help="average each face's last N probability vectors")
    p.add_argument("--headless", action="store_true", help="no window; rows go to --out")
    p.add_argument("--out", help="rows.jsonl, rows.csv, or - for JSON lines on stdout "
                                 "(default with --headless: -)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--reconnect", type=int, default=_default(L, "reconnect"), metavar="N",
                   help="reopen a stream that stops at most N times in a row")
    p.add_argument("--reconnect-delay", type=float, default=_default(L, "reconnect_delay"),
                   metavar="S", help="seconds before the first reopen (doubling, at most 8)")
    p.add_argument("--timeout", type=float, default=_default(L, "timeout"), metavar="S",
                   help="seconds a stream may take to open or to deliver a frame")
    p.add_argument("--buffer", type=int, default=_default(L, "buffer"),
                   help="frames that may wait for processing; older ones are dropped")
    p.add_argument("--no-pace", action="store_true",
                   help="read a file as fast as it can be processed (no drops) instead of at its "
                        "frame rate")
    p.add_argument("--detect-every", type=int, default=_default(L, "detect_every"),
                   help="run the face detector every k-th frame; boxes are carried in between")
    p.add_argument("--threads", type=int, default=_default(L, "threads"),
                   help="threads for the model (more rarely helps one clip at a time)")
    p.add_argument("--no-persons", action="store_true",
                   help="no person ids (they cost one face descriptor per new track)")
    p.set_defaults(run=_run_live)


def _run_live(args) -> int:
    from omgclip.apps.live import LiveConfig, run_live

    summary = run_live(LiveConfig(
        source=args.source, checkpoint=args.checkpoint, hop=args.hop, smooth=args.smooth,
        headless=args.headless, out=args.out, duration=args.duration, reconnect=args.reconnect,
        reconnect_delay=args.reconnect_delay, timeout=args.timeout, buffer=args.buffer,
        pace=not args.no_pace, detect_every=args.detect_every, threads=args.threads,
        persons=not args.no_persons))
    print(summary.line(), file=sys.stderr)
    return 0


def _add_serve(sub) -> None:
    from omgclip.apps.serve import ServeConfig as S

    p = _parser(sub, "serve", "a web page and JSON API for predictions (needs omgclip[web])",
                "Serve a page (upload a video or paste a URL; see the table, the timeline and the "
                "annotated video; download CSV/JSON; or label your webcam live) and a JSON API: "
                "POST /api/predict (multipart field 'file') -> {\"rows\": [...]}, GET /healthz.",
                "  omgclip serve                                   http://127.0.0.1:7860/\n"
                "  curl -F file=@talk.mp4 http://127.0.0.1:7860/api/predict")
    p.add_argument("--host", default=_default(S, "host"),
                   help="address to bind (loopback by default; anything else is reachable by "
                        "others, without authentication)")
    p.add_argument("--port", type=int, default=_default(S, "port"))
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--max-upload-mb", type=float, default=_default(S, "max_upload_mb"),
                   help="larger uploads get HTTP 413")
    p.add_argument("--queue-size", type=int, default=_default(S, "queue_size"),
                   help="jobs that may wait for the model; more get HTTP 503")
    p.add_argument("--detect-every", type=int, default=_default(S, "detect_every"),
                   help="run the face detector every k-th frame")
    p.add_argument("--threads", type=int, default=_default(S, "threads"), help="threads for the model")
    p.set_defaults(run=_run_serve)


def _run_serve(args) -> int:
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


# ----------------------------------------------------------------------------- export / models
def _add_export(sub) -> None:
    p = _parser(sub, "export", "the model as ONNX or TorchScript, for use outside Python",
                "Export a model (input (N, 1, 20, 80, 80) in [0, 1], 7 logits); the file is "
                "reloaded and checked against PyTorch.",
                "  omgclip export --out model.onnx\n"
                "  omgclip export --checkpoint runs/<run>/best.pt --format torchscript --out model.pt")
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="file format")
    p.add_argument("--out", required=True, help="file to write (.onnx, or .pt/.ts for TorchScript)")
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from omgclip.apps.export import ExportConfig, export

    path = export(ExportConfig(checkpoint=args.checkpoint, format=args.format, out=args.out))
    print(f"wrote {path}")
    return 0


def _add_models(sub) -> None:
    p = _parser(sub, "models", "list the registered model architectures",
                "List the model architectures `omgclip train --model` accepts.", "  omgclip models")
    p.set_defaults(run=_run_models)


def _run_models(args) -> int:
    from omgclip.learn.models import DEFAULT_MODEL, list_models

    for name in list_models():
        print(f"{name}{'  (default)' if name == DEFAULT_MODEL else ''}")
    return 0


_COMMANDS: tuple[Callable, ...] = (_add_build, _add_train, _add_evaluate, _add_predict, _add_live,
                                   _add_serve, _add_export, _add_models)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omgclip", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"omgclip {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except OmgclipError as exc:
        print(f"omgclip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM where a command asks for it
        code = getattr(exc, "exit_code", 130)
        print(f"omgclip: {'terminated' if code == 143 else 'interrupted'}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
