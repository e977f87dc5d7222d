"""Where a training run writes: one run folder, shared by every DDP process.

``omgclip train`` (rank 0) makes ``OUT/<UTC time>-<model>`` or ``OUT/<run name>``; DDP worker
processes Lightning starts inherit its path through ``OMGCLIP_RUN_DIR``; under torchrun /
srun every process derives the same folder from ``--run-name`` or the launcher's job id.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from omgclip.errors import OmgclipError

_RUN_DIR_ENV = "OMGCLIP_RUN_DIR"


def _is_launcher_rank_zero() -> bool:
    """False in every DDP process but the first (see :mod:`omgclip.learn.launch`)."""
    from omgclip.learn.launch import global_rank

    return global_rank() == 0


def _make_run_dir(cfg) -> Path:
    from omgclip.learn.launch import external_launch

    if not _is_launcher_rank_zero() and os.environ.get(_RUN_DIR_ENV):
        return Path(os.environ[_RUN_DIR_ENV])  # DDP worker: the run folder rank 0 made
    if external_launch():
        return _shared_run_dir(cfg)
    out = Path(cfg.out)
    if cfg.run_name:
        if Path(cfg.run_name).name != cfg.run_name:
            raise OmgclipError(f"run name {cfg.run_name!r} must be a plain folder name")
        run_dir = out / cfg.run_name
        if run_dir.exists() and any(run_dir.iterdir()) and cfg.resume_from is None:
            raise OmgclipError(f"run folder {run_dir} already exists; choose another --run-name "
                               f"(or --resume-from its checkpoints/last.ckpt)")
    else:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_dir = out / f"{stamp}-{cfg.model}"
        n = 1
        while run_dir.exists():
            n += 1
            run_dir = out / f"{stamp}-{cfg.model}-{n}"
    return _mkdir(run_dir)


def _shared_run_dir(cfg) -> Path:
    """torchrun / srun: every process derives the same folder from --run-name or the job id
    (none refuses an existing folder: another process may have just made it)."""
    from omgclip.learn.launch import launch_id

    name = cfg.run_name or (f"{cfg.model}-{launch_id()}" if launch_id() else None)
    if name is None:
        raise OmgclipError("under torchrun without --rdzv-id, give --run-name: every process "
                           "must use the same run folder")
    if Path(name).name != name:
        raise OmgclipError(f"run name {name!r} must be a plain folder name")
    run_dir = Path(cfg.out) / name
    return _mkdir(run_dir)


def _mkdir(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OmgclipError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from None
    return run_dir
