"""Bundled stage-1 weights: ``transfer pack`` writes a stage-1 run (FER2013 only) as a compact
float16 weights file that every loader takes, and the bundled one scores on real FER2013
PublicTest what its meta says it scored when it was made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from omgclip.learn import transfer

WEIGHTS = Path(transfer.__file__).resolve().parents[1] / "weights"
BUNDLED_SEEDS = (0, 1)  # the default ensemble's members, one stage-1 file each


def _learnable_stills(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 random 80x80 stills whose brightness gives their class: 160 Training, 40 PublicTest."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, 200)
    X = (rng.integers(0, 60, (200, 80, 80)) + (y * 28)[:, None, None]).astype(np.uint8)
    return X, y, np.array(["Training"] * 160 + ["PublicTest"] * 40)


def _tiny_run(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 2-epoch stage-1 run on learnable random stills; returns its best.pt and the PublicTest part."""
    X, y, usage = _learnable_stills(0)
    np.savez(tmp_path / "fer.npz", X=X, y=y, usage=usage)
    transfer.pretrain_stills("unused", str(tmp_path / "run"), epochs=2, batch_size=32, widths=(8, 16, 32),
                             cache=str(tmp_path / "fer.npz"), seed=3)
    return tmp_path / "run" / "best.pt", X[160:], y[160:]


def test_pack_writes_a_half_precision_file_that_loads_as_the_same_net(tmp_path):
    from omgclip.learn.checkpoint import load_for_inference, load_model

    best, X_pub, y_pub = _tiny_run(tmp_path)
    out = tmp_path / "stage1.pt"
    assert transfer.main(["pack", str(best), "--out", str(out)]) == 0
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert {v.dtype for v in raw["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    record = json.loads((best.parent / "history.json").read_text())[torch.load(best, weights_only=True)["epoch"] - 1]
    meta = load_model(out).meta
    assert meta["stage"] == 1 and meta["seed"] == 3 and meta["model_name"] == "r2plus1d_wide"
    assert meta["public_acc"] == record["public_acc"] and meta["public_uar"] == record["public_uar"]
    assert meta["test_time_flip"] is True and meta["face"]["margin"] == 0.15
    # the same net up to float16 rounding, whichever loader takes it
    ref = transfer.predict_proba(transfer._load_init(str(best)).eval(), X_pub)
    for net in (transfer._load_init(str(out)).eval(), load_for_inference(out, flip=False).net):
        got = transfer.predict_proba(net, X_pub)
        assert np.abs(got - ref).max() < 2e-2
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95
    # stage 2 starts from it as from the run's own file (what train_default_model.sh now does)
    from test_r2plus1d_wide import _tiny_dataset

    data = _tiny_dataset(tmp_path / "data")
    tuned = transfer.finetune(str(out), [str(data)], epochs=1, batch_size=4, seed=3)
    assert tuned(torch.rand(2, 1, 20, 80, 80)).shape == (2, 7)
    # --seed overrides what the file records (runs made before files recorded their seed)
    assert transfer.main(["pack", str(best), "--out", str(out), "--seed", "7"]) == 0
    assert load_model(out).meta["seed"] == 7


def test_pack_refuses_a_file_that_is_not_a_stage1_run_in_one_line(tmp_path, capsys):
    best, _, _ = _tiny_run(tmp_path)
    packed = tmp_path / "packed.pt"
    transfer.main(["pack", str(best), "--out", str(packed)])
    (tmp_path / "notes.txt").write_text("not weights")
    for bad, says in ((packed, "is not a stage-1 file"), (tmp_path / "notes.txt", "cannot be read as a stage-1 file"),
                      (tmp_path / "missing.pt", "does not exist")):
        out = tmp_path / "out.pt"
        with pytest.raises(SystemExit) as exc:
            transfer.main(["pack", str(bad), "--out", str(out)])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert says in err and str(bad) in err, err
        assert not out.exists()


@pytest.mark.parametrize("seed", BUNDLED_SEEDS)
def test_bundled_stage1_file_scores_its_recorded_publictest_accuracy(seed):
    """Each bundled FER2013-only net (re-runs of the recipe's stage 1 for seeds 0 and 1; the
    shipped default's members came from earlier runs of it): on real PublicTest faces (with
    the flip, images as given, as stage 1 selected it) it scores the accuracy its meta
    records, up to float16 rounding."""
    import pandas as pd

    from conftest import SHARED_DATA
    from omgclip.learn.checkpoint import load_model

    path = WEIGHTS / f"stage1_fer2013_seed{seed}.pt"
    assert path.is_file(), f"{path} is not installed"
    loaded = load_model(path)
    meta = loaded.meta
    assert meta["stage"] == 1 and meta["seed"] == seed and meta["public_acc"] > 0.65
    assert path.stat().st_size < 5_000_000
    root = SHARED_DATA / "fer2013"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"FER2013 not found at {root} (a user's clone has no ../shared)")
    d = pd.read_csv(root / "labels.csv")
    d = d[d["usage"] == "PublicTest"]
    X = transfer.read_fer_images(root, d["file"])
    acc, uar = transfer.accuracy_uar(d["omg_label"].to_numpy(), transfer.predict_proba(loaded.net.eval(), X, 256))
    assert len(X) == 3589
    assert abs(acc - meta["public_acc"]) <= 0.002 and abs(uar - meta["public_uar"]) <= 0.004, (acc, uar)


def test_train_default_model_refuses_a_bad_stage1_choice_before_doing_anything(tmp_path):
    """``scripts/train_default_model.sh``: a bad ``STAGE1`` or a seed with no bundled stage-1
    file stops it at once, in one line, before its work folder is made."""
    import os
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_default_model.sh"
    for env, says in (({"STAGE1": "maybe"}, "STAGE1 must be train or bundled (got maybe)"),
                      ({"STAGE1": "bundled", "SEEDS": "9"},
                       "no bundled stage-1 file for seed 9 (omgclip/weights/stage1_fer2013_seed9.pt)")):
        work = tmp_path / "work"
        r = subprocess.run(["bash", str(script), str(work)], env={**os.environ, **env}, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and says in r.stderr, r.stderr
        assert not work.exists()


def test_a_stage1_run_that_dies_while_saving_keeps_its_earlier_files_whole(tmp_path, monkeypatch):
    """``pretrain`` writes last.pt / best.pt / history.json under a temp name and renames: a
    save that fails half-way (full disk, a kill) leaves the earlier run's files as they were
    (``transfer pack`` and ``--init`` read them) and no temp file behind."""
    best, _, _ = _tiny_run(tmp_path)
    run = best.parent
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert set(before) == {"best.pt", "last.pt", "history.json"}

    def dies_half_way(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        transfer.pretrain_stills("unused", str(run), epochs=1, batch_size=32, widths=(8, 16, 32),
                                 cache=str(tmp_path / "fer.npz"), seed=4)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def _training_only_cache(tmp_path: Path) -> tuple[Path, Path]:
    """The tiny run's learnable stills split in two caches: Training alone (what a GPU machine
    gets when the tree it is sent has no room for more) and the whole set."""
    X, y, usage = _learnable_stills(1)
    np.savez(tmp_path / "all.npz", X=X, y=y, usage=usage)
    np.savez(tmp_path / "train.npz", X=X[:160], y=y[:160], usage=usage[:160])
    return tmp_path / "train.npz", tmp_path / "all.npz"


def test_a_run_without_publictest_keeps_its_last_ema_and_pack_scores_it(tmp_path, capsys):
    """A Training-only run scores nothing and keeps its last epoch (the EMA's weights) in
    best.pt; ``pack`` refuses it in one line without FER2013 to score, and with a cache
    records the PublicTest numbers of the very net it packs."""
    from omgclip.learn.checkpoint import load_model

    train, whole = _training_only_cache(tmp_path)
    run = tmp_path / "run"
    best = transfer.pretrain_stills("unused", str(run), epochs=3, batch_size=32, widths=(8, 16, 32),
                                    cache=str(train), seed=2, ema_decay=0.9)
    hist = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2, 3] and best["epoch"] == 3
    assert all(r["public_acc"] is None and r["ema"] is True for r in hist)
    kept = torch.load(run / "best.pt", weights_only=True)
    last = torch.load(run / "last.pt", weights_only=True)
    assert kept["epoch"] == last["epoch"] == 3 and kept["ema"] is True
    # the EMA's weights, not the raw ones of last.pt
    assert any(not torch.equal(kept["state_dict"][k], last["state_dict"][k]) for k in last["state_dict"]
               if last["state_dict"][k].is_floating_point())

    out = tmp_path / "s1.pt"
    with pytest.raises(SystemExit) as exc:
        transfer.main(["pack", str(run / "best.pt"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and "scored no PublicTest" in err and not out.exists(), err
    assert transfer.main(["pack", str(run / "best.pt"), "--out", str(out), "--cache", str(whole)]) == 0
    meta = load_model(out).meta
    z = np.load(whole)
    acc, uar = transfer.accuracy_uar(z["y"][160:], transfer.predict_proba(transfer._load_init(str(run / "best.pt")),
                                                                          z["X"][160:]))
    assert (meta["public_acc"], meta["public_uar"]) == (acc, uar) and meta["epoch"] == 3
    assert "last epoch" in meta["recipe"]


def test_fit_seconds_plans_whole_epochs_from_the_pace_and_records_them(tmp_path):
    """``fit_seconds`` sets the schedule's length from the pace of the first steps: a budget
    already spent gives the one epoch under way, a generous one many more, recorded in each
    epoch's record so ``--epochs`` can repeat the run."""
    train, _ = _training_only_cache(tmp_path)
    kw = dict(batch_size=32, widths=(8, 16, 32), cache=str(train), seed=2)
    transfer.pretrain_stills("unused", str(tmp_path / "short"), epochs=50, fit_seconds=1e-6, **kw)
    hist = json.loads((tmp_path / "short" / "history.json").read_text())
    assert [(r["epoch"], r["epochs"]) for r in hist] == [(1, 1)]
    transfer.pretrain_stills("unused", str(tmp_path / "long"), epochs=2, fit_seconds=1e6, stop_after=2, **kw)
    hist = json.loads((tmp_path / "long" / "history.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2] and hist[0]["epochs"] == hist[1]["epochs"] > 1000
    # the arithmetic: 84.75 s left after the epoch under way, 10.5 s an epoch -> 1 + 8 epochs
    assert transfer._fit_epochs(100, 10, 0.1, 50, 100) == 9
    assert transfer._fit_epochs(100, 200, 0.1, 50, 100) == 1


def test_keep_last_keeps_the_last_ema_epoch_even_where_publictest_prefers_another(tmp_path):
    """``keep="last"`` (the GPU recipe) scores PublicTest each epoch for the curve but keeps
    the last epoch's EMA weights; the packed file says so."""
    from omgclip.learn.checkpoint import load_model

    _, whole = _training_only_cache(tmp_path)
    run = tmp_path / "run"
    transfer.pretrain_stills("unused", str(run), epochs=3, batch_size=32, widths=(8, 16, 32), cache=str(whole),
                             seed=2, ema_decay=0.9, keep="last")
    hist = json.loads((run / "history.json").read_text())
    assert all(r["public_acc"] is not None and r["ema"] is True for r in hist)
    kept = torch.load(run / "best.pt", weights_only=True)
    assert kept["epoch"] == 3 and kept["ema"] is True and kept["keep"] == "last"
    transfer.main(["pack", str(run / "best.pt"), "--out", str(tmp_path / "p.pt")])
    meta = load_model(tmp_path / "p.pt").meta
    assert meta["public_acc"] == hist[-1]["ema_public_acc"] and meta["recipe"].endswith("last epoch")
    with pytest.raises(ValueError, match="keep must be"):
        transfer.pretrain_stills("unused", str(run), cache=str(whole), keep="first")
