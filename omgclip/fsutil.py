"""File-system helpers: atomic writes, temporary files beside their target, output checks.

* A file is either absent, the old one, or complete: it is written under a temporary name
  in its own folder, fsynced, then renamed over the target.
* Temporary names carry a tag (``.<name>.omgclip-<host>-<pid>-<random><suffix>``). Ctrl-C
  and SIGTERM (inside :func:`sigterm_raises`) remove them on the way out; after ``kill -9``
  the first write into that folder by a later run removes those whose process is gone.
* Output paths are checked before the work (:func:`check_output_file`,
  :func:`check_output_dir`): a folder where a file is wanted, a path under a file, an
  unwritable folder are one-line errors, not a failure after minutes of work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import os
import re
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from omgclip.errors import OmgclipError, Terminated

log = logging.getLogger(__name__)

_TAG = "omgclip"
_TEMP_NAME = re.compile(r"^\..*\.omgclip-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[a-z0-9_]+(\.[^/]*)?$")
_swept: set[str] = set()
_swept_lock = threading.Lock()
_live: set[str] = set()  # temporary files of this process not yet committed or discarded
_live_lock = threading.Lock()


# ----------------------------------------------------------------------------- temporary files
@functools.lru_cache(maxsize=1)
def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_path(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """Create (empty, usual permissions) and return a tagged temporary file beside ``path``.

    The caller renames it over ``path`` (:func:`commit_temp`) or removes it
    (:func:`discard_temp`). Until then it is listed as live, so that an interrupt anywhere
    (even before the caller's ``try``) removes it (see :func:`sigterm_raises`). ``suffix``
    lets tools that pick a format from the name (OpenCV's video writer) see the right one.
    """
    path = Path(path)
    sweep_stale_temps(path.parent)
    prefix = f".{path.name[:80]}.{_TAG}-{_host_tag()}-{os.getpid()}-"
    with _signals_held():
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        with _live_lock:
            _live.add(name)
    os.close(fd)
    os.chmod(name, _file_mode())  # mkstemp makes 0600; give the file the usual permissions
    return Path(name)


def discard_temp(tmp: str | os.PathLike) -> None:
    """Remove a temporary file made by :func:`temp_path` (no error if it is gone)."""
    with _live_lock:
        _live.discard(os.fspath(tmp))
    Path(tmp).unlink(missing_ok=True)


def remove_live_temps() -> int:
    """Remove every temporary file of this process that was neither committed nor
    discarded (an interrupt came in between). Returns how many were removed."""
    with _live_lock:
        names = list(_live)
        _live.clear()
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return len(names)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for a few lines (delivered right after), in the main thread."""
    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def sweep_stale_temps(folder: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Remove this host's tagged temporary files in ``folder`` whose process has ended
    (left by ``kill -9`` or a power cut). Runs once per folder per process unless ``force``.
    Returns the removed paths."""
    folder = Path(folder)
    key = os.path.abspath(folder)
    with _swept_lock:
        if key in _swept and not force:
            return []
        _swept.add(key)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    host = _host_tag()
    for entry in entries:
        m = _TEMP_NAME.match(entry.name) if entry.name.startswith(".") else None
        if m is None or m["host"] != host or _pid_alive(int(m["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    if removed:
        log.info("removed %d temporary file(s) left in %s by an interrupted run", len(removed),
                 folder)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or an odd pid): leave its files alone
    return True


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """0666 less the process umask (read once: reading it means setting it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def commit_temp(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """fsync ``tmp`` and rename it over ``path`` (same folder)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    with _live_lock:
        _live.discard(os.fspath(tmp))
    return Path(path)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`~omgclip.errors.Terminated` (a
    ``KeyboardInterrupt``) in the main thread, so ``finally`` blocks run as for Ctrl-C; a
    block left by any exception removes this process's live temporary files. Outside the
    main thread only the latter."""
    if threading.current_thread() is not threading.main_thread():
        try:
            yield
        except BaseException:
            remove_live_temps()
            raise
        return

    def handler(signum, frame):
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except BaseException:
        remove_live_temps()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- atomic writes
def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, fsync it, then rename it
    over ``path``. On any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        writer(tmp)
        commit_temp(tmp, path)
    except BaseException:
        discard_temp(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_save_npy(path: str | os.PathLike, array) -> Path:
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return atomic_write(path, write)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, tuples and numpy scalars to plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj


# ----------------------------------------------------------------------------- paths
def expand_path(text: str | os.PathLike, what: str = "path") -> Path:
    """``Path(text).expanduser()``, with ``~nosuchuser/...`` as a one-line error."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise OmgclipError(f"{what} {os.fspath(text)!r}: '~' names no known user or home "
                           "folder") from None


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work, that a file can be written at ``path`` (created with its
    folders, or replaced). Returns the expanded path; raises ``OmgclipError``."""
    p = expand_path(path, option)
    if p.is_dir():
        raise OmgclipError(f"{option} {p}: is a folder; give a file name")
    if p.exists() and not p.is_file():
        raise OmgclipError(f"{option} {p}: exists and is not a regular file")
    _check_creatable_folder(p.parent, option, p)
    return p


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work, that ``path`` is (or can be made) a writable folder."""
    p = expand_path(path, option)
    if p.exists() and not p.is_dir():
        raise OmgclipError(f"{option} {p}: is a file, not a folder")
    _check_creatable_folder(p, option, p)
    return p


def _check_creatable_folder(folder: Path, option: str, shown: Path) -> None:
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OmgclipError(f"{option} {shown}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OmgclipError(f"{option} {shown}: cannot write in {existing} (permission denied)")
    if existing == Path(os.path.abspath(folder)):
        _probe_write(existing, option, shown)


def _probe_write(folder: Path, option: str, shown: Path) -> None:
    """Create and remove a temporary file: ``os.access`` says yes to root on anything but a
    read-only mount, and nothing on full disks or odd mounts."""
    try:
        discard_temp(temp_path(folder / "probe"))
    except OSError as exc:
        reason = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (
            exc.strerror or str(exc))
        raise OmgclipError(f"{option} {shown}: cannot write in {folder} ({reason})") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file (links and ``..`` included), or the
    same not-yet-existing path."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False
