"""A built dataset's ``index.csv`` and block files, checked before anything reads them.

Every problem is a one-line :class:`~omgclip.errors.OmgclipError` that names the file and
the fix: a missing or damaged index, invalid labels, a block path that leaves the dataset
folder (``..``, absolute, or a symlink out), a block file that is missing, truncated, of
another dtype or of another shape than the rest (or than the model expects).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from omgclip.dataset.format import BLOCK_DTYPE, INDEX_FILE
from omgclip.errors import OmgclipError
from omgclip.labels import NUM_CLASSES, UNLABELED

#: index columns training and evaluation need (the others are informational)
REQUIRED_COLUMNS: tuple[str, ...] = ("block_id", "split", "group", "source", "utterance", "label", "path")
_BUILD_HINT = "build one with `omgclip build-dataset`"


def load_index(data_dir: str | os.PathLike, *, check_arrays: bool = True,
               expected_shape: Sequence[int] | None = None) -> pd.DataFrame:
    """Read ``DIR/index.csv`` and check it against the block files.

    Checks that the folder exists and holds an index with the needed columns and valid
    labels, that every listed block file exists, and (``check_arrays``) that every block's
    ``.npy`` header says uint8 of one shape ``(T, S, S)`` (only headers are read, so this is
    cheap), equal to ``expected_shape`` when given. Any problem raises :class:`OmgclipError`
    naming it and the fix. Returns the index with ``label`` as int and ``split``/``group``/
    ``source``/``utterance``/``path`` as str; ``frame.attrs['block_shape']`` holds the
    block shape (when checked) and ``frame.attrs['root']`` the dataset folder.
    """
    root = Path(data_dir)
    index_path = _index_path(root)
    frame = _read_index(index_path)
    _check_cells(frame, index_path)

    paths = _confined_paths(root, frame["path"], index_path)
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise OmgclipError(f"{index_path} lists {len(absent)} block file(s) that are missing (e.g. {absent[0]}); "
                           f"resume or rebuild the dataset with `omgclip build-dataset`")
    if check_arrays:
        want = tuple(int(v) for v in expected_shape) if expected_shape is not None else None
        shape = _check_block_headers(paths, want)
        frame.attrs["block_shape"] = shape
    frame.attrs["root"] = str(root)
    return frame


def _index_path(root: Path) -> Path:
    """``root/index.csv``, or an error that says why there is none (no folder, a file,
    an empty folder, an unfinished build)."""
    if not root.exists():
        raise OmgclipError(f"dataset folder {root} does not exist ({_BUILD_HINT})")
    if not root.is_dir():
        raise OmgclipError(f"{root} is not a folder: pass the dataset folder that holds {INDEX_FILE}")
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        if not any(root.iterdir()):
            raise OmgclipError(f"dataset folder {root} is empty ({_BUILD_HINT})")
        raise OmgclipError(f"{root} has no {INDEX_FILE}: not an omgclip dataset, or its build has not "
                           f"finished ({_BUILD_HINT}, or resume it)")
    return index_path


def _read_index(index_path: Path) -> pd.DataFrame:
    """The index as read, with the needed columns and at least one row."""
    try:
        frame = pd.read_csv(index_path, dtype={"split": str, "group": str, "source": str,
                                               "utterance": str, "video": str, "block_id": str,
                                               "path": str, "label_name": str},
                            keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise OmgclipError(f"{index_path} is empty ({_BUILD_HINT})") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise OmgclipError(f"{index_path} cannot be read as CSV ({_first_line(exc)}); rebuild the dataset") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise OmgclipError(f"{index_path} lacks column(s) {', '.join(missing)}: not an omgclip index "
                           f"or from an older version; rebuild the dataset with `omgclip build-dataset`")
    if frame.empty:
        raise OmgclipError(f"{index_path} lists no blocks ({_BUILD_HINT} from a manifest with usable videos)")
    return frame


def _check_cells(frame: pd.DataFrame, index_path: Path) -> None:
    """Valid labels (made int) and non-empty paths (text columns made str), in place."""
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | ~labels.isin(list(range(NUM_CLASSES)) + [UNLABELED])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise OmgclipError(f"{index_path} has {int(bad.sum())} row(s) with an invalid label (e.g. row {row + 2}: "
                           f"{_plain(frame['label'].iloc[row])}; expected {UNLABELED}..{NUM_CLASSES - 1}); rebuild the dataset")
    frame["label"] = labels.astype(np.int64)
    for col in ("split", "group", "source", "utterance", "path", "block_id"):
        frame[col] = frame[col].astype(str)
    if (frame["path"] == "").any():
        raise OmgclipError(f"{index_path} has rows with an empty path; rebuild the dataset")


def _plain(value) -> str:
    """A cell as the file shows it: ``9``, not ``np.int64(9)``; text quoted."""
    if isinstance(value, str):
        return repr(value)
    return str(value.item() if hasattr(value, "item") else value)


def _confined_paths(root: Path, relative: Iterable[str], index_path: Path) -> list[Path]:
    """``root / p`` for each index path, refusing any that leaves the dataset folder: absolute
    paths, ``..`` parts, and symlinks (of the file or a folder on the way) pointing outside."""
    import posixpath

    real_root = root.resolve()
    out = []
    for i, rel in enumerate(relative):
        parts = rel.replace("\\", "/").split("/")
        escapes = posixpath.isabs(rel) or os.path.isabs(rel) or ".." in parts or "\0" in rel
        path = root / rel
        if not escapes:
            try:
                escapes = not path.resolve().is_relative_to(real_root)
            except (OSError, RuntimeError, ValueError):  # a symlink loop, an odd name
                escapes = True
        if escapes:
            raise OmgclipError(f"{index_path} row {i + 2} points outside the dataset folder ({rel!r}); "
                               f"block paths must stay inside {root}: rebuild the dataset")
        out.append(path)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_block_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without reading the data. Raises
    ``ValueError`` when the file is shorter than its header says (truncated)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # rarer versions: let numpy parse it, memory-mapped (reads the header only)
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            shape, dtype = arr.shape, arr.dtype
            del arr
            return tuple(int(s) for s in shape), np.dtype(dtype)
        want = fh.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        have = os.fstat(fh.fileno()).st_size
    if have < want:
        raise ValueError(f"truncated: {have} bytes, its header says {want}")
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _check_block_headers(paths: Sequence[Path], want: tuple[int, ...] | None) -> tuple[int, ...]:
    ref = want
    for path in paths:
        try:
            shape, dtype = read_block_header(path)
        except (OSError, ValueError, EOFError) as exc:
            raise OmgclipError(f"block file {path} is not a readable .npy array ({_first_line(exc)}); "
                               f"delete it and resume the build") from None
        if dtype != np.dtype(BLOCK_DTYPE):
            raise OmgclipError(f"block file {path} holds {dtype}, expected {BLOCK_DTYPE}: not an omgclip "
                               f"block; rebuild the dataset")
        if len(shape) != 3 or shape[1] != shape[2]:
            raise OmgclipError(f"block file {path} has shape {shape}, expected (frames, size, size); "
                               f"rebuild the dataset")
        if ref is None:
            ref = shape
        elif shape != ref:
            what = "the model expects" if want is not None else "the first block has"
            raise OmgclipError(f"block file {path} has shape {shape} but {what} {ref}; "
                               + _rebuild_hint(shape, ref))
    assert ref is not None
    return tuple(ref)


def _rebuild_hint(shape: tuple[int, ...], ref: tuple[int, ...]) -> str:
    """Only options that exist: --block-len sets T; the crop size is fixed by the build."""
    if shape[1:] != ref[1:]:
        return (f"its faces are {shape[1]}x{shape[2]}, not {ref[1]}x{ref[2]} (the crop size is fixed "
                f"by the build): use a dataset built for this model")
    return f"rebuild the dataset with --block-len {ref[0]}"


def load_block(path: str, mmap_mode: str | None = "r") -> np.ndarray:
    """``np.load`` of one block, with a one-line error naming the file when it is damaged."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise OmgclipError(f"block file {path} cannot be read ({_first_line(exc)}); "
                           f"delete it and resume the build with `omgclip build-dataset`") from None
