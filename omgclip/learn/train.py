"""``omgclip train``: fit a model on a built dataset with Lightning.

A run writes, under ``out/<run name>/``::

    train_config.json       the TrainConfig, resolved (plus dataset and split summary)
    labels.json             the class names, in output order
    checkpoints/best-*.ckpt the epoch with the best validation UAR (Lightning checkpoint)
    checkpoints/last.ckpt   the latest epoch (resume with resume_from)
    best.pt                 the best model as a compact weights file (omgclip.learn.checkpoint);
                            with ``calibrate``, asking for a temperature fitted on the validation
                            groups (see fit_validation_temperature)
    logs/metrics.csv        train_loss, val_loss, val_acc, val_uar, val_f1 per epoch
    logs/...                TensorBoard events too, when tensorboard is installed
    result.json             best checkpoint, its validation UAR, epochs run

The same call trains on a GPU when one is present (``accelerator='auto'``) and with DDP
across several (``devices``/``strategy``), with no other change.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

from omgclip.errors import OmgclipError, Terminated
from omgclip.labels import EMOTIONS, NUM_CLASSES

log = logging.getLogger(__name__)

from omgclip.learn import DEFAULT_MODEL
from omgclip.fsutil import atomic_write_json, to_jsonable
from omgclip.dataset.format import read_face_config
from omgclip.learn.run_dir import _RUN_DIR_ENV, _is_launcher_rank_zero, _make_run_dir  # noqa: F401


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything ``train`` needs. ``out`` is the folder that receives the run folder
    ``<run_name>`` (default: ``<UTC time>-<model>``).

    ``max_time``: stop after this long, ``'DD:HH:MM:SS'`` (Lightning's format) or a number of
    minutes (``'90'``, ``'1.5'``); ``None``: only ``epochs`` limits.
    ``precision``: Lightning precision; ``None`` = ``'bf16-mixed'`` on a GPU that supports
    it, else ``'32-true'``.
    ``num_workers``: DataLoader workers; ``None`` = ``min(4, cpus - 2)``.
    ``limit_train_batches`` / ``limit_val_batches``: for quick tests (int = batches,
    float = fraction).
    ``init_from``: start from trained weights instead of random ones: ``'default'`` (the
    bundled model) or a ``.pt`` / ``.ckpt`` path. The model (and its options) then come from
    that file; ``model`` must be ``None`` or the same name. Its face crop settings and block
    shape must match the dataset's, else :class:`OmgclipError`.
    ``calibrate``: fit a temperature on the validation blocks into ``best.pt``
    (:func:`fit_validation_temperature`); off by default, because one fitted on a few people
    need not fit others (the bundled recipe's made the benchmark's people worse: model card,
    "Confidence").
    """

    data: Path
    out: Path
    model: str | None = None  # None: DEFAULT_MODEL, or the model of init_from
    model_kwargs: Mapping[str, Any] | None = None
    epochs: int = 30
    max_time: str | None = None
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    seed: int = 0
    num_workers: int | None = None
    val_split: str = "group"
    val_fraction: float = 0.2
    balance: str = "loss"
    patience: int = 8
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1                    #: machines, each with ``devices`` processes (DDP)
    precision: str | None = None
    progress: bool = True
    run_name: str | None = None
    resume_from: Path | None = None
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    log_every_n_steps: int = 20
    init_from: str | Path | None = None
    calibrate: bool = False


@dataclasses.dataclass(frozen=True)
class TrainResult:
    best_checkpoint: Path
    best_val_uar: float
    run_dir: Path
    best_weights: Path | None = None
    epochs_run: int = 0


def parse_max_time(value: str | float | int | None):
    """``None`` | ``'DD:HH:MM:SS'`` | minutes -> what ``Trainer(max_time=...)`` takes."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if ":" in text:
        if not re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", text):
            raise OmgclipError(f"max time {text!r} is not DD:HH:MM:SS (e.g. 00:02:30:00) or minutes (e.g. 150)")
        return text
    try:
        minutes = float(text)
    except ValueError:
        raise OmgclipError(f"max time {text!r} is not DD:HH:MM:SS (e.g. 00:02:30:00) or minutes (e.g. 150)") from None
    if not minutes > 0:
        raise OmgclipError(f"max time must be positive (got {text!r})")
    return _dt.timedelta(minutes=minutes)


def _resolve_precision(cfg: TrainConfig) -> str:
    if cfg.precision:
        return str(cfg.precision)
    import torch

    if cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _check_config(cfg: TrainConfig) -> None:
    from omgclip.learn.data import BALANCE_MODES, VAL_SPLIT_MODES
    from omgclip.learn.lit_module import SCHEDULES
    from omgclip.learn.models import create_model

    create_model(cfg.model, **dict(cfg.model_kwargs or {}))  # unknown name / option -> OmgclipError
    for name, value, allowed in (("balance", cfg.balance, BALANCE_MODES),
                                 ("val_split", cfg.val_split, VAL_SPLIT_MODES),
                                 ("schedule", cfg.schedule, SCHEDULES)):
        if value not in allowed:
            raise OmgclipError(f"unknown {name} {value!r} (choose from: {', '.join(allowed)})")
    if cfg.epochs < 1:
        raise OmgclipError(f"epochs must be at least 1 (got {cfg.epochs})")
    if cfg.batch_size < 1:
        raise OmgclipError(f"batch size must be at least 1 (got {cfg.batch_size})")
    if not cfg.lr > 0:
        raise OmgclipError(f"learning rate must be positive (got {cfg.lr})")
    if cfg.patience < 1:
        raise OmgclipError(f"patience must be at least 1 (got {cfg.patience})")
    if cfg.num_nodes < 1:
        raise OmgclipError(f"number of nodes must be at least 1 (got {cfg.num_nodes})")
    if cfg.resume_from is not None and not Path(cfg.resume_from).is_file():
        raise OmgclipError(f"checkpoint to resume from {cfg.resume_from} does not exist")


def _loggers(run_dir: Path) -> list:
    from pytorch_lightning.loggers import CSVLogger

    loggers: list = [CSVLogger(save_dir=os.fspath(run_dir), name="logs", version="")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            return loggers
    from pytorch_lightning.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(save_dir=os.fspath(run_dir), name="logs", version="tensorboard"))
    return loggers


def train(cfg: TrainConfig) -> TrainResult:
    """Train, keep the checkpoint with the best validation UAR, export it as ``best.pt``."""
    import pytorch_lightning as pl

    from omgclip.learn.data import BlockDataModule, DataConfig

    cfg, init = _resolve_model(cfg)
    _check_config(cfg)
    max_time = parse_max_time(cfg.max_time)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    dm = BlockDataModule(DataConfig(data_dir=Path(cfg.data), batch_size=cfg.batch_size,
                                    num_workers=cfg.num_workers, val_split=cfg.val_split,
                                    val_fraction=cfg.val_fraction, seed=cfg.seed, balance=cfg.balance))
    dm.setup("fit")  # validates the dataset and fixes the split before anything is written
    if dm.val_frame is None or dm.val_frame.empty:
        raise OmgclipError("the validation split is empty; use a larger --val-fraction or more groups")
    block_len, crop, _ = dm.block_shape
    if init is not None:
        check_init_matches(init, cfg.init_from, (block_len, crop), read_face_config(Path(cfg.data)))

    run_dir = _make_run_dir(cfg)
    os.environ[_RUN_DIR_ENV] = os.fspath(run_dir.resolve())  # inherited by DDP worker processes
    precision = _resolve_precision(cfg)
    if _is_launcher_rank_zero():
        _write_run_files(run_dir, cfg, dm, precision)
    module = _make_module(cfg, dm, init)
    trainer, ckpt_cb = _make_trainer(cfg, dm, run_dir, precision, max_time)
    log.info("training %s in %s (%s, precision %s)", cfg.model, run_dir, trainer.accelerator.__class__.__name__,
             precision)
    _fit(trainer, module, dm, cfg, run_dir)
    return _finish(cfg, run_dir, trainer, ckpt_cb, dm)


def _resolve_model(cfg: TrainConfig):
    """``(cfg, init)``: with ``--init-from`` the model (and its settings) come from that file;
    else the named model or the default."""
    if cfg.init_from is None:
        return (dataclasses.replace(cfg, model=DEFAULT_MODEL) if cfg.model is None else cfg), None
    init = load_init_weights(cfg.init_from)
    if cfg.model not in (None, init.model_name):
        raise OmgclipError(f"--init-from {cfg.init_from} holds a {init.model_name!r} model, not {cfg.model!r}: "
                           f"leave out --model (or pass --model {init.model_name})")
    return dataclasses.replace(cfg, model=init.model_name,
                               model_kwargs=dict(init.meta.get("model_kwargs") or {})), init


def _make_module(cfg: TrainConfig, dm, init):
    from omgclip.learn.lit_module import EmotionClassifier

    block_len, crop, _ = dm.block_shape
    split_info = {"mode": cfg.val_split, "val_fraction": cfg.val_fraction, "seed": cfg.seed,
                  "train_groups": dm.train_groups, "val_groups": dm.val_groups}
    module = EmotionClassifier(
        model_name=cfg.model, model_kwargs=dict(cfg.model_kwargs or {}), num_classes=NUM_CLASSES,
        labels=list(EMOTIONS), lr=cfg.lr, weight_decay=cfg.weight_decay,
        class_weights=dm.class_weights, block_len=block_len, crop_size=crop, schedule=cfg.schedule,
        label_smoothing=cfg.label_smoothing, train_class_counts=dm.train_counts, split_info=split_info,
        face=read_face_config(Path(cfg.data)),
    )
    if init is not None:
        module.net.load_state_dict(init.net.state_dict())
        module.hparams["init_from"] = os.fspath(init.path) if init.path else str(cfg.init_from)
    return module


def _make_trainer(cfg: TrainConfig, dm, run_dir: Path, precision, max_time):
    """The Lightning trainer and its best-validation-UAR checkpoint callback."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    ckpt_cb = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-epoch{epoch:02d}-uar{val_uar:.4f}",
                              auto_insert_metric_name=False, monitor="val_uar", mode="max",
                              save_top_k=1, save_last=True)
    callbacks: list = [ckpt_cb, EarlyStopping(monitor="val_uar", mode="max", patience=cfg.patience),
                       LearningRateMonitor(logging_interval="epoch"), _epoch_summary_callback()]
    limits = {k: v for k, v in (("limit_train_batches", cfg.limit_train_batches),
                                ("limit_val_batches", cfg.limit_val_batches)) if v is not None}
    trainer = pl.Trainer(
        max_epochs=cfg.epochs, max_time=max_time, accelerator=cfg.accelerator, devices=cfg.devices,
        num_nodes=cfg.num_nodes, strategy=cfg.strategy, precision=precision, callbacks=callbacks,
        logger=_loggers(run_dir), default_root_dir=os.fspath(run_dir), enable_progress_bar=cfg.progress,
        enable_model_summary=cfg.progress,
        log_every_n_steps=max(1, min(cfg.log_every_n_steps, len(dm.train_frame) // cfg.batch_size)),
        num_sanity_val_steps=0, **limits,
    )
    return trainer, ckpt_cb


def _fit(trainer, module, dm, cfg: TrainConfig, run_dir: Path) -> None:
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=os.fspath(cfg.resume_from) if cfg.resume_from else None)
    except BaseException as exc:
        _discard_if_checkpointless(run_dir)
        if isinstance(exc, SystemExit) and (not exc.code or isinstance(exc.__context__, KeyboardInterrupt)):
            # Lightning ends a fit stopped by SIGTERM with SystemExit() -- exit status 0, as if
            # it had worked -- and one stopped by Ctrl-C with SystemExit(1): say what happened
            raise (KeyboardInterrupt() if exc.code else Terminated("training stopped by SIGTERM")) from None
        raise
    finally:
        os.environ.pop(_RUN_DIR_ENV, None)  # the workers have it; a later run in this process must not


#: the fewest validation blocks a run fits its temperature on (fewer: ``best.pt`` asks for none)
MIN_TEMPERATURE_BLOCKS = 20


def fit_validation_temperature(weights: Path, dm, num_workers: int | None = None) -> dict:
    """Fit one temperature (minimum NLL, :func:`omgclip.learn.metrics.fit_temperature`) on the
    run's validation blocks, scored as ``evaluate`` and ``predict`` score them, and write it into
    ``weights``' meta for video and still images alike: the validation groups are people or
    sources the run never trained on, so ``predict``'s confidences can be read as the chance of
    being right on new ones. Returns what was done (``temperature``, ``blocks``, ECE before and
    after); with fewer than :data:`MIN_TEMPERATURE_BLOCKS` blocks nothing is fitted or written."""
    from omgclip.learn.checkpoint import load_for_inference, rewrite_meta
    from omgclip.learn.data import BlockDataset, default_num_workers
    from omgclip.learn.evaluate import _resolve_device, _scoring_net
    from omgclip.learn.inference import predict_probabilities
    from omgclip.learn.metrics import apply_temperature, calibration, fit_temperature

    rows = dm.val_frame[dm.val_frame["label"] >= 0]
    if len(rows) < MIN_TEMPERATURE_BLOCKS:
        log.info("no temperature fitted: %d validation blocks (fewer than %d)", len(rows), MIN_TEMPERATURE_BLOCKS)
        return {"temperature": None, "blocks": int(len(rows)),
                "reason": f"fewer than {MIN_TEMPERATURE_BLOCKS} validation blocks"}
    model = load_for_inference(weights, temperature=False)
    workers = default_num_workers() if num_workers is None else int(num_workers)
    probs = predict_probabilities(_scoring_net(model), BlockDataset(rows, dm.root, augment=False), 64, workers,
                                  _resolve_device("auto"))
    y = rows["label"].to_numpy()
    t = round(fit_temperature(probs, y), 3)
    rewrite_meta(weights, {"temperature": {"video": t, "still": t}})
    before, after = calibration(probs, y), calibration(apply_temperature(probs, t), y)
    log.info("temperature %.3f fitted on %d validation blocks: ECE %.3f -> %.3f", t, len(rows), before["ece"],
             after["ece"])
    return {"temperature": t, "blocks": int(len(rows)), "ece_before": round(before["ece"], 4),
            "ece_after": round(after["ece"], 4)}


def _finish(cfg: TrainConfig, run_dir: Path, trainer, ckpt_cb, dm) -> TrainResult:
    """Pick the best checkpoint, write ``best.pt`` and ``result.json`` (rank 0)."""
    from omgclip.learn.checkpoint import load_model, save_weights

    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else None
    if best is None or not best.is_file():
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise OmgclipError("training stopped before any checkpoint was saved (time limit too short?)")
        log.warning("no validation score was recorded; using the last checkpoint")
        best = last
    score = ckpt_cb.best_model_score
    best_uar = float(score) if score is not None else float("nan")
    weights_path: Path | None = None
    if trainer.is_global_zero:
        loaded = load_model(best)
        meta = dict(loaded.meta)
        meta.update({"best_val_uar": best_uar, "trained_from": os.fspath(best),
                     "dataset": os.fspath(cfg.data)})
        weights_path = save_weights(run_dir / "best.pt", loaded.net, meta)
        calibrated = fit_validation_temperature(weights_path, dm, cfg.num_workers) if cfg.calibrate else None
        atomic_write_json(run_dir / "result.json", {
            "best_checkpoint": os.fspath(best), "best_val_uar": best_uar, "best_weights": os.fspath(weights_path),
            "calibration": calibrated,
            "epochs_run": int(trainer.current_epoch), "stopped_early": bool(trainer.should_stop
                                                                             and trainer.current_epoch < cfg.epochs),
        })
        log.info("best validation UAR %.4f: %s (weights %s)", best_uar, best, weights_path)
    return TrainResult(best_checkpoint=best, best_val_uar=best_uar, run_dir=run_dir,
                       best_weights=weights_path, epochs_run=int(trainer.current_epoch))


#: face settings that change what a crop looks like: a model only fits crops made alike
CROP_KEYS = ("crop_size", "margin")


def load_init_weights(init_from: str | os.PathLike):
    """``'default'`` (the bundled weights) or a path -> :class:`LoadedModel`
    (:class:`OmgclipError` when it does not load)."""
    from omgclip.learn.checkpoint import default_checkpoint, load_model

    path = default_checkpoint() if str(init_from) == "default" else Path(init_from)
    return load_model(path)


def check_init_matches(init, init_from, block_shape: tuple[int, int], face: dict | None) -> None:
    """One-line :class:`OmgclipError` unless the init weights were trained on blocks of
    the dataset's shape, cropped with the same face settings."""
    block_len, crop = block_shape
    if (init.block_len, init.crop_size) != (block_len, crop):
        raise OmgclipError(f"--init-from {init_from}: it was trained on {init.block_len}-frame {init.crop_size}px "
                           f"blocks, the dataset has {block_len}-frame {crop}px blocks; rebuild the dataset "
                           f"with --block-len {init.block_len} (and crop size {init.crop_size})")
    init_face = init.meta.get("face")
    if isinstance(init_face, dict) and isinstance(face, dict):
        diff = [f"{k} {init_face[k]} vs {face[k]}" for k in CROP_KEYS
                if k in init_face and k in face and init_face[k] != face[k]]
        if diff:
            raise OmgclipError(f"--init-from {init_from}: its face crops differ from the dataset's "
                               f"({', '.join(diff)}); rebuild the dataset with the same settings "
                               f"(e.g. --margin {init_face.get('margin')})")


def _discard_if_checkpointless(run_dir: Path) -> None:
    """A run that failed before saving any checkpoint leaves nothing that looks like a run:
    only the files this run wrote are removed, and the folder if that empties it."""
    import shutil

    if not _is_launcher_rank_zero() or any((run_dir / "checkpoints").glob("*.ckpt")):
        return
    for name in ("train_config.json", "labels.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "logs", ignore_errors=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    try:
        run_dir.rmdir()
    except OSError:
        log.warning("the failed run left files in %s", run_dir)
    else:
        log.info("removed the run folder %s: the run failed before its first checkpoint", run_dir)


def _write_run_files(run_dir: Path, cfg: TrainConfig, dm, precision: str) -> None:

    atomic_write_json(run_dir / "train_config.json", {
        "config": to_jsonable(cfg),
        "resolved": {"precision": precision, "num_workers": dm.num_workers, "block_shape": list(dm.block_shape),
                     "train_blocks": len(dm.train_frame), "val_blocks": len(dm.val_frame),
                     "train_class_counts": dm.train_counts, "val_class_counts": dm.val_counts,
                     "class_weights": dm.class_weights,
                     "train_groups": len(dm.train_groups), "val_groups": len(dm.val_groups)},
    })
    atomic_write_json(run_dir / "labels.json", list(EMOTIONS))


def _epoch_summary_callback():
    """A callback logging one line per epoch (useful when the progress bar is off)."""
    import pytorch_lightning as pl

    class EpochSummary(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if not trainer.is_global_zero:
                return
            m = trainer.callback_metrics
            parts = [f"{k} {float(m[k]):.4f}" for k in ("train_loss", "val_loss", "val_acc", "val_uar", "val_f1")
                     if k in m]
            log.info("epoch %d/%d: %s", trainer.current_epoch + 1, trainer.max_epochs, ", ".join(parts))

    return EpochSummary()
