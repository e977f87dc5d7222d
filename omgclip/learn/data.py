"""Reading a built dataset (see :mod:`omgclip.dataset.format`) for training and evaluation.

* :func:`~omgclip.learn.index.load_index` (re-exported here) reads and validates
  ``index.csv`` and the block files it lists;
* :class:`BlockDataset` serves ``(x, y)`` pairs from memory-mapped ``.npy`` blocks, with
  training-time augmentation;
* :func:`split_train_val` chooses the training and validation rows (by group by default);
* :class:`BlockDataModule` wraps all of that for Lightning, with class balancing.

Shapes: a block on disk is ``(T, S, S)`` uint8; a sample is ``x: (1, T, S, S)`` float32 in
[0, 1] and ``y: int``; a batch is ``(N, 1, T, S, S)`` and ``(N,)``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from omgclip.errors import OmgclipError
from omgclip.labels import EMOTIONS, NUM_CLASSES
from omgclip.learn.index import REQUIRED_COLUMNS, load_block, load_index, read_block_header  # noqa: F401

log = logging.getLogger(__name__)

#: manifest split names whose labeled rows may be used for training / validation
TRAIN_SPLITS: frozenset[str] = frozenset({"train"})
VALIDATION_SPLITS: frozenset[str] = frozenset({"validation", "val", "valid", "dev"})
VAL_SPLIT_MODES = ("group", "manifest")
BALANCE_MODES = ("loss", "sampler", "none")


# --------------------------------------------------------------------------- dataset
@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied per sample (same transform on all T frames).

    * ``shift``: pad-and-crop by up to this many pixels in x and y (edge pixels repeated),
      covering face-detector jitter;
    * ``flip``: horizontal flip with p=0.5 (expressions are near-symmetric);
    * ``brightness`` / ``contrast``: additive / multiplicative jitter (lighting, camera);
    * ``time_shift``: shift by up to this many frames, repeating the first/last frame; a
      block stays an in-order window, so onsets keep their direction (never reversed).
    """

    shift: int = 4
    flip: bool = True
    brightness: float = 0.1
    contrast: float = 0.2
    time_shift: int = 2


class BlockDataset(Dataset):
    """``(x, y)`` samples from the rows of a dataset index.

    ``x``: ``(1, T, S, S)`` float32 in [0, 1]; ``y``: the row's label (int, -1 if unlabeled).
    Blocks are memory-mapped with ``np.load(..., mmap_mode='r')`` when read, in the process
    (DataLoader worker) that reads them, and released right after, so RAM does not grow with
    the dataset size; the dataset object itself holds only numpy arrays of paths and labels
    (no per-row Python objects, so forked workers share them without copy-on-write growth).

    With ``augment`` the random transforms of :class:`Augment` are drawn from a numpy
    generator seeded by ``seed`` and the DataLoader worker's seed (which Lightning's
    ``seed_everything(workers=True)`` derives from the global seed and changes each epoch).
    """

    def __init__(self, frame: pd.DataFrame, root: str | os.PathLike, augment: bool = False,
                 seed: int = 0, augmentation: Augment | None = None):
        root = Path(root)
        self.paths = np.array([os.fsencode(root / p) for p in frame["path"]], dtype=np.bytes_)
        self.labels = np.asarray(frame["label"], dtype=np.int64)
        self.augment = bool(augment)
        self.augmentation = augmentation or Augment()
        self.seed = int(seed)
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = (os.getpid(), info.seed if info is not None else torch.initial_seed())
        if self._rng is None or self._rng_key != key:
            self._rng = np.random.default_rng([self.seed, key[1] % (2 ** 63)])
            self._rng_key = key
        return self._rng

    def read(self, index: int) -> np.ndarray:
        """The raw uint8 block ``(T, S, S)`` of row ``index`` (a copy, not a memmap)."""
        block = load_block(os.fsdecode(self.paths[index]))
        try:
            return np.array(block)
        finally:
            del block

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.augment:
            x = self._augmented(index)
        else:
            x = self.read(index).astype(np.float32) * np.float32(1.0 / 255.0)
        return torch.from_numpy(x[None]), int(self.labels[index])

    def _augmented(self, index: int) -> np.ndarray:
        rng, aug = self._generator(), self.augmentation
        block = load_block(os.fsdecode(self.paths[index]))
        t, h, w = block.shape
        t_idx = np.clip(np.arange(t) + rng.integers(-aug.time_shift, aug.time_shift + 1), 0, t - 1)
        r_idx = np.clip(np.arange(h) + rng.integers(-aug.shift, aug.shift + 1), 0, h - 1)
        c_idx = np.clip(np.arange(w) + rng.integers(-aug.shift, aug.shift + 1), 0, w - 1)
        if aug.flip and rng.random() < 0.5:
            c_idx = c_idx[::-1]
        # one gather straight from the memmap: temporal shift, crop and flip together
        x = np.asarray(block[np.ix_(t_idx, r_idx, c_idx)], dtype=np.float32)
        del block
        x *= np.float32(1.0 / 255.0)
        contrast = np.float32(1.0 + rng.uniform(-aug.contrast, aug.contrast))
        brightness = np.float32(rng.uniform(-aug.brightness, aug.brightness))
        mean = np.float32(x.mean())
        x -= mean
        x *= contrast
        x += mean + brightness
        np.clip(x, 0.0, 1.0, out=x)
        return x


# --------------------------------------------------------------------------- split
def labeled_pool(frame: pd.DataFrame) -> pd.DataFrame:
    """Labeled rows of the manifest's train and validation splits (never test rows)."""
    mask = (frame["label"] >= 0) & frame["split"].isin(TRAIN_SPLITS | VALIDATION_SPLITS)
    return frame[mask]


def split_train_val(frame: pd.DataFrame, mode: str = "group", val_fraction: float = 0.2,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Choose training and validation rows; unlabeled rows are never in either.

    ``mode='group'``: pool the labeled rows of the train and validation splits and move whole
    groups (source link / person) to validation, about ``val_fraction`` of each class,
    deterministically from ``seed``; a group's blocks are never on both sides. Groups are
    visited largest first (ties in seeded random order) and each goes to validation when
    that brings every class's validation share closer to ``val_fraction``, but never when
    it would leave a class without training examples.

    ``mode='manifest'``: the index's ``split`` column as is (labeled ``train`` rows vs
    labeled ``validation``/``val``/``valid``/``dev`` rows); logs a warning when both share
    groups.
    """
    if mode not in VAL_SPLIT_MODES:
        raise OmgclipError(f"unknown validation split {mode!r} (choose from: {', '.join(VAL_SPLIT_MODES)})")
    if mode == "manifest":
        labeled = frame[frame["label"] >= 0]
        train = labeled[labeled["split"].isin(TRAIN_SPLITS)]
        val = labeled[labeled["split"].isin(VALIDATION_SPLITS)]
        if val.empty:
            raise OmgclipError("the index has no labeled validation rows, so --val-split manifest cannot work; "
                               "use --val-split group")
        shared = set(train["group"]) & set(val["group"])
        if shared:
            log.warning("the manifest's train and validation splits share %d group(s) (%d validation blocks); "
                        "validation scores will be optimistic (use --val-split group to keep groups apart)",
                        len(shared), int(val["group"].isin(shared).sum()))
        return train, val

    if not 0.0 < val_fraction < 1.0:
        raise OmgclipError(f"val_fraction must be between 0 and 1 (got {val_fraction})")
    pool = labeled_pool(frame)
    if pool.empty:
        raise OmgclipError("the index has no labeled train/validation rows to train on")
    val_groups = choose_validation_groups(pool, val_fraction, seed)
    if not val_groups:
        raise OmgclipError(f"cannot hold out a validation group: the labeled data has "
                           f"{pool['group'].nunique()} group(s); add data, or use --val-split manifest")
    is_val = pool["group"].isin(val_groups)
    return pool[~is_val], pool[is_val]


def choose_validation_groups(pool: pd.DataFrame, val_fraction: float, seed: int) -> set[str]:
    """The groups :func:`split_train_val` (mode ``'group'``) holds out for validation.

    Two greedy passes over the groups in a seeded random order, never taking a group that
    holds a class's last training examples: first, for each class (rarest first) not yet in
    validation, the group containing it that best keeps every class's validation share near
    ``val_fraction`` (while validation stays under 1.5 x ``val_fraction`` of the rows); then,
    largest groups first, every group that brings the per-class shares closer to
    ``val_fraction``.
    """
    counts = pd.crosstab(pool["group"], pool["label"]).reindex(columns=range(NUM_CLASSES), fill_value=0)
    groups = counts.index.to_numpy()
    table = counts.to_numpy(dtype=np.float64)
    totals = table.sum(axis=0)
    present = totals > 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    val = np.zeros(NUM_CLASSES)
    remaining = totals.copy()  # examples not (yet) moved to validation
    chosen: list[int] = []

    def cost(v: np.ndarray) -> float:
        return float((((v[present] / totals[present]) - val_fraction) ** 2).sum())

    def allowed(i: int) -> bool:
        g = table[i]
        return i not in chosen and not np.any((g > 0) & (remaining - g <= 0))

    def take(i: int) -> None:
        nonlocal val, remaining
        val = val + table[i]
        remaining = remaining - table[i]
        chosen.append(i)

    cap = 1.5 * val_fraction * totals.sum()
    for c in np.argsort(totals, kind="stable"):  # rarest class first
        if not present[c] or val[c] > 0:
            continue
        options = [i for i in order if table[i, c] > 0 and allowed(i) and val.sum() + table[i].sum() <= cap]
        if options:
            take(min(options, key=lambda i: cost(val + table[i])))
    for i in order[np.argsort(-table[order].sum(axis=1), kind="stable")]:  # largest first, ties random
        if allowed(i) and cost(val + table[i]) < cost(val):
            take(i)
    return {str(groups[i]) for i in chosen}


def class_counts(labels: Iterable[int], num_classes: int = NUM_CLASSES) -> list[int]:
    """Examples per class, ``[n_0, ..., n_{K-1}]`` (labels < 0 ignored)."""
    arr = np.asarray(list(labels) if not isinstance(labels, (np.ndarray, pd.Series)) else labels, dtype=np.int64)
    arr = arr[arr >= 0]
    return [int(c) for c in np.bincount(arr, minlength=num_classes)[:num_classes]]


def inverse_frequency_weights(counts: Sequence[int]) -> list[float]:
    """Class weights ``w_c = N / (K * n_c)`` over the K classes present (a class with no
    examples gets 1.0): the weighted mean over training samples is 1, so the loss scale
    and learning rate behave as without weighting."""
    counts_arr = np.asarray(counts, dtype=np.float64)
    present = counts_arr > 0
    weights = np.ones_like(counts_arr)
    if present.any():
        weights[present] = counts_arr[present].sum() / (present.sum() * counts_arr[present])
    return [float(w) for w in weights]


# --------------------------------------------------------------------------- datamodule
@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How to read a dataset for training.

    ``num_workers=None`` picks ``min(4, cpus - 2)`` DataLoader workers (0 on a 2-core
    machine, where a worker would only compete with the training threads).
    """

    data_dir: Path
    batch_size: int = 32
    num_workers: int | None = None
    val_split: str = "group"
    val_fraction: float = 0.2
    seed: int = 0
    balance: str = "loss"


def default_num_workers() -> int:
    return max(0, min(4, (os.cpu_count() or 1) - 2))


class BlockDataModule(pl.LightningDataModule):
    """Training / validation data from a built dataset.

    Class imbalance (``balance``):

    * ``'loss'`` (default): class-weighted cross entropy with :func:`inverse_frequency_weights`
      of the training split. Every real sample is seen exactly once per epoch (no duplicated
      minority blocks to overfit, no majority blocks skipped), so an "epoch" means the same
      thing for early stopping and checkpointing, and it works unchanged under DDP. The
      weights are in :attr:`class_weights` for the LightningModule.
    * ``'sampler'``: a ``WeightedRandomSampler`` drawing classes equally often (with
      replacement, one epoch = as many draws as training rows) and an unweighted loss.
    * ``'none'``: neither.

    After :meth:`setup`: ``train_frame``, ``val_frame``, ``train_counts``, ``val_counts``,
    ``class_weights`` (list, all 1.0 unless ``balance='loss'``), ``block_shape`` (T, S, S),
    ``train_groups``, ``val_groups``.
    """

    def __init__(self, config: DataConfig):
        super().__init__()
        if config.balance not in BALANCE_MODES:
            raise OmgclipError(f"unknown balance mode {config.balance!r} (choose from: {', '.join(BALANCE_MODES)})")
        if config.val_split not in VAL_SPLIT_MODES:
            raise OmgclipError(f"unknown validation split {config.val_split!r} "
                               f"(choose from: {', '.join(VAL_SPLIT_MODES)})")
        if config.batch_size < 1:
            raise OmgclipError(f"batch size must be at least 1 (got {config.batch_size})")
        self.config = config
        self.root = Path(config.data_dir)
        self.num_workers = default_num_workers() if config.num_workers is None else int(config.num_workers)
        self.train_frame: pd.DataFrame | None = None
        self.val_frame: pd.DataFrame | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_frame is not None:
            return
        cfg = self.config
        frame = load_index(self.root)
        self.block_shape: tuple[int, int, int] = frame.attrs["block_shape"]
        train, val = split_train_val(frame, cfg.val_split, cfg.val_fraction, cfg.seed)
        self.train_counts = class_counts(train["label"])
        self.val_counts = class_counts(val["label"])
        if not train.shape[0]:
            raise OmgclipError("the training split has no labeled examples at all; check the dataset's labels "
                               "and splits (`omgclip build-dataset` report.json)")
        for c, name in enumerate(EMOTIONS):
            if self.train_counts[c] == 0:
                log.warning("class %r has no training examples: the model cannot learn it", name)
            elif self.val_counts[c] == 0:
                log.warning("class %r has no validation examples: its recall is not measured", name)
        self.train_frame, self.val_frame = train, val
        self.train_groups = sorted(set(train["group"]))
        self.val_groups = sorted(set(val["group"]))
        if cfg.balance == "loss":
            self.class_weights = inverse_frequency_weights(self.train_counts)
        else:
            self.class_weights = [1.0] * NUM_CLASSES
        log.info("data %s: %d training blocks (%d groups), %d validation blocks (%d groups), split by %s",
                 self.root, len(train), len(self.train_groups), len(val), len(self.val_groups), cfg.val_split)
        log.info("per class (train/val): %s",
                 ", ".join(f"{n} {a}/{b}" for n, a, b in zip(EMOTIONS, self.train_counts, self.val_counts)))

    def _loader(self, dataset: Dataset, **kwargs) -> DataLoader:
        workers = self.num_workers
        return DataLoader(dataset, batch_size=self.config.batch_size, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(), **kwargs)

    def train_dataloader(self) -> DataLoader:
        assert self.train_frame is not None, "call setup() first"
        ds = BlockDataset(self.train_frame, self.root, augment=True, seed=self.config.seed)
        drop_last = len(ds) > self.config.batch_size  # no 1-sample batch at the end for BatchNorm
        if self.config.balance == "sampler":
            counts = np.asarray(self.train_counts, dtype=np.float64)
            weights = 1.0 / counts[ds.labels]
            gen = torch.Generator().manual_seed(self.config.seed)
            sampler = WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(ds),
                                            replacement=True, generator=gen)
            return self._loader(ds, sampler=sampler, drop_last=drop_last)
        return self._loader(ds, shuffle=True, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        assert self.val_frame is not None, "call setup() first"
        return self._loader(BlockDataset(self.val_frame, self.root, augment=False))
