#!/usr/bin/env python3
"""Choose stage 2's settings on validation people that no benchmark row scores.

``bench_accuracy.py`` scores M030, W009 and every CK+ subject; choosing the recipe by those
rows would make them optimistic. This script holds out the *other* video people instead --
CREMA-D actor 1001 and the three MEAD (EAMM) people, in two folds -- fine-tunes stage 2 from
the stage-1 weights on everyone else (M030, W009 and CK+ included, as in the shipped recipe)
for each candidate setting, and scores the fold models on the held-out people:

* block UAR and clip UAR pooled over the four validation people (7 classes between them;
  a clip's blocks vote by mean probability);
* FER2013 **PublicTest** accuracy (what stage 2 keeps of stage 1; PrivateTest is never read),
  on the images zoomed to the dataset's framing (``transfer.framing_zoom`` of its crop margin:
  1.15 for the default 0.15, as ``bench_accuracy`` scores our nets) and, as recorded before
  2026-12-04, on the images as given (``public_acc_as_given``);
* the selection score: the mean of those three numbers (``score``; ``score_as_given`` with the
  images as given, the score of the runs before 2026-12-04).

``--logit-adjust TAU`` (repeated) adds a row per candidate and TAU, on the same fold models:
the validation video probabilities with ``TAU x log`` of stage 2's class prior
(``transfer.stage2_prior``) taken from their logs (post-hoc logit adjustment); the stills,
and so the PublicTest part, are unchanged.

``--adapt-bn`` adds a row per candidate, on the same fold models: each validation person's
blocks scored after the video net's BatchNorm statistics are recomputed from that person's
own (unlabeled) blocks (test-time adaptation, ``transfer.adapted_to``); stills unchanged.

Beside each row: 95% intervals of its validation block UAR and clip UAR over the validation
clips (a cluster bootstrap, as ``bench_accuracy``'s MEAD rows), and, for every row after the
first, its difference from the first row on the same resamples (``vs_first``). With 10 clips
these say how little one run can tell. The validation blocks' probabilities of every row go to
an ``.npz`` beside the JSON (``block_id``, ``names``, ``proba (rows, N, 7)``), so rows of
different runs can be compared pair by pair later.

Every model is run as ``predict`` runs its weights file: one net with the test-time flip, an
ensemble (several ``--pretrained``) without; a candidate's ``"flip": true|false`` overrides it.

    python benchmarks/select_stage2.py --pretrained runs/default/pretrain2/best.pt \\
        --data runs/default/data_all --fer-cache runs/default/fer80.npz \\
        --candidate 'recipe={}' --candidate 'mixup 0.2={"mixup": 0.2}' \\
        [--json benchmarks/results/select_stage2.json]

A candidate is ``NAME=JSON``: keyword arguments of ``omgclip.learn.transfer.finetune``
(``lr``, ``mixup``, ``fer_batch_size``, ``blend``, ``soup``, ...); what a candidate does not
name is the recipe's (``finetune``'s defaults: ``transfer.FINETUNE_EPOCHS``, ``FINETUNE_LR``, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
VALIDATION_FOLDS = (("cremad-1001", "mead-eamm_w_c"), ("mead-eamm_m_b", "mead-eamm_m_d"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", required=True, action="append",
                   help="stage-1 weights (transfer pretrain's best.pt); repeated: the fold models are ensembles "
                        "of each one's fine-tuning (as `transfer finetune --init A --init B`)")
    p.add_argument("--data", required=True, help="the built MEAD + CREMA-D + CK+ dataset")
    p.add_argument("--fer", default=str(SHARED / "fer2013"))
    p.add_argument("--fer-cache", default=str(HERE / "results" / "fer80.npz"))
    p.add_argument("--candidate", action="append", required=True, metavar="NAME=JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed-offset", type=int, default=0,
                   help="added to each fold's seed (rerun the candidates on other seeds to see the noise)")
    p.add_argument("--logit-adjust", type=float, action="append", default=[], metavar="TAU",
                   help="also score each candidate's fold models with the video probabilities adjusted by "
                        "TAU x log(stage 2's class prior) (post-hoc logit adjustment; stills unchanged); "
                        "repeated: one row per TAU, on the same fold models")
    p.add_argument("--adapt-bn", action="store_true",
                   help="also score each candidate's fold models with the video net's BN statistics recomputed "
                        "from each validation person's own blocks (test-time adaptation; stills unchanged)")
    p.add_argument("--json", default=str(HERE / "results" / "select_stage2.json"))
    args = p.parse_args(argv)
    candidates = []
    for c in args.candidate:
        name, sep, kw = c.partition("=")
        if not sep:
            p.error(f"--candidate {c!r}: expected NAME=JSON")
        try:
            kwargs = json.loads(kw)
        except json.JSONDecodeError as exc:
            p.error(f"--candidate {c!r}: {exc}")
        candidates.append((name, kwargs))

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    from bench_accuracy import add_block_clip_intervals, clip_level, uar

    from omgclip.fsutil import atomic_write, atomic_write_text
    from omgclip.learn import transfer

    t_start = time.time()
    X, frame = transfer.load_blocks([args.data])
    Xf, yf, usage = transfer.load_fer(args.fer, args.fer_cache)
    pub = usage == "PublicTest"
    fer_zoom = transfer.dataset_framing_zoom(args.data)
    Xpub, ypub = Xf[pub], yf[pub]
    Xpub_framed = transfer.reframe(Xpub, fer_zoom)
    prior = transfer.stage2_prior(yf[usage == "Training"])
    val = frame["group"].isin([g for fold in VALIDATION_FOLDS for g in fold]).to_numpy()
    results = []
    val_proba: dict[str, np.ndarray] = {}  # each row's validation block probabilities (for the .npz)
    for name, kwargs in candidates:
        proba = np.full((len(frame), 7), np.nan, np.float32)
        proba_adapted = proba.copy()
        fer_acc, fer_acc_given = [], []
        kwargs = dict(kwargs)
        flip = kwargs.pop("flip", None)  # not finetune's: the test-time flip (default: as the weights file would ask)
        for k, held in enumerate(VALIDATION_FOLDS):
            net = transfer.finetune_ensemble(args.pretrained, [args.data], args.fer, exclude_groups=held,
                                             seed=k + 1 + args.seed_offset, cache=args.fer_cache, **kwargs)
            tta = transfer.asks_flip(net) if flip is None else flip
            m = frame["group"].isin(held).to_numpy()
            proba[m] = transfer.predict_proba(net, X[m], tta_flip=tta)
            if args.adapt_bn:
                proba_adapted[m] = transfer.predict_proba_adapted(net, X[m], frame["group"][m], tta_flip=tta)
            pp = transfer.predict_proba(net, Xpub_framed, 256, tta_flip=tta)
            fer_acc.append(float((pp.argmax(1) == ypub).mean()))
            pp = pp if fer_zoom == 1 else transfer.predict_proba(net, Xpub, 256, tta_flip=tta)
            fer_acc_given.append(float((pp.argmax(1) == ypub).mean()))
            print(f"[{time.time() - t_start:.0f}s] {name}: fold {k + 1} done", flush=True)
        f = frame[val].reset_index(drop=True)
        yb = f["label"].to_numpy()
        variants = [(name, None, False)] + [(f"{name} + logit adjust {tau:g}", tau, False)
                                            for tau in args.logit_adjust]
        variants += [(f"{name} + BN adapted per person", None, True)] if args.adapt_bn else []
        for label, tau, adapted in variants:
            pv = proba_adapted[val] if adapted else proba[val]
            pv = pv if tau is None else transfer.adjust_proba(pv, transfer.logit_adjustment(tau, prior))
            yc, pc = clip_level(f, pv)
            rec = {"candidate": label, "kwargs": kwargs, "adapt_bn": adapted,
                   "flip": flip, "logit_adjust": tau, "val_block_uar": uar(yb, pv),
                   "val_clip_uar": uar(yc, pc), "public_acc": float(np.mean(fer_acc)),
                   "public_acc_as_given": float(np.mean(fer_acc_given)),
                   "blocks": int(val.sum()), "clips": int(len(yc))}
            rec["score"] = (rec["val_block_uar"] + rec["val_clip_uar"] + rec["public_acc"]) / 3
            rec["score_as_given"] = (rec["val_block_uar"] + rec["val_clip_uar"] + rec["public_acc_as_given"]) / 3
            # how much the validation people can tell: 95% intervals over their clips, and the
            # difference from the first row on the same resamples (paired)
            val_proba[label] = pv
            first = results[0]["candidate"] if results else label
            ci: dict = {}
            add_block_clip_intervals(ci, f, {label: pv, first: val_proba[first]}, [first] if first != label else [],
                                     reference=label)
            rec["val_block_uar_ci"], rec["val_clip_uar_ci"] = ci["intervals"][label]
            if first != label:
                rec["vs_first"] = {"candidate": first, "block_uar": ci["vs_peers"][first][0],
                                   "clip_uar": ci["vs_peers"][first][1]}
            results.append(rec)
    print()
    print(f"| candidate | settings | val block UAR | val clip UAR | FER PublicTest (zoom {fer_zoom:.2f}; as given) "
          "| score (as given) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['candidate']} | `{json.dumps(r['kwargs'])}` | {r['val_block_uar']:.3f} | "
              f"{r['val_clip_uar']:.3f} | {r['public_acc']:.3f}; {r['public_acc_as_given']:.3f} | "
              f"{r['score']:.3f} ({r['score_as_given']:.3f}) |")
    print(f"\n95% intervals over the {results[0]['clips']} validation clips (block UAR; clip UAR), and the "
          "difference from the first row on the same resamples:\n")
    for r in results:
        line = (f"- {r['candidate']}: {r['val_block_uar_ci'][0]:.3f}-{r['val_block_uar_ci'][1]:.3f}; "
                f"{r['val_clip_uar_ci'][0]:.3f}-{r['val_clip_uar_ci'][1]:.3f}")
        if "vs_first" in r:
            d = r["vs_first"]
            line += "; minus the first: " + "; ".join(
                f"{d[k][0]:+.3f} ({d[k][1]:+.3f}, {d[k][2]:+.3f})" for k in ("block_uar", "clip_uar"))
        print(line)
    best = max(results, key=lambda r: r["score"])
    print(f"\nbest by the score: {best['candidate']}")
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "pretrained": args.pretrained, "seed_offset": args.seed_offset, "data": args.data,
           "fer_zoom": fer_zoom, "stage2_prior": [round(float(v), 6) for v in prior],
           "validation_folds": [list(f) for f in VALIDATION_FOLDS],
           "results": results, "best": best["candidate"], "seconds": round(time.time() - t_start)}
    atomic_write_text(args.json, json.dumps(out, indent=1))
    # the validation blocks' probabilities, for paired comparisons with other runs' rows
    npz = Path(args.json).with_suffix(".npz")
    names = list(val_proba)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, block_id=frame["block_id"][val].to_numpy().astype(str), names=np.array(names),
                                proba=np.stack([val_proba[n] for n in names]).astype(np.float32))

    atomic_write(npz, write)
    print(f"wrote {args.json} and {npz.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
