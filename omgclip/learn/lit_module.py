"""The LightningModule: a net from :mod:`omgclip.learn.models` plus loss, metrics and optimiser."""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from omgclip.dataset.format import DEFAULT_BLOCK_LEN, DEFAULT_CROP_SIZE
from omgclip.learn.metrics import metrics_from_confusion
from omgclip.labels import EMOTIONS, NUM_CLASSES
from omgclip.learn.models import DEFAULT_MODEL, create_model

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "onecycle", "constant")


class EmotionClassifier(pl.LightningModule):
    """Trains ``create_model(model_name, num_classes, **model_kwargs)`` (kept as ``self.net``).

    Loss: cross entropy, class-weighted by ``class_weights`` (see
    :class:`omgclip.learn.data.BlockDataModule`), the same on training and validation data.
    Validation metrics, all from one torchmetrics confusion matrix (so they are exact under
    DDP) and defined as in :func:`omgclip.learn.metrics.metrics_from_confusion`:
    ``val_acc`` (accuracy = weighted average recall, WAR), ``val_uar`` (unweighted average
    recall, the mean per-class recall over classes present), ``val_f1`` (macro F1).
    Also logged: ``train_loss`` (epoch mean), ``val_loss``.

    Optimiser: AdamW (no weight decay on biases and norm weights) with ``schedule``
    ``'cosine'`` (linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to
    1% of ``lr``), ``'onecycle'`` (OneCycleLR) or ``'constant'``; stepped every batch.

    All hyperparameters are saved as plain Python types, so a checkpoint loads with
    ``torch.load(weights_only=True)``; ``self.net``'s weights are the ``net.`` entries of its
    ``state_dict``.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        model_kwargs: Mapping[str, Any] | None = None,
        num_classes: int = NUM_CLASSES,
        labels: Sequence[str] | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.05,
        class_weights: Sequence[float] | None = None,
        block_len: int = DEFAULT_BLOCK_LEN,
        crop_size: int = DEFAULT_CROP_SIZE,
        schedule: str = "cosine",
        warmup_fraction: float = 0.05,
        label_smoothing: float = 0.0,
        train_class_counts: Sequence[int] | None = None,
        split_info: Mapping[str, Any] | None = None,
        face: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")
        labels = [str(s) for s in (labels if labels is not None else EMOTIONS[:num_classes])]
        if len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for {num_classes} classes")
        weights = [float(w) for w in class_weights] if class_weights is not None else [1.0] * num_classes
        self.save_hyperparameters({
            "model_name": str(model_name),
            "model_kwargs": _plain(dict(model_kwargs or {})),
            "num_classes": int(num_classes),
            "labels": labels,
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "class_weights": weights,
            "block_len": int(block_len),
            "crop_size": int(crop_size),
            "schedule": str(schedule),
            "warmup_fraction": float(warmup_fraction),
            "label_smoothing": float(label_smoothing),
            "train_class_counts": [int(c) for c in train_class_counts] if train_class_counts is not None else None,
            "split_info": _plain(dict(split_info)) if split_info is not None else None,
            # how the training crops were made (build-dataset's FaceConfig): predict crops alike
            "face": _plain(dict(face)) if face is not None else None,
        })
        self.net = create_model(model_name, num_classes=num_classes, **dict(model_kwargs or {}))
        self.register_buffer("class_weight", torch.tensor(weights, dtype=torch.float32), persistent=False)
        self.val_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, T, H, W)`` -> ``(N, num_classes)`` logits."""
        return self.net(x)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, weight=self.class_weight,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self._loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=y.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", self._loss(logits, y), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=y.shape[0], sync_dist=True)
        self.val_confusion.update(logits.argmax(dim=1), y)

    def on_validation_epoch_end(self) -> None:
        cm = self.val_confusion.compute()
        self.val_confusion.reset()
        if int(cm.sum()) == 0:
            return
        m = metrics_from_confusion(cm.cpu().numpy(), self.hparams.labels)
        self.log("val_acc", m["accuracy"], prog_bar=False, sync_dist=True)
        self.log("val_uar", m["uar"], prog_bar=True, sync_dist=True)
        self.log("val_f1", m["macro_f1"], prog_bar=False, sync_dist=True)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class probabilities ``(N, num_classes)``."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.softmax(self(x).float(), dim=1)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        decay = [p for p in self.net.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.net.parameters() if p.requires_grad and p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr)
        if hp.schedule == "constant":
            return opt
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf
        finite = isinstance(total, (int, float)) and math.isfinite(total) and total > 0
        if hp.schedule == "onecycle" and finite:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=hp.lr, total_steps=int(total) + 1,
                                                        pct_start=max(hp.warmup_fraction, 0.01))
        else:
            steps = int(total) if finite else None
            sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, hp.warmup_fraction))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def warmup_cosine(total_steps: int | None, warmup_fraction: float, floor: float = 0.01):
    """LR factor: linear warm-up for ``warmup_fraction`` of ``total_steps``, then cosine from
    1 to ``floor``, then ``floor``. ``total_steps=None`` (unknown length): warm-up over 100
    steps, then constant."""
    if total_steps is None:
        warm = 100
        return lambda step: min(1.0, (step + 1) / warm)
    warm = max(1, int(round(total_steps * warmup_fraction)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _plain(obj: Any) -> Any:
    """Tuples to lists, numpy scalars to Python: types ``torch.load(weights_only=True)`` reads."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj
