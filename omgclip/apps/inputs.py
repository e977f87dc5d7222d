"""Predict's inputs and output paths.

* :func:`expand_inputs`: globs, folders, files and URLs -> sources, plus one-line errors for
  the inputs that name nothing usable (no match, a malformed URL, ``~nosuchuser``).
* :func:`plan_outputs`: every path predict will write, decided and checked **before** any
  work: each is a writable file path (not a folder, not under a file), none is one of the
  inputs, no two are the same file. With several inputs, ``out.mp4`` becomes
  ``out_<input>.mp4``, where ``<input>`` is the input's stem, with as many of its parent
  folders as it takes to tell inputs apart (``a/clip.mp4``, ``b/clip.mp4`` ->
  ``out_a_clip.mp4``, ``out_b_clip.mp4``).
"""

from __future__ import annotations

import glob
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from omgclip.dataset.sources import is_media, is_url, looks_like_url
from omgclip.errors import OmgclipError, one_line
from omgclip.fsutil import check_output_dir, check_output_file, expand_path, same_file

DEFAULT_CACHE_DIR = Path("~/.cache/omgclip/videos")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def expand_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand globs and folders; return (sources, one-line errors for inputs that name
    nothing usable). URLs pass through; missing plain paths pass through (probe reports
    them)."""
    sources: list[str] = []
    errors: list[str] = []
    for item in inputs:
        item = str(item)
        if is_url(item):
            sources.append(item)
            continue
        try:
            p = expand_path(item, "input")
        except OmgclipError as exc:
            errors.append(one_line(str(exc)))
            continue
        if p.exists() and p.is_dir():
            found = sorted(str(c) for c in p.iterdir() if c.is_file() and is_media(c))
            if not found:
                errors.append(f"{item}: folder holds no video or image files")
            sources += found
        elif not p.exists() and looks_like_url(item):
            scheme = item.strip().split(":", 1)[0].lower()
            errors.append(f"{item}: not a valid URL" if scheme in ("http", "https") else
                          f"{item}: only http(s) URLs can be downloaded")
        elif not p.exists() and glob.has_magic(item):
            found = sorted(m for m in glob.glob(str(p)) if Path(m).is_file())
            if not found:
                errors.append(f"{item}: no file matches")
            sources += found
        else:
            sources.append(item)
    seen: set[str] = set()  # one file named twice (a.mp4, ./a.mp4) runs once
    unique = [s for s in sources if not (_identity(s) in seen or seen.add(_identity(s)))]
    return unique, errors


def _identity(source: str) -> str:
    return source if is_url(source) else os.path.realpath(os.path.expanduser(source))


def resolve_source(source: str, cache_dir: str | None, progress: bool) -> tuple[Path, str]:
    """A local path for ``source`` (URLs are downloaded into the cache first) and the name
    its rows carry (the URL itself, or the path as given)."""
    if not is_url(source):
        return expand_path(source, "input"), source
    from omgclip.dataset.download import DownloadConfig, fetch_one

    cache = expand_path(cache_dir or DEFAULT_CACHE_DIR, "--cache-dir")
    try:
        path = fetch_one(source, DownloadConfig(out_dir=str(cache), progress=progress))
    except OmgclipError as exc:
        msg = one_line(str(exc))
        raise OmgclipError(msg if source in msg else f"{source}: {msg}") from None
    return Path(path), source


# ----------------------------------------------------------------------------- output paths
@dataclass(frozen=True)
class OutputPlan:
    """Every file one predict run writes: the rows file, and per source its annotation
    and timeline picture (``{source: path}``; empty when not asked for)."""

    out: Path | None = None
    annotate: dict[str, Path] = field(default_factory=dict)
    plot: dict[str, Path] = field(default_factory=dict)

    def items(self) -> Iterator[tuple[str, Path]]:
        """``(option, path)`` for every planned file."""
        if self.out is not None:
            yield "--out", self.out
        for option, paths in (("--annotate", self.annotate), ("--plot", self.plot)):
            for path in paths.values():
                yield option, path


def plan_outputs(sources: Sequence[str], several: bool, out: str | None, annotate: str | None,
                 plot: str | None, cache_dir: str | None = None) -> OutputPlan:
    """Decide and check every output path before any work (see the module doc). Raises
    ``OmgclipError`` with one line naming the option and the path."""
    tags = unique_tags(sources) if several else {}

    def per_input(target: str | None, option: str) -> dict[str, Path]:
        if not target:
            return {}
        base = check_output_file(target, option)
        if not several:
            return {s: base for s in sources}
        return {s: check_output_file(base.with_name(f"{base.stem}_{tags[s]}{base.suffix}"), option)
                for s in sources}

    plan = OutputPlan(out=check_output_file(out, "--out") if out else None,
                      annotate=per_input(annotate, "--annotate"), plot=per_input(plot, "--plot"))
    _check_distinct(plan)
    for source in sources:
        if not is_url(source):
            check_not_an_input(plan, expand_path(source, "input"))
    if cache_dir or any(is_url(s) for s in sources):
        check_output_dir(cache_dir or DEFAULT_CACHE_DIR, "--cache-dir")
    return plan


def check_not_an_input(plan: OutputPlan, path: Path) -> None:
    """Refuse a plan that would write over the input ``path`` (links and hard links
    included)."""
    for option, target in plan.items():
        if same_file(target, path):
            raise OmgclipError(f"{option} {target}: is the input {path}; it would be "
                               "overwritten (choose another name)")


def _check_distinct(plan: OutputPlan) -> None:
    seen: dict[str, str] = {}
    for option, target in plan.items():
        key = os.path.realpath(target)
        if key in seen:
            who = f"{seen[key]} and {option}" if seen[key] != option else f"two inputs' {option}"
            raise OmgclipError(f"{who} would both write {target}")
        seen[key] = option


def unique_tags(sources: Sequence[str]) -> dict[str, str]:
    """A short, file-name-safe tag per source, unique ignoring case: the stem, then as
    many parent folders (URL path parts) as it takes, then a counter."""
    parts = {s: _name_parts(s) for s in sources}
    depth = dict.fromkeys(sources, 1)

    def tag(s: str) -> str:
        return "_".join(reversed(parts[s][:depth[s]]))

    while True:
        groups: dict[str, list[str]] = {}
        for s in sources:
            groups.setdefault(tag(s).casefold(), []).append(s)
        grew = False
        for group in groups.values():
            for s in group if len(group) > 1 else ():
                if depth[s] < len(parts[s]):
                    depth[s] += 1
                    grew = True
        if not grew:
            break
    used: set[str] = set()
    out: dict[str, str] = {}
    for s in sources:
        name, n = tag(s), 1
        while name.casefold() in used:
            n += 1
            name = f"{tag(s)}_{n}"
        used.add(name.casefold())
        out[s] = name
    return out


def _name_parts(source: str) -> list[str]:
    """``[stem, parent, grandparent, ...]`` of a path or URL, each made file-name safe."""
    if is_url(source):
        url = urllib.parse.urlsplit(source)
        path = PurePosixPath(urllib.parse.unquote(url.path))
        video = urllib.parse.parse_qs(url.query).get("v")
        names = [video[0] if video and video[0] else path.stem]
        names += [p for p in reversed(path.parent.parts) if p != "/"] + [url.hostname or "url"]
    else:
        path = Path(os.path.abspath(expand_path(source, "input")))
        names = [path.stem] + [p.name for p in path.parents if p.name]
    safe = [_UNSAFE.sub("_", n).strip("._-")[:60] for n in names]
    return [n for n in safe if n] or ["input"]


def display_name(name: str) -> str:
    """A URL as is, a path by its file name."""
    return name if is_url(name) else Path(name).name
