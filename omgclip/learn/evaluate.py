"""Scoring a trained model on a built dataset: block-level and clip-level metrics.

Which rows are scored (``EvalConfig.split``), always labeled rows only:

* a split name (``'validation'``, ``'test'``, ``'train'``, ...): the rows whose index
  ``split`` column equals it. This is the simplest honest rule, but note that
  ``omgclip train`` with ``--val-split group`` (the default) trains on the manifest's
  validation rows too, except the groups it held out; the report then warns how many of
  the scored groups the model was trained on.
* ``'heldout'``: exactly the rows the checkpoint's training run held out for validation
  (its groups are stored in the checkpoint), when this is the dataset it was trained on.
* ``'all'``: every labeled row.
* ``'auto'`` (the default): ``'validation'`` when the dataset has labeled validation rows,
  else ``'heldout'`` (so ``evaluate --data D`` right after ``train --data D`` scores what
  the run held out); the report says which was used.

Clip level: the blocks of one utterance (same ``source`` and ``utterance``) vote by their mean
class probability; the clip's true label is its blocks' (most common) label.

Metric definitions (:func:`omgclip.learn.metrics.metrics_from_confusion`): accuracy = weighted average recall
(WAR); UAR = mean recall over the classes present in the true labels; macro-F1 = mean F1
over the classes present in the true or the predicted labels (as scikit-learn); per-class
precision / recall / F1 are 0 where undefined. Confusion matrix rows are true classes,
columns predicted ones.

Confidence (``calibration`` per level, :func:`omgclip.learn.metrics.calibration`): how far the
top probability can be read as the chance of being right: ECE over 15 bins, NLL, mean top
probability beside accuracy. The probabilities are the model's as predict reports them, after
any temperature its file asks for (``temperature`` in the result).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from omgclip.errors import OmgclipError
from omgclip.learn.inference import predict_probabilities
from omgclip.learn.metrics import bootstrap_interval, calibration, metrics_from_predictions, uar_score
from omgclip.fsutil import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

SPLIT_ALL = "all"
SPLIT_HELDOUT = "heldout"
SPLIT_AUTO = "auto"
#: resamples of the 95% intervals on accuracy and UAR (a cluster bootstrap over clips)
INTERVAL_RESAMPLES = 1000
#: what :class:`EvalConfig`'s ``interval_by`` may resample
INTERVAL_UNITS = ("clip", "group")


# --------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. ``checkpoint=None`` uses the bundled default model.

    ``split``: a split name of the index, ``'heldout'``, ``'all'`` or ``'auto'`` (see the
    module doc).
    ``device``: ``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'``, ...
    ``interval_by``: what the 95% intervals resample, whole: ``'clip'`` (a clip's blocks go
    together) or ``'group'`` (a person's or source's clips go together: the honest unit when
    the question is how the model does on new people, and wider).
    """

    data: Path
    checkpoint: Path | None = None
    split: str = SPLIT_AUTO
    out_json: Path | None = None
    confusion_png: Path | None = None
    batch_size: int = 64
    num_workers: int | None = None
    device: str = "auto"
    interval_by: str = "clip"

    def __post_init__(self):
        if self.interval_by not in INTERVAL_UNITS:
            raise OmgclipError(f"interval_by must be one of {', '.join(INTERVAL_UNITS)}, got {self.interval_by!r}")


# --------------------------------------------------------------------------- evaluate
def resolve_split(frame, split: str, meta: dict) -> tuple[str, str]:
    """``(split, why)``: ``'auto'`` becomes ``'validation'`` when the dataset has labeled
    rows of that split, else ``'heldout'`` when the checkpoint records held-out groups that
    are in this dataset; other values stay. ``why`` is '' unless a choice was made."""
    if split != SPLIT_AUTO:
        return split, ""
    labeled = frame[frame["label"] >= 0]
    if (labeled["split"] == "validation").any():
        return "validation", ""
    held = set((meta.get("split_info") or {}).get("val_groups") or [])
    if held and labeled["group"].isin(held).any():
        return SPLIT_HELDOUT, "the dataset has no labeled 'validation' rows"
    counts = labeled["split"].value_counts()
    avail = ", ".join(f"{s} ({n})" for s, n in counts.items()) or "none"
    raise OmgclipError(f"the dataset has no labeled 'validation' rows and this checkpoint held out none of its "
                       f"groups; choose --split (labeled splits: {avail}; or all)")


def select_rows(frame, split: str, meta: dict):
    """``(rows, rule)``: the labeled rows of ``frame`` that ``split`` names, and a sentence
    saying which rows those are."""
    from omgclip.learn.data import VALIDATION_SPLITS, labeled_pool

    labeled = frame[frame["label"] >= 0]
    if split == SPLIT_ALL:
        return labeled, "all labeled rows"
    if split == SPLIT_HELDOUT:
        info = meta.get("split_info") or {}
        mode = info.get("mode")
        if mode == "manifest":
            rows = labeled[labeled["split"].isin(VALIDATION_SPLITS)]
            rule = "the manifest validation rows the training run validated on"
        elif mode == "group" and info.get("val_groups") is not None:
            rows = labeled_pool(frame)
            rows = rows[rows["group"].isin(set(info["val_groups"]))]
            rule = "the groups the training run held out for validation"
        else:
            raise OmgclipError("this checkpoint does not record which rows its training held out "
                               "(--split heldout needs a checkpoint from `omgclip train`); pass a split name "
                               "instead (e.g. --split validation)")
        if rows.empty:
            raise OmgclipError("none of the groups this checkpoint held out are in this dataset; "
                               "--split heldout works only on the dataset it was trained on")
        return rows, rule
    rows = labeled[labeled["split"] == split]
    if rows.empty:
        counts = labeled["split"].value_counts()
        avail = ", ".join(f"{s} ({n})" for s, n in counts.items()) or "none"
        unl = int(((frame["split"] == split) & (frame["label"] < 0)).sum())
        why = f" (its {unl} rows are unlabeled)" if unl else ""
        raise OmgclipError(f"no labeled rows in split {split!r}{why}; labeled splits: {avail}; "
                           f"or use --split all / heldout")
    return rows, f"labeled rows whose split is {split!r}"


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise OmgclipError(f"unknown device {name!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OmgclipError("device 'cuda' asked for, but no CUDA GPU is available; use --device cpu")
    return dev


def _baseline(y_true: np.ndarray, majority: int, num_classes: int, labels, source: str) -> dict:
    return {
        "class": int(majority),
        "label": labels[majority],
        "source": source,
        "metrics": metrics_from_predictions(y_true, np.full_like(y_true, majority), num_classes, labels),
    }


def _scoring_net(model):
    """The net that scores blocks as predict labels them: video blocks with ``model.net``,
    blocks of one repeated image (photos) with the still-image net where that differs."""
    from omgclip.learn.models.layers import StillAware

    still = model.net_for(still=True)
    return model.net if still is model.net else StillAware(model.net, still).eval()


def evaluate(cfg: EvalConfig) -> dict:
    """Score the checkpoint on the chosen rows; write ``out_json`` / ``confusion_png`` if
    given. Returns the result dictionary (JSON-able; see :func:`format_report`)."""
    from omgclip.learn.checkpoint import default_checkpoint, file_temperatures, load_for_inference
    from omgclip.learn.data import BlockDataset, default_num_workers, load_index

    ckpt = Path(cfg.checkpoint) if cfg.checkpoint is not None else default_checkpoint()
    model = load_for_inference(ckpt)  # scored as predict runs it (test-time flip where the file says so;
    # photo blocks, one image repeated, with the still-image net: see _scoring_net)
    labels = list(model.labels)
    k = len(labels)
    frame = load_index(cfg.data, expected_shape=(model.block_len, model.crop_size, model.crop_size))
    split, why = resolve_split(frame, cfg.split, model.meta)
    if why:
        log.info("scoring split %r: %s", split, why)
    rows, rule = select_rows(frame, split, model.meta)
    if why:
        rule += f" (chosen because {why})"
    if int(rows["label"].max()) >= k:
        raise OmgclipError(f"the dataset has labels up to {int(rows['label'].max())} but the model knows "
                           f"only {k} classes")
    warnings: list[str] = []
    overlap_groups, overlap_blocks = _training_overlap(rows, model.meta, warnings)

    device = _resolve_device(cfg.device)
    workers = default_num_workers() if cfg.num_workers is None else int(cfg.num_workers)
    dataset = BlockDataset(rows, frame.attrs["root"], augment=False)
    probs = predict_probabilities(_scoring_net(model), dataset, cfg.batch_size, workers, device)
    y_true = rows["label"].to_numpy(dtype=np.int64)
    y_pred = probs.argmax(axis=1)

    majority, source = _majority_class(model.meta, y_true, k)
    clip_true, clip_probs, clip_of_block = _clip_level(rows, probs, y_true, k, warnings)
    clip_pred = clip_probs.argmax(axis=1)
    n_clips = len(clip_true)
    if cfg.interval_by == "group":
        block_units = rows["group"].astype(str).to_numpy()
        clip_units = np.empty(n_clips, dtype=object)
        clip_units[clip_of_block] = block_units  # a clip is one utterance of one group
        clip_units = clip_units.astype(str)
    else:
        block_units, clip_units = clip_of_block, np.arange(n_clips)
    n_units = len(np.unique(block_units))
    if n_units < 2:
        msg = (f"the 95% intervals resample {cfg.interval_by}s and there is only {n_units}: they are the point "
               "values, not a measure of uncertainty")
        log.warning(msg)
        warnings.append(msg)

    result = {
        "checkpoint": os.fspath(ckpt),
        "model": model.model_name,
        "data": os.fspath(cfg.data),
        "split": split,
        "rows": rule,
        "labels": labels,
        "num_blocks": int(len(rows)),
        "num_clips": int(n_clips),
        "overlap_with_training": {"groups": len(overlap_groups), "blocks": overlap_blocks},
        "block": {
            "metrics": metrics_from_predictions(y_true, y_pred, k, labels),
            "interval_95": intervals(y_true, y_pred, block_units),
            "calibration": calibration(probs, y_true),
            "majority_baseline": _baseline(y_true, majority, k, labels, source),
        },
        "clip": {
            "rule": "blocks of one (source, utterance) vote by mean class probability",
            "metrics": metrics_from_predictions(clip_true, clip_pred, k, labels),
            "interval_95": intervals(clip_true, clip_pred, clip_units),
            "calibration": calibration(clip_probs, clip_true),
            "majority_baseline": _baseline(clip_true, majority, k, labels, source),
        },
        "temperature": file_temperatures(model.meta, ckpt),
        "interval_rule": f"95% percentile intervals of {INTERVAL_RESAMPLES} bootstrap resamples of the "
                         f"{n_units} {cfg.interval_by}s (each drawn whole: its blocks are not independent)",
        "interval_by": cfg.interval_by,
        "interval_units": n_units,
        "warnings": warnings,
    }
    _write_outputs(cfg, result)
    return result


def intervals(y_true: np.ndarray, y_pred: np.ndarray, clusters: np.ndarray,
              resamples: int = INTERVAL_RESAMPLES) -> dict:
    """``{'accuracy': [low, high], 'uar': [low, high]}``: 95% intervals of the labels
    ``y_true`` vs ``y_pred`` over a bootstrap of ``clusters`` (each item's clip or group), UAR over
    the classes present in each resample (:func:`omgclip.learn.metrics.bootstrap_interval`)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {"accuracy": [round(v, 4) for v in bootstrap_interval(lambda i: float((y_true[i] == y_pred[i]).mean()),
                                                                 clusters, resamples=resamples)],
            "uar": [round(v, 4) for v in bootstrap_interval(lambda i: uar_score(y_true[i], y_pred[i]), clusters,
                                                            resamples=resamples)]}


def _training_overlap(rows, meta: dict, warnings: list[str]) -> tuple[list, int]:
    """The scored groups the checkpoint was trained on, and their block count; a warning
    (logged and appended to ``warnings``) when there are any."""
    train_groups = set((meta.get("split_info") or {}).get("train_groups") or [])
    overlap_groups = sorted(set(rows["group"]) & train_groups)
    overlap_blocks = int(rows["group"].isin(overlap_groups).sum()) if overlap_groups else 0
    if overlap_groups:
        msg = (f"{len(overlap_groups)} of the {rows['group'].nunique()} scored groups ({overlap_blocks} of "
               f"{len(rows)} blocks) were used to train this model: scores are optimistic "
               f"(use --split heldout, or a split it never saw)")
        log.warning(msg)
        warnings.append(msg)
    return overlap_groups, overlap_blocks


def _majority_class(meta: dict, y_true: np.ndarray, k: int) -> tuple[int, str]:
    """The baseline's class and where it comes from: the checkpoint's training counts when
    it records them, else the evaluated rows."""
    counts = meta.get("train_class_counts")
    if counts and sum(counts) > 0:
        return int(np.argmax(counts)), "training data of the checkpoint"
    return (int(np.bincount(y_true, minlength=k).argmax()),
            "evaluated rows (the checkpoint does not record its training data)")


def _clip_level(rows, probs: np.ndarray, y_true: np.ndarray, k: int,
                warnings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip-level true labels ``(C,)`` and probabilities ``(C, K)``, one per (source,
    utterance): the mean probability over the clip's blocks ``probs`` ``(N, K)``; the true
    label is the clip's most common block label (a warning when a clip's blocks disagree).
    Third: each block's clip (an index into the first two)."""
    keys = rows["source"].astype(str) + "\x00" + rows["utterance"].astype(str)
    codes, uniques = _factorize(keys.to_numpy())
    n_clips = len(uniques)
    clip_probs = np.zeros((n_clips, k), dtype=np.float64)
    np.add.at(clip_probs, codes, probs.astype(np.float64))
    clip_probs /= np.bincount(codes, minlength=n_clips)[:, None]
    clip_label_counts = np.zeros((n_clips, k), dtype=np.int64)
    np.add.at(clip_label_counts, (codes, y_true), 1)
    clip_true = clip_label_counts.argmax(axis=1)
    mixed = int(((clip_label_counts > 0).sum(axis=1) > 1).sum())
    if mixed:
        msg = f"{mixed} clip(s) have blocks with different labels; each clip takes its most common label"
        log.warning(msg)
        warnings.append(msg)
    return clip_true, clip_probs, codes


def _write_outputs(cfg: EvalConfig, result: dict) -> None:
    if cfg.out_json is not None:
        atomic_write_json(cfg.out_json, result)
        log.info("wrote %s", cfg.out_json)
    if cfg.confusion_png is not None:
        write_confusion_png(cfg.confusion_png, result)
        log.info("wrote %s", cfg.confusion_png)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.reshape(-1), uniques


# --------------------------------------------------------------------------- output
def write_confusion_png(path: str | os.PathLike, result: dict) -> Path:
    """Block- and clip-level confusion matrices side by side (colour = row-normalised recall,
    text = counts), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    labels = result["labels"]
    fig = Figure(figsize=(12.5, 5.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, level in zip(axes, ("block", "clip")):
        m = result[level]["metrics"]
        cm = np.asarray(m["confusion_matrix"], dtype=np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        im = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{level}s (n={m['num_samples']}): acc {m['accuracy']:.3f}  UAR {m['uar']:.3f}  "
                     f"F1 {m['macro_f1']:.3f}", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8, label="recall (row-normalised)")
    fig.suptitle(f"{result['model']} on {result['split']} ({result['data']})", fontsize=11)

    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def format_report(result: dict) -> str:
    """A plain-text report of :func:`evaluate`'s result for the terminal."""
    labels = result["labels"]
    lines = [f"model {result['model']} ({result['checkpoint']})",
             f"data  {result['data']}, split {result['split']}: {result['rows']}"]
    for level in ("block", "clip"):
        m = result[level]["metrics"]
        b = result[level]["majority_baseline"]
        bm = b["metrics"]
        lines.append("")
        lines.append(f"{level}-level ({m['num_samples']} {level}s)")
        lines.append(f"  {'':<10}{'accuracy':>10}{'UAR':>8}{'macro-F1':>10}")
        lines.append(f"  {'model':<10}{m['accuracy']:>10.3f}{m['uar']:>8.3f}{m['macro_f1']:>10.3f}")
        ci = result[level].get("interval_95")
        if ci:
            lines.append(f"  {'95% CI':<10}{ci['accuracy'][0]:>5.3f}-{ci['accuracy'][1]:.3f}"
                         f"  {ci['uar'][0]:.3f}-{ci['uar'][1]:.3f}   (bootstrap over the "
                         f"{result.get('interval_units', result['num_clips'])} {result.get('interval_by', 'clip')}s)")
        cal = result[level].get("calibration")
        if cal:
            lines.append(f"  {'confidence':<10}ECE {cal['ece']:.3f}: mean top probability {cal['confidence']:.3f} "
                         f"vs accuracy {cal['accuracy']:.3f}, NLL {cal['nll']:.3f}")
        lines.append(f"  {'majority':<10}{bm['accuracy']:>10.3f}{bm['uar']:>8.3f}{bm['macro_f1']:>10.3f}"
                     f"   (always {b['label']!r}, majority of the {b['source'].split(' (')[0]})")
        if level == "block":
            lines.append(f"  {'class':<10}{'precision':>10}{'recall':>8}{'F1':>8}{'support':>9}")
            for name in labels:
                pc = m["per_class"][name]
                lines.append(f"  {name:<10}{pc['precision']:>10.3f}{pc['recall']:>8.3f}{pc['f1']:>8.3f}"
                             f"{pc['support']:>9d}")
        cm = m["confusion_matrix"]
        width = max(5, max(len(str(v)) for row in cm for v in row) + 1)
        lines.append("  confusion (rows true, columns predicted)")
        lines.append("  " + " " * 10 + "".join(f"{n[:width - 1]:>{width}}" for n in labels))
        for name, row in zip(labels, cm):
            lines.append(f"  {name:<10}" + "".join(f"{v:>{width}d}" for v in row))
    for w in result.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
