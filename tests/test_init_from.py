"""``omgclip train --init-from default|PATH``: fine-tuning starts from trained weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from omgclip.errors import OmgclipError
from omgclip.learn.checkpoint import default_checkpoint, load_model
from omgclip.learn.train import TrainConfig, train
from test_data import make_dataset


def _cfg(root: Path, **kw) -> TrainConfig:
    base = dict(data=root / "ds", out=root / "runs", epochs=1, batch_size=4, limit_train_batches=1,
                limit_val_batches=1, val_split="manifest", progress=False, num_workers=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture()
def ds(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "ds", groups=7, utterances_per_group=2, blocks_per_utterance=1, val_groups=(1, 4))
    return tmp_path


def test_init_from_default_starts_from_the_bundled_weights(ds: Path):
    bundled = load_model(default_checkpoint())
    res = train(_cfg(ds, init_from="default", lr=1e-12, run_name="ft", calibrate=True))
    tuned = load_model(res.best_weights)
    assert tuned.model_name == bundled.model_name
    assert tuned.meta["model_kwargs"] == bundled.meta["model_kwargs"]
    assert tuned.meta["init_from"] == str(default_checkpoint())
    # --calibrate with 4 validation blocks: too few to fit a temperature (train.MIN_TEMPERATURE_BLOCKS)
    assert "temperature" not in tuned.meta
    assert json.loads((res.run_dir / "result.json").read_text())["calibration"] == {
        "temperature": None, "blocks": 4, "reason": "fewer than 20 validation blocks"}
    a, b = bundled.net.state_dict(), tuned.net.state_dict()
    convs = [k for k, v in a.items() if k.endswith("weight") and v.dim() == 5]
    assert convs and all(torch.allclose(a[k], b[k], atol=1e-6) for k in convs)


def test_init_from_a_path_and_model_mismatch(ds: Path):
    first = train(_cfg(ds, model="convlstm", run_name="scratch"))
    res = train(_cfg(ds, init_from=str(first.best_weights), run_name="again"))
    assert load_model(res.best_weights).model_name == "convlstm"
    with pytest.raises(OmgclipError, match="holds a 'convlstm' model, not 'r2plus1d'"):
        train(_cfg(ds, init_from=str(first.best_weights), model="r2plus1d", run_name="x"))


def test_init_from_bad_file_or_other_crops_is_one_line_error(ds: Path):
    with pytest.raises(OmgclipError, match="does not exist"):
        train(_cfg(ds, init_from=str(ds / "nope.pt"), run_name="a"))
    face = dict(load_model(default_checkpoint()).meta["face"], margin=0.3)
    (ds / "ds" / "build_config.json").write_text(json.dumps({"face": face}))
    with pytest.raises(OmgclipError, match=r"face crops differ .*margin 0\.15 vs 0\.3") as err:
        train(_cfg(ds, init_from="default", run_name="b"))
    assert "\n" not in str(err.value)
    assert not (ds / "runs" / "b").exists()
