"""The build's worker pool: workers stop with their parent, busy or idle, without noise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _procs import children, kill_and_check_workers, wait_for

# one job returns at once (its worker then idles in the executor's queue), one sleeps
_SCRIPT = """
import time
from omgclip.dataset.pool import run_in_processes
for done in run_in_processes(time.sleep, [(0,), (120,)], workers=2):
    print("done", flush=True)
"""


def _workers(pid: int) -> list[int]:
    """The spawned pool workers among ``pid``'s children (not the resource tracker)."""
    found = []
    for kid in children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                found.append(kid)
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_busy_and_idle_workers_end_with_their_parent_without_a_traceback(how):
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "done"  # the quick job is back: one worker idles
        workers = wait_for(lambda: (lambda ws: ws if len(ws) == 2 else None)(_workers(proc.pid)), 30)
        kill_and_check_workers(proc, workers, how)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group, if anything
        except ProcessLookupError:
            pass
        proc.wait()


def test_a_second_signal_does_not_cut_a_jobs_clean_up_short(monkeypatch):
    """A worker in a job gets SIGTERM from its parent and then, when the parent is gone,
    SIGINT from its parent-watch: the first unwinds the job, the second is ignored so that
    the unwinding (which removes the job's temp files) is not broken off half-way."""
    from omgclip.dataset import pool

    monkeypatch.setattr(pool._WorkerState, "busy", True)
    monkeypatch.setattr(pool._WorkerState, "interrupted", False)
    with pytest.raises(KeyboardInterrupt):
        pool._interrupt(signal.SIGTERM, None)
    assert pool._interrupt(signal.SIGINT, None) is None


def test_an_interrupted_job_leaves_no_live_temp_file(tmp_path):
    """``_guarded``: a job interrupted with a temp file still live (its own clean-up cut
    short) ends the worker with 130 and the file removed."""
    code = ("import sys; from pathlib import Path; from omgclip.dataset import pool; from omgclip import fsutil\n"
            "def job(p):\n"
            "    tmp = fsutil.temp_path(p)\n"
            "    print(tmp, flush=True)\n"
            "    raise KeyboardInterrupt\n"
            f"pool._guarded(job, Path({str(tmp_path / 'out.npy')!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130, r.stderr
    tmp = Path(r.stdout.strip())
    assert tmp.parent == tmp_path and tmp.name.startswith(".out.npy.omgclip-") and not tmp.exists()
    assert list(tmp_path.iterdir()) == []
