"""Training with DDP: two CPU processes (gloo, 127.0.0.1) through ``omgclip train --devices 2
--strategy ddp``, the same command line that spreads training over GPUs and nodes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from omgclip.learn.checkpoint import load_model
from test_data import make_dataset


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_process_cpu_ddp_splits_the_data_and_writes_one_run(tmp_path):
    index = make_dataset(tmp_path / "ds", groups=8, utterances_per_group=2, blocks_per_utterance=3,
                         val_groups=(0, 5))
    batch = 4
    command = [sys.executable, "-m", "omgclip", "train", "--data", str(tmp_path / "ds"),
               "--out", str(tmp_path / "runs"), "--run-name", "ddp", "--epochs", "2",
               "--batch-size", str(batch), "--workers", "0", "--val-split", "manifest",
               "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
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
