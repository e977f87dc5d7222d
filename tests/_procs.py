"""Small helpers for tests that run real processes: wait for a condition, stop a process,
drop root's power to read any file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest


def wait_for(pred, timeout: float = 60.0):
    """``pred()``'s first truthy value, polled every 5 ms; AssertionError after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = pred()
        if found:
            return found
        time.sleep(0.005)
    raise AssertionError("timed out waiting")


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not ended within ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root reads anything)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_and_check_workers(proc: subprocess.Popen, workers: list[int], how: str) -> None:
    """Send ``how`` ("SIGKILL", "SIGTERM") to ``proc``; assert that its ``workers`` end
    within 15 s of it and that nothing it printed to stderr (a pipe) is a traceback."""
    os.kill(proc.pid, getattr(signal, how))
    proc.wait(timeout=60)
    end = time.time() + 15
    while time.time() < end and any(alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if alive(w)], "workers outlived their parent"
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr, stderr
