"""Calibrated confidences: temperature scaling (``temperature`` in a weights file's meta).

A weights file may ask inference to divide video logits by one temperature and still-image
logits by another (``finetune --temperature``, ``transfer calibrate --write``, ``train
--calibrate``); the argmax never moves. The bundled file asks for none: temperatures fitted on
the validation people (video 1.322, still 0.952) made the benchmark's people worse (rule 9;
model card, "Confidence"), so these tests use copies of it that ask for them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from omgclip.errors import OmgclipError
from omgclip.learn import transfer
from omgclip.learn.metrics import apply_temperature, calibration, fit_temperature


# --------------------------------------------------------------------------- the metrics
def test_calibration_on_a_hand_made_case():
    """Four predictions: two at 0.9 (one right), two at 0.6 (both right). ECE (15 bins) is
    |0.5 - 0.9| * 2/4 + |1.0 - 0.6| * 2/4 = 0.4; NLL is the mean -log p of the true class."""
    p = np.array([[0.9, 0.1, 0.0], [0.9, 0.0, 0.1], [0.4, 0.6, 0.0], [0.0, 0.4, 0.6]])
    y = np.array([0, 1, 1, 2])
    got = calibration(p, y)
    assert got["ece"] == pytest.approx(0.4) and got["confidence"] == pytest.approx(0.75)
    assert got["accuracy"] == pytest.approx(0.75) and got["bins"] == 15
    assert got["nll"] == pytest.approx(-np.mean(np.log([0.9, 1e-12, 0.6, 0.6])))
    # confidence equal to accuracy inside every bin: ECE 0
    assert calibration(np.array([[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]), np.array([0, 1]))["ece"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="class indices"):
        calibration(p, np.array([0, 1, 1, 3]))
    with pytest.raises(ValueError, match="expected probabilities"):
        calibration(p[:3], y)


def test_a_temperature_keeps_every_argmax_and_one_is_the_identity():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(7), size=200).astype(np.float32)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-6)
    for t in (0.5, 1.322, 4.0):
        q = apply_temperature(p, t)
        assert (q.argmax(1) == p.argmax(1)).all() and np.allclose(q.sum(1), 1, atol=1e-5)
    # > 1 softens (lower top probability), < 1 sharpens
    assert (apply_temperature(p, 2.0).max(1) < p.max(1) + 1e-7).all()
    assert (apply_temperature(p, 0.5).max(1) > p.max(1) - 1e-7).all()
    for bad in (0.0, -1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="positive number"):
            apply_temperature(p, bad)


def test_fit_temperature_finds_the_softening_that_makes_overconfident_draws_honest():
    """Labels drawn from known probabilities, then shown 2.5 times sharper (T = 0.4): the fit
    undoes it (T near 2.5), and the fitted probabilities have a lower NLL and ECE."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20000, 7)) * 2
    true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.random((len(true), 1)) > true.cumsum(1)).sum(1)
    shown = apply_temperature(true, 0.4)
    t = fit_temperature(shown, y)
    assert 2.3 < t < 2.7, t
    before, after = calibration(shown, y), calibration(apply_temperature(shown, t), y)
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"] / 3
    # honest probabilities need no temperature
    assert 0.9 < fit_temperature(true, y) < 1.1


# --------------------------------------------------------------------------- a file that asks for them
FITTED = {"video": 1.322, "still": 0.952}  # rule 9's fit on people no recipe weights trained on


def _bundled_with_temperatures(tmp_path, temps=FITTED):
    from omgclip.learn.checkpoint import default_checkpoint, rewrite_meta

    path = tmp_path / "calibrated.pt"
    shutil.copyfile(default_checkpoint(), path)
    rewrite_meta(path, {"temperature": temps})
    return path


def test_a_file_with_temperatures_divides_video_and_still_logits_by_them(fer_faces, tmp_path):
    """The bundled nets on real faces, from a copy whose meta asks for rule 9's temperatures:
    the video logits are the plain ones / 1.322 and the still ones / 0.952 (the flip averaged
    first), every label stays, and the video probabilities get less confident. ``export``
    records both; ``temperature=False`` gives the plain nets back."""
    from omgclip.apps.export import export_metadata
    from omgclip.learn.checkpoint import load_for_inference

    path = _bundled_with_temperatures(tmp_path)
    calibrated, plain = load_for_inference(path), load_for_inference(None)
    assert calibrated.meta["temperature"] == FITTED and "temperature" not in plain.meta
    assert transfer.FINETUNE_TEMPERATURE is None  # rule 9: the recipe ships none
    faces = torch.from_numpy(fer_faces(8)).float().div(255)
    clip = faces[:, None, None].expand(8, 1, 20, 80, 80).clone()
    clip[:, :, 10:] = clip[:, :, 10:].flip(-2)  # not one repeated image: a video clip
    still = faces[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(calibrated.net(clip), plain.net(clip) / 1.322, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(calibrated.net_for(still=True)(still), plain.net_for(still=True)(still) / 0.952,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(load_for_inference(path, temperature=False).net(clip), plain.net(clip))
        p_cal, p_plain = calibrated.net(clip).softmax(1), plain.net(clip).softmax(1)
    assert (p_cal.argmax(1) == p_plain.argmax(1)).all() and (p_cal.max(1).values < p_plain.max(1).values).all()
    assert calibrated.still_len == 1  # the wrapper does not hide the nets' still-clip invariance
    assert export_metadata(calibrated)["temperature"] == {"video": 1.322, "still": 0.952}
    assert export_metadata(plain)["temperature"] is None and export_metadata(plain)["still_flip"] is True


def test_the_bundled_file_is_nearly_calibrated_on_publictest_photos(shared_data):
    """Rule 9's still temperature (0.952) was fitted on FER2013 PublicTest (3,589 real faces of
    people no recipe weights trained on) under the bundled file: fitting it again gives it
    back, and on these photos the file is nearly calibrated as it is (ECE under 0.04)."""
    import pandas as pd

    from omgclip.learn.checkpoint import load_for_inference

    root = shared_data / "fer2013"
    d = pd.read_csv(root / "labels.csv")
    d = d[d["usage"] == "PublicTest"]
    loaded = load_for_inference(None)
    x = transfer.reframe(transfer.read_fer_images(root, d["file"]), transfer.face_framing_zoom(loaded.meta["face"]))
    p = transfer.predict_proba(loaded.net_for(still=True), x, 256, tta_flip=False)
    y = d["omg_label"].to_numpy()
    assert abs(fit_temperature(p, y) - FITTED["still"]) < 0.005
    assert calibration(p, y)["ece"] < 0.04


@pytest.mark.parametrize("bad", [{"video": 1.3}, {"video": 1.3, "still": -1}, {"video": float("nan"), "still": 1},
                                 {"video": True, "still": 1}, {"video": "1.3", "still": 1}, 1.3,
                                 {"video": 1.3, "still": 1, "audio": 1}, {"video": 100, "still": 1}])
def test_a_bad_temperature_in_the_meta_is_a_one_line_error(tmp_path, bad):
    from omgclip.learn.checkpoint import load_for_inference

    path = _bundled_with_temperatures(tmp_path, bad)
    with pytest.raises(OmgclipError, match="meta temperature must be") as exc:
        load_for_inference(path)
    assert "\n" not in str(exc.value)


def test_rewrite_meta_keeps_every_tensor_and_removes_a_key_given_none(tmp_path):
    from omgclip.learn.checkpoint import default_checkpoint, load_for_inference, rewrite_meta

    path = _bundled_with_temperatures(tmp_path)
    rewrite_meta(path, {"temperature": None, "note": "x"})
    before = torch.load(default_checkpoint(), weights_only=True)
    after = torch.load(path, weights_only=True)
    assert before["state_dict"].keys() == after["state_dict"].keys()
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    assert "temperature" not in after["meta"] and after["meta"]["note"] == "x"
    assert {k: v for k, v in after["meta"].items() if k != "note"} == before["meta"]
    assert load_for_inference(path).meta.get("temperature") is None
    assert [p.name for p in tmp_path.iterdir()] == ["calibrated.pt"]  # no temp file left behind
    junk = tmp_path / "junk.pt"
    torch.save({"state_dict": {}}, junk)
    with pytest.raises(OmgclipError, match="not a compact omgclip weights file"):
        rewrite_meta(junk, {"temperature": None})


def test_predict_reports_calibrated_probabilities_on_real_photos_and_video(shared_data, tmp_path):
    """``predict`` with a file asking for temperatures against the bundled one: on real
    FER2013 photos the probabilities are the plain ones at T = 0.952, on a real talking head at
    T = 1.322, and no label changes."""
    import pandas as pd

    from omgclip.apps.predict import PredictConfig, predict
    from omgclip.labels import EMOTIONS

    calibrated = _bundled_with_temperatures(tmp_path)
    table = pd.read_csv(shared_data / "fer2013" / "labels.csv")
    photos = tuple(str(shared_data / "fer2013" / f) for f in table[table["usage"] == "PublicTest"]["file"][:12])
    video = (str(shared_data / "unlabeled_faces" / "videos" / "pyfeat_single_face.mp4"),)
    probs = [f"p_{e}" for e in EMOTIONS]
    for inputs, t in ((photos, 0.952), (video, 1.322)):
        kw = dict(inputs=inputs, progress=False, crop="none", persons=False)
        cal = predict(PredictConfig(checkpoint=str(calibrated), **kw))
        raw = predict(PredictConfig(checkpoint=None, **kw))
        assert len(cal) == len(raw) > 0 and list(cal["label"]) == list(raw["label"])
        np.testing.assert_allclose(cal[probs].to_numpy(), apply_temperature(raw[probs].to_numpy(), t), atol=2e-5)
        np.testing.assert_allclose(cal["confidence"], cal[probs].max(axis=1), atol=1e-6)


# --------------------------------------------------------------------------- the commands
def test_finetune_writes_temperatures_only_where_asked(tmp_path, capsys):
    from omgclip.learn.checkpoint import load_model
    from test_r2plus1d_wide import _tiny_dataset, _tiny_stage1_file

    data = _tiny_dataset(tmp_path / "data")
    init = _tiny_stage1_file(tmp_path / "pre" / "best.pt")
    base = ["finetune", "--init", str(init), "--data", str(data), "--epochs", "1", "--threads", "1"]
    with pytest.raises(SystemExit):
        transfer.main([*base, "--temperature", "1.3", "--out", str(tmp_path / "never.pt")])
    assert "expected VIDEO,STILL" in capsys.readouterr().err and not (tmp_path / "never.pt").exists()
    with pytest.raises(SystemExit):
        transfer.main([*base, "--temperature", "0,1", "--out", str(tmp_path / "never.pt")])
    assert "must lie in" in capsys.readouterr().err
    assert transfer.main([*base, "--out", str(tmp_path / "recipe.pt")]) == 0
    assert "temperature" not in load_model(tmp_path / "recipe.pt").meta  # the recipe's: none (rule 9)
    assert transfer.main([*base, "--temperature", "none", "--out", str(tmp_path / "none.pt")]) == 0
    assert "temperature" not in load_model(tmp_path / "none.pt").meta
    assert transfer.main([*base, "--temperature", "2,0.5", "--out", str(tmp_path / "own.pt")]) == 0
    assert load_model(tmp_path / "own.pt").meta["temperature"] == {"video": 2.0, "still": 0.5}


def test_calibrate_fits_both_temperatures_and_writes_them_into_the_file(tmp_path, shared_data, capsys):
    """``transfer calibrate``: the video temperature from a select_stage2-style ``.npz`` of
    held-out blocks (here overconfident made-up probabilities for the blocks of a small
    dataset), the still one from PublicTest faces of a small real FER2013 folder under the
    bundled file; ``--write`` puts them in a copy's meta, tensors untouched. Wrong inputs
    stop in one line before anything is written."""
    import pandas as pd

    from omgclip.learn.checkpoint import default_checkpoint, load_model
    from test_r2plus1d_wide import _tiny_dataset

    data = _tiny_dataset(tmp_path / "data", n=40)
    index = pd.read_csv(data / "index.csv")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(index), 7)) * 3
    honest = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    npz = tmp_path / "sel.npz"
    np.savez(npz, block_id=index["block_id"].to_numpy().astype(str), names=np.array(["recipe"]),
             proba=apply_temperature(honest, 0.5)[None])
    fer = tmp_path / "fer2013"
    table = pd.read_csv(shared_data / "fer2013" / "labels.csv")
    small = table[table["usage"] == "PublicTest"].head(60)
    for f in small["file"]:
        (fer / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / "fer2013" / f, fer / f)
    small.to_csv(fer / "labels.csv", index=False)
    weights = tmp_path / "w.pt"
    shutil.copyfile(default_checkpoint(), weights)
    base = ["calibrate", "--weights", str(weights), "--threads", "1"]
    for extra, why in ((["--video-proba", str(npz)], "needs --data"),
                       (["--write", "--video-proba", str(npz), "--data", str(data)], "needs both temperatures"),
                       (["--video-proba", str(npz), "--data", str(data), "--row", "other"], "has no row 'other'"),
                       (["--video-proba", str(npz), "--data", str(tmp_path)], "index")):
        with pytest.raises(SystemExit):
            transfer.main([*base, *extra])
        assert why in capsys.readouterr().err.strip().splitlines()[-1]
    assert transfer.main([*base, "--video-proba", str(npz), "--data", str(data), "--fer", str(fer), "--write"]) == 0
    out = capsys.readouterr().out
    assert "video: T" in out and "on 40 blocks" in out and "still: T" in out and "on 60 photos" in out
    temps = load_model(weights).meta["temperature"]
    assert temps["video"] > 1.2 and 0.5 < temps["still"] < 2.0  # sharpened draws get softened
    before, after = torch.load(default_checkpoint(), weights_only=True), torch.load(weights, weights_only=True)
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
