"""What a source is: an http(s) URL, a local media file, or a list of frame images.

One home for these checks, used by the manifest parser, the downloader and predict's input
expansion. Pure: no I/O, no heavy imports.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

#: File names that omgclip treats as still images / videos (manifests, predict inputs).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".webm", ".flv", ".mov", ".m4v", ".mpg", ".mpeg",
                            ".wmv"})
#: Separates the frame images of one image-list source (``a.png;b.png;c.png``).
FRAME_SEPARATOR = ";"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def is_url(text: str) -> bool:
    """True only for ``http://`` or ``https://`` URLs with a host (and a valid port, if
    any). Never raises: ``http://[::1`` or ``http://[x]/a.mp4`` are simply not URLs."""
    if not isinstance(text, str):
        return False
    try:
        parsed = urllib.parse.urlsplit(text.strip())
        parsed.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parsed.scheme.lower() in ("http", "https") and bool(parsed.hostname)


def looks_like_url(text: str) -> bool:
    """True for text that starts like a URL (``scheme://``), valid or not."""
    return isinstance(text, str) and bool(re.match(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://", text))


def is_local_path(text: str) -> bool:
    """True for a value usable as a local file path: not a URL, not empty, not starting
    with ``-`` (an option to some tool), no other scheme (``ftp:``, ``file:``; a Windows
    drive letter is fine)."""
    if not isinstance(text, str):
        return False
    value = text.strip()
    if not value or value.startswith("-") or "\x00" in value or is_url(value):
        return False
    return not _SCHEME.match(value) or bool(_WINDOWS_DRIVE.match(value))


def is_image(path) -> bool:
    """True when ``path``'s suffix names a still image."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_media(path) -> bool:
    """True when ``path``'s suffix names a video or a still image."""
    suffix = Path(path).suffix.lower()
    return suffix in VIDEO_SUFFIXES or suffix in IMAGE_SUFFIXES


def frame_list(source: str) -> tuple[str, ...] | None:
    """The frame images of an image-list source (``a.png;b.png``; one image file counts as
    a one-frame list), or None for a video file or a URL."""
    if is_url(source):
        return None
    entries = tuple(e for e in source.split(FRAME_SEPARATOR) if e)
    if len(entries) > 1 or (entries and is_image(entries[0])):
        return entries
    return None
