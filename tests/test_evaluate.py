"""Evaluation: metric definitions against a hand-computed confusion matrix, the report
files, the majority baseline, clip voting, and bad checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from omgclip.learn.checkpoint import DEFAULT_WEIGHTS, default_checkpoint, load_model, save_weights
from omgclip.errors import OmgclipError
from omgclip.learn.evaluate import EvalConfig, evaluate, format_report
from omgclip.learn.metrics import metrics_from_confusion, metrics_from_predictions
from omgclip.labels import EMOTIONS
from omgclip.learn.models import create_model
from test_data import make_dataset


# --------------------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    y_true = [0, 0, 1, 1, 1, 2, 2, 3]
    y_pred = [0, 1, 1, 1, 0, 2, 3, 3]
    m = metrics_from_predictions(y_true, y_pred, 4, labels=["a", "b", "c", "d"])
    assert m["confusion_matrix"] == [[1, 1, 0, 0],
                                     [1, 2, 0, 0],
                                     [0, 0, 1, 1],
                                     [0, 0, 0, 1]]
    assert m["num_samples"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    recall = [1 / 2, 2 / 3, 1 / 2, 1]
    precision = [1 / 2, 2 / 3, 1, 1 / 2]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert m["uar"] == pytest.approx(np.mean(recall))
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    for name, p, r, f, s in zip("abcd", precision, recall, f1, [2, 3, 2, 1]):
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"]) == pytest.approx((p, r, f))
        assert pc["support"] == s


def test_metrics_absent_classes():
    # class 2 never occurs; class 3 is predicted but never true
    m = metrics_from_predictions([0, 0, 1, 1], [0, 3, 1, 1], 4)
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)  # over classes present in truth
    f1_0, f1_1 = 2 * 1 * 0.5 / 1.5, 1.0
    assert m["macro_f1"] == pytest.approx((f1_0 + f1_1 + 0.0) / 3)  # class 3 counts, class 2 not
    assert m["per_class"]["fear"]["support"] == 0


def test_metrics_match_torchmetrics_when_all_classes_present():
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score, multiclass_recall

    rng = np.random.default_rng(0)
    t = rng.integers(0, 7, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 7, 300))
    m = metrics_from_predictions(t, p, 7)
    tt, pp = torch.as_tensor(t), torch.as_tensor(p)
    assert m["accuracy"] == pytest.approx(float(multiclass_accuracy(pp, tt, 7, average="micro")))
    assert m["uar"] == pytest.approx(float(multiclass_recall(pp, tt, 7, average="macro")))
    assert m["macro_f1"] == pytest.approx(float(multiclass_f1_score(pp, tt, 7, average="macro")))


def test_metrics_from_a_confusion_matrix_by_hand():
    cm = [[3, 1, 0],
          [2, 2, 0],
          [0, 0, 0]]  # class 2 never true nor predicted
    m = metrics_from_confusion(cm, labels=["x", "y", "z"])
    assert m["num_samples"] == 8 and m["accuracy"] == pytest.approx(5 / 8)
    assert m["uar"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    f1_x = 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)
    f1_y = 2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4)
    assert m["macro_f1"] == pytest.approx((f1_x + f1_y) / 2)
    assert m["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["y"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["x"]["support"] == 4
    assert m["confusion_matrix"] == cm
    empty = metrics_from_confusion(np.zeros((7, 7), int))
    assert (empty["accuracy"], empty["uar"], empty["macro_f1"], empty["num_samples"]) == (0.0, 0.0, 0.0, 0)
    assert list(empty["per_class"]) == list(EMOTIONS)
    with pytest.raises(ValueError):
        metrics_from_confusion(np.zeros((2, 3), int))


# --------------------------------------------------------------------------- evaluate
META = {"model_name": "r2plus1d", "model_kwargs": {}, "labels": list(EMOTIONS), "block_len": 20, "crop_size": 80}


@pytest.fixture
def setup(tmp_path: Path):
    frame = make_dataset(tmp_path / "ds", groups=10, utterances_per_group=2, blocks_per_utterance=3,
                         val_groups=(1, 4, 8))
    torch.manual_seed(0)
    net = create_model("r2plus1d")
    counts = [1, 2, 3, 4, 50, 6, 7]  # 'neutral' is the training majority
    train_groups = sorted(set(frame.loc[frame["split"] == "train", "group"]))
    meta = dict(META, train_class_counts=counts,
                split_info={"mode": "group", "val_fraction": 0.2, "seed": 0,
                            "train_groups": train_groups + [frame.loc[frame["split"] == "validation", "group"].iloc[0]],
                            "val_groups": sorted(set(frame.loc[frame["split"] == "validation", "group"]))[1:]})
    ckpt = save_weights(tmp_path / "model.pt", net, meta)
    return tmp_path, frame, ckpt


def test_evaluate_writes_reports(setup):
    tmp, frame, ckpt = setup
    cfg = EvalConfig(data=tmp / "ds", checkpoint=ckpt, split="validation", out_json=tmp / "out" / "eval.json",
                     confusion_png=tmp / "out" / "cm.png", batch_size=8, num_workers=0)
    result = evaluate(cfg)
    on_disk = json.loads((tmp / "out" / "eval.json").read_text())
    assert (tmp / "out" / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    val = frame[(frame["split"] == "validation") & (frame["label"] >= 0)]
    assert result["num_blocks"] == len(val) == 18
    assert result["num_clips"] == 6
    # block metrics equal those recomputed from the model's own predictions
    model = load_model(ckpt)
    from omgclip.learn.data import BlockDataset

    ds = BlockDataset(val, tmp / "ds")
    with torch.no_grad():
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        probs = torch.softmax(model.net(x), 1).numpy()
    y = val["label"].to_numpy()
    expect = metrics_from_predictions(y, probs.argmax(1), 7, EMOTIONS)
    assert result["block"]["metrics"]["confusion_matrix"] == expect["confusion_matrix"]
    # the file holds the same numbers as the model's own predictions give
    assert on_disk["block"]["metrics"]["confusion_matrix"] == expect["confusion_matrix"]
    assert on_disk["block"]["metrics"]["uar"] == pytest.approx(expect["uar"])
    assert on_disk["num_blocks"] == 18 and on_disk["split"] == "validation"
    # clip level: mean probability over each utterance's 3 blocks
    clip_p = probs.reshape(6, 3, 7).mean(1).argmax(1)
    clip_y = y.reshape(6, 3)[:, 0]
    assert result["clip"]["metrics"]["confusion_matrix"] == metrics_from_predictions(clip_y, clip_p, 7)["confusion_matrix"]
    # majority baseline: the checkpoint's training majority, always predicted
    base = result["block"]["majority_baseline"]
    assert base["class"] == 4 and base["label"] == "neutral" and "training data" in base["source"]
    assert base["metrics"]["accuracy"] == pytest.approx(float((y == 4).mean()))
    cm = np.asarray(base["metrics"]["confusion_matrix"])
    assert (cm[:, 4] == np.bincount(y, minlength=7)).all() and cm.sum() == len(y)
    # one validation group was (per its meta) used in training: flagged
    assert result["overlap_with_training"]["groups"] == 1 and result["warnings"]
    report = format_report(result)
    assert "block-level" in report and "clip-level" in report and "majority" in report and "neutral" in report


def test_evaluate_baseline_from_split_and_other_splits(setup):
    tmp, frame, _ = setup
    torch.manual_seed(1)
    ckpt = save_weights(tmp / "plain.pt", create_model("r2plus1d"), META)  # no training info
    res = evaluate(EvalConfig(data=tmp / "ds", checkpoint=ckpt, split="train", num_workers=0))
    y = frame.loc[frame["split"] == "train", "label"].to_numpy()
    base = res["block"]["majority_baseline"]
    assert base["class"] == int(np.bincount(y, minlength=7).argmax()) and "evaluated" in base["source"]
    assert res["overlap_with_training"]["groups"] == 0
    res_all = evaluate(EvalConfig(data=tmp / "ds", checkpoint=ckpt, split="all", num_workers=0))
    assert res_all["num_blocks"] == int((frame["label"] >= 0).sum())
    for split, words in (("heldout", "heldout"), ("test", "unlabeled"), ("nosuchsplit", "labeled splits")):
        with pytest.raises(OmgclipError, match=words):
            evaluate(EvalConfig(data=tmp / "ds", checkpoint=ckpt, split=split))


def test_evaluate_heldout(setup):
    tmp, frame, ckpt = setup
    res = evaluate(EvalConfig(data=tmp / "ds", checkpoint=ckpt, split="heldout", num_workers=0))
    assert res["num_blocks"] == 12  # the two validation groups recorded as held out
    assert res["overlap_with_training"]["groups"] == 0


def test_evaluate_shape_mismatch(setup, tmp_path):
    _, _, ckpt = setup
    make_dataset(tmp_path / "small", groups=3, utterances_per_group=1, blocks_per_utterance=1, shape=(16, 64, 64))
    with pytest.raises(OmgclipError, match="model expects"):
        evaluate(EvalConfig(data=tmp_path / "small", checkpoint=ckpt))


# --------------------------------------------------------------------------- bad checkpoints
def _msg(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def _junk(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _plain_state_dict(path: Path) -> Path:
    torch.save(create_model("c3d").state_dict(), path)  # a state_dict, but no omgclip description
    return path


def _evil(path: Path) -> Path:
    torch.save({"format": "omgclip-weights-v1", "state_dict": {}, "meta": _Evil()}, path)
    return path


# (id, writes a bad checkpoint at the given path, words of the one-line error)
BAD_CHECKPOINTS = [
    ("junk", _junk, "is not an omgclip checkpoint"),
    ("missing", lambda p: p, "does not exist"),
    ("plain_state_dict", _plain_state_dict, "is not an omgclip checkpoint"),
    ("other_models_weights", lambda p: save_weights(p, create_model("c3d"), dict(META, model_name="r2plus1d")),
     "do not fit its model 'r2plus1d'"),
    ("wrong_shapes", lambda p: save_weights(p, create_model("r2plus1d", widths=(8, 16, 32)), META), "wrong shape"),
    ("unknown_model", lambda p: save_weights(p, create_model("c3d"), dict(META, model_name="transformer9")),
     "transformer9"),
    ("pickle_with_code", _evil, "is not an omgclip checkpoint"),  # refused, not executed
]


@pytest.mark.parametrize("write, words", [c[1:] for c in BAD_CHECKPOINTS], ids=[c[0] for c in BAD_CHECKPOINTS])
def test_bad_checkpoints(tmp_path: Path, write, words):
    path = write(tmp_path / "model.pt")
    with pytest.raises(OmgclipError) as e:
        load_model(path)
    assert words in _msg(e)


class _Evil:
    pass


def test_compact_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    net = create_model("convlstm").eval()
    path = save_weights(tmp_path / "w.pt", net, dict(META, model_name="convlstm", extra={"note": "x"}))
    loaded = load_model(path)
    assert loaded.model_name == "convlstm" and loaded.meta["extra"] == {"note": "x"}
    x = torch.rand(2, 1, 20, 80, 80)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net(x))
    assert loaded.num_classes == 7


def test_default_checkpoint(monkeypatch, tmp_path: Path):
    import omgclip.learn.checkpoint as C

    monkeypatch.setattr(C, "DEFAULT_WEIGHTS", tmp_path / "nope.pt")
    with pytest.raises(OmgclipError, match="missing"):
        C.default_checkpoint()
    assert DEFAULT_WEIGHTS.name == "default.pt" and DEFAULT_WEIGHTS.parent.name == "weights"
    if DEFAULT_WEIGHTS.is_file():  # once the bundled model ships, it must load
        monkeypatch.undo()
        assert load_model(default_checkpoint()).model_name


# --------------------------------------------------------------------------- clip vote, heldout
class _ReadsItsAnswer(torch.nn.Module):
    """A test net whose class probabilities are written in its input: the first 7 pixels of
    the first row of the first frame, proportional to the probabilities. Lets a test choose
    each block's probabilities exactly and still run the real ``evaluate``."""

    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.num_classes = num_classes
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        p = x[:, 0, 0, 0, : self.num_classes].float()
        return torch.log(p / p.sum(dim=1, keepdim=True) + 1e-9) * self.scale


def _write_blocks(root: Path, blocks: list[tuple[str, int, list[int]]], groups: dict | None = None) -> None:
    """blocks: (utterance, true label, 7 pixel values encoding the probabilities); ``groups``:
    utterance -> group (default: all in group "g")."""
    import pandas as pd

    from omgclip.dataset.format import INDEX_COLUMNS, INDEX_FILE

    rows = []
    for i, (utt, label, pixels) in enumerate(blocks):
        arr = np.zeros((20, 80, 80), np.uint8)
        arr[0, 0, :7] = pixels
        rel = f"blocks/validation/{utt}/{i}.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, arr)
        rows.append({"block_id": f"{utt}/{i}", "split": "validation", "group": (groups or {}).get(utt, "g"), "source": "s",
                     "video": "v", "utterance": utt, "label": label, "label_name": EMOTIONS[label],
                     "start_frame": 20 * i, "num_frames": 20, "fps": 25.0, "detect_frac": 1.0, "path": rel})
    pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).to_csv(root / INDEX_FILE, index=False)


def test_clip_vote_is_by_mean_probability(tmp_path: Path, monkeypatch):
    from omgclip.learn.models import registry

    monkeypatch.setitem(registry._MODELS, "reads_its_answer", _ReadsItsAnswer)
    ckpt = save_weights(tmp_path / "m.pt", _ReadsItsAnswer(), dict(META, model_name="reads_its_answer"))
    _write_blocks(tmp_path / "ds", [
        # clip A (anger): one block very sure of disgust, two fairly sure of anger.
        # mean -> anger; max probability -> disgust
        ("A", 0, [10, 90, 0, 0, 0, 0, 0]), ("A", 0, [80, 20, 0, 0, 0, 0, 0]), ("A", 0, [80, 20, 0, 0, 0, 0, 0]),
        # clip B (fear): one block sure of fear, two leaning to happy.
        # mean -> fear; majority of the blocks' votes -> happy
        ("B", 2, [0, 0, 100, 0, 0, 0, 0]), ("B", 2, [0, 0, 45, 55, 0, 0, 0]), ("B", 2, [0, 0, 45, 55, 0, 0, 0]),
    ])
    res = evaluate(EvalConfig(data=tmp_path / "ds", checkpoint=ckpt, split="validation", num_workers=0))
    block_cm = np.asarray(res["block"]["metrics"]["confusion_matrix"])
    assert block_cm[0, 0] == 2 and block_cm[0, 1] == 1 and block_cm[2, 2] == 1 and block_cm[2, 3] == 2
    clip_cm = np.asarray(res["clip"]["metrics"]["confusion_matrix"])
    assert res["num_clips"] == 2 and clip_cm[0, 0] == 1 and clip_cm[2, 2] == 1 and clip_cm.sum() == 2
    assert res["clip"]["metrics"]["accuracy"] == 1.0
    # 95% intervals resample whole clips: block accuracy is 2/3 on A and 1/3 on B, so a resample
    # of two clips scores 1/3 (BB), 1/2 (AB) or 2/3 (AA), each extreme a quarter of the time;
    # per-block resampling would give a much narrower interval around 1/2
    assert res["block"]["interval_95"]["accuracy"] == pytest.approx([1 / 3, 2 / 3], abs=1e-4)
    assert res["block"]["interval_95"]["uar"] == pytest.approx([1 / 3, 2 / 3], abs=1e-4)
    assert res["clip"]["interval_95"] == {"accuracy": [1.0, 1.0], "uar": [1.0, 1.0]}
    assert "95% CI" in format_report(res) and "clips" in res["interval_rule"]


def test_confidence_is_reported_after_the_files_temperature(tmp_path: Path, monkeypatch):
    """Each level's ``calibration`` is that of the probabilities predict would report: after
    the video temperature the file asks for (2 here: each block's probabilities become the
    normalised square roots), with the clip level on the clips' mean probabilities."""
    from omgclip.learn.metrics import apply_temperature, calibration
    from omgclip.learn.models import registry

    monkeypatch.setitem(registry._MODELS, "reads_its_answer", _ReadsItsAnswer)
    blocks = [("A", 0, [10, 90, 0, 0, 0, 0, 0]), ("A", 0, [80, 20, 0, 0, 0, 0, 0]), ("A", 0, [80, 20, 0, 0, 0, 0, 0]),
              ("B", 2, [0, 0, 100, 0, 0, 0, 0]), ("B", 2, [0, 0, 45, 55, 0, 0, 0])]
    _write_blocks(tmp_path / "ds", blocks)
    raw = np.array([b[2] for b in blocks], float) / 100
    y = np.array([b[1] for b in blocks])
    for temps, t in ((None, 1.0), ({"video": 2.0, "still": 1.0}, 2.0)):
        meta = dict(META, model_name="reads_its_answer", **({"temperature": temps} if temps else {}))
        ckpt = save_weights(tmp_path / f"m{t}.pt", _ReadsItsAnswer(), meta)
        res = evaluate(EvalConfig(data=tmp_path / "ds", checkpoint=ckpt, split="validation", num_workers=0))
        want = calibration(apply_temperature(raw, t), y)
        got = res["block"]["calibration"]
        # (the test net's 1e-9 floor for a 0 gives the five empty classes ~1e-4 of mass at T = 2)
        assert got["confidence"] == pytest.approx(want["confidence"], abs=5e-4)
        assert got["ece"] == pytest.approx(want["ece"], abs=5e-4) and got["nll"] == pytest.approx(want["nll"], abs=5e-4)
        clip_p = np.stack([apply_temperature(raw, t)[:3].mean(0), apply_temperature(raw, t)[3:].mean(0)])
        assert res["clip"]["calibration"]["confidence"] == pytest.approx(clip_p.max(1).mean(), abs=5e-4)
        assert res["temperature"] == temps
        assert f"mean top probability {got['confidence']:.3f}" in format_report(res)
    # softer at T = 2: the 0.9 / 1.0 blocks drop to 0.75 / 1.0, the others towards 1/2
    assert calibration(apply_temperature(raw, 2.0), y)["confidence"] < calibration(raw, y)["confidence"]


@pytest.mark.parametrize("still_flip", [True, False])
def test_photo_blocks_are_scored_as_predict_labels_photos(tmp_path: Path, monkeypatch, still_flip):
    """A block of one repeated image (a photo row of build-dataset) is scored by the still-image
    net, with the flip where the weights ask for it on stills; a moving block is not flipped.
    The test net reads its probabilities from the first 7 pixels of the first row: the photo
    says anger 0.71 / happy 0.29, its mirror image happy 1, so with the flip it is happy."""
    from omgclip.dataset.format import INDEX_COLUMNS, INDEX_FILE
    from omgclip.learn.models import registry

    import pandas as pd

    monkeypatch.setitem(registry._MODELS, "reads_its_answer", _ReadsItsAnswer)
    ckpt = save_weights(tmp_path / "m.pt", _ReadsItsAnswer(),
                        dict(META, model_name="reads_its_answer", still_flip=still_flip))
    image = np.zeros((80, 80), np.uint8)
    image[0, :7] = [100, 0, 0, 40, 0, 0, 0]
    image[0, 76] = 100  # the mirror image's pixel 3: happy
    photo = np.repeat(image[None], 20, axis=0)
    moving = photo.copy()
    moving[5, 40, 40] = 1  # one pixel differs: a video block
    root = tmp_path / "ds"
    rows = []
    for i, (arr, label) in enumerate([(photo, 3), (moving, 0)]):
        rel = f"blocks/validation/u{i}/0.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, arr)
        rows.append({"block_id": f"u{i}/0", "split": "validation", "group": "g", "source": "s", "video": "v",
                     "utterance": f"u{i}", "label": label, "label_name": EMOTIONS[label], "start_frame": 0,
                     "num_frames": 20, "fps": 25.0, "detect_frac": 1.0, "path": rel})
    pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).to_csv(root / INDEX_FILE, index=False)
    res = evaluate(EvalConfig(data=root, checkpoint=ckpt, split="validation", num_workers=0))
    cm = np.asarray(res["block"]["metrics"]["confusion_matrix"])
    assert cm[0, 0] == 1  # the moving block: one pass, anger
    assert (cm[3, 3], cm[3, 0]) == ((1, 0) if still_flip else (0, 1))


def test_heldout_in_manifest_mode_scores_the_validation_rows(setup):
    tmp, frame, _ = setup
    torch.manual_seed(0)
    meta = dict(META, split_info={"mode": "manifest", "val_fraction": 0.2, "seed": 0,
                                  "train_groups": None, "val_groups": None})
    ckpt = save_weights(tmp / "manifest_mode.pt", create_model("r2plus1d"), meta)
    res = evaluate(EvalConfig(data=tmp / "ds", checkpoint=ckpt, split="heldout", num_workers=0))
    val = frame[(frame["split"] == "validation") & (frame["label"] >= 0)]
    assert res["num_blocks"] == len(val) == 18 and res["num_clips"] == 6
    assert sum(map(sum, res["block"]["metrics"]["confusion_matrix"])) == 18
    assert "validation" in res["rows"]


@pytest.mark.parametrize("y_true, y_pred", [([7], [0]), ([0], [7]), ([-1], [0]), ([0], [-1]), ([0, 1], [0])],
                         ids=["true_too_big", "pred_too_big", "true_negative", "pred_negative", "lengths_differ"])
def test_metrics_refuse_impossible_predictions(y_true, y_pred):
    with pytest.raises(ValueError):
        metrics_from_predictions(y_true, y_pred, 7)


def test_metrics_accept_the_edges_and_any_shape():
    m = metrics_from_predictions([[0, 6], [6, 6]], [[0, 6], [0, 6]], 7)  # 2-D input is flattened
    assert m["confusion_matrix"][0][0] == 1 and m["confusion_matrix"][6] == [1, 0, 0, 0, 0, 0, 2]
    assert m["accuracy"] == pytest.approx(3 / 4) and m["num_samples"] == 4
    assert metrics_from_predictions([], [], 7)["num_samples"] == 0
    with pytest.raises(ValueError):
        metrics_from_confusion(np.zeros(3, int))  # not a matrix
    floats = metrics_from_confusion(np.array([[1.0, 0.0], [0.0, 1.0]]), labels=["a", "b"])
    assert floats["confusion_matrix"] == [[1, 0], [0, 1]] and isinstance(floats["confusion_matrix"][0][0], int)


def test_intervals_by_group_resample_people_whole(tmp_path: Path, monkeypatch):
    """``interval_by="group"``: person p's 6 clips are all right, person q's 2 all wrong. Drawn
    by person, a resample can be q twice (accuracy 0), so the interval reaches 0; drawn by
    clip, 8 draws rarely miss p's clips, so it stays far above 0. One group only: the interval
    is the point value, and a warning says so. A bad unit is a one-line error."""
    from omgclip.learn.models import registry

    monkeypatch.setitem(registry._MODELS, "reads_its_answer", _ReadsItsAnswer)
    ckpt = save_weights(tmp_path / "m.pt", _ReadsItsAnswer(), dict(META, model_name="reads_its_answer"))
    right, wrong = [100, 0, 0, 0, 0, 0, 0], [0, 100, 0, 0, 0, 0, 0]
    clips = [(f"p{i}", 0, right) for i in range(6)] + [(f"q{i}", 0, wrong) for i in range(2)]
    _write_blocks(tmp_path / "ds", clips, groups={u: u[0] for u, _, _ in clips})
    cfg = dict(data=tmp_path / "ds", checkpoint=ckpt, split="validation", num_workers=0)
    by_group = evaluate(EvalConfig(**cfg, interval_by="group"))
    by_clip = evaluate(EvalConfig(**cfg))
    assert by_group["block"]["metrics"]["accuracy"] == by_clip["block"]["metrics"]["accuracy"] == 0.75
    assert by_group["interval_units"] == 2 and by_clip["interval_units"] == 8
    assert by_group["block"]["interval_95"]["accuracy"] == [0.0, 1.0]
    assert by_group["clip"]["interval_95"]["accuracy"] == [0.0, 1.0]
    assert by_clip["block"]["interval_95"]["accuracy"][0] > 0.3
    assert "2 groups" in format_report(by_group) and not by_group["warnings"]
    _write_blocks(tmp_path / "one", clips)  # everyone in group "g"
    one = evaluate(EvalConfig(**dict(cfg, data=tmp_path / "one"), interval_by="group"))
    assert one["block"]["interval_95"]["accuracy"] == [0.75, 0.75]
    assert any("only 1" in w for w in one["warnings"])
    with pytest.raises(OmgclipError, match="interval_by"):
        EvalConfig(**cfg, interval_by="person")
