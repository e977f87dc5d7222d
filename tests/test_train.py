"""Training end to end on a tiny generated dataset: loss falls, files written, round trips."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from omgclip.learn.checkpoint import load_model
from omgclip.errors import OmgclipError
from omgclip.labels import EMOTIONS
from omgclip.learn.train import TrainConfig, TrainResult, parse_max_time, train
from test_data import make_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TrainResult, Path]:
    root = tmp_path_factory.mktemp("train")
    make_dataset(root / "ds", groups=14, utterances_per_group=2, blocks_per_utterance=3)
    cfg = TrainConfig(data=root / "ds", out=root / "runs", epochs=4, batch_size=8, lr=1e-2,
                      num_workers=0, progress=False, seed=0, run_name="tiny", patience=10,
                      log_every_n_steps=1)
    return train(cfg), root


def test_run_files(trained):
    result, _ = trained
    run = result.run_dir
    assert run.name == "tiny"
    assert result.best_checkpoint.is_file() and result.best_checkpoint.suffix == ".ckpt"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert result.best_weights == run / "best.pt" and (run / "best.pt").is_file()
    assert json.loads((run / "labels.json").read_text()) == list(EMOTIONS)
    cfg = json.loads((run / "train_config.json").read_text())
    assert cfg["config"]["model"] == "r2plus1d" and cfg["resolved"]["block_shape"] == [20, 80, 80]
    res = json.loads((run / "result.json").read_text())
    assert res["best_val_uar"] == pytest.approx(result.best_val_uar)
    assert 0.0 <= result.best_val_uar <= 1.0
    assert not list(run.rglob("*.tmp"))


def test_loss_falls_and_metrics_logged(trained):
    result, _ = trained
    metrics = pd.read_csv(result.run_dir / "logs" / "metrics.csv")
    for col in ("train_loss", "val_loss", "val_acc", "val_uar", "val_f1"):
        assert col in metrics.columns, col
    losses = metrics["train_loss"].dropna().to_numpy()
    assert len(losses) == 4
    assert losses[-1] < losses[0] * 0.8, losses
    # the learnable pattern is learned a bit: better than chance (1/7) on held-out groups
    assert metrics["val_uar"].dropna().max() > 0.3


def test_checkpoint_round_trip(trained):
    result, _ = trained
    from_ckpt = load_model(result.best_checkpoint)
    from_pt = load_model(result.best_weights)
    for m in (from_ckpt, from_pt):
        assert m.model_name == "r2plus1d" and m.labels == tuple(EMOTIONS)
        assert (m.block_len, m.crop_size) == (20, 80)
        assert not m.net.training
        assert m.meta["train_class_counts"] and sum(m.meta["train_class_counts"]) > 0
        assert m.meta["split_info"]["mode"] == "group"
    x = torch.rand(4, 1, 20, 80, 80)
    with torch.no_grad():
        a, b = from_ckpt.net(x), from_pt.net(x)
    assert torch.equal(a, b)
    assert from_pt.meta["best_val_uar"] == pytest.approx(result.best_val_uar)
    # the Lightning checkpoint reloads as the LightningModule too
    from omgclip.learn.lit_module import EmotionClassifier

    module = EmotionClassifier.load_from_checkpoint(result.best_checkpoint, map_location="cpu", weights_only=True)
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(x), a)


def test_existing_run_name_refused(trained):
    result, root = trained
    cfg = TrainConfig(data=root / "ds", out=root / "runs", run_name="tiny", epochs=1, progress=False)
    with pytest.raises(OmgclipError, match="already exists"):
        train(cfg)


@pytest.mark.parametrize("change, words", [({"model": "nope"}, "unknown model"),
                                           ({"balance": "oversample"}, "balance"),
                                           ({"data": "missing"}, "does not exist")])
def test_bad_config_fails_before_writing(tmp_path: Path, change, words):
    make_dataset(tmp_path / "ds", groups=7, utterances_per_group=1, blocks_per_utterance=1)
    out = tmp_path / "runs"
    options = {"data": tmp_path / "ds", "out": out, **change}
    options["data"] = tmp_path / options["data"]
    with pytest.raises(OmgclipError, match=words):
        train(TrainConfig(**options))
    assert not out.exists()


def test_parse_max_time():
    assert parse_max_time(None) is None
    assert parse_max_time("00:01:30:00") == "00:01:30:00"
    assert parse_max_time("90") == dt.timedelta(minutes=90)
    assert parse_max_time(1.5) == dt.timedelta(minutes=1.5)
    for bad in ("soon", "1:30", "-5", "0"):
        with pytest.raises(OmgclipError):
            parse_max_time(bad)


def test_other_models_train_a_step(tmp_path: Path):
    make_dataset(tmp_path / "ds", groups=7, utterances_per_group=2, blocks_per_utterance=1, val_groups=(1, 4))
    for model in ("convlstm",):
        res = train(TrainConfig(data=tmp_path / "ds", out=tmp_path / "runs", model=model, epochs=1,
                                batch_size=4, limit_train_batches=2, limit_val_batches=1, val_split="manifest",
                                balance="sampler", progress=False, num_workers=0, run_name=model))
        assert load_model(res.best_weights).model_name == model
