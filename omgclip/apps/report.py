"""Predict's output: rows as a DataFrame, smoothing, CSV/JSON files and the terminal table.

One row per (segment, face)::

    file, segment, start_s, end_s, start_frame, end_frame, track_id, person_id, [person,]
    label, confidence, p_anger ... p_surprise, detect_frac, x0, y0, x1, y1

``person`` (the known person's name, or '') is there when predict had ``--people``.
Per person (:func:`person_summary`): the dominant emotion, the share of time in each
emotion and the segment counts; in the terminal summary and in the JSON file, which is
``{"rows": [...], "people": [...]}`` (:func:`read_rows` reads either file back).
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
                "person_id", "label", "confidence")
TAIL_COLUMNS = ("detect_frac", "x0", "y0", "x1", "y1")
INT_COLUMNS = ("segment", "start_frame", "end_frame", "track_id", "person_id")
TEXT_COLUMNS = ("file", "person", "label")


def prob_columns(labels: Sequence[str]) -> list[str]:
    return [f"p_{name}" for name in labels]


def columns(labels: Sequence[str], named: bool = False) -> list[str]:
    """The row columns; ``named``: with the ``person`` column (predict ``--people``)."""
    base = list(BASE_COLUMNS)
    if named:
        base.insert(base.index("person_id") + 1, "person")
    return [*base, *prob_columns(labels), *TAIL_COLUMNS]


def to_frame(rows: list[dict], labels: Sequence[str], named: bool = False):
    """Row dicts -> a DataFrame with exactly :func:`columns`, typed (ints and floats)."""
    import pandas as pd

    cols = columns(labels, named)
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df:
            df[c] = "" if c == "person" else (-1 if c == "person_id" else math.nan)
    df = df[cols]
    for c in INT_COLUMNS:
        df[c] = df[c].astype("int64")
    for c in cols:
        if c not in INT_COLUMNS and c not in TEXT_COLUMNS:
            df[c] = df[c].astype("float64")
    if named:
        df["person"] = df["person"].fillna("").astype(str)
    return df


def smooth_probs(df, n: int, prob_cols: Sequence[str]):
    """Each track's probabilities averaged over the ``n`` segments centred on each of its
    rows (segments where it has no row are skipped); labels and confidences follow."""
    if n <= 1 or df.empty:
        return df
    cols = list(prob_cols)
    df = df.astype({c: "float64" for c in cols})  # a copy; integer (one-hot) columns average too
    before, after = (n - 1) // 2, n // 2
    face = df["track_id"] >= 0
    for _, group in df[face].groupby(["file", "track_id"], sort=False):
        seg = group["segment"].to_numpy()
        probs = group[cols].to_numpy()
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
    """Write rows atomically: CSV (``pd.read_csv``), or JSON ``{"rows": [records],
    "people": person_summary(rows)}`` (``pd.DataFrame(json.load(f)["rows"])``)."""
    import json

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        return atomic_write(out, lambda tmp: rows.to_csv(tmp, index=False))
    if suffix == ".json":
        records = json.loads(rows.to_json(orient="records", double_precision=6))
        doc = {"rows": records, "people": person_summary(rows)}
        return atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))
    raise OmgclipError(f"--out must end in {' or '.join(OUT_SUFFIXES)}, got {out.name!r}")


def read_rows(path: str | os.PathLike):
    """Rows written by :func:`write_rows` (CSV, or either JSON form) as a DataFrame."""
    import json

    import pandas as pd

    path = Path(path)
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
        if "person" in df:
            df["person"] = df["person"].fillna("").astype(str)
        return df
    doc = json.loads(path.read_text())
    return pd.DataFrame(doc["rows"] if isinstance(doc, dict) else doc)


def format_table(rows, max_rows: int | None = 200) -> str:
    """A readable terminal table (one line per row; long tables show their head and tail)
    followed by a per-person summary of the emotions."""
    if rows is None or len(rows) == 0:
        return "(no rows)"
    lines = [f"{'file':<{TABLE_FILE_WIDTH}} {'seg':>4} {'time (s)':>15} {'face':>4} "
             f"{'person':<10}  {'label':<24} {'conf':>5}"]
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
    return (f"{name:<{TABLE_FILE_WIDTH}} {int(r['segment']):>4} {span:>15} {face:>4} "
            f"{shorten(_person_tag(r), 10):<10}  {str(r['label']):<24} {conf:>5}")


def _person_tag(r) -> str:
    pid = int(r["person_id"]) if "person_id" in r and r["person_id"] == r["person_id"] else -1
    name = r["person"] if "person" in r and isinstance(r["person"], str) else ""
    return name or (str(pid) if pid >= 0 else "-")


def summary_lines(rows) -> list[str]:
    """Per input: segments, persons and face tracks, faceless segments; then per person
    (per face track for rows without ``person_id``): segments, seconds, the dominant
    emotion and each emotion's share of the time (its segment count in brackets)."""
    out = []
    partial = {t.get("file") for t in rows.attrs.get("timings", ()) if t.get("partial")}
    people = {}
    for p in person_summary(rows):
        people.setdefault(p["file"], []).append(p)
    for name, group in rows.groupby("file", sort=False):
        segments = group["segment"].nunique()
        faces = group[group["track_id"] >= 0]
        empty = segments - faces["segment"].nunique()
        who = (f"{faces['person_id'].nunique()} person(s) in " if "person_id" in faces else "")
        out.append(f"{name}: {segments} segments, {who}{faces['track_id'].nunique()} face track(s)"
                   + (f", {empty} segment(s) without a usable face" if empty else "")
                   + (f"; PARTIAL: the file is truncated, labels end at frame "
                      f"{int(group['end_frame'].max())}" if name in partial else ""))
        for p in people.get(name, []):
            shares = ", ".join(f"{lab} {p['share'][lab]:.0%} ({p['segment_counts'][lab]})"
                               for lab in p["share"])
            out.append(f"  {p['who']}: {p['segments']} segments, {p['seconds']:.1f} s, "
                       f"{p['tracks']} track(s), mostly {p['dominant']}: {shares}")
    return out


def person_summary(rows) -> list[dict]:
    """One dict per (file, person) -- per (file, track) for rows without ``person_id``:
    ``file, person_id, person (name or ''), who, segments, tracks, seconds, dominant,
    share {label: share of the time}, segment_counts {label: n}``; emotions by share."""
    key = "person_id" if "person_id" in rows else "track_id"
    faces = rows[rows[key] >= 0]
    out = []
    for (file, pid), g in faces.groupby(["file", key], sort=False):
        secs = (g["end_s"] - g["start_s"]).clip(lower=0) if "end_s" in g else g["segment"] * 0
        weight = secs if float(secs.sum()) > 0 else secs * 0 + 1.0  # stills: by segments
        share = weight.groupby(g["label"]).sum() / float(weight.sum())
        share = share.sort_values(ascending=False, kind="stable")
        counts = g["label"].value_counts()
        names = [n for n in g.get("person", []) if isinstance(n, str) and n]
        label = "person" if key == "person_id" else "face"
        out.append({"file": str(file), "person_id" if key == "person_id" else "track_id": int(pid),
                    "person": names[0] if names else "",
                    "who": f"{label} {int(pid)}" + (f" ({names[0]})" if names else ""),
                    "segments": int(g["segment"].nunique()), "tracks": int(g["track_id"].nunique()),
                    "seconds": float(secs.sum()), "dominant": str(share.index[0]),
                    "share": {str(k): float(v) for k, v in share.items()},
                    "segment_counts": {str(k): int(counts[k]) for k in share.index}})
    return out


def shorten(text: str, width: int) -> str:
    """``text`` cut from the left to ``width`` characters (``...`` marks the cut)."""
    return text if len(text) <= width else "..." + text[-(width - 3):]
