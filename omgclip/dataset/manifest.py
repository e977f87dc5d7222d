"""Read and validate a manifest: the list of utterances (source, time span, label) to process.

Two CSV formats are recognised by their header:

* **OMG** (the OMG-Emotion challenge files):
  ``link,start,end,video,utterance,arousal,valence,EmotionMaxVote``; the test file has only
  the first five columns and is loaded as unlabeled (label -1).
* **own**: ``source,start,end,label`` plus optional ``group,split,id,crop``.

See ``data_manifests/README.md`` for the full description. Every malformed row becomes a
:class:`RowSkip` (with its line number and a short reason) and loading goes on; only a file
that cannot be read as a manifest at all raises :class:`~omgclip.errors.OmgclipError`.

This module is a pure parser: it reads one local file and never touches the network or
imports torch, dlib or OpenCV. ``omg:<split>`` specs are resolved (fetched once and cached)
by :func:`omgclip.dataset.omg.load_manifest`.
"""

from __future__ import annotations

import csv
import io
import logging
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, TypeVar

from omgclip.dataset.manifest_cells import (_RowError, _check_id, _check_no_times_for_frames, _id_stem,
                                            _is_safe_part, _normalise_split, _parse_label_cell,
                                            _parse_source, _parse_times, _safe_part, _split_from_name)
from omgclip.dataset.sources import frame_list, is_url
from omgclip.errors import OmgclipError
from omgclip.labels import UNLABELED

log = logging.getLogger(__name__)
T = TypeVar("T")

OMG_COLUMNS = ("link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote")
OMG_REQUIRED = OMG_COLUMNS[:5]
OMG_LABEL_COLUMN = "EmotionMaxVote"
OWN_REQUIRED = ("source", "start", "end", "label")
OWN_OPTIONAL = ("group", "split", "id", "crop")
CROP_MODES = ("detect", "none")

EXPECTED_COLUMNS_TEXT = (
    f"expected an OMG header '{','.join(OMG_COLUMNS)}' (the test file: first five columns) "
    f"or an own header '{','.join(OWN_REQUIRED)}' (optional: {','.join(OWN_OPTIONAL)})"
)

# --------------------------------------------------------------------------- data types

@dataclass(frozen=True)
class Utterance:
    """One labelled stretch of one source (a video URL, a local video, or a list of images)."""

    row: int
    source: str
    start: float | None
    end: float | None
    video: str
    utterance: str
    label: int
    group: str
    split: str
    crop: str = "detect"

    @property
    def key(self) -> str:
        """A unique, safe relative path like ``<video>/<utterance stem>``: made of
        ``[A-Za-z0-9._-]`` parts joined by ``/``, never ``..``, never absolute."""
        parts = [_safe_part(p) for p in (self.video, _id_stem(self.utterance)) if p]
        return "/".join(parts) or "_"

    @property
    def is_url(self) -> bool:
        return is_url(self.source)

    @property
    def frame_paths(self) -> tuple[str, ...] | None:
        """The image files of a frame-list source (``;``-separated), else ``None``."""
        return frame_list(self.source)


@dataclass(frozen=True)
class RowSkip:
    """A manifest row that was not used, with its 1-based line number (header = 1)."""

    row: int
    reason: str


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest: the usable utterances and the rows that were skipped."""

    path: str
    format: str
    utterances: tuple[Utterance, ...]
    skips: tuple[RowSkip, ...]

    @property
    def sources(self) -> list[str]:
        """Unique sources in first-seen order (one download per source, not per utterance)."""
        return list(dict.fromkeys(u.source for u in self.utterances))


# --------------------------------------------------------------------------- public API

def read_manifest(path: str | Path, split: str | None = None) -> Manifest:
    """Parse a manifest CSV file (either format); see :func:`omgclip.dataset.omg.load_manifest`."""
    path = Path(path)
    if not path.exists():
        raise OmgclipError(f"manifest not found: {path}")
    if not path.is_file():
        raise OmgclipError(f"manifest is not a file: {path}")
    rows = _read_rows(path)
    header = rows[0][1] if rows else []
    fmt = _detect_format(header)
    if fmt is None:
        raise OmgclipError(f"{path}: not a manifest ({EXPECTED_COLUMNS_TEXT})")
    columns = _column_index(header)
    base_dir = path.resolve().parent
    if fmt == "omg":
        default_split = split or _split_from_name(path.name) or (
            "train" if OMG_LABEL_COLUMN.lower() in columns else "test")
        utterances, skips = _parse_omg_rows(rows[1:], columns, base_dir, default_split)
    else:
        utterances, skips = _parse_own_rows(rows[1:], columns, base_dir, split or "train")
    manifest = Manifest(str(path), fmt, tuple(utterances), tuple(sorted(skips, key=lambda s: s.row)))
    log.info("%s: %d utterances from %d sources, %d rows skipped",
             path, len(manifest.utterances), len(manifest.sources), len(manifest.skips))
    return manifest


# --------------------------------------------------------------------------- reading

def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """All CSV records with the line number each starts on (the header is line 1)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OmgclipError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    if b"\x00" in raw[:65536]:
        raise OmgclipError(f"{path}: not a CSV text file ({EXPECTED_COLUMNS_TEXT})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OmgclipError(f"{path}: not UTF-8 CSV text ({EXPECTED_COLUMNS_TEXT})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    next_line = 1
    try:
        for record in reader:
            rows.append((next_line, record))
            next_line = reader.line_num + 1
    except csv.Error as exc:
        raise OmgclipError(f"{path}: unreadable CSV near line {next_line}: {exc}") from None
    return rows


def _detect_format(header: list[str]) -> str | None:
    names = {h.strip().lower() for h in header}
    if all(c.lower() in names for c in OMG_REQUIRED):
        return "omg"
    if all(c in names for c in OWN_REQUIRED):
        return "own"
    return None


def _column_index(header: list[str]) -> dict[str, int]:
    """Lower-cased column name -> position (first occurrence wins)."""
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name.strip().lower(), i)
    return index


def _cell(record: list[str], columns: dict[str, int], name: str) -> str:
    i = columns.get(name.lower())
    return record[i].strip() if i is not None and i < len(record) else ""


def _is_blank(record: list[str], columns: dict[str, int], names: tuple[str, ...]) -> bool:
    return all(not _cell(record, columns, n) for n in names)


# --------------------------------------------------------------------------- OMG rows

def _parse_omg_rows(rows: list[tuple[int, list[str]]], columns: dict[str, int], base_dir: Path,
                    split: str) -> tuple[list[Utterance], list[RowSkip]]:
    has_label = OMG_LABEL_COLUMN.lower() in columns
    identifying = OMG_REQUIRED + ((OMG_LABEL_COLUMN,) if has_label else ())
    seen = _SeenIds()

    def parse(row: int, record: list[str]) -> Utterance:
        utt = _omg_utterance(row, record, columns, base_dir, split, has_label)
        seen.claim(utt)
        return utt

    return _each_row(rows, columns, identifying, parse)


def _each_row(rows: list[tuple[int, list[str]]], columns: dict[str, int], identifying: tuple[str, ...],
              parse: Callable[[int, list[str]], T]) -> tuple[list[T], list[RowSkip]]:
    """``parse(row, record)`` for each non-blank row; a blank row or a ``_RowError`` becomes
    a :class:`RowSkip` with its reason."""
    parsed: list[T] = []
    skips: list[RowSkip] = []
    for row, record in rows:
        if _is_blank(record, columns, identifying):
            skips.append(RowSkip(row, "blank row"))
            continue
        try:
            parsed.append(parse(row, record))
        except _RowError as exc:
            skips.append(RowSkip(row, str(exc)))
    return parsed, skips


def _omg_utterance(row: int, record: list[str], columns: dict[str, int], base_dir: Path,
                   split: str, has_label: bool) -> Utterance:
    link = _cell(record, columns, "link")
    source = _parse_source(link, base_dir)
    start, end = _parse_times(_cell(record, columns, "start"), _cell(record, columns, "end"))
    _check_no_times_for_frames(source, start, end)
    video = _check_id(_cell(record, columns, "video"), required=False)
    utterance = _check_id(_cell(record, columns, "utterance"), required=True)
    label = _parse_label_cell(_cell(record, columns, OMG_LABEL_COLUMN)) if has_label else UNLABELED
    return Utterance(row=row, source=source, start=start, end=end, video=video,
                     utterance=utterance, label=label, group=source, split=split)


# --------------------------------------------------------------------------- own rows

@dataclass(frozen=True)
class _OwnRow:
    """An own-format row that passed validation but may still need a derived id."""

    row: int
    source: str
    start: float | None
    end: float | None
    explicit_id: str
    label: int
    group: str
    split: str
    crop: str


def _parse_own_rows(rows: list[tuple[int, list[str]]], columns: dict[str, int], base_dir: Path,
                    split: str) -> tuple[list[Utterance], list[RowSkip]]:
    identifying = OWN_REQUIRED + tuple(c for c in ("id",) if c in columns)
    parsed, skips = _each_row(rows, columns, identifying,
                              lambda row, record: _own_row(row, record, columns, base_dir, split))
    utterances, id_skips = _assign_own_ids(parsed)
    return utterances, skips + id_skips


def _own_row(row: int, record: list[str], columns: dict[str, int], base_dir: Path,
             default_split: str) -> _OwnRow:
    source = _parse_source(_cell(record, columns, "source"), base_dir)
    start, end = _parse_times(_cell(record, columns, "start"), _cell(record, columns, "end"))
    _check_no_times_for_frames(source, start, end)
    label = _parse_label_cell(_cell(record, columns, "label"))
    explicit_id = _check_id(_cell(record, columns, "id"), required=False)
    split_cell = _cell(record, columns, "split")
    split = _normalise_split(split_cell) if split_cell else default_split
    if not _is_safe_part(split):
        raise _RowError(f"unsafe split {split_cell!r}")
    crop = (_cell(record, columns, "crop") or "detect").lower()
    if crop not in CROP_MODES:
        raise _RowError(f"unknown crop {_cell(record, columns, 'crop')!r} (expected detect or none)")
    group = _cell(record, columns, "group") or source
    return _OwnRow(row, source, start, end, explicit_id, label, group, split, crop)


def _assign_own_ids(rows: list[_OwnRow]) -> tuple[list[Utterance], list[RowSkip]]:
    """Give each row its utterance id: the ``id`` column, else the source's stem (plus
    ``_row<N>`` when that stem is taken). Explicit ids are reserved first, so a derived id
    never steals one; the result depends only on the file's content."""
    reserved = {_safe_part(_id_stem(r.explicit_id)).casefold() for r in rows if r.explicit_id}
    seen = _SeenIds()
    utterances: list[Utterance] = []
    skips: list[RowSkip] = []
    for r in rows:
        utterance_id = r.explicit_id or _derived_id(r, reserved | seen.keys)
        utt = Utterance(row=r.row, source=r.source, start=r.start, end=r.end, video="",
                        utterance=utterance_id, label=r.label, group=r.group, split=r.split,
                        crop=r.crop)
        try:
            seen.claim(utt)
        except _RowError as exc:
            skips.append(RowSkip(r.row, str(exc)))
            continue
        utterances.append(utt)
    return utterances, skips


def _derived_id(row: _OwnRow, taken: set[str]) -> str:
    base = _safe_part(_source_stem(row.source))
    return base if base.casefold() not in taken else f"{base}_row{row.row}"


def _source_stem(source: str) -> str:
    """A readable name for a source: a file stem, a YouTube ``v=`` id, or a URL's last part."""
    frames = frame_list(source)
    if frames:
        return Path(frames[0]).stem
    if is_url(source):
        parsed = urllib.parse.urlsplit(source)
        video_ids = urllib.parse.parse_qs(parsed.query).get("v")
        if video_ids and video_ids[0]:
            return video_ids[0]
        last = PurePosixPath(urllib.parse.unquote(parsed.path)).name
        return _id_stem(last) or parsed.netloc
    return Path(source).stem or "source"


class _SeenIds:
    """Rejects a second utterance with the same (video, utterance) or the same key."""

    def __init__(self) -> None:
        self.pairs: set[tuple[str, str]] = set()
        self.keys: set[str] = set()

    def claim(self, utt: Utterance) -> None:
        pair = (utt.video, utt.utterance)
        key = utt.key.casefold()  # case-insensitive file systems would merge these
        if pair in self.pairs or key in self.keys:
            raise _RowError("duplicate utterance")
        self.pairs.add(pair)
        self.keys.add(key)
