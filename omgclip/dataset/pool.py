"""Build jobs in worker processes that stop when they should.

* Ctrl-C, or SIGTERM to the parent: running jobs unwind (their temp files are removed by
  :func:`omgclip.fsutil.atomic_write`), queued jobs are cancelled, workers are ended.
* The parent killed outright (``kill -9``): each worker notices within 0.2 s that its
  parent is gone and stops the same way, instead of finishing its video unseen.
* A worker that is between jobs when told to stop just ends (exit 130): there is nothing
  to unwind, and an interrupt raised inside the executor's own loop would only print a
  traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator, Sequence

log = logging.getLogger(__name__)


def run_in_processes(fn: Callable, calls: Sequence[tuple], workers: int) -> Iterator:
    """``fn(*args)`` for each ``args`` in ``calls`` on ``workers`` spawned processes;
    yields each result as it completes (the first error is raised, after the others stop)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(),))
    try:
        futures = [pool.submit(_guarded, fn, *args) for args in calls]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown()


class _WorkerState:
    """Whether this worker process is inside a job (set by :func:`_guarded`)."""

    busy = False
    interrupted = False  #: the running job is unwinding from a signal


def _guarded(fn: Callable, *args):
    """``fn(*args)`` in a worker; interrupted (SIGTERM, SIGINT, parent gone), the job
    unwinds (its temp files are removed on the way, and any still listed as live are removed
    after it), then the worker ends right there instead of returning to the pool for more work."""
    _WorkerState.busy = True
    try:
        return fn(*args)
    except KeyboardInterrupt:
        from omgclip.fsutil import remove_live_temps

        remove_live_temps()
        os._exit(130)
    finally:
        _WorkerState.busy = False


def _worker_init(parent: int) -> None:
    """In each worker: SIGTERM unwinds like Ctrl-C, and the worker stops by itself when
    its parent is gone."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(0.2)
        # a real signal (not _thread.interrupt_main) also breaks a blocking read: the
        # running job unwinds and its temp files are removed
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="omgclip-parent-watch").start()


def _interrupt(signum, frame) -> None:
    """In a job: unwind it like Ctrl-C, once (a second signal -- the parent's SIGTERM, then
    the parent-watch's SIGINT when it is gone -- must not cut the first one's clean-up
    short and leave a temp file). Between jobs: end the worker quietly."""
    if not _WorkerState.busy:
        os._exit(130)
    if _WorkerState.interrupted:
        return
    _WorkerState.interrupted = True
    raise KeyboardInterrupt


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started, end the running jobs (SIGTERM: they unwind), and wait
    briefly for them. Only this pool's processes (the executor keeps no public list)."""
    children = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
