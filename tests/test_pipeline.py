"""The whole path on real footage: build-dataset on real MEAD clips -> train a few steps
(the loss falls) -> evaluate -> predict with the trained weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from omgclip.dataset.build import BuildConfig, build_dataset
from omgclip.learn.checkpoint import load_model
from omgclip.learn.evaluate import EvalConfig, evaluate
from omgclip.faces.detect import FaceConfig
from omgclip.apps.predict import PredictConfig, face_config_for, predict
from omgclip.learn.train import TrainConfig, train

pytestmark = pytest.mark.slow  # real footage end to end: `-m "not slow"` skips it

CLIPS = ["M030_front_happy_level3_001", "M030_front_angry_level3_001",
         "W009_front_happy_level3_001", "W009_front_angry_level3_001",
         "M030_front_surprised_level3_001", "W009_front_surprised_level3_001"]


@pytest.fixture(scope="module")
def real_dataset(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    manifest = root / "m.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "start", "end", "label", "group", "split"])
        for name in CLIPS:
            person, _, emotion = name.split("_")[:3]
            w.writerow([shared_data / "mead_clips" / "videos" / f"{name}.mp4", "", "", emotion,
                        person, "validation" if person == "W009" else "train"])
    build_dataset(BuildConfig(manifests=(str(manifest),), out=str(root / "ds"), stride=10,
                              face=FaceConfig(margin=0.05), progress=False))
    return root / "ds"


def test_training_on_real_blocks_lowers_the_loss(real_dataset, tmp_path):
    index = pd.read_csv(real_dataset / "index.csv")
    assert set(index.label_name) == {"happy", "anger", "surprise"} and len(index) >= 40
    result = train(TrainConfig(data=real_dataset, out=tmp_path, run_name="real", epochs=6,
                               batch_size=8, num_workers=0, progress=False, seed=0,
                               val_split="manifest", patience=10, log_every_n_steps=1))
    losses = pd.read_csv(result.run_dir / "logs" / "metrics.csv")["train_loss"].dropna().to_numpy()
    assert len(losses) == 6 and losses[-3:].mean() < 0.8 * losses[0], losses

    report = evaluate(EvalConfig(data=real_dataset, checkpoint=result.best_weights, split="validation",
                                 out_json=tmp_path / "eval.json"))
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["num_blocks"] == (index.split == "validation").sum()
    cm = saved["block"]["metrics"]["confusion_matrix"]
    assert cm == report["block"]["metrics"]["confusion_matrix"] and sum(map(sum, cm)) == saved["num_blocks"]
    for level in ("block", "clip"):  # the 95% intervals hold the point values of the real scores
        m, ci = saved[level]["metrics"], saved[level]["interval_95"]
        assert ci["accuracy"][0] <= m["accuracy"] + 1e-4 and m["accuracy"] - 1e-4 <= ci["accuracy"][1]
        assert 0.0 <= ci["uar"][0] <= ci["uar"][1] <= 1.0

    # predict crops the way the training blocks were cropped
    model = load_model(result.best_weights)
    assert model.meta["face"]["margin"] == 0.05
    assert face_config_for(model, PredictConfig(inputs=("x",))).margin == 0.05

    video = Path(index.source.iloc[0])
    rows = predict(PredictConfig(inputs=(str(video),), checkpoint=str(result.best_weights),
                                 progress=False))
    assert (rows.track_id >= 0).all() and rows.label.isin(["anger", "happy", "surprise", "disgust",
                                                            "fear", "neutral", "sad"]).all()
