"""Who am I in a multi-process training run, and which run folder do we all share?

Three launchers start the processes of a DDP run, and each tells them apart differently:

* Lightning's own launcher (``omgclip train --devices N --strategy ddp``, and on each node
  with ``NODE_RANK``/``MASTER_ADDR`` set for ``--num-nodes``) re-runs the command with
  ``LOCAL_RANK`` set; the first process passes its run folder on in ``OMGCLIP_RUN_DIR``.
* ``torchrun`` starts every process itself with ``RANK`` and ``TORCHELASTIC_RUN_ID``
  (``--rdzv-id``; a fresh one with ``--standalone``).
* SLURM's ``srun`` starts every task itself with ``SLURM_PROCID`` and ``SLURM_JOB_ID``.

With the last two no process can tell the others its folder, so all derive the same one
from ``--run-name`` or from the launcher's job id.
"""

from __future__ import annotations

import os
from typing import Mapping


def external_launch(env: Mapping[str, str] = os.environ) -> bool:
    """True when torchrun or srun (with several tasks) started this process."""
    return "RANK" in env or (int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env)


def global_rank(env: Mapping[str, str] = os.environ) -> int:
    """This process's rank over the whole run (0 = the one that writes the run files)."""
    if "RANK" in env:
        return int(env["RANK"])
    if external_launch(env):
        return int(env["SLURM_PROCID"])
    return 0 if int(env.get("LOCAL_RANK", "0")) == 0 and int(env.get("NODE_RANK", "0")) == 0 else 1


def launch_id(env: Mapping[str, str] = os.environ) -> str | None:
    """An id every process of this launch shares, or None (torchrun without ``--rdzv-id``)."""
    if "RANK" in env:
        run_id = env.get("TORCHELASTIC_RUN_ID", "none")
        return None if run_id in ("", "none") else f"torchrun-{run_id[:8]}"
    if external_launch(env) and env.get("SLURM_JOB_ID"):
        return f"slurm-{env['SLURM_JOB_ID']}"
    return None
