"""Predict's output: rows as a DataFrame, smoothing, CSV/JSON files and the terminal table.

One row per (segment, face)::

    file, segment, start_s, end_s, start_frame, end_frame, track_id, label, confidence,
    p_anger ... p_surprise, detect_frac, x0, y0, x1, y1
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from omgclip.errors import OmgclipError
from omgclip.fsutil import atomic_write

TABLE_FILE_WIDTH = 28
OUT_SUFFIXES = (".csv", ".json")
BASE_COLUMNS = ("file", "segment", "start_s", "end_s", "start_frame", "end_frame", "track_id",
                "label", "confidence")
TAIL_COLUMNS = ("detect_frac", "x0", "y0", "x1", "y1")
INT_COLUMNS = ("segment", "start_frame", "end_frame", "track_id")


def prob_columns(labels: Sequence[str]) -> list[str]:
    return [f"p_{name}" for name in labels]


def columns(labels: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *prob_columns(labels), *TAIL_COLUMNS]


def to_frame(rows: list[dict], labels: Sequence[str]):
    """Row dicts -> a DataFrame with exactly :func:`columns`, typed (ints and floats)."""
    import pandas as pd

    cols = columns(labels)
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df:
            df[c] = math.nan
    df = df[cols]
    for c in INT_COLUMNS:
        df[c] = df[c].astype("int64")
    for c in cols:
        if c not in INT_COLUMNS and c not in ("file", "label"):
            df[c] = df[c].astype("float64")
    return df


def smooth_probs(df, n: int, prob_cols: Sequence[str]):
    """Each track's probabilities averaged over the ``n`` segments centred on each of its
    rows (segments where it has no row are skipped); labels and confidences follow."""
    if n <= 1 or df.empty:
        return df
    df = df.copy()
    cols = list(prob_cols)
    before, after = (n - 1) // 2, n // 2
    face = df["track_id"] >= 0
    for _, group in df[face].groupby(["file", "track_id"], sort=False):
        seg = group["segment"].to_numpy()
        probs = group[cols].to_numpy(dtype=float)
        out = np.empty_like(probs)
        for i, s in enumerate(seg):
            near = (seg >= s - before) & (seg <= s + after)
            out[i] = probs[near].mean(axis=0)
        df.loc[group.index, cols] = out
        k = out.argmax(axis=1)
        df.loc[group.index, "label"] = [c[2:] for c in np.asarray(cols)[k]]
        df.loc[group.index, "confidence"] = out[np.arange(len(out)), k]
    return df


def write_rows(rows, out: str | os.PathLike) -> Path:
    """Write rows atomically as CSV or JSON records (``pd.read_csv`` / ``pd.read_json``)."""

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        return atomic_write(out, lambda tmp: rows.to_csv(tmp, index=False))
    if suffix == ".json":
        return atomic_write(out, lambda tmp: rows.to_json(tmp, orient="records", indent=1,
                                                          double_precision=6))
    raise OmgclipError(f"--out must end in {' or '.join(OUT_SUFFIXES)}, got {out.name!r}")


def format_table(rows, max_rows: int | None = 200) -> str:
    """A readable terminal table (one line per row; long tables show their head and tail)
    followed by a per-face summary of the most frequent emotions."""
    if rows is None or len(rows) == 0:
        return "(no rows)"
    lines = [f"{'file':<{TABLE_FILE_WIDTH}} {'seg':>4} {'time (s)':>15} {'face':>4}  "
             f"{'label':<24} {'conf':>5}"]
    n = len(rows)
    if max_rows is None or n <= max_rows:
        lines += [_table_line(rows.iloc[i]) for i in range(n)]
    else:
        head = max_rows // 2
        lines += [_table_line(rows.iloc[i]) for i in range(head)]
        lines.append(f"... {n - 2 * head} more rows (write them all with --out) ...")
        lines += [_table_line(rows.iloc[i]) for i in range(n - head, n)]
    lines.append("")
    lines += summary_lines(rows)
    return "\n".join(lines)


def _table_line(r) -> str:
    file = str(r["file"])
    name = shorten(Path(file).name if "://" not in file else file, TABLE_FILE_WIDTH)
    face = "-" if r["track_id"] < 0 else str(int(r["track_id"]))
    conf = "" if math.isnan(r["confidence"]) else f"{r['confidence']:.2f}"
    span = f"{r['start_s']:7.2f}-{r['end_s']:<7.2f}"
    return (f"{name:<{TABLE_FILE_WIDTH}} {int(r['segment']):>4} {span:>15} {face:>4}  "
            f"{str(r['label']):<24} {conf:>5}")


def summary_lines(rows) -> list[str]:
    """Per input: segments, face tracks, faceless segments, each track's top emotions."""
    out = []
    for name, group in rows.groupby("file", sort=False):
        segments = group["segment"].nunique()
        faces = group[group["track_id"] >= 0]
        empty = segments - faces["segment"].nunique()
        out.append(f"{name}: {segments} segments, {faces['track_id'].nunique()} face track(s)"
                   + (f", {empty} segment(s) without a usable face" if empty else ""))
        for tid, tg in faces.groupby("track_id"):
            counts = tg["label"].value_counts()
            top = ", ".join(f"{lab} {cnt / len(tg):.0%}" for lab, cnt in counts.head(3).items())
            out.append(f"  face {int(tid)}: {len(tg)} segments: {top}")
    return out


def shorten(text: str, width: int) -> str:
    """``text`` cut from the left to ``width`` characters (``...`` marks the cut)."""
    return text if len(text) <= width else "..." + text[-(width - 3):]
