"""Training end to end on a tiny generated dataset: loss falls, files written, round trips."""

from __future__ import annotations

import datetime as dt
import json
import math
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
                      log_every_n_steps=1, calibrate=True)
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
    # with calibrate, best.pt asks for the temperature fitted on the validation groups' blocks
    # (its 24 blocks, 4 groups the run never trained on), and that lowers their calibration error
    cal = res["calibration"]
    assert cal["blocks"] == cfg["resolved"]["val_blocks"] == 24
    assert load_model(run / "best.pt").meta["temperature"] == {"video": cal["temperature"], "still": cal["temperature"]}
    assert cal["temperature"] != 1.0 and cal["ece_after"] < cal["ece_before"]
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


@pytest.mark.parametrize("model", ["c3d", "convlstm"])
def test_other_models_train(tmp_path: Path, model: str):
    make_dataset(tmp_path / "ds", groups=7, utterances_per_group=2, blocks_per_utterance=1, val_groups=(1, 4))
    res = train(TrainConfig(data=tmp_path / "ds", out=tmp_path / "runs", model=model, epochs=2,
                            batch_size=4, limit_train_batches=2, limit_val_batches=1, val_split="manifest",
                            balance="sampler", progress=False, num_workers=0, run_name=model, lr=1e-2,
                            log_every_n_steps=1))
    loaded = load_model(res.best_weights)
    assert loaded.model_name == model
    # without calibrate, no temperature is fitted or asked for
    assert "temperature" not in loaded.meta
    assert json.loads((res.run_dir / "result.json").read_text())["calibration"] is None
    metrics = pd.read_csv(res.run_dir / "logs" / "metrics.csv")
    losses = metrics["train_loss"].dropna()
    assert len(losses) == 2 and losses.map(math.isfinite).all()
    assert len(metrics["val_uar"].dropna()) == 2
    # the weights moved away from a fresh net's (the same seed gives the same initial weights)
    torch.manual_seed(0)
    from omgclip.learn.models import create_model

    fresh = create_model(model).state_dict()
    trained_state = loaded.net.state_dict()
    assert any(not torch.equal(fresh[k], trained_state[k]) for k in fresh if fresh[k].is_floating_point())


# --------------------------------------------------------------------------- model selection
def _val_uar_per_epoch(run_dir: Path) -> list[float]:
    metrics = pd.read_csv(run_dir / "logs" / "metrics.csv")
    return metrics.dropna(subset=["val_uar"]).sort_values("epoch")["val_uar"].tolist()


def test_best_checkpoint_is_the_epoch_with_the_highest_val_uar(trained):
    result, _ = trained
    uar = _val_uar_per_epoch(result.run_dir)
    assert len(uar) == 4 and len(set(uar)) > 1, uar  # otherwise this test could not tell
    best_epoch = uar.index(max(uar))
    assert result.best_val_uar == pytest.approx(max(uar))
    assert result.best_checkpoint.name.startswith(f"best-epoch{best_epoch:02d}-")
    assert load_model(result.best_weights).meta["best_val_uar"] == pytest.approx(max(uar))


def test_early_stopping_watches_val_uar(tmp_path: Path, monkeypatch):
    """With patience 1, training stops at the first epoch whose validation UAR is no better
    than the best so far (and the callback is set to watch val_uar, higher is better)."""
    import pytorch_lightning.callbacks as callbacks

    seen = []

    class Spy(callbacks.EarlyStopping):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self)

    monkeypatch.setattr(callbacks, "EarlyStopping", Spy)
    make_dataset(tmp_path / "ds", groups=7, utterances_per_group=2, blocks_per_utterance=2, val_groups=(1, 4))
    res = train(TrainConfig(data=tmp_path / "ds", out=tmp_path / "runs", epochs=12, batch_size=8, lr=3e-2,
                            patience=1, val_split="manifest", progress=False, num_workers=0, run_name="es",
                            log_every_n_steps=1, limit_train_batches=2))
    (spy,) = seen
    assert spy.monitor == "val_uar" and spy.mode == "max" and spy.patience == 1
    uar = _val_uar_per_epoch(res.run_dir)
    stop = next((e for e in range(1, len(uar)) if uar[e] <= max(uar[:e])), None)
    assert stop is not None and len(uar) < 12, uar  # it did stop early
    assert len(uar) == stop + 1, uar


# --------------------------------------------------------------------------- loss and seeds
def test_the_loss_is_class_weighted(trained):
    """The run's weights are the inverse class frequencies of its training rows, and the
    Lightning module's loss uses them."""
    import torch.nn.functional as F

    from omgclip.learn.data import inverse_frequency_weights
    from omgclip.learn.lit_module import EmotionClassifier

    result, _ = trained
    module = EmotionClassifier.load_from_checkpoint(result.best_checkpoint, map_location="cpu", weights_only=True)
    counts = module.hparams.train_class_counts
    weights = module.hparams.class_weights
    assert weights == pytest.approx(inverse_frequency_weights(counts))
    assert len(set(counts)) > 1 and max(weights) > min(weights) * 1.05  # else weighting is invisible
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 20, 80, 80), torch.tensor([0, 1, 2, 3, 4, 6])
    module.eval()
    with torch.no_grad():
        loss = module.training_step((x, y), 0)
        logits = module(x)
    w = torch.tensor(weights, dtype=torch.float32)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, y, weight=w)), rel=1e-5)
    assert float(loss) != pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-3)


def test_the_same_seed_gives_the_same_model(tmp_path: Path):
    make_dataset(tmp_path / "ds", groups=7, utterances_per_group=2, blocks_per_utterance=1, val_groups=(1, 4))

    def run(name: str, seed: int) -> dict:
        res = train(TrainConfig(data=tmp_path / "ds", out=tmp_path / "runs", epochs=1, batch_size=4,
                                limit_train_batches=3, val_split="manifest", progress=False, num_workers=0,
                                run_name=name, seed=seed))
        return load_model(res.best_weights).net.state_dict()

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
