"""Build jobs in worker processes that stop when they should.

* Ctrl-C, or SIGTERM to the parent: running jobs unwind (their temp files are removed by
  :func:`omgclip.fsutil.atomic_write`), queued jobs are cancelled, workers are ended.
* The parent killed outright (``kill -9``): each worker notices within half a second that
  its parent is gone and stops the same way, instead of finishing its video unseen.
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
        futures = [pool.submit(fn, *args) for args in calls]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown()


def _worker_init(parent: int) -> None:
    """In each worker: SIGTERM unwinds like Ctrl-C, and the worker stops by itself when
    its parent is gone."""
    signal.signal(signal.SIGTERM, _raise_interrupt)

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        # a real signal (not _thread.interrupt_main) also breaks a blocking read: the
        # running job unwinds and its temp files are removed
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="omgclip-parent-watch").start()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started, end the running jobs (SIGTERM: they unwind), and wait
    briefly for them."""
    import multiprocessing

    pool.shutdown(wait=False, cancel_futures=True)
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
