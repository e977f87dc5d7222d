"""The cell parsers of :mod:`omgclip.dataset.manifest`: sources (URL, local path, frame
list), times, labels, ids and split names. A bad cell raises :class:`_RowError`, which the
manifest reader turns into a :class:`~omgclip.dataset.manifest.RowSkip`; pure, no I/O
beyond checking that local paths are absolute and well-formed."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path, PurePosixPath

from omgclip.dataset.sources import (FRAME_SEPARATOR, IMAGE_SUFFIXES, VIDEO_SUFFIXES, frame_list,
                                     is_local_path, is_url)
from omgclip.errors import OmgclipError
from omgclip.fsutil import expand_path
from omgclip.labels import UNLABELED, parse_label

MAX_TIME_S = 1e6  #: start/end beyond this (11.6 days) are typos, and overflow frame maths

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "test": "test", "testing": "test",
}



class _RowError(ValueError):
    """A reason to skip one row."""



def _parse_source(value: str, base_dir: Path) -> str:
    """An http(s) URL as is; a local path made absolute (relative to the manifest's folder);
    a ``;``-separated image list with each entry made absolute."""
    if not value:
        raise _RowError("missing source")
    if FRAME_SEPARATOR in value:
        return _parseframe_list(value, base_dir)
    return _parse_single_source(value, base_dir)


def _parse_single_source(value: str, base_dir: Path) -> str:
    if is_url(value):
        return value
    if not is_local_path(value):
        raise _RowError(f"bad source {_short(value)!r} (not an http(s) URL or a path)")
    try:
        path = expand_path(value, "source")
    except OmgclipError as exc:
        raise _RowError(str(exc)) from None
    return os.path.normpath(path if path.is_absolute() else base_dir / path)


def _parseframe_list(value: str, base_dir: Path) -> str:
    entries = [e.strip() for e in value.split(FRAME_SEPARATOR) if e.strip()]
    if not entries:
        raise _RowError("missing source")
    paths = []
    for entry in entries:
        if is_url(entry):
            raise _RowError(f"frame-list entries must be local image files, got {_short(entry)!r}")
        path = _parse_single_source(entry, base_dir)
        if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
            raise _RowError(f"frame-list entry is not an image file: {_short(entry)!r}")
        paths.append(path)
    return FRAME_SEPARATOR.join(paths)


def _check_no_times_for_frames(source: str, start: float | None, end: float | None) -> None:
    if (start is not None or end is not None) and frame_list(source) is not None:
        raise _RowError("start/end given for a frame-list source")


def _parse_times(start_text: str, end_text: str) -> tuple[float | None, float | None]:
    """Both empty -> the whole source. Otherwise both must be finite numbers in
    ``[0, MAX_TIME_S]``, end > start."""
    if not start_text and not end_text:
        return None, None
    if not start_text or not end_text:
        raise _RowError("missing start" if not start_text else "missing end")
    start = _parse_time(start_text, "start")
    end = _parse_time(end_text, "end")
    if end <= start:
        raise _RowError("end <= start")
    return start, end


def _parse_time(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"non-numeric {name} {_short(text)!r}") from None
    if not math.isfinite(value):
        raise _RowError(f"non-numeric {name} {_short(text)!r}")
    if value < 0:
        raise _RowError(f"negative {name} {value:g}")
    if value > MAX_TIME_S:
        raise _RowError(f"{name} {value:g} s is past the 10^6 s limit (11.6 days)")
    return value


def _parse_label_cell(text: str) -> int:
    """A class name or index 0..6; ``-1`` marks an unlabeled row on purpose."""
    if not text:
        raise _RowError("missing label")
    if text.strip() in ("-1", "-1.0"):
        return UNLABELED
    try:
        return parse_label(text)
    except ValueError:
        raise _RowError(f"unknown label {_short(text)!r}") from None


def _check_id(value: str, *, required: bool) -> str:
    """Accept an id usable as one path component (other odd characters are replaced in
    :attr:`Utterance.key`); reject one that could leave the output folder."""
    if not value:
        if required:
            raise _RowError("missing utterance id")
        return ""
    if ("/" in value or "\\" in value or ":" in value or value in (".", "..")
            or any(ord(c) < 32 for c in value)):
        raise _RowError(f"unsafe id {_short(value)!r}")
    return value


def _safe_part(text: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]``; never empty, ``.`` or ``..``."""
    part = _SAFE_CHARS.sub("_", text.strip())
    if part.strip(".") == "":
        part = part.replace(".", "_") or "_"
    return part


def _is_safe_part(text: str) -> bool:
    return bool(text) and _safe_part(text) == text


def _id_stem(utterance: str) -> str:
    """``utterance_4.mp4`` -> ``utterance_4``; only known video/image suffixes are dropped."""
    suffix = PurePosixPath(utterance).suffix.lower()
    if suffix in VIDEO_SUFFIXES or suffix in IMAGE_SUFFIXES:
        return utterance[: -len(suffix)]
    return utterance


# --------------------------------------------------------------------------- splits

def _normalise_split(value: str) -> str:
    text = value.strip()
    return _SPLIT_ALIASES.get(text.lower(), text)


def _normalise_split_argument(split: str | None) -> str | None:
    if split is None or not split.strip():
        return None
    value = _normalise_split(split)
    if not _is_safe_part(value):
        raise OmgclipError(f"invalid split name {split!r} (use letters, digits, '.', '_', '-')")
    return value


def _split_from_name(filename: str) -> str | None:
    """``omg_TrainVideos.csv`` -> ``train``: the one split word among the name's words."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", Path(filename).stem)
    found = {_SPLIT_ALIASES[w.lower()] for w in words if w.lower() in _SPLIT_ALIASES}
    return found.pop() if len(found) == 1 else None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
