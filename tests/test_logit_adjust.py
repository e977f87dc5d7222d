"""Post-hoc logit adjustment for video (``video_logit_adjust``): stage 2 learns under about
half FER2013's class prior and half a uniform one; a weights file may ask inference to take
``tau * log(prior)`` off the video logits, so video clips decide under a balanced prior,
while still images keep the net's own logits."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from omgclip.errors import OmgclipError
from omgclip.learn import transfer


def _fer_labels():
    import pandas as pd

    from conftest import SHARED_DATA

    path = SHARED_DATA / "fer2013" / "labels.csv"
    if not path.is_file():
        pytest.skip(f"FER2013 not found at {path.parent} (a user's clone has no ../shared)")
    return pd.read_csv(path)


def test_stage2_prior_is_half_fer_training_and_half_uniform_and_tau_1_balances_it(tmp_path):
    from conftest import SHARED_DATA

    d = _fer_labels()
    y = d.loc[d["usage"] == "Training", "omg_label"].to_numpy()
    assert len(y) == 28709
    prior = transfer.stage2_prior(y)
    # read from the labels alone: labels.csv, or a load_fer cache's label arrays (no images read)
    np.testing.assert_allclose(transfer.fer_stage2_prior(SHARED_DATA / "fer2013"), prior)
    cache = tmp_path / "fer.npz"
    np.savez(cache, X=np.zeros((1, 1, 1), np.uint8), y=d["omg_label"].to_numpy(np.int64),
             usage=d["usage"].to_numpy(str))
    np.testing.assert_allclose(transfer.fer_stage2_prior(tmp_path / "absent", cache), prior)
    freq = np.bincount(y, minlength=7) / len(y)
    np.testing.assert_allclose(prior, 0.5 * freq + 0.5 / 7)
    assert abs(prior.sum() - 1) < 1e-12
    # FER2013: happy is the commonest class (25%), disgust the rarest (1.5%)
    assert prior.argmax() == 3 and prior.argmin() == 1
    assert transfer.logit_adjustment(0.0, prior) == [0.0] * 7
    # a net whose output is the prior itself says "no evidence": after tau = 1, every class alike
    out = transfer.adjust_proba(np.tile(prior, (3, 1)), transfer.logit_adjustment(1.0, prior))
    np.testing.assert_allclose(out, np.full((3, 7), 1 / 7), atol=1e-6)
    # tau = 0.5: halfway, in log space; the order of the classes is kept, the spread shrinks
    half = transfer.adjust_proba(prior[None], transfer.logit_adjustment(0.5, prior))[0]
    np.testing.assert_allclose(half, np.sqrt(prior) / np.sqrt(prior).sum(), rtol=1e-5)
    assert list(np.argsort(half)) == list(np.argsort(prior)) and half.max() - half.min() < prior.max() - prior.min()


def _bundled_with(tmp_path, **meta):
    from omgclip.learn.checkpoint import default_checkpoint

    obj = torch.load(default_checkpoint(), map_location="cpu", weights_only=True)
    obj["meta"] = {**obj["meta"], **meta}
    path = tmp_path / "adjusted.pt"
    torch.save(obj, path)
    return path


def test_a_file_asking_for_it_shifts_video_logits_and_leaves_stills_alone(tmp_path, fer_faces):
    """The bundled nets on real faces: with ``video_logit_adjust`` the video net's logits are
    the plain ones minus the offsets (so a happy-leaning clip can change its call), the
    still-image net is the plain file's, and ``logit_adjust=False`` gives the plain net back.
    ``export`` records the offsets it bakes into the graph."""
    from omgclip.apps.export import export_metadata
    from omgclip.learn.checkpoint import load_for_inference

    offsets = [-1.96, -2.54, -1.95, -1.62, -1.85, -1.86, -2.07]
    path = _bundled_with(tmp_path, video_logit_adjust=offsets)
    # without the file's temperatures (tests/test_temperature.py): the offsets alone
    plain, adjusted = load_for_inference(None, temperature=False), load_for_inference(path, temperature=False)
    faces = torch.from_numpy(fer_faces(6)).float().div(255)
    clips = faces[:, None, None].expand(6, 1, 20, 80, 80)  # (N, 1, T, H, W): each face held still
    with torch.no_grad():
        want = plain.net(clips) - torch.tensor(offsets)
        torch.testing.assert_close(adjusted.net(clips), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(adjusted.net_for(still=True)(clips), plain.net_for(still=True)(clips))
        torch.testing.assert_close(load_for_inference(path, logit_adjust=False, temperature=False).net(clips),
                                   plain.net(clips))
    # the offsets are what a class's logit loses: the rarest class (disgust) gains most on happy
    p_plain, p_adj = plain.net(clips).softmax(1), adjusted.net(clips).softmax(1)
    assert bool((p_adj[:, 1] / p_adj[:, 3] > p_plain[:, 1] / p_plain[:, 3]).all())
    assert adjusted.still_len == 1  # the wrapper does not hide the net's still-clip invariance
    meta = export_metadata(adjusted)
    assert meta["video_logit_adjust"] == pytest.approx(offsets) and meta["still_flip"] is True
    assert export_metadata(plain)["video_logit_adjust"] is None and export_metadata(plain)["still_flip"] is True


@pytest.mark.parametrize("bad", [[0.1] * 6, "0.1", [0.1] * 6 + ["x"], [0.1] * 6 + [float("nan")], [True] * 7])
def test_a_bad_adjustment_in_the_meta_is_one_line_error(tmp_path, bad):
    from omgclip.learn.checkpoint import load_for_inference

    with pytest.raises(OmgclipError, match=r"video_logit_adjust must be 7 finite numbers") as info:
        load_for_inference(_bundled_with(tmp_path, video_logit_adjust=bad))
    assert "\n" not in str(info.value)


def test_finetune_cli_writes_the_adjustment_from_the_fer_training_labels(tmp_path, capsys):
    """``transfer finetune --logit-adjust TAU --fer DIR`` records ``TAU * log(prior)`` with the
    prior of that folder's Training labels (here 70 real FER2013 faces), and inference applies
    it; without ``--fer``, or with TAU < 0, it stops in one line before any training."""
    from omgclip.learn.checkpoint import load_for_inference
    from test_r2plus1d_wide import _tiny_dataset, _tiny_stage1_file

    from conftest import SHARED_DATA

    d = _fer_labels()
    # a small FER2013 folder: 10 Training faces of each class, then 7 PublicTest ones
    parts = [d[(d["usage"] == "Training") & (d["omg_label"] == k)].head(10 if k != 1 else 4) for k in range(7)]
    parts.append(d[d["usage"] == "PublicTest"].head(7))
    import pandas as pd

    small = pd.concat(parts, ignore_index=True)
    fer = tmp_path / "fer2013"
    for f in small["file"]:
        (fer / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED_DATA / "fer2013" / f, fer / f)
    small.to_csv(fer / "labels.csv", index=False)
    data = _tiny_dataset(tmp_path / "data")
    init_path = _tiny_stage1_file(tmp_path / "pre" / "best.pt")
    base = ["finetune", "--init", str(init_path), "--data", str(data), "--epochs", "1", "--threads", "1"]
    for extra, why in ((["--logit-adjust", "0.5"], "needs TAU >= 0, and --fer"),
                       (["--logit-adjust", "-1", "--fer", str(fer)], "needs TAU >= 0")):
        with pytest.raises(SystemExit):
            transfer.main([*base, *extra, "--out", str(tmp_path / "never.pt")])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert why in err and not (tmp_path / "never.pt").exists()
    out = tmp_path / "adj.pt"
    assert transfer.main([*base, "--fer", str(fer), "--logit-adjust", "0.5", "--out", str(out)]) == 0
    loaded = load_for_inference(out, temperature=False)  # the offsets alone (the recipe's temperature aside)
    counts = np.array([10, 4, 10, 10, 10, 10, 10])
    prior = 0.5 * counts / counts.sum() + 0.5 / 7
    assert loaded.meta["logit_adjust_tau"] == 0.5
    np.testing.assert_allclose(loaded.meta["video_logit_adjust"], 0.5 * np.log(prior), rtol=1e-6)
    np.testing.assert_allclose(loaded.meta["logit_adjust_prior"], prior, atol=1e-6)
    x = torch.rand(2, 1, 20, 80, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(x), load_for_inference(out, logit_adjust=False, temperature=False).net(x)
                                   - torch.tensor(0.5 * np.log(prior), dtype=torch.float32), atol=1e-5, rtol=1e-5)
    # without --logit-adjust (the recipe's default 0 until adopted) the meta asks for nothing
    plain = tmp_path / "plain.pt"
    assert transfer.main([*base, "--fer", str(fer), "--out", str(plain)]) == 0
    assert ("video_logit_adjust" in load_for_inference(plain).meta) == (transfer.FINETUNE_LOGIT_ADJUST > 0)
