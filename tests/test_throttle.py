"""The per-host download throttle holds across processes that share a download folder."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from omgclip.dataset.build import BuildConfig
from omgclip.dataset.throttle import host_of, wait_turn
from omgclip.errors import OmgclipError


def _starts(folder: str, host: str, interval: float, n: int, queue) -> None:
    for _ in range(n):
        queue.put(wait_turn(folder, host, interval).start)  # the start recorded under the lock


def test_download_starts_from_one_host_are_spaced_across_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    interval = 0.25
    procs = [ctx.Process(target=_starts, args=(str(tmp_path), "www.youtube.com", interval, 3, queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    starts = sorted(queue.get(timeout=60) for _ in range(9))
    for p in procs:
        p.join(timeout=30)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= interval - 0.02, gaps
    # another host has its own turn: no wait
    assert wait_turn(tmp_path, "example.org", interval).waited == 0.0


def test_no_interval_no_wait_and_no_file(tmp_path):
    assert wait_turn(tmp_path, "h", 0.0).waited == 0.0
    assert not (tmp_path / ".throttle").exists()


def test_host_names_are_safe_file_names():
    assert host_of("https://www.YouTube.com/watch?v=x") == "www.youtube.com"
    assert host_of("http://127.0.0.1:8000/a.mp4") == "127.0.0.1"
    assert host_of("not a url") == "unknown"


def test_negative_interval_is_refused():
    with pytest.raises(OmgclipError, match="--download-interval"):
        BuildConfig(manifests=("m.csv",), out="x", download_interval=-1)
