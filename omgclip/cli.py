"""``omgclip`` command line: argv -> a frozen config -> one call. No logic lives here.

Expected mistakes (``OmgclipError``) print one line, ``omgclip: error: ...``, and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from omgclip import __version__
from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceConfig

FACE_DEFAULTS = FaceConfig()
log = logging.getLogger("omgclip")


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
    p = sub.add_parser("build-dataset", help="manifests -> downloaded videos -> 20-frame face blocks",
                       description="Build a training-ready dataset of T-frame, SxS grayscale face "
                                   "blocks from OMG-Emotion manifests or your own.")
    p.add_argument("--manifest", action="append", required=True, metavar="PATH|omg:SPLIT",
                   help="a manifest CSV, or omg:train / omg:validation / omg:test (repeatable)")
    p.add_argument("--out", required=True, help="dataset folder (created; re-running resumes)")
    p.add_argument("--video-dir", help="where downloaded videos go (default OUT/videos)")
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel")
    p.add_argument("--limit", type=int, help="only the first N utterances of each manifest")
    p.add_argument("--block-len", type=int, default=20, help="frames per block")
    p.add_argument("--stride", type=int, default=20, help="block stride for common classes")
    p.add_argument("--rare-stride", action="append", metavar="CLASS=STRIDE",
                   help="stride for a rare class (repeatable; default: half of --stride for "
                        "disgust, fear and surprise, i.e. 1=10 2=10 6=10)")
    p.add_argument("--auto-stride", action="store_true",
                   help="choose per-class strides from the class frequencies instead")
    p.add_argument("--split-by", choices=("manifest", "link"), default="manifest",
                   help="keep the manifest's split, or re-split train/validation by source link")
    p.add_argument("--val-fraction", type=float, default=0.2, help="with --split-by link")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detect-every", type=int, default=5, help="run the face detector every k frames")
    p.add_argument("--detect-width", type=int, default=320, help="downscale key frames to this width")
    p.add_argument("--min-detect-frac", type=float, default=0.5,
                   help="skip blocks with a smaller fraction of really detected frames")
    p.add_argument("--max-gap", type=int, default=10, help="frames a face box may be carried over misses")
    p.add_argument("--margin", type=float, default=FACE_DEFAULTS.margin,
                   help="context around the dlib face box, per side, as a fraction of its size")
    p.add_argument("--retries", type=int, default=3, help="download retries")
    p.add_argument("--sleep", type=float, default=0.0, help="polite seconds between downloads")
    p.add_argument("--no-progress", action="store_true")
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
        retries=args.retries, sleep=args.sleep, progress=not args.no_progress)
    report = build_dataset(cfg)
    print(report.summary())
    return 0


# ----------------------------------------------------------------------------- train
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a 3D-CNN / ConvLSTM on a built dataset")
    p.add_argument("--data", required=True, help="a folder made by build-dataset")
    p.add_argument("--out", required=True, help="run folder: checkpoints, logs, config")
    p.add_argument("--model", help="a registered model (see `omgclip models`)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--max-time", help="stop after this long: minutes, or DD:HH:MM:SS")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--schedule", choices=("cosine", "onecycle", "constant"), default=None)
    p.add_argument("--label-smoothing", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="data-loading workers")
    p.add_argument("--val-split", choices=("group", "manifest"), default="group",
                   help="validation by whole groups (source link / person), or the manifest's split")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--balance", choices=("loss", "sampler", "none"), default="loss",
                   help="class imbalance: weighted loss (default) or a balanced sampler")
    p.add_argument("--patience", type=int, default=8, help="early stopping on validation UAR")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--strategy", default="auto", help="e.g. ddp for several GPUs")
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on GPU, else 32-true)")
    p.add_argument("--run-name", help="run folder name inside --out (default: <UTC time>-<model>)")
    p.add_argument("--resume-from", help="a checkpoints/last.ckpt to continue from")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from omgclip.learn.train import TrainConfig, train

    fields = dict(data=args.data, out=args.out, epochs=args.epochs, max_time=args.max_time,
                  batch_size=args.batch_size, seed=args.seed, val_split=args.val_split,
                  val_fraction=args.val_fraction, balance=args.balance, patience=args.patience,
                  accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                  progress=not args.no_progress)
    optional = dict(model=args.model, lr=args.lr, num_workers=args.workers,
                    weight_decay=args.weight_decay, schedule=args.schedule,
                    label_smoothing=args.label_smoothing, precision=args.precision,
                    run_name=args.run_name, resume_from=args.resume_from)
    fields.update({k: v for k, v in optional.items() if v is not None})
    result = train(TrainConfig(**fields))
    print(f"best checkpoint: {result.best_checkpoint}  (validation UAR {result.best_val_uar:.3f})")
    print(f"compact weights for predict/evaluate: {result.best_weights}")
    return 0


# ----------------------------------------------------------------------------- evaluate
def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="WAR, UAR, macro-F1, confusion matrix, majority baseline")
    p.add_argument("--checkpoint", help="a .ckpt / .pt from train (default: the bundled model)")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="validation",
                   help="index rows of this split; 'heldout' = the groups the checkpoint's training "
                        "run held out; 'all' = every labeled row")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.add_argument("--confusion-png", help="write the confusion matrix picture here")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="data-loading workers")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
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
    p = sub.add_parser("predict", help="per-segment emotion labels for videos, images or URLs")
    p.add_argument("inputs", nargs="+", metavar="VIDEO|IMAGE|GLOB|URL")
    p.add_argument("--checkpoint", help="a trained model (default: the bundled one)")
    p.add_argument("--stride", type=int, help="segment stride in frames (default: the segment length)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--smooth", type=int, default=0, metavar="N",
                   help="average each track's probabilities over N neighbouring segments")
    p.add_argument("--out", help="write rows to x.csv or x.json")
    p.add_argument("--annotate", metavar="OUT.mp4", help="write the video with boxes and labels")
    p.add_argument("--plot", metavar="TIMELINE.png", help="draw each track's emotion over time")
    p.add_argument("--detect-every", type=int, default=5)
    p.add_argument("--cache-dir", help="where URLs are downloaded (default ~/.cache/omgclip/videos)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(run=_run_predict)


def _run_predict(args) -> int:
    from omgclip.apps.predict import PartialPredictError, PredictConfig, format_table, predict

    cfg = PredictConfig(inputs=tuple(args.inputs), checkpoint=args.checkpoint, stride=args.stride,
                        batch_size=args.batch_size, smooth=args.smooth, out=args.out,
                        annotate=args.annotate, plot=args.plot, detect_every=args.detect_every,
                        cache_dir=args.cache_dir, progress=not args.no_progress)
    try:
        rows = predict(cfg)
    except PartialPredictError as exc:  # print what did work, then exit non-zero
        print(format_table(exc.rows))
        raise
    print(format_table(rows))
    return 0


# ----------------------------------------------------------------------------- export / models
def _add_export(sub) -> None:
    p = sub.add_parser("export", help="the model as ONNX or TorchScript, for use outside Python")
    p.add_argument("--checkpoint", help="default: the bundled model")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", required=True)
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from omgclip.apps.export import ExportConfig, export

    path = export(ExportConfig(checkpoint=args.checkpoint, format=args.format, out=args.out))
    print(f"wrote {path}")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the registered model architectures")
    p.set_defaults(run=_run_models)


def _run_models(args) -> int:
    from omgclip.learn.models import DEFAULT_MODEL, list_models

    for name in list_models():
        print(f"{name}{'  (default)' if name == DEFAULT_MODEL else ''}")
    return 0


_COMMANDS: tuple[Callable, ...] = (_add_build, _add_train, _add_evaluate, _add_predict, _add_export,
                                   _add_models)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omgclip", description=__doc__.splitlines()[0])
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
    except KeyboardInterrupt:
        print("omgclip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
