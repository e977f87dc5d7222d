"""Learning faces from photos, then motion from a few video people: the bundled model's recipe.

Two stages, both plain PyTorch loops (no Lightning: they mix two kinds of batch):

1. :func:`pretrain_stills` trains a net (``r2plus1d_wide``: a still clip gives the same
   logits at any length) on FER2013 *Training* faces as 1-frame clips ``(B, 1, 1, 80, 80)``
   and keeps the epoch with the best *PublicTest* accuracy, or (``keep="last"``, the recipe)
   the last epoch's averaged weights. PrivateTest is never looked at. ``device="cuda"`` runs
   it on a GPU (the bundled files were made so: about 3 s an epoch against 1.6-4.7 min on 2
   CPU cores).
2. :func:`finetune` trains on 20-frame blocks of built datasets (``omgclip build-dataset``)
   and, at each step, on a batch of FER stills so that what was learnt from thousands of
   faces is not forgotten on a handful of video people; it returns a moving average of its
   weights over the steps (:data:`FINETUNE_EMA`). :func:`finetune_ensemble` does this for
   several stage-1 runs (other seeds) and joins the results into one ``ensemble`` model.

The FER faces are framed to look like omgclip's crops: a dlib box plus 15% per side shows
more around the face than FER's tight 48x48 crops, so training zooms FER images out by a
random factor in [1.0, 1.35] with edge replication (the same fill as ``crop_face``);
CK+ frames (tight, like FER) sit at the 1.0 end. Augmentation, per clip and the same for
all its frames: that zoom, rotation (+-12 deg), shift (+-8%), flip, gamma, and a random
erased box. Loss: cross-entropy with label smoothing 0.1.

Run ``python -m omgclip.learn.transfer pretrain|pack|finetune --help``
(``scripts/train_default_model.sh`` runs them; ``pack`` writes a stage-1 run as the compact
file that is bundled, ``omgclip/weights/stage1_fer2013_seed<SEED>.pt``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omgclip.fsutil import atomic_write, atomic_write_text
from omgclip.labels import EMOTIONS, NUM_CLASSES
from omgclip.learn.metrics import uar_score

log = logging.getLogger(__name__)

FER_USAGES = ("Training", "PublicTest", "PrivateTest")
#: a FER2013 image zoomed out by this factor (:func:`reframe`) is framed like omgclip's crops (the
#: dlib box plus 15% per side): the middle of the training zoom range, matched by eye to MEAD and
#: CREMA-D crops, and of 1.0 / 1.1 / 1.15 / 1.2 / 1.3 the best on FER2013 PublicTest for the
#: shipped weights (model card, "What was tried"); PrivateTest played no part in choosing it.
CROP_FRAMING_ZOOM = 1.15
#: the crop margin (per side, of the dlib box) that :data:`CROP_FRAMING_ZOOM` was matched to
CROP_FRAMING_MARGIN = 0.15
MODEL_NAME = "r2plus1d_wide"


# --------------------------------------------------------------------------- data
def load_fer(root: str | os.PathLike, cache: str | os.PathLike | None = None, size: int = 80):
    """FER2013 from ``root`` (``labels.csv`` + PNGs, see shared/data/fer2013/README.md) as
    ``(X uint8 (N, size, size), y int64 (N,), usage str (N,))``, images resized (bilinear)
    to ``size``. ``cache``: an ``.npz`` written on first use and read afterwards."""
    if cache is not None and Path(cache).is_file():
        z = np.load(cache)
        return z["X"], z["y"], z["usage"]
    import pandas as pd

    root = Path(root)
    d = pd.read_csv(root / "labels.csv")
    X = read_fer_images(root, d["file"], size)
    y = np.array(d["omg_label"].tolist(), dtype=np.int64)
    usage = np.array(d["usage"].tolist(), dtype="U12")
    if cache is not None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, X=X, y=y, usage=usage)

        atomic_write(cache, write)
    return X, y, usage


def read_fer_images(root: str | os.PathLike, files: Iterable[str], size: int = 80) -> np.ndarray:
    """FER2013 images (paths relative to ``root``) as ``(N, size, size)`` uint8, resized
    bilinearly: the decoding of :func:`load_fer`, for a subset."""
    import cv2

    return np.stack([cv2.resize(cv2.imread(str(Path(root) / f), cv2.IMREAD_GRAYSCALE), (size, size),
                                interpolation=cv2.INTER_LINEAR) for f in files])


def load_blocks(data_dirs: Iterable[str | os.PathLike], exclude_groups: Sequence[str] = (),
                only_groups: Sequence[str] | None = None):
    """Labeled blocks of built datasets as ``(X uint8 (N, T, S, S), frame)``; ``frame`` is the
    index rows (with ``root``), minus ``exclude_groups`` (or only ``only_groups``)."""
    import pandas as pd

    from omgclip.learn.data import load_index

    frames = []
    for d in data_dirs:
        f = load_index(d)
        f = f[f["label"] >= 0].copy()
        f["root"] = str(d)
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)
    if only_groups is not None:
        frame = frame[frame["group"].isin(list(only_groups))]
    frame = frame[~frame["group"].isin(list(exclude_groups))].reset_index(drop=True)
    X = np.stack([np.load(Path(r) / p) for r, p in zip(frame["root"], frame["path"])]) if len(frame) else \
        np.zeros((0, 20, 80, 80), np.uint8)
    return X, frame


def load_distill(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """The blocks ``X`` uint8 ``(N, T, S, S)`` and a peer's per-frame probabilities ``P``
    float ``(N, T, 7)`` of a ``scripts/peer_targets.py`` file; an :class:`OmgclipError` (one
    line) for a missing or malformed file."""
    from omgclip.errors import OmgclipError

    try:
        with np.load(path) as z:
            X, P = z["X"], z["P"]
    except (OSError, ValueError, KeyError) as exc:
        raise OmgclipError(f"{path}: not a distillation file of scripts/peer_targets.py "
                           f"({type(exc).__name__}: {exc})") from None
    if X.ndim != 4 or P.shape != (*X.shape[:2], NUM_CLASSES) or len(X) == 0:
        raise OmgclipError(f"{path}: expected X (N, T, S, S) and P (N, T, {NUM_CLASSES}) with N > 0, "
                           f"got {X.shape} and {P.shape}")
    return torch.from_numpy(X), torch.from_numpy(P).float()


# --------------------------------------------------------------------------- augmentation
def augment(x: torch.Tensor, zoom: tuple[float, float] = (1.0, 1.35), rotate_deg: float = 12.0,
            shift: float = 0.08, gamma: float = 0.4, erase_p: float = 0.25) -> torch.Tensor:
    """``(B, 1, T, H, W)`` float in [0, 1] -> same shape, one random transform per clip
    (the same for all its frames): zoom out/in with edge replication, rotation, shift,
    horizontal flip, gamma, and (with ``erase_p``) a random box set to a random gray."""
    b, c, t, h, w = x.shape
    dev = {"device": x.device}  # the random draws are made where x is (the CPU stream is unchanged)
    flat = x.reshape(b, c * t, h, w)
    z = torch.empty(b, **dev).uniform_(*zoom)
    ang = torch.empty(b, **dev).uniform_(-rotate_deg, rotate_deg) * math.pi / 180
    tx, ty = torch.empty(b, **dev).uniform_(-shift, shift), torch.empty(b, **dev).uniform_(-shift, shift)
    flip = (torch.rand(b, **dev) < 0.5).float() * 2 - 1
    cos, sin = torch.cos(ang) * z, torch.sin(ang) * z
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    flat = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    g = torch.exp(torch.empty(b, 1, 1, 1, **dev).uniform_(-gamma, gamma))
    flat = flat.clamp(1e-4, 1.0) ** g
    if erase_p > 0:
        eh, ew = torch.randint(10, 30, (2, b), **dev)
        y0 = (torch.rand(b, **dev) * (h - eh)).long()
        x0 = (torch.rand(b, **dev) * (w - ew)).long()
        rows = torch.arange(h, **dev).view(1, h, 1)
        cols = torch.arange(w, **dev).view(1, 1, w)
        box = ((rows >= y0.view(b, 1, 1)) & (rows < (y0 + eh).view(b, 1, 1))
               & (cols >= x0.view(b, 1, 1)) & (cols < (x0 + ew).view(b, 1, 1)))
        box &= (torch.rand(b, **dev) < erase_p).view(b, 1, 1)
        flat = torch.where(box.unsqueeze(1), torch.rand(b, 1, 1, 1, **dev), flat)
    return flat.reshape(b, c, t, h, w)


def framing_zoom(margin: float) -> float:
    """The zoom of a FER2013 image (:func:`reframe`) that frames it like crops with this
    ``margin`` per side: :data:`CROP_FRAMING_ZOOM` scaled by the crops' side (a square of the
    box's larger side times ``1 + 2 * margin``); about 1.0 (FER as given) at a margin of 0.065."""
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    return CROP_FRAMING_ZOOM * (1 + 2 * margin) / (1 + 2 * CROP_FRAMING_MARGIN)


def face_framing_zoom(face: dict | None) -> float:
    """:func:`framing_zoom` of the crop margin in recorded face settings (a dataset's
    ``build_config.json`` or a weights file's meta); the default margin where none is recorded."""
    from omgclip.faces.detect import FaceConfig

    margin = face.get("margin", FaceConfig.margin) if isinstance(face, dict) else FaceConfig.margin
    return framing_zoom(float(margin))


def dataset_framing_zoom(data_dir: str | os.PathLike) -> float:
    """:func:`face_framing_zoom` of the face settings a built dataset was made with."""
    from omgclip.dataset.format import read_face_config

    return face_framing_zoom(read_face_config(data_dir))


def reframe(x_uint8: np.ndarray, zoom: float) -> np.ndarray:
    """``(N, S, S)`` or ``(N, T, S, S)`` uint8 -> the same shape, each image zoomed about its
    centre: ``zoom`` > 1 shows more around the face (edge replication fills the border, the
    same bilinear sampling as :func:`augment`), < 1 less; 1 returns the input unchanged.
    :data:`CROP_FRAMING_ZOOM` turns FER2013's tight crops into omgclip's framing, and
    ``1 / CROP_FRAMING_ZOOM`` omgclip's crops into FER's."""
    x = np.asarray(x_uint8)
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"reframe expects (N, S, S) or (N, T, S, S) uint8 images, got {x.dtype} {x.shape}")
    if not zoom > 0:
        raise ValueError(f"zoom must be > 0, got {zoom}")
    if zoom == 1 or len(x) == 0:
        return x
    flat = x.reshape(-1, 1, *x.shape[-2:])
    out = np.empty_like(flat)
    for i in range(0, len(flat), 1024):  # in chunks: a float copy of a whole dataset is not needed
        part = torch.from_numpy(np.ascontiguousarray(flat[i:i + 1024])).float()
        theta = torch.tensor([[zoom, 0.0, 0.0], [0.0, zoom, 0.0]]).expand(len(part), 2, 3)
        grid = F.affine_grid(theta, list(part.shape), align_corners=False)
        part = F.grid_sample(part, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[i:i + len(part)] = part.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out.reshape(x.shape)


def to_clips(x_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(B, T, S, S)`` or ``(B, S, S)`` uint8 -> ``(B, 1, T, S, S)`` float in [0, 1]."""
    x = torch.as_tensor(x_uint8)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x.float().div_(255).unsqueeze(1)


@torch.no_grad()
def predict_proba(net: nn.Module, x_uint8: np.ndarray, batch_size: int = 64, tta_flip: bool = True) -> np.ndarray:
    """Class probabilities ``(N, C)`` for ``(N, T, S, S)`` (or ``(N, S, S)`` stills) uint8,
    averaged with the horizontally flipped input when ``tta_flip`` (:class:`FlipAverage`, as
    ``predict`` runs weights that ask for it)."""
    from omgclip.learn.models.layers import FlipAverage

    dev = next(net.parameters()).device
    net = (FlipAverage(net) if tta_flip else net).eval()
    out = [net(to_clips(x_uint8[i:i + batch_size]).to(dev)).float().softmax(1).cpu()
           for i in range(0, len(x_uint8), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, NUM_CLASSES), np.float32)


def accuracy_uar(y_true: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """Accuracy and unweighted average recall over the classes present in ``y_true``."""
    pred = np.asarray(proba).argmax(1)
    y_true = np.asarray(y_true)
    acc = float((pred == y_true).mean())
    return acc, uar_score(y_true, pred)


def public_scores(net: nn.Module, X: np.ndarray, y: np.ndarray, usage: np.ndarray) -> tuple[float, float]:
    """Accuracy and UAR on the PublicTest rows of :func:`load_fer`'s arrays, with the flip and
    the images as given: how stage 1 scores its epochs and ``pack`` a run that scored none."""
    pub = usage == "PublicTest"
    return accuracy_uar(y[pub], predict_proba(net, X[pub], 512))


def _cosine(opt, total_steps: int, warmup_steps: int):
    return _planned_cosine(opt, {"total": total_steps}, warmup_steps)


def _planned_cosine(opt, plan: dict, warmup_steps: int):
    """A linear warm-up, then a cosine to 0 at step ``plan['total']``, read at each step (so a
    run can set it once it knows its pace)."""
    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, warmup_steps))
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, plan["total"]))))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


DEFAULT_ARCH = {"widths": [64, 128, 256], "stem": "s2x2"}
#: stage 2 returns this mix of its fine-tuned and its initial weights (1: no mix; see :func:`finetune`)
DEFAULT_BLEND = 1.0
#: stage 2's learning rate: 1e-3 beat 5e-4 (and 2.5e-4) on the validation people of
#: benchmarks/select_stage2.py, over two fold seeds (the model card has the numbers)
FINETUNE_LR = 1e-3
#: stage 2's length in epochs (the recipe, the benchmark's fold models and the selection runs)
FINETUNE_EPOCHS = 8
#: stage 2's number of seeded runs averaged into the returned weights (1: one run; see :func:`finetune`)
FINETUNE_SOUP = 1
#: stage 2 returns an exponential moving average of its weights with this decay (0: the last
#: weights): 0.98 beat the single run (and a soup of 3) on the validation people of
#: benchmarks/select_stage2.py, mean score over three fold seeds (the model card has the numbers)
FINETUNE_EMA = 0.98
#: stage 2 zooms each video block by a random factor in this range (> 1: more around the face).
#: FER stills always get augment's (1.0, 1.35), which frames them like omgclip's crops at the
#: range's middle (:data:`CROP_FRAMING_ZOOM`). (1 / 1.15, 1.35 / 1.15), the stills' framings,
#: won on the validation people for one net from the CPU stage-1 file but lost for the
#: ensemble of the bundled ones over three fold seeds (model card, "Stage 2's video framing").
FINETUNE_VIDEO_ZOOM = (1.0, 1.35)
#: stage 2 uses, of the blocks of an utterance, those starting this many frames apart (the
#: builds are at stride 4, so 8 is every other block; see :func:`finetune`)
FINETUNE_MIN_BLOCK_GAP = 8
#: stage 2's "learning without forgetting" weight on the FER stills (0: off; see :func:`finetune`)
FINETUNE_LWF = 0.0
#: the recipe's post-hoc logit adjustment for video, ``tau`` of :func:`logit_adjustment` on
#: :func:`stage2_prior` (0: none; written into the weights meta as ``video_logit_adjust``)
FINETUNE_LOGIT_ADJUST = 0.0
#: what stage 2 does with the BatchNorm running statistics at its end (:func:`finetune`'s
#: ``bn_recalibrate``): ``"off"`` keeps its own (they mix video and still batches), ``"all"``
#: recomputes them from the training video blocks, ``"video"`` does so for video clips only
#: and keeps stage 2's for still images (a :class:`~omgclip.learn.models.layers.StillAware` pair).
#: Both won on the validation people of benchmarks/select_stage2.py; "video" was then the recipe
#: until its benchmark run was worse on every video row, so the recipe is "off" (model card)
FINETUNE_BN_RECALIBRATE = "off"
BN_RECALIBRATE_MODES = ("off", "all", "video")
#: stage 2 keeps every BatchNorm layer's running statistics frozen at stage 1's (FER2013's)
#: while it trains (:func:`finetune`'s ``freeze_bn``; the affine weights still train)
FINETUNE_FREEZE_BN = False
#: the recipe's temperatures (``{"video": T, "still": T}``, written into the weights meta as
#: ``temperature``, where inference divides the logits by them), or ``None``: none. Fitted by
#: ``transfer calibrate`` (minimum NLL) on people no recipe weights trained on, video 1.322 (the
#: validation people's blocks, select_stage2 offsets 0 and 10) and still 0.952 (FER2013
#: PublicTest), they made the benchmark's ECE worse on M030, W009 and CK+ (better on FER2013
#: PrivateTest), whose people the nets are underconfident on, so none ships (rule 9, model card
#: "Confidence"; ``finetune --temperature VIDEO,STILL`` writes them)
FINETUNE_TEMPERATURE: dict | None = None
#: the softening of :func:`finetune`'s ``lwf`` term (Hinton et al.'s usual 2)
LWF_TEMPERATURE = 2.0
#: the seeds of a stage-2 soup's runs are this far apart (``finetune(soup=...)``)
SOUP_SEED_STEP = 1000


def new_net(widths: Sequence[int] | None = None, **arch) -> nn.Module:
    """A fresh ``r2plus1d_wide``; ``widths`` and ``arch`` (``depths``, ``stem``,
    ``stem_t_stride``) override :data:`DEFAULT_ARCH`."""
    from omgclip.learn.models import create_model

    kw = {**DEFAULT_ARCH, **arch}
    if widths is not None:
        kw["widths"] = widths
    kw["widths"] = tuple(int(w) for w in kw["widths"])
    return create_model(MODEL_NAME, **kw)


# --------------------------------------------------------------------------- stage 1
def pretrain_stills(fer_root: str, out: str, epochs: int = 30, batch_size: int = 128, lr: float = 3e-3,
                    weight_decay: float = 0.05, label_smoothing: float = 0.1,
                    widths: Sequence[int] | None = None, stem: str | None = None, seed: int = 0,
                    cache: str | None = None,
                    init: str | None = None, stop_after: int | None = None, warmup_epochs: float = 1.0,
                    ema_decay: float = 0.0, device: str = "cpu", fit_seconds: float | None = None,
                    keep: str = "best") -> dict:
    """Stage 1: FER2013 Training as 1-frame clips; the best PublicTest epoch is kept in
    ``OUT/best.pt`` (``{'state_dict', 'arch', 'widths', 'epoch'}``), each epoch's numbers in
    ``OUT/history.json``. Returns the best epoch's record.

    ``epochs`` sets the cosine schedule; ``stop_after`` ends the run earlier (the schedule is
    not shortened); ``init`` starts from a stage-1 file (e.g. a stopped run's ``last.pt``,
    then annealed with a new, shorter schedule from ``lr``). ``ema_decay`` > 0 also keeps an
    exponential moving average of the weights (BN statistics included), scored on PublicTest
    beside the raw weights each epoch; whichever of the two scores higher competes for
    ``best.pt`` (its record says ``"ema"``).

    ``device``: where to train (``"cuda"``: the images, the augmentation and the net on the
    GPU, bfloat16 autocast). ``fit_seconds``: instead of ``epochs``, as many whole epochs as
    fit in this many seconds, planned from the pace of the first steps (their learning rates
    are the warm-up's either way); the history records the count, for ``--epochs`` to
    repeat the run. ``keep="last"`` keeps the last epoch's weights in ``best.pt`` (the EMA's,
    with ``ema_decay``) whatever PublicTest says (it is still scored, for the curve); so does
    a run without PublicTest images (a cache of Training alone), which scores nothing."""
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    X, y, usage = load_fer(fer_root, cache)
    tr, scored = np.where(usage == "Training")[0], bool((usage == "PublicTest").any())
    last_wins = keep == "last" or not scored
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    Xt, yt = torch.from_numpy(X[tr]).to(dev), torch.from_numpy(y[tr]).to(dev)
    net = (_load_init(init) if init else new_net(widths, **({"stem": stem} if stem else {}))).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = len(tr) // batch_size
    t_from, t_to = min(19, steps // 4), min(79, steps - 1)  # fit_seconds times these steps
    if fit_seconds is not None and t_to <= t_from:
        raise ValueError(f"fit_seconds needs at least 2 steps an epoch to time, got {steps}")
    plan = {"total": steps * epochs}  # fit_seconds resets it once the pace is known
    sched = _planned_cosine(opt, plan, int(steps * warmup_epochs))
    ema = None
    if ema_decay > 0:
        ema = _ema_of(net, ema_decay)
    best, hist, t_run = None, [], time.time()
    ep = 0
    while ep < (epochs if stop_after is None else min(epochs, stop_after)):
        net.train()
        t0, total = time.time(), torch.zeros((), device=dev)
        perm = torch.from_numpy(rng.permutation(len(tr))).to(dev)
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = F.cross_entropy(net(augment(to_clips(Xt[idx]))), yt[idx], label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(net)
            total += loss.detach()  # summed where it is: no wait for the GPU each step
            if fit_seconds is not None and ep == 0:
                if s == t_from:  # the pace after the first steps (cudnn's tuning, warm caches)
                    t_mark = time.time()
                elif s == t_to:
                    pace = (time.time() - t_mark) / (t_to - t_from)
                    epochs = _fit_epochs(fit_seconds, time.time() - t_run, pace, steps - s - 1, steps)
                    plan["total"] = steps * epochs
                    print(f"fit {fit_seconds:.0f}s at {pace * 1000:.0f} ms a step: {epochs} epochs", flush=True)
            if (s + 1) % 50 == 0:
                print(f"epoch {ep + 1} step {s + 1}/{steps} loss {total.item() / (s + 1):.4f} "
                      f"{time.time() - t0:.0f}s", flush=True)
        ep += 1
        rec = {"epoch": ep, "epochs": epochs, "loss": float(total) / steps, "seconds": round(time.time() - t0, 1),
               "public_acc": None, "public_uar": None, "ema": False}
        state = {"state_dict": _cpu_state(net), "arch": dict(net.arch), "widths": list(net.widths),
                 "epoch": ep, "seed": seed, "keep": "last" if last_wins else "best"}
        atomic_write(Path(out) / "last.pt", lambda tmp: torch.save(state, tmp))
        cand = state
        if scored:
            acc, uar = public_scores(net, X, y, usage)
            rec.update(public_acc=acc, public_uar=uar)
        if ema is not None:
            ema_state = {**state, "state_dict": _cpu_state(ema.module), "ema": True}
            if scored:
                e_acc, e_uar = public_scores(ema.module, X, y, usage)
                rec.update(raw_public_acc=acc, raw_public_uar=uar, ema_public_acc=e_acc, ema_public_uar=e_uar)
                if e_acc > acc or last_wins:
                    rec.update(public_acc=e_acc, public_uar=e_uar, ema=True)
                    cand = ema_state
            else:
                rec["ema"], cand = True, ema_state
        hist.append(rec)
        log.info("pretrain %s", json.dumps(rec))
        print(json.dumps(rec), flush=True)
        if best is None or last_wins or rec["public_acc"] > best["public_acc"]:
            best = rec
            atomic_write(Path(out) / "best.pt", lambda tmp: torch.save(cand, tmp))
        atomic_write_text(Path(out) / "history.json", json.dumps(hist, indent=1))
    return best or {}


def _fit_epochs(budget_s: float, spent_s: float, pace_s: float, steps_left: int, steps: int) -> int:
    """Whole epochs of ``steps`` steps that fit in what is left of ``budget_s`` (``spent_s``
    gone, ``steps_left`` steps of the first epoch to go) at ``pace_s`` seconds a step, plus
    5% for the saves; at least the epoch under way."""
    per_step = pace_s * 1.05
    return 1 + max(0, int((budget_s - spent_s - steps_left * per_step) / (steps * per_step)))


def _cpu_state(net: nn.Module) -> dict:
    """``net``'s state dict on the CPU (a file written on a GPU loads anywhere)."""
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


# --------------------------------------------------------------------------- stage 2
def finetune(init: str | nn.Module, data_dirs: Sequence[str], fer_root: str | None = None, *,
             exclude_groups: Sequence[str] = (), epochs: int = FINETUNE_EPOCHS, batch_size: int = 16,
             fer_batch_size: int = 32, lr: float = FINETUNE_LR, weight_decay: float = 0.05,
             label_smoothing: float = 0.1, seed: int = 0, cache: str | None = None,
             clip_len: int = 10, min_block_gap: int = FINETUNE_MIN_BLOCK_GAP, log_every: int = 0,
             blend: float | None = None, mixup: float = 0.0, distill: str | None = None,
             distill_weight: float = 1.0, distill_batch_size: int = 16, soup: int = FINETUNE_SOUP,
             ema: float = FINETUNE_EMA,
             video_zoom: Sequence[float] = FINETUNE_VIDEO_ZOOM, lwf: float = FINETUNE_LWF,
             bn_recalibrate: bool | str = FINETUNE_BN_RECALIBRATE,
             freeze_bn: bool = FINETUNE_FREEZE_BN) -> nn.Module:
    """Stage 2: from ``init`` (a :func:`pretrain_stills` file, an omgclip weights file, or a
    net), train on the labeled blocks of ``data_dirs`` (minus ``exclude_groups``: the
    held-out people), class-balanced by the loss weights, alternating with FER Training
    stills (when ``fer_root``). Returns the net (eval mode).

    Cheap on a CPU: each step sees a random ``clip_len``-frame window of each block (the net
    takes any length; 10 of 20 frames halves the cost and jitters time), and of the blocks
    of an utterance only those starting ``min_block_gap`` frames apart are used (blocks
    built at stride 4 overlap by 80%).

    ``blend`` (default :data:`DEFAULT_BLEND`, 1: the fine-tuned weights as they are): the
    returned weights are ``blend * fine-tuned + (1 - blend) * init`` (weight-space ensembling,
    "WiSE-FT", Wortsman et al. 2022; BN statistics alike). It trades the video people for
    FER2013: with the shipped stage 1, 0.5 gives FER2013 PrivateTest 0.673 instead of 0.656
    but CK+ UAR 0.792 instead of 0.873 and MEAD M030 block UAR 0.545 instead of 0.588
    (``benchmarks/bench_accuracy.py``; the model card has the whole comparison).

    ``mixup`` (alpha of a Beta(alpha, alpha); 0: off): each batch, video and FER alike, is
    mixed with a shuffled copy of itself, and so are its targets (Zhang et al. 2018).

    ``distill`` (an ``.npz`` of ``scripts/peer_targets.py``: unlabeled blocks ``X (N, T, S, S)``
    and a peer's per-frame probabilities ``P (N, T, 7)``): each step also takes
    ``distill_batch_size`` of those blocks, in the same random window as the video batch, and
    adds ``distill_weight`` x the cross-entropy of the net's output against the peer's mean
    probability over that window (knowledge distillation, Hinton et al. 2015, temperature 1).

    ``bn_recalibrate`` (one of :data:`BN_RECALIBRATE_MODES`; ``True``/``False`` mean ``"all"``/
    ``"off"``): ``"all"``: at the end, the BatchNorm running statistics are recomputed from the
    training video blocks as they are (:func:`recalibrate_bn`); ``"video"``: the same for video
    clips only, and the returned model is a :class:`~omgclip.learn.models.layers.StillAware`
    pair (:func:`split_bn`): the recalibrated net for video, the net with stage 2's own
    statistics for still images (both won on validation people 2026-12-05 and lost on the
    benchmark's video people; the recipe is ``"off"``: model card, "What was tried").

    ``soup`` > 1: the fine-tuning is run that many times from ``init`` with seeds ``seed``,
    ``seed + SOUP_SEED_STEP``, ... and the returned weights are their mean (a uniform
    "model soup", Wortsman et al. 2022; BN statistics alike), before ``blend``.

    ``ema`` (a decay in [0, 1); default :data:`FINETUNE_EMA`; 0: off): an exponential moving
    average of the weights (BN statistics included) is kept over the steps, and the average
    is returned instead of the last weights (before ``blend``; each run of a soup returns its
    own average).

    ``video_zoom`` ``(lo, hi)``: the range of the random zoom of the video (and distillation)
    blocks; the FER stills keep :func:`augment`'s. Video crops are already framed like FER
    zoomed by :data:`CROP_FRAMING_ZOOM`, so ``(1 / 1.15, 1.35 / 1.15)`` shows them at the same
    framings as the stills.

    ``lwf`` (a weight; default :data:`FINETUNE_LWF`; 0: off): "learning without forgetting"
    (Li and Hoiem 2016) on the FER stills: a frozen copy of ``init`` labels each step's
    augmented stills, and the loss adds ``lwf`` x the KL divergence of the net's output from
    that copy's, both softened by :data:`LWF_TEMPERATURE` (times its square, as in Hinton et
    al. 2015), so that stage 2 keeps stage 1's reading of the photos while it learns the video
    people. Needs ``fer_root``. On the validation people weight 1 kept 1.0 point more of
    PublicTest but lost 6.3 points of block UAR (0.25: +0.7, -1.7; model card), so the
    recipe leaves it off.

    ``freeze_bn`` (default :data:`FINETUNE_FREEZE_BN`): every BatchNorm layer stays in eval
    mode while stage 2 trains, so video and still batches are normalised with ``init``'s
    running statistics (stage 1's: FER2013, thousands of people) in training as at test time,
    and those statistics are returned unchanged; the BN affine weights still train.
    """
    params = dict(locals())  # (first: exactly the arguments, for the soup's runs)
    if mixup < 0:
        raise ValueError(f"mixup must be >= 0, got {mixup}")
    if distill_weight < 0:
        raise ValueError(f"distill_weight must be >= 0, got {distill_weight}")
    blend = DEFAULT_BLEND if blend is None else float(blend)
    if not 0.0 <= blend <= 1.0:
        raise ValueError(f"blend must be in [0, 1], got {blend}")
    if soup < 1:
        raise ValueError(f"soup must be >= 1, got {soup}")
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    if lwf < 0:
        raise ValueError(f"lwf must be >= 0, got {lwf}")
    if isinstance(min_block_gap, bool) or not isinstance(min_block_gap, int) or min_block_gap < 1:
        raise ValueError(f"min_block_gap must be a whole number >= 1, got {min_block_gap!r}")
    if lwf > 0 and not fer_root:
        raise ValueError("lwf needs the FER2013 stills (fer_root)")
    bn_mode = bn_recalibrate_mode(bn_recalibrate)
    video_zoom = tuple(float(z) for z in video_zoom)
    if len(video_zoom) != 2 or not 0 < video_zoom[0] <= video_zoom[1]:
        raise ValueError(f"video_zoom must be (lo, hi) with 0 < lo <= hi, got {video_zoom}")
    if soup > 1:
        base = _load_init(init)
        start = {k: v.detach().clone() for k, v in base.state_dict().items()}
        params.update(soup=1, blend=1.0, bn_recalibrate="off")
        states = []
        for k in range(soup):
            params.update(init=copy.deepcopy(base), seed=seed + k * SOUP_SEED_STEP)
            states.append(finetune(**params).state_dict())
        mean = {key: (sum(st[key] for st in states) / soup) if v.is_floating_point() else v
                for key, v in states[0].items()}
        base.load_state_dict(blend_states(mean, start, blend) if blend < 1.0 else mean)
        if bn_mode == "off":
            return base.eval()
        return with_bn_recalibrated(base, stage2_blocks(data_dirs, exclude_groups, min_block_gap)[0], bn_mode,
                                    batch_size)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _load_init(init)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()} if blend < 1.0 else None
    teacher = copy.deepcopy(net).eval().requires_grad_(False) if lwf > 0 else None
    Xb, frame = stage2_blocks(data_dirs, exclude_groups, min_block_gap)
    yb = frame["label"].to_numpy().astype(np.int64)
    counts = np.bincount(yb, minlength=NUM_CLASSES).astype(float)
    cw = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / (counts > 0).sum(), 0.0),
                      dtype=torch.float32)
    if fer_root:
        Xf, yf, usage = load_fer(fer_root, cache)
        tr = np.where(usage == "Training")[0]
        Xf, yf = torch.from_numpy(Xf[tr]), torch.from_numpy(yf[tr])
    if distill:
        Xd, Pd = load_distill(distill)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, len(Xb) // batch_size)
    sched = _cosine(opt, steps * epochs, max(1, steps // 4))
    Xbt, ybt = torch.from_numpy(Xb), torch.from_numpy(yb)
    averaged = _ema_of(net, ema) if ema > 0 else None
    for ep in range(epochs):
        net.train()
        if freeze_bn:
            _freeze_bn_statistics(net)
        t0, tot_v, tot_f, tot_d, tot_l = time.time(), 0.0, 0.0, 0.0, 0.0
        perm = torch.from_numpy(rng.permutation(len(Xb)))
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            xb = Xbt[idx]
            win = slice(None)
            if 0 < clip_len < xb.shape[1]:
                t0_ = int(rng.integers(0, xb.shape[1] - clip_len + 1))
                win = slice(t0_, t0_ + clip_len)
                xb = xb[:, win]
            loss = _mixed_loss(net, augment(to_clips(xb), zoom=video_zoom), ybt[idx], mixup, rng, weight=cw,
                               label_smoothing=label_smoothing)
            if fer_root:
                fi = torch.from_numpy(rng.integers(0, len(Xf), fer_batch_size))
                xf = augment(to_clips(Xf[fi]))
                lf = _mixed_loss(net, xf, yf[fi], mixup, rng, label_smoothing=label_smoothing)
                tot_f += lf.item()
                loss = loss + lf
                if teacher is not None:
                    ll = _kept_loss(net, teacher, xf)
                    tot_l += ll.item()
                    loss = loss + lwf * ll
            if distill:
                di = torch.from_numpy(rng.integers(0, len(Xd), distill_batch_size))
                target = Pd[di][:, win].mean(1)
                out = net(augment(to_clips(Xd[di][:, win]), zoom=video_zoom))
                ld = -(target * F.log_softmax(out, 1)).sum(1).mean()
                tot_d += ld.item()
                loss = loss + distill_weight * ld
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(net)
            tot_v += loss.item()
        msg = {"epoch": ep + 1, "loss": round(tot_v / steps, 4), "fer_loss": round(tot_f / steps, 4),
               "distill_loss": round(tot_d / steps, 4), "lwf_loss": round(tot_l / steps, 4),
               "seconds": round(time.time() - t0, 1), "blocks": len(Xb)}
        log.info("finetune %s", json.dumps(msg))
        if log_every:
            print(json.dumps(msg), flush=True)
    if averaged is not None:
        net.load_state_dict(averaged.module.state_dict())
    if blend < 1.0:
        net.load_state_dict(blend_states(net.state_dict(), start, blend))
    return with_bn_recalibrated(net, Xb, bn_mode, batch_size)


def _freeze_bn_statistics(net: nn.Module) -> nn.Module:
    """Put ``net``'s BatchNorm layers (only) in eval mode: they normalise with, and no longer
    update, their running statistics."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return net


def with_bn_recalibrated(net: nn.Module, blocks: np.ndarray, mode: bool | str, batch_size: int = 16) -> nn.Module:
    """``net`` (eval mode) as :func:`finetune`'s ``bn_recalibrate`` ``mode`` leaves it, from the
    training video ``blocks (N, T, H, W)`` uint8: as it is (``"off"``), with its BN statistics
    recomputed in place (``"all"``: :func:`recalibrate_bn`), or a still/video pair (``"video"``:
    :func:`split_bn`)."""
    mode = bn_recalibrate_mode(mode)
    if mode == "all":
        return recalibrate_bn(net, blocks, batch_size)
    if mode == "video":
        return split_bn(net, blocks, batch_size)
    return net.eval()


def bn_recalibrate_mode(value: bool | str) -> str:
    """``finetune``'s ``bn_recalibrate`` as one of :data:`BN_RECALIBRATE_MODES` (``True``:
    ``"all"``, ``False``: ``"off"``); :class:`ValueError` for anything else."""
    if isinstance(value, bool):
        return "all" if value else "off"
    if value not in BN_RECALIBRATE_MODES:
        raise ValueError(f"bn_recalibrate must be one of {', '.join(BN_RECALIBRATE_MODES)}, got {value!r}")
    return value


def stage2_blocks(data_dirs: Sequence[str | os.PathLike], exclude_groups: Sequence[str] = (),
                  min_block_gap: int = FINETUNE_MIN_BLOCK_GAP):
    """The video blocks stage 2 trains on, ``(X uint8 (N, T, S, S), frame)``: the labeled blocks
    of ``data_dirs`` minus ``exclude_groups``, of each utterance those starting
    ``min_block_gap`` frames apart."""
    Xb, frame = load_blocks(data_dirs, exclude_groups=exclude_groups)
    if min_block_gap > 1 and "start_frame" in frame.columns:
        keep = (frame["start_frame"].astype(int) % int(min_block_gap) == 0).to_numpy()
        Xb, frame = Xb[keep], frame[keep].reset_index(drop=True)
    return Xb, frame


def split_bn(net: nn.Module, blocks: np.ndarray, batch_size: int = 16) -> nn.Module:
    """A :class:`~omgclip.learn.models.layers.StillAware` pair from ``net`` (eval mode): for
    video clips a copy whose BatchNorm running statistics are recomputed from ``blocks (N, T,
    H, W)`` uint8 (:func:`recalibrate_bn`), for still images ``net`` itself with the statistics
    it has. Same weights, so each clip costs one net's time. A weights file stores the pair as
    the video net plus the still net's differing BN buffers (``save_weights``)."""
    from omgclip.learn.models.layers import StillAware

    net = net.eval()
    return StillAware(recalibrate_bn(copy.deepcopy(net), blocks, batch_size), net).eval()


def recalibrate_bn(net: nn.Module, blocks: np.ndarray, batch_size: int = 16) -> nn.Module:
    """Recompute ``net``'s BatchNorm running statistics from ``blocks (N, T, H, W)`` uint8 as
    they are (no augmentation): a cumulative average over batches, no gradient, the weights
    untouched. Stage 2 normalises its video and still batches separately, so its running
    statistics mix both; this makes them the video blocks'. Returns ``net`` in eval mode."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(blocks) == 0:
        return net.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.train()
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            net(to_clips(blocks[i:i + batch_size]))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return net.eval()


def adapted_to(net: nn.Module, blocks: np.ndarray, batch_size: int = 16) -> nn.Module:
    """Test-time BN adaptation ("AdaBN", Li et al. 2016): a copy of ``net`` whose video net has
    its BatchNorm running statistics recomputed from ``blocks (N, T, H, W)`` uint8, e.g. all
    the unlabeled blocks of one new person (:func:`recalibrate_bn`); a
    :class:`~omgclip.learn.models.layers.StillAware` pair keeps its still net as it is.
    ``net`` itself is untouched. Eval mode."""
    from omgclip.learn.models.layers import StillAware

    if isinstance(net, StillAware):
        return StillAware(recalibrate_bn(copy.deepcopy(net.video), blocks, batch_size), net.still).eval()
    return recalibrate_bn(copy.deepcopy(net), blocks, batch_size)


def predict_proba_adapted(net: nn.Module, x_uint8: np.ndarray, groups: Sequence, tta_flip: bool = True) -> np.ndarray:
    """:func:`predict_proba` of blocks ``x_uint8 (N, T, S, S)`` with test-time BN adaptation per
    person: each group's blocks (``groups``: ``N`` ids, e.g. the index's ``group``) are scored by
    :func:`adapted_to` on those same blocks. ``(N, C)``."""
    groups = np.asarray(groups)
    out = np.zeros((len(x_uint8), NUM_CLASSES), np.float32)
    for g in np.unique(groups):
        m = groups == g
        out[m] = predict_proba(adapted_to(net, x_uint8[m]), x_uint8[m], tta_flip=tta_flip)
    return out


def finetune_ensemble(inits: Sequence[str | nn.Module], data_dirs: Sequence[str], fer_root: str | None = None,
                      **kwargs) -> nn.Module:
    """Stage 2 for each of ``inits`` (e.g. stage-1 runs with different seeds), with the same
    arguments (``kwargs``: those of :func:`finetune`, seed included), joined into one
    :class:`~omgclip.learn.models.ensemble.Ensemble` whose output averages the members'
    probabilities (eval mode). One init: just :func:`finetune`'s net."""
    from omgclip.learn.models.layers import StillAware

    if not inits:
        raise ValueError("finetune_ensemble needs at least one init")
    nets = [finetune(init, data_dirs, fer_root, **kwargs) for init in inits]
    if all(isinstance(n, StillAware) for n in nets):  # bn_recalibrate="video": one pair of ensembles
        return StillAware(ensemble_of([n.video for n in nets]), ensemble_of([n.still for n in nets])).eval()
    return ensemble_of(nets)


def ensemble_of(nets: Sequence[nn.Module]) -> nn.Module:
    """Nets of this module (:func:`new_net`, same shape) joined into one ``ensemble`` model
    (eval mode; one net: that net). :class:`ValueError` for nets of different shapes."""
    from omgclip.learn.models.ensemble import Ensemble

    if len(nets) == 1:
        return nets[0]
    archs = [getattr(n, "arch", None) for n in nets]
    if isinstance(nets[0], Ensemble) or archs[0] is None or any(a != archs[0] for a in archs):
        raise ValueError(f"the members of an ensemble must be {MODEL_NAME} nets of the same shape (got "
                         f"{', '.join(f'{type(n).__name__} {a or {}}' for n, a in zip(nets, archs))})")
    return Ensemble.of(nets, MODEL_NAME, **archs[0])


def asks_flip(net: nn.Module) -> bool:
    """Whether the recipe's weights file for ``net`` asks for the test-time flip: yes for one
    net, no for an ensemble (either way the model time of two passes of one net)."""
    from omgclip.learn.models.ensemble import Ensemble
    from omgclip.learn.models.layers import StillAware

    return not isinstance(net.video if isinstance(net, StillAware) else net, Ensemble)


def _ema_of(net: nn.Module, decay: float):
    """A copy of ``net`` that follows an exponential moving average of its weights and BN
    statistics (``update_parameters(net)`` after each step)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _kept_loss(net: nn.Module, teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``net``'s softened output on clips ``x (B, 1, T, H, W)`` from the frozen
    ``teacher``'s (temperature ``T`` = :data:`LWF_TEMPERATURE`), times ``T ** 2``."""
    t = LWF_TEMPERATURE
    with torch.no_grad():
        target = F.softmax(teacher(x) / t, 1)
    return F.kl_div(F.log_softmax(net(x) / t, 1), target, reduction="batchmean") * t * t


def _mixed_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, alpha: float,
                rng: np.random.Generator, **ce) -> torch.Tensor:
    """Cross-entropy of ``net`` on clips ``x (B, 1, T, H, W)``; with ``alpha > 0``, on a mixup
    of the batch with a shuffled copy of itself (targets mixed alike)."""
    if alpha <= 0 or len(x) < 2:
        return F.cross_entropy(net(x), y, **ce)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x)))
    out = net(lam * x + (1 - lam) * x[perm])
    return lam * F.cross_entropy(out, y, **ce) + (1 - lam) * F.cross_entropy(out, y[perm], **ce)


def blend_states(a: dict, b: dict, weight: float) -> dict:
    """``weight * a + (1 - weight) * b`` for each floating-point tensor of two state dicts of
    the same net (integer ones, e.g. BN's batch counts, are taken from ``a``)."""
    return {k: (weight * v + (1 - weight) * b[k].to(v.dtype)) if v.is_floating_point() else v
            for k, v in a.items()}


def _load_init(init: str | nn.Module) -> nn.Module:
    if isinstance(init, nn.Module):
        return init
    obj = torch.load(init, map_location="cpu", weights_only=True)
    if _is_stage1(obj):
        return _stage1_net(obj)
    from omgclip.learn.checkpoint import load_model

    return load_model(init).net


def _is_stage1(obj) -> bool:
    """Whether a loaded file is a :func:`pretrain_stills` file (``best.pt`` / ``last.pt``)."""
    return isinstance(obj, dict) and "widths" in obj and "state_dict" in obj


def _stage1_net(obj: dict) -> nn.Module:
    net = new_net(**obj["arch"]) if "arch" in obj else new_net(obj["widths"], stem="s4")
    net.load_state_dict(obj["state_dict"])
    return net


def stage2_prior(fer_labels: np.ndarray) -> np.ndarray:
    """``(7,)`` the class prior stage 2 trains under: its loss is the class-weighted (balanced)
    mean cross-entropy on the video blocks plus the plain mean on FER Training stills, each
    term with weight 1, so about half FER2013's label frequencies (``fer_labels``: the
    Training labels) and half uniform."""
    counts = np.bincount(np.asarray(fer_labels, np.int64), minlength=NUM_CLASSES).astype(float)
    return 0.5 * counts / counts.sum() + 0.5 / NUM_CLASSES


def fer_stage2_prior(root: str | os.PathLike, cache: str | os.PathLike | None = None) -> np.ndarray:
    """:func:`stage2_prior` of the FER2013 Training labels under ``root``, read without the
    images (from ``cache``'s label arrays where that :func:`load_fer` cache exists, else from
    ``labels.csv``)."""
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as z:  # lazy: only the two label arrays are read
            y, usage = z["y"], z["usage"]
    else:
        import pandas as pd

        d = pd.read_csv(Path(root) / "labels.csv")
        y, usage = d["omg_label"].to_numpy(np.int64), d["usage"].to_numpy(str)
    return stage2_prior(y[usage == "Training"])


def logit_adjustment(tau: float, prior: np.ndarray) -> list[float]:
    """``(7,)`` offsets to subtract from a net's logits so it decides under a balanced prior
    instead of ``prior``: ``tau * log(prior)`` (post-hoc logit adjustment, Menon et al. 2021;
    ``tau`` 0: none)."""
    return [float(tau * np.log(p)) for p in np.asarray(prior, float)]


def adjust_proba(proba: np.ndarray, offsets: Sequence[float]) -> np.ndarray:
    """``(N, 7)`` probabilities after subtracting ``offsets`` from their log (renormalised)."""
    z = np.log(np.clip(proba, 1e-12, None)) - np.asarray(offsets, float)
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def weights_meta(net: nn.Module, face: dict | None, flip: bool | None = None, **extra) -> dict:
    """The meta of a weights file for a net from this module (``face``: the crop settings
    of the datasets it was trained on, so ``predict`` crops alike). ``flip``: ask for the
    test-time flip on video (``None``: :func:`asks_flip`). ``still_flip`` is always asked:
    a still image is one frame, so its flip costs next to nothing (on FER2013 PublicTest the
    bundled ensemble scored 0.689 without it, 0.692 with it; chosen 2026-12-05)."""
    from omgclip.learn.models.ensemble import Ensemble
    from omgclip.learn.models.layers import StillAware

    split = isinstance(net, StillAware)
    net = net.video if split else net
    meta = {"model_name": "ensemble" if isinstance(net, Ensemble) else MODEL_NAME, "model_kwargs": dict(net.arch),
            "labels": list(EMOTIONS), "num_classes": NUM_CLASSES, "block_len": 20, "crop_size": 80,
            "test_time_flip": asks_flip(net) if flip is None else bool(flip), "still_flip": True}
    if split:
        meta["bn_statistics"] = ("video: recomputed from the training video blocks; still images: "
                                 "stage 2's own (still_buffers)")
    if face is not None:
        meta["face"] = face
    meta.update(extra)
    return meta


def pack_stage1(src: str | os.PathLike, out: str | os.PathLike, seed: int | None = None,
                fer_root: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Write a stage-1 run's file (``OUT/best.pt`` of :func:`pretrain_stills`) as a compact
    float16 omgclip weights file, as the bundled stage-1 files are made.

    The file loads like any omgclip weights (``predict --checkpoint``, ``train --init-from``,
    ``finetune --init``, ``bench_accuracy.py --pretrained``). Its meta records the default
    face settings (FER faces were zoomed out to look like those crops), the test-time flip
    (stage 1 was scored with it), ``stage: 1``, the seed (``seed``, else the file's own) and,
    from the run's ``history.json`` beside ``src`` where there is one, the kept epoch's
    PublicTest numbers; where it has none (a run on a Training-only cache, e.g. on a GPU
    machine), they are scored now on ``fer_root`` / ``cache``'s PublicTest, with the flip and
    the images as given, as :func:`pretrain_stills` scores them. Raises :class:`OmgclipError`
    (one line) for a file that is not a stage-1 file, or with no score and no FER2013 to take one."""
    import dataclasses

    from omgclip.errors import OmgclipError
    from omgclip.faces.detect import FaceConfig
    from omgclip.learn.checkpoint import save_weights

    src = Path(src)
    if not src.is_file():
        raise OmgclipError(f"stage-1 file {src} does not exist")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise OmgclipError(f"{src} cannot be read as a stage-1 file ({type(exc).__name__})") from None
    if not _is_stage1(obj):
        raise OmgclipError(f"{src} is not a stage-1 file (python -m omgclip.learn.transfer pretrain's best.pt)")
    net = _stage1_net(obj)
    seed = obj.get("seed") if seed is None else seed
    record: dict = {}
    hist_path = src.parent / "history.json"
    if hist_path.is_file():
        record = next((r for r in json.loads(hist_path.read_text()) if r.get("epoch") == obj.get("epoch")), {})
    kept = "last epoch" if obj.get("keep") == "last" else "best PublicTest epoch"
    if record.get("public_acc") is None:
        kept = "last epoch, scored on PublicTest when packed"
        if fer_root is None and cache is None:
            raise OmgclipError(f"{src}: its run scored no PublicTest; give --fer (or --cache) to score it now")
        acc, uar = public_scores(net, *load_fer(fer_root, cache))
        record = {"public_acc": acc, "public_uar": uar}
    extra = {"stage": 1, "seed": seed, "epoch": obj.get("epoch"), "ema": bool(obj.get("ema", False)),
             "public_acc": record.get("public_acc"), "public_uar": record.get("public_uar"),
             "recipe": f"omgclip.learn.transfer pretrain: FER2013 Training stills, {kept}"}
    meta = weights_meta(net, dataclasses.asdict(FaceConfig()), flip=True, **extra)
    return save_weights(out, net, meta, half=True)


def fit_temperatures(video_proba: Sequence[str | os.PathLike], data_dirs: Sequence[str | os.PathLike],
                     weights: str | os.PathLike | None, fer_root: str | os.PathLike | None,
                     cache: str | os.PathLike | None = None, row: str | None = None) -> dict:
    """The recipe's temperatures, each fitted by minimum NLL (:func:`~omgclip.learn.metrics.fit_temperature`)
    on faces of people the model never trained on.

    ``video``: the blocks of ``video_proba`` (``.npz`` files of ``benchmarks/select_stage2.py``:
    held-out people's block probabilities under the recipe's fold models; ``row`` names the
    candidate, default the first; several files are pooled), labelled from the indexes of
    ``data_dirs``. ``still``: FER2013 PublicTest under ``weights`` (``None``: the bundled file)
    as a photo is labelled: its still net, at its own framing, without any temperature.
    Returns ``{"video": T, "still": T, "fit": {...}}``, the fit holding each part's size and its
    :func:`~omgclip.learn.metrics.calibration` before and after."""
    import numpy as np

    from omgclip.errors import OmgclipError
    from omgclip.learn.checkpoint import load_for_inference
    from omgclip.learn.data import load_index
    from omgclip.learn.metrics import apply_temperature, calibration, fit_temperature

    labels: dict[str, int] = {}
    for d in data_dirs:
        f = load_index(d, check_arrays=False)
        labels.update(zip(f["block_id"].astype(str), f["label"].astype(int)))
    probas, ys = [], []
    for path in video_proba:
        with np.load(path) as z:
            names = [str(n) for n in z["names"]]
            pick = names.index(row) if row in names else 0 if row is None else None
            if pick is None:
                raise OmgclipError(f"{path} has no row {row!r} (it has: {', '.join(names)})")
            ids = [str(b) for b in z["block_id"]]
            unknown = [b for b in ids if labels.get(b, -1) < 0]
            if unknown:
                raise OmgclipError(f"{path}: {len(unknown)} blocks have no label in the given --data "
                                   f"(e.g. {unknown[0]}); give the dataset the file was scored on")
            probas.append(np.asarray(z["proba"][pick], np.float64))
            ys.append(np.array([labels[b] for b in ids]))
    out: dict = {"fit": {}}
    parts = []
    if probas:
        parts.append(("video", np.concatenate(probas), np.concatenate(ys)))
    if fer_root is not None or cache is not None:
        loaded = load_for_inference(weights, temperature=False)
        X, y, usage = load_fer(fer_root, cache)
        pub = np.where(usage == "PublicTest")[0]
        zoom = face_framing_zoom(loaded.meta.get("face"))
        parts.append(("still", predict_proba(loaded.net_for(still=True), reframe(X[pub], zoom), 256, tta_flip=False),
                      y[pub]))
    if not parts:
        raise OmgclipError("nothing to fit: give --video-proba (with --data) and/or --fer")
    for name, proba, y in parts:
        t = fit_temperature(proba, y)
        out[name] = round(t, 3)
        out["fit"][name] = {"n": int(len(y)), "before": calibration(proba, y),
                            "after": calibration(apply_temperature(proba, out[name]), y)}
    return out


def parse_temperature(text: str) -> dict[str, float] | None:
    """``--temperature VIDEO,STILL`` -> ``{"video": .., "still": ..}``; ``none`` -> ``None``."""
    from omgclip.learn.metrics import TEMPERATURE_RANGE

    if text.strip().lower() == "none":
        return None
    try:
        video, still = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VIDEO,STILL (two numbers) or none, got {text!r}") from None
    lo, hi = TEMPERATURE_RANGE
    if not (lo <= video <= hi and lo <= still <= hi):
        raise argparse.ArgumentTypeError(f"each temperature must lie in [{lo:g}, {hi:g}], got {text!r}")
    return {"video": video, "still": still}


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m omgclip.learn.transfer", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pretrain", help="stage 1: FER2013 stills")
    a.add_argument("--fer", required=True, help="the fer2013 folder (labels.csv + images/)")
    a.add_argument("--out", required=True)
    a.add_argument("--epochs", type=int, default=30)
    a.add_argument("--widths", default=",".join(str(w) for w in DEFAULT_ARCH["widths"]))
    a.add_argument("--stem", default=DEFAULT_ARCH["stem"], choices=("s4", "s2x2"))
    a.add_argument("--cache", help="an .npz cache of the decoded images")
    a.add_argument("--lr", type=float, default=3e-3)
    a.add_argument("--init", help="start from this stage-1 file (e.g. a stopped run's last.pt)")
    a.add_argument("--stop-after", type=int, help="stop after this many epochs of the --epochs schedule")
    a.add_argument("--warmup-epochs", type=float, default=1.0)
    a.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="also keep an exponential moving average of the weights (e.g. 0.999)")
    a.add_argument("--keep", choices=("best", "last"), default="best",
                   help="best.pt holds the best PublicTest epoch, or the last one (the EMA's weights with --ema)")
    a.add_argument("--device", default="cpu", help="cpu, or cuda (bfloat16 autocast on the GPU)")
    a.add_argument("--fit-seconds", type=float, metavar="S",
                   help="instead of --epochs, as many whole epochs as fit in S seconds (the history records them)")
    k = sub.add_parser("pack", help="a stage-1 run's best.pt -> a compact float16 weights file (as bundled)")
    k.add_argument("src", help="OUT/best.pt of pretrain")
    k.add_argument("--out", required=True, help="the weights file to write")
    k.add_argument("--seed", type=int, help="the run's seed, for its meta (default: the one the file records)")
    k.add_argument("--fer", help="score PublicTest on this fer2013 folder where the run scored none")
    k.add_argument("--cache", help="an .npz cache of the decoded images (with --fer, or alone)")
    b = sub.add_parser("finetune", help="stage 2: video blocks + FER stills -> a weights file")
    b.add_argument("--init", required=True, action="append",
                   help="OUT/best.pt of pretrain, or any omgclip weights; repeated: each is fine-tuned alike "
                        "and the results are saved as one ensemble")
    b.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="mark the weights for the test-time flip (default: yes for one net, no for an ensemble)")
    b.add_argument("--data", action="append", required=True, help="a built dataset (repeatable)")
    b.add_argument("--fer", help="mix in FER2013 Training stills")
    b.add_argument("--cache")
    b.add_argument("--exclude-group", action="append", default=[])
    b.add_argument("--epochs", type=int, default=FINETUNE_EPOCHS)
    b.add_argument("--soup", type=int, default=FINETUNE_SOUP, metavar="N",
                   help="average the weights of N runs with different seeds (default %(default)s)")
    b.add_argument("--ema", type=float, default=FINETUNE_EMA, metavar="DECAY",
                   help="return an exponential moving average of the weights "
                        "(default %(default)s; 0: the last weights)")
    b.add_argument("--lr", type=float, default=FINETUNE_LR)
    b.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup's Beta alpha (0: off)")
    b.add_argument("--blend", type=float, default=DEFAULT_BLEND,
                   help="weight of the fine-tuned weights against the --init ones (default %(default)s: no mix)")
    b.add_argument("--distill", metavar="NPZ", help="also distil a peer's probabilities on unlabeled blocks "
                   "(the file of scripts/peer_targets.py)")
    b.add_argument("--distill-weight", type=float, default=1.0)
    b.add_argument("--video-zoom", type=parse_zoom_range, default=FINETUNE_VIDEO_ZOOM, metavar="LO,HI",
                   help="the random zoom range of the video blocks (> 1: more around the face; "
                        f"default {','.join(str(z) for z in FINETUNE_VIDEO_ZOOM)})")
    b.add_argument("--min-block-gap", type=int, default=FINETUNE_MIN_BLOCK_GAP, metavar="FRAMES",
                   help="use the blocks of an utterance that start this many frames apart "
                        "(default %(default)s; 4 with a stride-4 build: every block, twice the steps)")
    b.add_argument("--lwf", type=float, default=FINETUNE_LWF, metavar="WEIGHT",
                   help="keep stage 1's outputs on the FER stills (learning without forgetting; needs --fer; "
                        "default %(default)s: off)")
    b.add_argument("--logit-adjust", type=float, default=FINETUNE_LOGIT_ADJUST, metavar="TAU",
                   help="video clips decide under a balanced class prior: the file's meta asks inference to "
                        "take TAU x log(stage 2's class prior) off their logits (needs --fer; "
                        "default %(default)s; 0: none)")
    b.add_argument("--bn-recalibrate", choices=BN_RECALIBRATE_MODES, default=FINETUNE_BN_RECALIBRATE,
                   help="at the end, recompute the BatchNorm statistics from the training video blocks: for "
                        "everything (all), or for video clips only, still images keeping stage 2's (video) "
                        "(default %(default)s)")
    b.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=FINETUNE_FREEZE_BN,
                   help="keep the BatchNorm statistics at stage 1's while training (default %(default)s)")
    b.add_argument("--temperature", type=parse_temperature, default=FINETUNE_TEMPERATURE, metavar="VIDEO,STILL",
                   help="the file's meta asks inference to divide video and still-image logits by these "
                        "(calibrated confidences, e.g. from `calibrate`; default: the recipe's, none)")
    b.add_argument("--out", required=True, help="the weights file to write")
    c = sub.add_parser("calibrate", help="fit the temperatures (minimum NLL) on people the weights never "
                                         "trained on; print them, or write them into a weights file")
    c.add_argument("--weights", help="weights whose still images are scored on FER2013 PublicTest, and that "
                                     "--write changes (default: the bundled file)")
    c.add_argument("--video-proba", action="append", default=[], metavar="NPZ",
                   help="held-out people's block probabilities: the .npz of benchmarks/select_stage2.py "
                        "(repeatable: pooled)")
    c.add_argument("--row", help="the .npz row (candidate) to fit on (default: its first, the recipe)")
    c.add_argument("--data", action="append", default=[], help="the built dataset those blocks come from")
    c.add_argument("--fer", help="fit the still temperature on this fer2013 folder's PublicTest")
    c.add_argument("--cache", help="an .npz cache of the decoded images")
    c.add_argument("--write", action="store_true", help="write the fitted temperatures into --weights' meta")
    c.add_argument("--threads", type=int, default=2)
    for q in (a, b):
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from omgclip.errors import OmgclipError, one_line

    try:
        return _run(args)
    except (OmgclipError, ValueError) as exc:
        p.error(one_line(str(exc)))


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "pack":
        print(f"wrote {pack_stage1(args.src, args.out, args.seed, args.fer, args.cache)}")
        return 0
    if args.cmd == "calibrate":
        return _calibrate(args)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.cmd == "pretrain":
        best = pretrain_stills(args.fer, args.out, epochs=args.epochs, lr=args.lr,
                               widths=[int(w) for w in args.widths.split(",")], stem=args.stem, seed=args.seed, cache=args.cache,
                               init=args.init, stop_after=args.stop_after, warmup_epochs=args.warmup_epochs,
                               ema_decay=args.ema, device=args.device, fit_seconds=args.fit_seconds,
                               keep=args.keep)
        print("best", json.dumps(best))
        return 0
    from omgclip.learn.checkpoint import save_weights

    if args.logit_adjust < 0 or (args.logit_adjust > 0 and not args.fer):
        raise ValueError(f"--logit-adjust {args.logit_adjust:g}: needs TAU >= 0, and --fer (the class prior "
                         "is FER2013 Training's)")
    net = finetune_ensemble(args.init, args.data, args.fer, exclude_groups=args.exclude_group, epochs=args.epochs,
                   seed=args.seed, cache=args.cache, log_every=1, blend=args.blend, lr=args.lr,
                   mixup=args.mixup, distill=args.distill, distill_weight=args.distill_weight, soup=args.soup,
                   ema=args.ema, video_zoom=args.video_zoom, lwf=args.lwf, min_block_gap=args.min_block_gap,
                   bn_recalibrate=args.bn_recalibrate, freeze_bn=args.freeze_bn)
    from omgclip.dataset.format import read_face_config

    face = read_face_config(args.data[0])
    meta = weights_meta(net, face, flip=args.flip, inits=[_short(i) for i in args.init],
                        recipe="omgclip.learn.transfer: FER2013 stills pretrain, then video blocks + FER stills",
                        finetune_epochs=args.epochs, soup=args.soup, ema=args.ema, blend=args.blend, lr=args.lr,
                        mixup=args.mixup, video_zoom=list(args.video_zoom), lwf=args.lwf,
                        min_block_gap=args.min_block_gap, bn_recalibrate=args.bn_recalibrate,
                        freeze_bn=args.freeze_bn, distill=Path(args.distill).name if args.distill else None,
                        distill_weight=args.distill_weight if args.distill else None,
                        excluded_groups=list(args.exclude_group))
    if args.logit_adjust > 0:
        prior = fer_stage2_prior(args.fer, args.cache)
        meta.update(video_logit_adjust=logit_adjustment(args.logit_adjust, prior), logit_adjust_tau=args.logit_adjust,
                    logit_adjust_prior=[round(float(v), 6) for v in prior])
    if args.temperature is not None:
        meta["temperature"] = dict(args.temperature)
    save_weights(args.out, net, meta, half=True)  # the bundled file: float16, half the size
    print(f"wrote {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from omgclip.errors import OmgclipError
    from omgclip.learn.checkpoint import default_checkpoint, rewrite_meta

    if args.video_proba and not args.data:
        raise OmgclipError("--video-proba needs --data (the dataset its blocks come from, for their labels)")
    if args.write and not (args.video_proba and (args.fer or args.cache)):
        raise OmgclipError("--write needs both temperatures: give --video-proba (with --data) and --fer")
    torch.set_num_threads(args.threads)
    fitted = fit_temperatures(args.video_proba, args.data, args.weights, args.fer, args.cache, args.row)
    for name, fit in fitted["fit"].items():
        b, a = fit["before"], fit["after"]
        unit = "blocks" if name == "video" else "photos"
        print(f"{name}: T {fitted[name]:.3f} on {fit['n']} {unit}; ECE {b['ece']:.3f} -> {a['ece']:.3f}, "
              f"NLL {b['nll']:.3f} -> {a['nll']:.3f}, mean confidence {b['confidence']:.3f} -> "
              f"{a['confidence']:.3f} (accuracy {b['accuracy']:.3f})")
    if args.write:
        path = args.weights or default_checkpoint()
        rewrite_meta(path, {"temperature": {"video": fitted["video"], "still": fitted["still"]}})
        print(f"wrote the temperatures into {path}'s meta")
    return 0


def parse_zoom_range(text: str) -> tuple[float, float]:
    """``--video-zoom LO,HI`` -> ``(lo, hi)`` (argparse reports a bad value in one line)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 < LO <= HI, got {text!r}")
    return lo, hi


def _short(path: str) -> str:
    """A run's file as the meta records it: its folder and name (``pretrain2_s1/best.pt``),
    which tells seeds apart without writing the machine's paths into shipped weights."""
    return "/".join(Path(path).parts[-2:])


if __name__ == "__main__":
    raise SystemExit(main())
