"""``omg:<split>``: the official OMG-Emotion manifests, fetched once and cached.

:func:`load_manifest` is the entry point for a manifest *spec*: a local CSV path, or
``omg:train`` / ``omg:validation`` / ``omg:test``, which is downloaded once (pinned to a
commit) into ``~/.cache/omgclip/manifests`` and then parsed by the pure
:func:`omgclip.dataset.manifest.read_manifest`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from omgclip.dataset.manifest import Manifest, _detect_format, read_manifest
from omgclip.dataset.manifest_cells import _SPLIT_ALIASES, _normalise_split_argument, _safe_part
from omgclip.dataset.sources import is_url
from omgclip.errors import OmgclipError
from omgclip.fsutil import atomic_write, expand_path

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/omgclip/manifests")

OMG_MANIFESTS: dict[str, str] = {
    "train": "https://raw.githubusercontent.com/knowledgetechnologyuhh/OMGEmotionChallenge/"
             "513f7d7fb2bed57cad12aadf6713291cc5f6c444/omg_TrainVideos.csv",
    "validation": "https://raw.githubusercontent.com/knowledgetechnologyuhh/OMGEmotionChallenge/"
                  "e4f6619bcdff2468e1d442cbc4f71084e6a7b279/omg_ValidationVideos.csv",
    "test": "https://raw.githubusercontent.com/knowledgetechnologyuhh/OMGEmotionChallenge/"
            "e70f0848608c54fa5becff89306cdc13daba26f5/omg_TestVideos_WithLabels.csv",
}
"""The official OMG-Emotion manifests (``omg:<split>``), pinned to a commit."""

def load_manifest(spec: str | os.PathLike, split: str | None = None,
                  cache_dir: str | Path | None = None) -> Manifest:
    """Load a manifest from a CSV path, or ``omg:train`` / ``omg:validation`` / ``omg:test``
    (downloaded once into ``cache_dir``, default ``~/.cache/omgclip/manifests``).

    ``split`` overrides the split taken from an OMG file's name, and is the default for own
    rows without a ``split`` value. Raises :class:`OmgclipError` for an unknown ``omg:`` name,
    a missing file, or a file that is not a manifest.
    """
    split = _normalise_split_argument(split)
    text_spec = os.fspath(spec)
    if text_spec.lower().startswith("omg:"):
        name = _omg_name(text_spec)
        path = fetch_omg_manifest(name, cache_dir)
        return read_manifest(path, split=split or name)
    return read_manifest(expand_path(text_spec, "--manifest"), split=split)


def fetch_omg_manifest(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return the cached copy of the official ``name`` manifest, downloading it on first use."""
    url = OMG_MANIFESTS[name]
    if not is_url(url):
        raise OmgclipError(f"omg:{name}: manifest URL is not http(s): {url}")
    folder = expand_path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR, "cache folder")
    path = folder / _cache_name(url)
    if path.is_file():
        log.debug("using cached manifest %s", path)
        return path
    log.info("downloading omg:%s manifest from %s", name, url)
    data = _http_get(url, what=f"omg:{name} manifest")
    try:
        header = next(csv.reader(io.StringIO(data.decode("utf-8-sig"))), [])
    except UnicodeDecodeError:
        header = []
    if _detect_format(header) != "omg":
        raise OmgclipError(f"omg:{name}: {url} did not return an OMG manifest CSV")
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))



def _omg_name(spec: str) -> str:
    name = spec.split(":", 1)[1].strip().lower()
    name = _SPLIT_ALIASES.get(name, name)
    if name not in OMG_MANIFESTS:
        raise OmgclipError(f"unknown manifest {spec!r}: use one of "
                           + ", ".join(f"omg:{k}" for k in OMG_MANIFESTS))
    return name


def _cache_name(url: str) -> str:
    """``omg_TrainVideos-<hash>.csv``: the URL's file name plus a hash of the whole URL, so a
    different pinned revision never reuses an older copy."""
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name or "manifest.csv"
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:10]
    stem, suffix = os.path.splitext(_safe_part(name))
    return f"{stem}-{digest}{suffix or '.csv'}"


def _http_get(url: str, *, what: str, timeout: float = 60.0) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "omgclip"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise OmgclipError(f"cannot download {what} from {url}: HTTP Error {exc.code}: {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise OmgclipError(f"cannot download {what} from {url}: {reason}") from None
