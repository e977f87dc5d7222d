"""Classification metrics, shared by training (the Lightning module) and ``omgclip evaluate``.

Definitions: accuracy = weighted average recall (WAR); UAR = mean recall over the classes
present in the true labels; macro-F1 = mean F1 over the classes present in the true or the
predicted labels (as scikit-learn); per-class precision / recall / F1 are 0 where undefined.
Confusion matrix rows are true classes, columns predicted ones.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from omgclip.labels import EMOTIONS


def metrics_from_confusion(cm: Any, labels: Sequence[str] | None = None) -> dict:
    """Metrics from a confusion matrix ``cm[true, predicted]`` of counts, ``(K, K)``.

    Returns ``{'num_samples', 'accuracy', 'uar', 'macro_f1', 'per_class': {label:
    {'precision', 'recall', 'f1', 'support'}}, 'confusion_matrix': [[...]]}``.
    """
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be square, got {cm.shape}")
    labels = list(labels) if labels is not None else list(EMOTIONS[:k])
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    n = int(cm.sum())
    in_true = support > 0
    in_either = in_true | (predicted > 0)
    return {
        "num_samples": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "uar": float(recall[in_true].mean()) if in_true.any() else 0.0,
        "macro_f1": float(f1[in_either].mean()) if in_either.any() else 0.0,
        "per_class": {
            labels[c]: {"precision": float(precision[c]), "recall": float(recall[c]),
                        "f1": float(f1[c]), "support": int(support[c])}
            for c in range(k)
        },
        "confusion_matrix": cm.tolist(),
    }


def metrics_from_predictions(y_true: Any, y_pred: Any, num_classes: int,
                             labels: Sequence[str] | None = None) -> dict:
    """:func:`metrics_from_confusion` of the confusion matrix of class indices
    ``y_true`` and ``y_pred`` (1-D, same length)."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({t.size} vs {p.size})")
    if ((t < 0) | (t >= num_classes) | (p < 0) | (p >= num_classes)).any():
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return metrics_from_confusion(cm, labels)


def uar_score(y_true: Any, y_pred: Any) -> float:
    """UAR of class indices ``y_true`` vs ``y_pred`` (1-D, same length, >= 0): the mean recall
    over the classes present in ``y_true``, as :func:`metrics_from_confusion` defines it,
    without building the report (cheap enough to call once per bootstrap resample)."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    hits = np.bincount(t, weights=(t == np.asarray(y_pred).reshape(-1)))
    support = np.bincount(t)
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


def bootstrap_interval(score: Callable[[np.ndarray], float], clusters: Sequence, *, resamples: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``score`` over a cluster bootstrap.

    ``clusters`` names each item's cluster (a person, a clip; all different: a plain bootstrap
    over items). Each of ``resamples`` draws as many clusters as there are, with replacement,
    and calls ``score(idx)`` with the indices of all their items (repeats included). Items of
    one cluster go together because they are not independent: 20 blocks of one clip are much
    less than 20 clips. Returns ``(low, high)`` for the central ``level`` share of the
    resampled scores; the same ``seed`` gives the same draws, so two scores called with the
    same ``clusters`` and ``seed`` see the same resamples (paired).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    keys = np.asarray(clusters)
    if keys.ndim != 1 or keys.size == 0:
        raise ValueError("clusters must be a non-empty 1-D sequence")
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # the items, cluster by cluster
    sizes = np.bincount(inverse)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for r in range(resamples):
        pick = rng.integers(0, len(sizes), len(sizes))
        lens = sizes[pick]
        ends = np.cumsum(lens)
        # positions in ``order``: each picked cluster's start, counted up along its length
        pos = np.repeat(starts[pick] - (ends - lens), lens) + np.arange(ends[-1])
        values[r] = score(order[pos])
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


# --------------------------------------------------------------------------- calibration
#: equal-width confidence bins of :func:`calibration` (ECE with 15 bins, as Guo et al. 2017)
CALIBRATION_BINS = 15
#: the range :func:`fit_temperature` searches (a temperature outside it means a broken model)
TEMPERATURE_RANGE = (0.05, 20.0)


def _checked_proba(proba: Any, y_true: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != t.size or t.size == 0:
        raise ValueError(f"expected probabilities (N, K) and N labels, got {p.shape} and {t.size}")
    if ((t < 0) | (t >= p.shape[1])).any():
        raise ValueError(f"class indices must lie in [0, {p.shape[1]})")
    return p, t


def apply_temperature(proba: Any, temperature: float) -> np.ndarray:
    """``(N, K)`` probabilities softened (``temperature`` > 1) or sharpened (< 1): the softmax
    of their log divided by ``temperature``, as :class:`~omgclip.learn.models.layers.Temperature`
    does to a net's logits. The argmax of each row is unchanged."""
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"a temperature must be a positive number, got {temperature!r}")
    z = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, None)) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def calibration(proba: Any, y_true: Any, bins: int = CALIBRATION_BINS) -> dict:
    """How far the top probability can be read as the chance of being right.

    ``proba (N, K)``, ``y_true (N,)``. Returns ``ece`` (expected calibration error: the
    sample-weighted mean of |accuracy - mean confidence| over ``bins`` equal-width bins of the
    top probability), ``nll`` (mean negative log-likelihood of the true class), ``confidence``
    (mean top probability) and ``accuracy``. A calibrated model has ``ece`` near 0 and
    ``confidence`` near ``accuracy``; an overconfident one has ``confidence`` above it.
    """
    p, t = _checked_proba(proba, y_true)
    conf = p.max(axis=1)
    right = (p.argmax(axis=1) == t).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)  # bin i holds [i/bins, (i+1)/bins)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=right, minlength=bins) - np.bincount(which, weights=conf, minlength=bins))
    nll = -np.log(np.clip(p[np.arange(t.size), t], 1e-12, None))
    return {"ece": float(gap[count > 0].sum() / t.size), "nll": float(nll.mean()),
            "confidence": float(conf.mean()), "accuracy": float(right.mean()), "bins": int(bins)}


def fit_temperature(proba: Any, y_true: Any) -> float:
    """The temperature that minimises the mean negative log-likelihood of ``y_true`` under
    :func:`apply_temperature` of ``proba (N, K)`` (temperature scaling, Guo et al. 2017: one
    number, so the argmax and every accuracy stay as they are). Fit it on people the model
    never trained on; the NLL is convex in 1/T, so a golden-section search over
    :data:`TEMPERATURE_RANGE` finds the minimum."""
    p, t = _checked_proba(proba, y_true)
    logp = np.log(np.clip(p, 1e-12, None))
    picked = logp[np.arange(t.size), t]

    def nll(inv: float) -> float:
        z = logp * inv
        top = z.max(axis=1)
        return float(np.mean(top + np.log(np.exp(z - top[:, None]).sum(axis=1)) - picked * inv))

    lo, hi = 1.0 / TEMPERATURE_RANGE[1], 1.0 / TEMPERATURE_RANGE[0]
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo + (1 - g) * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > 1e-6:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - g) * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(1.0 / ((lo + hi) / 2.0))
