"""Predict's inputs: globs, folders, files and URLs -> local files, and per-input output names."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Sequence

from omgclip.dataset.sources import is_media, is_url
from omgclip.errors import OmgclipError, one_line

DEFAULT_CACHE_DIR = Path("~/.cache/omgclip/videos")


def expand_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand globs and folders; return (sources, one-line errors for inputs that match
    nothing). URLs pass through; missing plain paths pass through (probe reports them)."""
    sources: list[str] = []
    errors: list[str] = []
    for item in inputs:
        item = str(item)
        if is_url(item):
            sources.append(item)
            continue
        p = Path(item).expanduser()
        if p.exists() and p.is_dir():
            found = sorted(str(c) for c in p.iterdir() if c.is_file() and is_media(c))
            if not found:
                errors.append(f"{item}: folder holds no video or image files")
            sources += found
        elif not p.exists() and glob.has_magic(item):
            found = sorted(m for m in glob.glob(str(p)) if Path(m).is_file())
            if not found:
                errors.append(f"{item}: no file matches")
            sources += found
        elif "://" in item:
            errors.append(f"{item}: only http(s) URLs can be downloaded")
        else:
            sources.append(item)
    seen: set[str] = set()
    unique = [s for s in sources if not (s in seen or seen.add(s))]
    return unique, errors


def resolve_source(source: str, cache_dir: str | None, progress: bool) -> tuple[Path, str]:
    """A local path for ``source`` (URLs are downloaded into the cache first) and the name
    its rows carry (the URL itself, or the path as given)."""
    if not is_url(source):
        return Path(source).expanduser(), source
    from omgclip.dataset.download import DownloadConfig, fetch_one

    cache = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
    try:
        path = fetch_one(source, DownloadConfig(out_dir=str(cache), progress=progress))
    except OmgclipError as exc:
        msg = one_line(str(exc))
        raise OmgclipError(msg if source in msg else f"{source}: {msg}") from None
    return Path(path), source


def per_input_path(target: str, source: Path, several: bool) -> Path:
    """With several inputs, ``out.mp4`` becomes ``out_<input stem>.mp4`` for each."""
    target = Path(target).expanduser()
    if not several:
        return target
    return target.with_name(f"{target.stem}_{source.stem}{target.suffix}")


def display_name(name: str) -> str:
    """A URL as is, a path by its file name."""
    return name if is_url(name) else Path(name).name
