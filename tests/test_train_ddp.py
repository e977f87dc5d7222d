"""Training with DDP: two CPU processes (gloo) through ``omgclip train --devices 2 --strategy
ddp``, the same command line that spreads training over GPUs and nodes.

Loopback only: torch's rendezvous store would listen on every interface, so the test hosts
the store itself on 127.0.0.1 (as torchrun's agent does) and the ranks join it as clients;
gloo is kept on ``lo``."""

from __future__ import annotations

import datetime
import json
import math
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch

from omgclip.learn.checkpoint import load_model
from test_data import make_dataset


@pytest.fixture
def loopback_store():
    """A c10d TCPStore listening on 127.0.0.1 (a free port); the environment that makes the
    DDP ranks use it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    store = torch.distributed.TCPStore("127.0.0.1", port, 2, True, datetime.timedelta(seconds=120),
                                       wait_for_workers=False, master_listen_fd=sock.detach(),
                                       use_libuv=False)
    yield {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True",
           "GLOO_SOCKET_IFNAME": "lo"}
    del store


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_process_cpu_ddp_splits_the_data_and_writes_one_run(tmp_path, loopback_store):
    index = make_dataset(tmp_path / "ds", groups=8, utterances_per_group=2, blocks_per_utterance=3,
                         val_groups=(0, 5))
    batch = 4
    command = [sys.executable, "-m", "omgclip", "train", "--data", str(tmp_path / "ds"),
               "--out", str(tmp_path / "runs"), "--run-name", "ddp", "--epochs", "2",
               "--batch-size", str(batch), "--workers", "0", "--val-split", "manifest",
               "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **loopback_store})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stderr + done.stdout
    run = tmp_path / "runs" / "ddp"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp"]  # rank 1 made no run folder
    # each rank sees half of the training blocks per epoch (DistributedSampler; the loader
    # drops a last short batch): 36 blocks -> 18 per rank -> 4 steps, not 9 as on one process
    n_train = int((index.split == "train").sum())
    steps_per_epoch = math.ceil(n_train / 2) // batch
    assert steps_per_epoch < n_train // batch
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    assert len(metrics["train_loss"].dropna()) == 2
    assert metrics["step"].max() == 2 * steps_per_epoch - 1
    result = json.loads((run / "result.json").read_text())
    assert load_model(result["best_weights"]).model_name == "r2plus1d"


@pytest.mark.parametrize("env, rank, run_id", [
    ({}, 0, None),
    ({"LOCAL_RANK": "1"}, 1, None),                                              # Lightning's launcher
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1, None),
    ({"RANK": "3", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "5f0c2a9e-77"}, 3, "torchrun-5f0c2a9e"),
    ({"RANK": "0", "TORCHELASTIC_RUN_ID": "none"}, 0, None),                    # torchrun, no --rdzv-id
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_JOB_ID": "4242"}, 5, "slurm-4242"),
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_JOB_ID": "4242"}, 0, None),  # plain sbatch
])
def test_rank_and_shared_run_id_from_each_launcher(env, rank, run_id):
    from omgclip.learn.launch import global_rank, launch_id

    assert global_rank(env) == rank
    assert launch_id(env) == run_id


def test_torchrun_ranks_share_one_run_folder(tmp_path, monkeypatch):
    from omgclip.errors import OmgclipError
    from omgclip.learn.train import TrainConfig, _make_run_dir

    monkeypatch.delenv("OMGCLIP_RUN_DIR", raising=False)  # as in a fresh torchrun process
    cfg = TrainConfig(data=tmp_path, out=tmp_path / "runs", model="r2plus1d")  # as train() resolves it
    folders = set()
    for rank in ("1", "0", "1"):  # any order; an existing folder is not refused
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abcdef123456")
        folders.add(_make_run_dir(cfg))
        (tmp_path / "runs" / "r2plus1d-torchrun-abcdef12" / f"from-{rank}").touch()
    assert folders == {tmp_path / "runs" / "r2plus1d-torchrun-abcdef12"}
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(OmgclipError, match="--run-name"):
        _make_run_dir(cfg)
    assert _make_run_dir(TrainConfig(data=tmp_path, out=tmp_path / "runs", run_name="x")).name == "x"
