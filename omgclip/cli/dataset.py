"""``omgclip build-dataset``: its options and the one call to :func:`~omgclip.dataset.build.build_dataset`."""

from __future__ import annotations

from omgclip.cli.common import add_command, config_default, key_value_ints


def add_build(sub) -> None:
    from omgclip.dataset.build import BuildConfig
    from omgclip.faces.detect import FaceConfig

    B, F = BuildConfig, FaceConfig
    p = add_command(sub, "build-dataset", "manifests -> downloaded videos -> 20-frame face blocks",
                     "Build a training-ready dataset of T-frame, SxS grayscale face blocks from "
                     "OMG-Emotion manifests or your own. Re-running the same command resumes.",
                     "  omgclip build-dataset --manifest omg:train --manifest omg:validation --out data/omg\n"
                     "  omgclip build-dataset --manifest my_clips.csv --out data/mine --limit 20 --workers 2\n"
                     "  omgclip build-dataset --manifest big.csv --out /shared/data/big --scheduler tcp://head:8786")
    p.add_argument("--manifest", action="append", required=True, metavar="PATH|omg:SPLIT",
                   help="a manifest CSV, or omg:train / omg:validation / omg:test (repeatable)")
    p.add_argument("--out", required=True, help="dataset folder (created; re-running resumes)")
    p.add_argument("--video-dir", help="where downloaded videos go (default OUT/videos)")
    p.add_argument("--workers", type=int, default=config_default(B, "workers"), help="videos processed in parallel")
    p.add_argument("--limit", type=int, help="only the first N utterances of each manifest")
    p.add_argument("--block-len", type=int, default=config_default(B, "block_len"), help="frames per block")
    p.add_argument("--stride", type=int, default=config_default(B, "stride"), help="block stride for common classes")
    p.add_argument("--rare-stride", action="append", metavar="CLASS=STRIDE",
                   help="stride for a rare class (repeatable; default: half of --stride for "
                        "disgust, fear and surprise, i.e. 1=10 2=10 6=10)")
    p.add_argument("--auto-stride", action="store_true",
                   help="choose per-class strides from the class frequencies instead")
    p.add_argument("--split-by", choices=("manifest", "link"), default=config_default(B, "split_by"),
                   help="keep the manifest's split, or re-split train/validation by source link")
    p.add_argument("--val-fraction", type=float, default=config_default(B, "val_fraction"),
                   help="share of source links moved to validation with --split-by link")
    p.add_argument("--seed", type=int, default=config_default(B, "seed"), help="seed of --split-by link")
    p.add_argument("--detect-every", type=int, default=config_default(F, "detect_every"),
                   help="run the face detector every k-th frame; boxes are tracked in between")
    p.add_argument("--detect-width", type=int, default=config_default(F, "detect_width"),
                   help="downscale key frames to this width for detection")
    p.add_argument("--min-detect-frac", type=float, default=config_default(F, "min_detect_frac"),
                   help="skip blocks with a smaller fraction of really detected frames")
    p.add_argument("--max-gap", type=int, default=config_default(F, "max_gap"),
                   help="frames a face box may be carried over missed detections")
    p.add_argument("--margin", type=float, default=config_default(F, "margin"),
                   help="context around the dlib face box, per side, as a fraction of its size")
    p.add_argument("--retries", type=int, default=config_default(B, "retries"), help="download retries")
    p.add_argument("--sleep", type=float, default=config_default(B, "sleep"), help="polite seconds between downloads")
    p.add_argument("--download-interval", type=float, default=config_default(B, "download_interval"), metavar="S",
                   help="at least S seconds between download starts from one host, over every process "
                        "using the same --video-dir (avoids HTTP 429 from YouTube)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run one task per video on a Dask cluster: tcp://HOST:PORT of a dask scheduler, "
                        "or local[:N] for N local worker processes; --out must be on a filesystem "
                        "shared by every worker (needs omgclip[dask])")
    p.add_argument("--task-retries", type=int, default=config_default(B, "task_retries"),
                   help="with --scheduler: reruns of a task that failed")
    p.add_argument("--retry-failed", action="store_true",
                   help="request again the URLs that failed in earlier runs (they are skipped otherwise)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run_build)


def run_build(args) -> int:
    from omgclip.dataset.build import BuildConfig, build_dataset
    from omgclip.faces.detect import FaceConfig

    cfg = BuildConfig(
        manifests=tuple(args.manifest), out=args.out, video_dir=args.video_dir,
        workers=args.workers, limit=args.limit, block_len=args.block_len, stride=args.stride,
        rare_strides=key_value_ints(args.rare_stride), auto_strides=args.auto_stride,
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
