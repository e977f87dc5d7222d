"""Per-video tasks on a Dask distributed cluster (``--scheduler ADDRESS``).

``build-dataset`` and ``predict`` are one independent task per source video, so they map
onto ``client.map`` with nothing shared between tasks but the output folder:

- ``ADDRESS`` is ``tcp://host:port`` (or ``tls://``, ``ws://``, ``wss://``) of a running
  ``dask scheduler``, or ``local`` / ``local:N`` for a :class:`distributed.LocalCluster` of N
  single-threaded worker processes on this machine (loopback only; default N = the CPUs).
- Workers write straight into the output folder, so it must be **one folder that the
  client and every worker see at the same path** (NFS, Lustre, CephFS, ...). This is
  checked before any task is sent. Every file is written under a temp name and then renamed,
  so a task that dies half-way leaves nothing that counts, and runs again elsewhere.
- A task that raises is re-run up to ``retries`` times; a task whose worker dies is re-run
  by the scheduler up to ``distributed.scheduler.allowed-failures`` times (Dask's default
  3; set here for ``local``). A task that still fails is reported with its reason.

Dask is an optional dependency (``pip install 'omgclip[dask]'``); it is imported only here,
and only when a scheduler is used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from omgclip.errors import OmgclipError, one_line
from omgclip.progress import progress_bar

log = logging.getLogger(__name__)

_REMOTE = re.compile(r"(tcp|tls|ws|wss)://[^\s/:]+:\d{1,5}/?")
_LOCAL = re.compile(r"local(?::(\d+))?")
#: worker deaths a task may cause before it is given up (LocalCluster; a remote scheduler
#: uses its own ``distributed.scheduler.allowed-failures``).
ALLOWED_FAILURES = 3
CONNECT_TIMEOUT_S = 30.0
WORKER_WAIT_S = 120.0


@dataclass(frozen=True)
class Scheduler:
    """Where tasks go: a remote scheduler ``address``, or a LocalCluster of ``local_workers``."""

    address: str | None = None
    local_workers: int | None = None

    def describe(self) -> str:
        return self.address or f"a local cluster of {self.local_workers} worker processes"


@dataclass(frozen=True)
class TaskOutcome:
    """One task's result, or the one-line reason it failed after its retries."""

    item: Any
    result: Any = None
    error: str | None = None


def parse_scheduler(text: str) -> Scheduler:
    """``'tcp://host:port'`` | ``'local'`` | ``'local:N'`` -> :class:`Scheduler` (or OmgclipError)."""
    value = (text or "").strip()
    local = _LOCAL.fullmatch(value)
    if local:
        n = int(local.group(1)) if local.group(1) else _cpu_count()
        if n < 1:
            raise OmgclipError(f"--scheduler {text!r}: a local cluster needs at least 1 worker")
        return Scheduler(local_workers=n)
    if _REMOTE.fullmatch(value):
        return Scheduler(address=value.rstrip("/"))
    raise OmgclipError(f"--scheduler {text!r} is not tcp://HOST:PORT (a running dask scheduler), "
                       "'local' or 'local:N'")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _require_dask():
    try:
        import distributed
    except ImportError:
        raise OmgclipError("--scheduler needs Dask: pip install 'omgclip[dask]'") from None
    return distributed


@contextmanager
def connect(scheduler: Scheduler) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler``, with at least one worker; a local
    cluster is started (every port on 127.0.0.1) and stopped with the block."""
    distributed = _require_dask()
    import dask

    if scheduler.address is None:
        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
            with distributed.LocalCluster(n_workers=scheduler.local_workers, threads_per_worker=1,
                                          processes=True, host="127.0.0.1",
                                          dashboard_address="127.0.0.1:0",
                                          silence_logs=logging.CRITICAL) as cluster:
                with distributed.Client(cluster) as client:
                    yield client
        return
    try:
        client = distributed.Client(scheduler.address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise OmgclipError(f"cannot reach the Dask scheduler at {scheduler.address}: "
                           f"{one_line(str(exc), type(exc).__name__)}") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise OmgclipError(f"the Dask scheduler at {scheduler.address} has no worker "
                               f"(waited {WORKER_WAIT_S:.0f} s)") from None
        yield client


def sees_token(path: str, token: str) -> bool:
    """On a worker: whether ``path`` holds ``token`` (the client wrote it there)."""
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def check_shared_folder(client, folder: Path) -> None:
    """Every worker must see ``folder`` as the client does (the same files at the same
    path); else OmgclipError naming the workers that do not."""
    from omgclip.fsutil import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    probe = folder / f".shared-check-{token}"
    atomic_write_text(probe, token)
    try:
        seen = client.run(sees_token, str(probe), token)
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise OmgclipError(f"{len(blind)} Dask worker(s) ({', '.join(blind[:3])}) do not see {folder}: "
                           "the output folder must be on a filesystem shared by the client and "
                           "every worker, at the same path")


def map_tasks(client, func: Callable, items: Sequence, *, kwargs: dict, retries: int,
              name: str, progress: bool, key: Callable[[Any], str] = str) -> Iterator[TaskOutcome]:
    """``func(item, **kwargs)`` for every item on the cluster, yielded as each finishes
    (with a progress bar). A task that still fails after ``retries`` re-runs (or after its
    workers died ``allowed-failures`` times) yields its error as one line, never raises."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    keys = [f"{name}-{run}-{i:06d}" for i in range(len(items))]
    futures = client.map(func, items, key=keys, retries=retries, pure=False, **kwargs)
    by_key = dict(zip(keys, items))
    with progress_bar(total=len(items), desc=name, unit="video", enabled=progress) as bar:
        for future in as_completed(futures):
            item = by_key[future.key]
            if future.status == "finished":
                yield TaskOutcome(item, result=future.result())
            else:
                try:
                    exc = future.exception()
                except (Exception, asyncio.CancelledError) as cancelled:  # the scheduler dropped it
                    exc = cancelled
                reason = f"task failed: {type(exc).__name__}: {one_line(str(exc), '')}".rstrip(": ")
                log.warning("%s: %s", key(item), reason)
                yield TaskOutcome(item, error=reason)
            future.release()
            bar.update()


def _known_work(job) -> float:
    """Seconds of video a job's utterances span, from the manifest (inf where an utterance
    is a whole video of unknown length, so that those go first too)."""
    spans = [(u.end - u.start) if u.start is not None and u.end is not None else float("inf")
             for u, _ in job.utterances]
    return sum(spans)


def run_on_cluster(jobs: list, cfg, out: str) -> list:
    """build-dataset's engine on Dask: :func:`omgclip.dataset.tasks.build_source` for each
    job; returns one ``SourceResult`` per job (a failed task's reason as its failure)."""
    from omgclip.dataset.tasks import SourceResult, build_source

    scheduler = parse_scheduler(cfg.scheduler)
    if not jobs:
        return []
    jobs = sorted(jobs, key=_known_work, reverse=True)  # long videos first: a short tail
    log.info("sending %d source(s) to %s", len(jobs), scheduler.describe())
    results = []
    with connect(scheduler) as client:
        check_shared_folder(client, Path(out))
        for outcome in map_tasks(client, build_source, jobs, kwargs={"cfg": cfg, "out": out, "threads": 1},
                                 retries=cfg.task_retries, name="build-source", progress=cfg.progress,
                                 key=lambda job: job.source):
            results.append(outcome.result if outcome.error is None
                           else SourceResult(outcome.item.source, failure=outcome.error))
    return results
