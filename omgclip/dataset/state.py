"""Resume bookkeeping of ``build-dataset``: what is done, with what, and what failed.

Each utterance's done-marker (``.state/<split>/<key>.json``) records a *fingerprint* of
everything that decides its blocks: the source (the URL, or the local file's path, size and
modification time), start, end, label, group, split, ids, crop mode, stride, and the build's
content config. A marker counts as done only while the fingerprint still matches and all its
block files are there; otherwise the utterance is built again (its old blocks removed first).
A marker whose source could not be read at all (a missing or unreadable local file) is never
done: that source is checked again on every run.

URLs that could not be downloaded are recorded in ``.state/failed_urls.json`` and are not
requested again unless the build is asked to (``--retry-failed``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from omgclip.dataset import format as fmt
from omgclip.fsutil import atomic_write_json, to_jsonable

log = logging.getLogger(__name__)

#: bump when the meaning of a fingerprint changes (old markers are then rebuilt)
STATE_VERSION = 2
FAILED_URLS_FILE = "failed_urls.json"


def state_path(out: Path, utt) -> Path:
    return out / fmt.STATE_DIR / utt.split / f"{utt.key}.json"


def block_dir(out: Path, utt) -> Path:
    return out / fmt.BLOCKS_DIR / utt.split / utt.key


def _file_identity(path: str) -> list | None:
    """``[path, size, mtime_ns]`` of a local file, ``None`` when it cannot be seen."""
    try:
        st = os.stat(os.path.expanduser(path))
    except (OSError, ValueError):
        return None
    return [os.path.expanduser(path), st.st_size, st.st_mtime_ns]


def fingerprint(utt, stride: int, content: Mapping[str, Any], local_path: str | None) -> str:
    """A hash of everything that decides the blocks of ``utt`` (see the module doc).

    ``content``: the build config's content fields; ``local_path``: the file read for a
    local video source (``None`` for URLs, whose identity is the URL itself).
    """
    if utt.frame_paths:
        files = [_file_identity(p) for p in utt.frame_paths]
    else:
        files = [] if utt.is_url else [_file_identity(local_path or utt.source)]
    ident = {
        "version": STATE_VERSION, "source": utt.source, "files": files, "start": utt.start,
        "end": utt.end, "label": utt.label, "group": utt.group, "split": utt.split, "video": utt.video,
        "utterance": utt.utterance, "crop": utt.crop, "stride": int(stride), "content": to_jsonable(content),
    }
    text = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_state(out: Path, utt) -> dict | None:
    """The done-marker of ``utt``, or ``None`` when absent or unreadable."""
    try:
        state = json.loads(state_path(out, utt).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def is_done(out: Path, utt, fp: str) -> bool:
    """True when ``utt`` was finished with the same fingerprint and its blocks are all there."""
    state = read_state(out, utt)
    if state is None or state.get("fingerprint") != fp or state.get("retry"):
        return False
    rows = state.get("rows")
    return isinstance(rows, list) and all(isinstance(r, dict) and (out / str(r.get("path", ""))).is_file()
                                          for r in rows)


def discard(out: Path, utt) -> None:
    """Forget ``utt``: its marker first (so a kill now means "not done"), then its blocks."""
    state_path(out, utt).unlink(missing_ok=True)
    folder = block_dir(out, utt)
    # only a real folder inside OUT (never through a symlink to somewhere else)
    if folder.is_dir() and not folder.is_symlink() and folder.resolve().is_relative_to(out.resolve()):
        shutil.rmtree(folder, ignore_errors=True)


def discard_changed(out: Path, planned: Iterable[tuple[Any, str]]) -> int:
    """Discard every utterance whose marker exists but is not done with fingerprint ``fp``
    (changed row, source or config; missing blocks; an unreadable source). Returns how many."""
    n = 0
    for utt, fp in planned:
        if state_path(out, utt).exists() and not is_done(out, utt, fp):
            discard(out, utt)
            n += 1
    return n


def remove_stale_temps(out: Path) -> int:
    """Temp files a killed run left (``.name.XXXX.tmp``, never counted as done)."""
    stale = [p for d in (fmt.BLOCKS_DIR, fmt.STATE_DIR) for p in (out / d).rglob(".*.tmp")]
    stale += list(out.glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def load_failed_urls(out: Path) -> dict[str, str]:
    """URL -> reason of the downloads that failed in earlier runs."""
    try:
        saved = json.loads((out / fmt.STATE_DIR / FAILED_URLS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}


def save_failed_urls(out: Path, failed: Mapping[str, str]) -> None:
    atomic_write_json(out / fmt.STATE_DIR / FAILED_URLS_FILE, dict(sorted(failed.items())))


def check_config(now: Mapping[str, Any], out: Path, content_fields: Iterable[str]) -> None:
    """A dataset folder is built with one content config (``now``, as JSON types); refuse to
    mix two, and refuse a non-empty folder whose config is missing or damaged."""
    from omgclip.errors import OmgclipError

    if not out.is_dir() or not any(out.iterdir()):
        return
    saved_path = out / fmt.CONFIG_FILE
    if not saved_path.is_file():
        raise OmgclipError(f"--out {out} is not empty and has no {fmt.CONFIG_FILE}: not a dataset folder "
                           f"of build-dataset; choose a new or empty --out")
    try:
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict) or any(k not in saved for k in content_fields):
        raise OmgclipError(f"{saved_path} is damaged, so what {out} was built with is unknown; "
                           "choose another --out, or delete that folder to rebuild")
    changed = [k for k in content_fields if saved[k] != now[k]]
    if changed:
        raise OmgclipError(f"{out} was built with different {', '.join(changed)}; "
                           "use another --out, or delete that folder to rebuild")


def known_failures(sources: Iterable[str], out: Path, retry: bool) -> dict[str, str]:
    """Source -> reason for the URLs among ``sources`` that failed in an earlier run (none
    with ``retry``: they are requested again)."""
    recorded = {} if retry else load_failed_urls(out)
    known = {s: recorded[s] for s in sources if s in recorded}
    if known:
        log.info("%d URL(s) failed in an earlier run and are not requested again (--retry-failed "
                 "tries them)", len(known))
    return known


def record_failures(out: Path, fetched: Iterable[str], failed: Mapping[str, str]) -> None:
    """Remember this run's failed downloads and forget the sources ``fetched`` now (written
    only on a change). A task that failed for another reason (a crashed cluster worker) is
    not kept."""
    from omgclip.dataset.sources import is_url

    before = load_failed_urls(out)
    done = set(fetched)
    dead = {s: r for s, r in failed.items() if is_url(s) and not r.startswith("task failed")}
    now = {**{u: r for u, r in before.items() if u not in done}, **dead}
    if now != before:
        save_failed_urls(out, now)
