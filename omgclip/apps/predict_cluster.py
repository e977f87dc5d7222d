"""``omgclip predict --scheduler ADDRESS``: one task per input on a Dask cluster.

Each worker loads the model once (per process) and labels whole videos; the rows come back
to the client, which orders them as the inputs were given and writes ``--out``. Local
inputs are sent as absolute paths and ``--annotate`` / ``--plot`` files are written by the
workers, so those paths (and ``--checkpoint``) must be on a filesystem the workers share
with the client; URLs are downloaded by the worker into its ``--cache-dir``. See
:mod:`omgclip.dataset.distributed` for addresses and retries.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

from omgclip.apps.inputs import OutputPlan
from omgclip.dataset.sources import is_url
from omgclip.errors import OmgclipError, one_line

log = logging.getLogger(__name__)

TASK_RETRIES = 2


@functools.lru_cache(maxsize=2)
def _worker_model(checkpoint: str | None, flip: bool = True):
    from omgclip.apps.predict import load_predict_model

    return load_predict_model(checkpoint, flip)


@functools.lru_cache(maxsize=2)
def _worker_gallery(people: str | None):
    from omgclip.faces.identity import Gallery

    return Gallery.from_dir(people) if people else None


def predict_task(source: str, cfg, plan):
    """On a worker: ``(rows DataFrame, stage times dict)`` of one input, or OmgclipError's
    one-line message as ``(None, message)`` (an expected failure is not retried). ``plan``:
    the client's checked output paths, keyed by the sources as sent."""
    from omgclip.apps.predict import _predict_one, face_config_for
    from omgclip.faces.detect import FaceDetector

    model = _worker_model(cfg.checkpoint, cfg.flip)
    face = face_config_for(model, cfg)
    try:
        df, result = _predict_one(source, model, cfg, face, FaceDetector(face, kind=cfg.detector),
                                  plan, _worker_gallery(cfg.people))
    except OmgclipError as exc:
        return None, one_line(str(exc))
    return df, {"file": result.file, "partial": result.partial, **result.times.as_dict()}


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().absolute()) if path else None


def predict_on_cluster(sources: list[str], cfg, several: bool, errors: list[str],
                       plan=None) -> tuple[list, list[dict]]:
    """(row frames, timings) in input order, as ``predict`` runs them here; a failed input
    is appended to ``errors`` (or raised, when it is the only input)."""
    frames_out: list = []
    timings: list[dict] = []
    for source, df, info in _run(sources, cfg, plan):
        if df is None:
            if not several:
                raise OmgclipError(info)
            log.warning("skipped %s", info)
            errors.append(info)
            continue
        frames_out.append(df)
        timings.append(info)
    return frames_out, timings


def _run(sources: list[str], cfg, plan) -> list[tuple[str, object, object]]:
    """``[(source, rows, times)]`` in input order; a failed input has ``rows`` None and
    its one-line reason as ``times``."""
    from omgclip.dataset.distributed import connect, map_tasks, parse_scheduler

    scheduler = parse_scheduler(cfg.scheduler)
    given = {(_absolute(s) if not is_url(s) else s): s for s in sources}
    plan = plan or OutputPlan()
    sent_plan = OutputPlan(  # the client's checked per-input names, keyed as the workers see them
        annotate={k: Path(plan.annotate[s]).absolute() for k, s in given.items() if s in plan.annotate},
        plot={k: Path(plan.plot[s]).absolute() for k, s in given.items() if s in plan.plot})
    worker_cfg = dataclasses.replace(cfg, progress=False, scheduler=None, out=None,
                                     annotate=_absolute(cfg.annotate), plot=_absolute(cfg.plot),
                                     checkpoint=_absolute(cfg.checkpoint),
                                     cache_dir=_absolute(cfg.cache_dir), people=_absolute(cfg.people))
    done: dict[str, tuple] = {}
    log.info("sending %d input(s) to %s", len(given), scheduler.describe())
    with connect(scheduler) as client:
        for o in map_tasks(client, predict_task, list(given), kwargs={"cfg": worker_cfg, "plan": sent_plan},
                           retries=TASK_RETRIES, name="predict", progress=cfg.progress):
            source = given[o.item]
            if o.error is not None:
                done[source] = (source, None, f"{source}: {o.error}")
                continue
            rows, info = o.result
            if rows is None:
                done[source] = (source, None, info if source in info else f"{source}: {info}")
                continue
            rows["file"] = source  # the name as given, not the absolute path sent
            done[source] = (source, rows, {**info, "file": source})
    return [done[s] for s in sources]
