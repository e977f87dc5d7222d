"""Two sets of BatchNorm statistics in one model (``finetune(bn_recalibrate="video")``):
video clips go through the net with statistics recomputed from the training video blocks,
still images through the same weights with stage 2's own statistics. A weights file stores
the pair as the video net plus ``still_buffers``; inference, export and the benchmarks read
it back."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from omgclip.errors import OmgclipError
from omgclip.learn import transfer
from omgclip.learn.checkpoint import load_for_inference, load_model, save_weights
from omgclip.learn.models.layers import FlipAverage, StillAware, unwrap
from test_r2plus1d_wide import _tiny_dataset, _tiny_stage1_file


def _moving(faces: np.ndarray) -> np.ndarray:
    """``(N, 80, 80)`` real faces -> ``(N, 20, 80, 80)`` blocks of each face drifting sideways."""
    return np.stack([np.roll(faces, k, axis=2) for k in range(20)], 1)


def _bn_buffers(net) -> dict:
    return {k: v for k, v in net.state_dict().items() if "running" in k}


def test_split_bn_gives_video_the_recalibrated_statistics_and_stills_the_old_ones(fer_faces):
    """``split_bn``: the video net's BN statistics are those ``recalibrate_bn`` gives on the
    blocks, the still net is the net as it was, the weights are shared value for value, and
    the pair routes real video blocks to one and still faces to the other."""
    torch.manual_seed(0)
    net = transfer.new_net([8, 16, 32]).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    blocks = _moving(fer_faces(8))
    pair = transfer.split_bn(net, blocks, batch_size=4)
    assert isinstance(pair, StillAware) and pair.still is net and not pair.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # the still net is untouched
    expected = transfer.recalibrate_bn(copy.deepcopy(net), blocks, batch_size=4)
    video = pair.video.state_dict()
    for k, v in expected.state_dict().items():
        assert torch.equal(video[k], v), k
    differ = [k for k in video if not torch.equal(video[k], before[k])]
    assert differ and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in differ)
    # routing: blocks of a moving face -> video net; a face as a still (1-frame) clip -> still net
    x = transfer.to_clips(blocks[:3])
    s = transfer.to_clips(fer_faces(3))
    with torch.no_grad():
        torch.testing.assert_close(pair(x), pair.video(x))
        torch.testing.assert_close(pair(s), net(s))
        assert not torch.allclose(pair.video(s), net(s), atol=1e-4)  # the two statistics really differ
    np.testing.assert_allclose(transfer.predict_proba(pair, fer_faces(3), tta_flip=False),
                               transfer.predict_proba(net, fer_faces(3), tta_flip=False), atol=1e-6)


def test_finetune_video_mode_is_the_recipe_for_stills_and_all_mode_for_video(tmp_path):
    """``finetune(bn_recalibrate="video")`` returns a pair whose still net is exactly
    ``finetune()``'s and whose video net is exactly ``finetune(bn_recalibrate=True)``'s (same
    seed); an ensemble of such runs is a pair of ensembles, and a bad mode is refused."""
    data = _tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = transfer.new_net([8, 16, 32])
    kw = dict(epochs=1, batch_size=4, seed=3, ema=0.0)

    def run(mode):
        return transfer.finetune(copy.deepcopy(init), [str(data)], bn_recalibrate=mode, **kw)

    off, full, pair = run("off"), run(True), run("video")
    assert isinstance(pair, StillAware) and not isinstance(full, StillAware)
    for k, v in off.state_dict().items():
        assert torch.equal(pair.still.state_dict()[k], v), k
    for k, v in full.state_dict().items():
        assert torch.equal(pair.video.state_dict()[k], v), k
    assert any(not torch.equal(off.state_dict()[k], full.state_dict()[k]) for k in _bn_buffers(off))
    ens = transfer.finetune_ensemble([copy.deepcopy(init), copy.deepcopy(init)], [str(data)],
                                     bn_recalibrate="video", **kw)
    assert isinstance(ens, StillAware) and type(ens.video).__name__ == "Ensemble"
    assert transfer.asks_flip(ens) is False and transfer.asks_flip(pair) is True
    with pytest.raises(ValueError, match="bn_recalibrate must be one of"):
        run("stills")


def test_a_split_model_saves_and_loads_with_its_two_statistics(tmp_path, fer_faces):
    """A pair saved by ``save_weights`` holds the video net plus only the still net's differing
    BN buffers; ``load_for_inference`` gives video the recalibrated statistics and still images
    the others (flip where asked), ``export`` says the graph's still statistics differ, and a
    plain file says they do not."""
    from omgclip.apps.export import export_metadata

    torch.manual_seed(0)
    net = transfer.new_net([8, 16, 32]).eval()
    pair = transfer.split_bn(net, _moving(fer_faces(8)), batch_size=4)
    path = save_weights(tmp_path / "split.pt", pair, transfer.weights_meta(pair, None, flip=False))  # flip: stills only
    obj = torch.load(path, weights_only=True)
    assert set(obj["still_buffers"]) == {k for k, v in net.state_dict().items()
                                         if not torch.equal(v, pair.video.state_dict()[k])}
    assert "bn_statistics" in obj["meta"]
    loaded = load_for_inference(path)
    still = loaded.net_for(still=True)
    assert isinstance(still, FlipAverage) and unwrap(still) is not unwrap(loaded.net)
    x = transfer.to_clips(_moving(fer_faces(4)))
    s = transfer.to_clips(fer_faces(4))
    with torch.no_grad():
        torch.testing.assert_close(unwrap(loaded.net)(x), pair.video(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(unwrap(still)(s), net(s), atol=1e-4, rtol=1e-4)
    assert load_model(path).still_net is not None
    assert export_metadata(loaded)["still_bn_differs"] is True
    assert export_metadata(loaded)["still_flip"] is True
    assert export_metadata(load_for_inference(path, flip=False))["still_flip"] is False
    plain = save_weights(tmp_path / "plain.pt", net, transfer.weights_meta(net, None))
    assert "still_buffers" not in torch.load(plain, weights_only=True)
    assert load_model(plain).still_net is None
    assert export_metadata(load_for_inference(plain))["still_bn_differs"] is False


def test_save_weights_refuses_a_pair_that_differs_in_its_weights(tmp_path):
    torch.manual_seed(0)
    a = transfer.new_net([8, 16, 32]).eval()
    b = copy.deepcopy(a)
    with torch.no_grad():
        next(b.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="share its weights"):
        save_weights(tmp_path / "never.pt", StillAware(a, b), transfer.weights_meta(a, None))
    assert not (tmp_path / "never.pt").exists()


@pytest.mark.parametrize("bad, why", [
    ("not a dict", "still_buffers is a str"),
    ({"head.1.weight": None}, "not a BatchNorm statistic"),
    ({"no.such.running_mean": torch.zeros(3)}, "not a BatchNorm statistic"),
    ("wrong shape", "does not fit its net"),
])
def test_damaged_still_buffers_are_a_one_line_error(tmp_path, bad, why):
    torch.manual_seed(0)
    net = transfer.new_net([8, 16, 32]).eval()
    path = save_weights(tmp_path / "w.pt", net, transfer.weights_meta(net, None))
    obj = torch.load(path, weights_only=True)
    if bad == "wrong shape":
        key = next(k for k in obj["state_dict"] if k.endswith("running_mean"))
        bad = {key: torch.zeros(len(obj["state_dict"][key]) + 1)}
    obj["still_buffers"] = bad
    torch.save(obj, path)
    with pytest.raises(OmgclipError, match=why) as info:
        load_for_inference(path)
    assert "\n" not in str(info.value) and "damaged" in str(info.value)


def test_finetune_cli_writes_a_split_model(tmp_path):
    """``transfer finetune --bn-recalibrate video`` writes a file with ``still_buffers``, its
    meta records the mode, and a bad mode stops in argparse."""
    data = _tiny_dataset(tmp_path / "data")
    init_path = _tiny_stage1_file(tmp_path / "pre" / "best.pt")
    out = tmp_path / "split.pt"
    base = ["finetune", "--init", str(init_path), "--data", str(data), "--epochs", "1", "--threads", "1",
            "--out", str(out)]
    assert transfer.main([*base, "--bn-recalibrate", "video"]) == 0
    obj = torch.load(out, weights_only=True)
    assert obj["still_buffers"] and obj["meta"]["bn_recalibrate"] == "video"
    with pytest.raises(SystemExit):
        transfer.main([*base, "--bn-recalibrate", "sometimes"])



def test_the_bundled_model_has_one_set_of_statistics():
    """The split was tried as the recipe and withdrawn (model card, "What was tried": worse on
    every video row of the benchmark), so the shipped file is one net per member with stage 2's
    statistics, and the recipe's default says so."""
    from omgclip.learn.checkpoint import DEFAULT_WEIGHTS

    obj = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    assert "still_buffers" not in obj and transfer.FINETUNE_BN_RECALIBRATE == "off"
    assert load_model(DEFAULT_WEIGHTS).still_net is None

def test_adapted_to_recomputes_the_video_statistics_from_one_persons_blocks(fer_faces):
    """``transfer.adapted_to`` (test-time BN adaptation, scored by ``select_stage2 --adapt-bn``):
    a copy whose video net has the BN statistics of the given blocks (as ``recalibrate_bn``),
    the still net kept as it is, and the model passed in untouched."""
    torch.manual_seed(0)
    net = transfer.new_net([8, 16, 32]).eval()
    pair = transfer.split_bn(net, _moving(fer_faces(8)), batch_size=4)
    video_before = {k: v.clone() for k, v in pair.video.state_dict().items()}
    person = _moving(fer_faces(12)[8:])  # other faces: "a new person"
    adapted = transfer.adapted_to(pair, person, batch_size=2)
    assert isinstance(adapted, StillAware) and adapted.still is pair.still and adapted.video is not pair.video
    for k, v in pair.video.state_dict().items():
        assert torch.equal(v, video_before[k]), k
    expected = transfer.recalibrate_bn(copy.deepcopy(pair.video), person, batch_size=2).state_dict()
    for k, v in adapted.video.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert any(not torch.equal(adapted.video.state_dict()[k], video_before[k]) for k in _bn_buffers(net))
    plain = transfer.adapted_to(net, person, batch_size=2)
    assert not isinstance(plain, StillAware) and plain is not net
    # per person: each group's blocks scored by the model adapted to that group's blocks alone
    blocks, groups = np.concatenate([person, _moving(fer_faces(8)[:3])]), ["b"] * 4 + ["a"] * 3
    got = transfer.predict_proba_adapted(pair, blocks, groups, tta_flip=False)
    for g, rows in (("b", slice(0, 4)), ("a", slice(4, 7))):
        want = transfer.predict_proba(transfer.adapted_to(pair, blocks[rows]), blocks[rows], tta_flip=False)
        np.testing.assert_allclose(got[rows], want, atol=1e-6)
    assert not np.allclose(got[:4], transfer.predict_proba(transfer.adapted_to(pair, blocks), blocks[:4],
                                                           tta_flip=False), atol=1e-4)
