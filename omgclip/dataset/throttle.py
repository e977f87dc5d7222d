"""A per-host download throttle shared by every process that downloads into one folder.

Sites such as YouTube answer HTTP 429 to bursts of requests from one address. With
``--download-interval S`` a download from a host starts at least ``S`` seconds after the
previous start from that host, counted over every process that uses the same download
folder: the worker processes of one machine, or every machine of a cluster when the folder
is shared. The last start time lives in ``<folder>/.throttle/<host>``, under an exclusive
``flock`` (so across machines it needs a filesystem with working locks, and clocks in sync).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

THROTTLE_DIR = ".throttle"


def host_of(url: str) -> str:
    """The host part of ``url`` as a safe file name (``'www.youtube.com'``)."""
    host = (urlsplit(url).hostname or "unknown").lower()
    return re.sub(r"[^a-z0-9.-]", "_", host)


@dataclass(frozen=True)
class Turn:
    """One download start: the seconds waited for it and the start time recorded (epoch s)."""

    waited: float
    start: float


def wait_turn(folder: str | os.PathLike, host: str, interval: float) -> Turn:
    """Block until ``interval`` seconds have passed since the last recorded start for
    ``host`` in ``folder``, then record now (under the lock, so starts are spaced exactly)."""
    if interval <= 0:
        return Turn(0.0, time.time())
    import fcntl

    path = Path(folder) / THROTTLE_DIR / host
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="ascii") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
        fh.seek(0)
        try:
            last = float(fh.read().strip() or 0.0)
        except ValueError:
            last = 0.0
        waited = max(0.0, last + interval - time.time())
        if waited:
            log.debug("throttle: waiting %.2f s before the next download from %s", waited, host)
            time.sleep(waited)
        start = time.time()
        fh.seek(0)
        fh.truncate()
        fh.write(f"{start:.6f}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return Turn(waited, start)
