"""Damaged or hostile datasets, checkpoints and build options: one clear error each, nothing
read from outside the dataset folder, no run folder left behind without a checkpoint."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from omgclip.dataset.build import BuildConfig
from omgclip.dataset.format import INDEX_FILE
from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceConfig
from omgclip.learn import data as D
from omgclip.learn.checkpoint import default_checkpoint, load_model
from test_data import make_dataset


def _one_line(excinfo, *words: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.fixture
def small(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "ds", groups=14, utterances_per_group=1, blocks_per_utterance=2)
    return tmp_path / "ds"


def _set_path(root: Path, row: int, path: str) -> None:
    index = pd.read_csv(root / INDEX_FILE, keep_default_na=False)
    index.loc[row, "path"] = path
    index.to_csv(root / INDEX_FILE, index=False)


# --------------------------------------------------------------------------- paths stay inside
def test_block_paths_cannot_leave_the_dataset_folder(small: Path, tmp_path: Path):
    outside = tmp_path / "outside.npy"
    np.save(outside, np.zeros((20, 80, 80), np.uint8))
    first = pd.read_csv(small / INDEX_FILE)["path"][0]
    (small / "blocks" / "link.npy").symlink_to(outside)
    (small / "blocks" / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    for bad in ("../outside.npy", str(outside), "blocks/link.npy", "blocks/dirlink/outside.npy",
                f"blocks/../../{outside.name}"):
        _set_path(small, 0, bad)
        with pytest.raises(OmgclipError) as exc:
            D.load_index(small)
        msg = _one_line(exc, "outside the dataset folder")
        assert "delete" not in msg  # never suggest deleting a file outside the folder
    _set_path(small, 0, first)  # a path inside (also through a symlink inside) is fine
    (small / "blocks" / "inner").symlink_to((small / first).parent, target_is_directory=True)
    _set_path(small, 0, "blocks/inner/" + Path(first).name)
    assert len(D.load_index(small)) > 0


# --------------------------------------------------------------------------- truncated blocks
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: 128 + 1000])  # the header survives, the data does not


def test_truncated_block_is_named_by_load_index(small: Path):
    victim = small / pd.read_csv(small / INDEX_FILE)["path"][3]
    _truncate(victim)
    with pytest.raises(OmgclipError) as exc:
        D.load_index(small)
    _one_line(exc, str(victim), "truncated")


def test_block_truncated_after_indexing_is_named_when_read(small: Path):
    frame = D.load_index(small)
    victim = small / frame["path"].iloc[0]
    _truncate(victim)
    for augment in (False, True):
        dataset = D.BlockDataset(frame, small, augment=augment)
        with pytest.raises(OmgclipError) as exc:
            dataset[0]
        _one_line(exc, str(victim))


def test_train_on_a_truncated_block_fails_and_leaves_no_run_folder(small: Path, tmp_path: Path):
    _truncate(small / pd.read_csv(small / INDEX_FILE)["path"][5])
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "omgclip", "-q", "train", "--data", str(small), "--out", str(out),
                           "--epochs", "1", "--no-progress", "--workers", "0"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_train_failing_midway_removes_its_checkpointless_run_folder(small: Path, tmp_path: Path, monkeypatch):
    from omgclip.learn.train import TrainConfig, train

    frame = D.load_index(small)  # indexed while whole, then damaged before the first epoch
    assert len(frame)
    victims = [small / p for p in frame["path"]]
    original = D.load_index

    def index_then_damage(*args, **kwargs):
        result = original(*args, **kwargs)
        for v in victims:
            _truncate(v)
        return result

    out = tmp_path / "runs"
    monkeypatch.setattr(D, "load_index", index_then_damage)
    with pytest.raises(OmgclipError, match="cannot be read"):
        train(TrainConfig(data=small, out=out, epochs=1, batch_size=4, num_workers=0, progress=False))
    assert not out.exists() or not any(out.iterdir())


def test_shape_hint_names_only_real_options(small: Path):
    path = small / pd.read_csv(small / INDEX_FILE)["path"][2]
    np.save(path, np.zeros((20, 64, 64), np.uint8))
    with pytest.raises(OmgclipError) as exc:
        D.load_index(small)
    msg = _one_line(exc, str(path))
    assert "--crop-size" not in msg and "64x64" in msg
    np.save(path, np.zeros((16, 80, 80), np.uint8))
    with pytest.raises(OmgclipError) as exc:
        D.load_index(small)
    assert "--block-len 20" in _one_line(exc)


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("change, words", [
    ({"block_len": 0}, "block_len 0"),
    ({"block_len": float("nan")}, "block_len"),
    ({"crop_size": 10 ** 9}, "crop_size"),
    ({"labels": []}, "0 labels"),
    ({"model_kwargs": {"widths": [10 ** 7, 10 ** 7, 10 ** 7]}}, "widths"),
    ({"model_kwargs": {"widths": [64, 128, 256]}}, "do not fit"),
])
def test_checkpoint_meta_is_bounded_before_the_net_is_built(tmp_path: Path, change, words, monkeypatch):
    import omgclip.learn.models as models

    obj = torch.load(default_checkpoint(), map_location="cpu", weights_only=True)
    obj = copy.deepcopy(obj)
    obj["meta"].update(change)
    path = tmp_path / "hostile.pt"
    torch.save(obj, path)
    built = []
    real = models.create_model

    def spy(*args, **kwargs):
        net = real(*args, **kwargs)
        built.append(next(net.parameters()).device.type)
        return net

    monkeypatch.setattr(models, "create_model", spy)
    with pytest.raises(OmgclipError) as exc:
        load_model(path)
    _one_line(exc, words)
    assert "cpu" not in built  # no real (memory-backed) net was made for a bad file


# --------------------------------------------------------------------------- build options
@pytest.mark.parametrize("face, words", [
    (dict(detect_width=10), "--detect-width"),
    (dict(detect_every=0), "--detect-every"),
    (dict(margin=-5), "--margin"),
    (dict(margin=math.nan), "--margin"),
    (dict(min_detect_frac=2), "--min-detect-frac"),
    (dict(max_gap=-1), "--max-gap"),
])
def test_face_options_are_one_line_errors(face, words):
    with pytest.raises(OmgclipError) as exc:
        FaceConfig(**face)
    _one_line(exc, words)


def test_face_settings_without_a_flag_are_not_named_as_flags():
    for face in (dict(crop_size=4), dict(work_width=10), dict(upsample=9)):
        with pytest.raises(OmgclipError) as exc:
            FaceConfig(**face)
        msg = _one_line(exc, "face setting " + next(iter(face)))
        assert "--" not in msg


def test_bad_rare_stride_fails_before_anything_is_written(tmp_path: Path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("source,start,end,label\nnothere.mp4,0,1,happy\n")
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "omgclip", "-q", "build-dataset", "--manifest", str(manifest),
               "--out", str(out), "--no-progress"]
    proc = subprocess.run([*command, "--rare-stride", "happy=0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--rare-stride happy=0" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    with pytest.raises(OmgclipError, match="rare-stride"):
        BuildConfig(manifests=("m.csv",), out=str(out), rare_strides={3: -4})
    for bad in ("--detect-width 10", "--detect-every 0", "--margin -5", "--margin nan", "--min-detect-frac 2"):
        proc = subprocess.run([*command, *bad.split()], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert bad.split()[0] in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not out.exists()


def test_label_errors_show_plain_numbers():
    from omgclip.labels import parse_label

    for value in (np.int64(9), np.float64(9.0), "9", 9):
        with pytest.raises(ValueError) as exc:
            parse_label(value)
        assert "unknown label 9 " in str(exc.value) and "np." not in str(exc.value)


# --------------------------------------------------------------------------- evaluate after train
def test_evaluate_right_after_train_scores_what_the_run_held_out(tmp_path: Path, capsys):
    from omgclip.cli import main

    make_dataset(tmp_path / "ds", groups=14, utterances_per_group=1, blocks_per_utterance=2, val_groups=())
    data = str(tmp_path / "ds")
    assert main(["-q", "train", "--data", data, "--out", str(tmp_path / "runs"), "--epochs", "1",
                 "--batch-size", "8", "--workers", "0", "--no-progress", "--run-name", "r"]) == 0
    capsys.readouterr()
    weights = str(tmp_path / "runs" / "r" / "best.pt")
    assert main(["-q", "evaluate", "--data", data, "--checkpoint", weights, "--workers", "0"]) == 0
    report = capsys.readouterr().out
    assert "split heldout" in report and "no labeled 'validation' rows" in report
    held = json.loads((tmp_path / "runs" / "r" / "train_config.json").read_text())["resolved"]["val_blocks"]
    assert f"block-level ({held} blocks)" in report
    assert "95% CI" in report and "clips)" in report
    # --interval-by group: the intervals resample the held-out groups whole
    assert main(["-q", "evaluate", "--data", data, "--checkpoint", weights, "--workers", "0",
                 "--interval-by", "group"]) == 0
    assert "groups)" in capsys.readouterr().out
    # the bundled model held out none of these groups: a clear error that lists the splits
    assert main(["-q", "evaluate", "--data", data, "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "choose --split" in err and "train (28)" in err


def test_index_label_errors_show_the_cell_as_written(small: Path):
    index = pd.read_csv(small / INDEX_FILE, keep_default_na=False)
    index.loc[1, "label"] = 9
    index.to_csv(small / INDEX_FILE, index=False)
    with pytest.raises(OmgclipError) as exc:
        D.load_index(small)
    msg = _one_line(exc, "row 3: 9;")
    assert "np." not in msg


def test_sigterm_before_the_first_checkpoint_exits_143_and_leaves_no_run_folder(tmp_path: Path):
    """Lightning turns SIGTERM into SystemExit() (exit status 0); train says 'terminated'."""
    import signal
    import time

    make_dataset(tmp_path / "ds", groups=14, utterances_per_group=1, blocks_per_utterance=2)
    out = tmp_path / "runs"
    code = ("import sys, time\n"
            "import omgclip.learn.lit_module as L\n"
            "step = L.EmotionClassifier.training_step\n"
            "def slow(self, *a, **k):\n    time.sleep(0.5)\n    return step(self, *a, **k)\n"
            "L.EmotionClassifier.training_step = slow\n"
            "from omgclip.cli import main\n"
            f"sys.exit(main(['-q', 'train', '--data', {str(tmp_path / 'ds')!r}, '--out', {str(out)!r},"
            " '--epochs', '3', '--batch-size', '2', '--workers', '0', '--no-progress', '--run-name', 'r']))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "r" / "train_config.json").exists():
        time.sleep(0.1)
    time.sleep(2.0)  # into the first epoch (14 steps of 0.5 s), well before its checkpoint
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert not (out / "r").exists()
