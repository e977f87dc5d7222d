"""``r2plus1d_wide``: a still clip gives the same logits at any length (what lets it learn
from photos at T=1 and run on 20-frame blocks unchanged)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omgclip.labels import EMOTIONS
from omgclip.learn.models import create_model, list_models


def test_still_clip_equals_image_at_any_length():
    torch.manual_seed(0)
    net = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()
    img = torch.rand(3, 1, 1, 80, 80)
    with torch.no_grad():
        ref = net(img)
        for t in (2, 7, 20):
            assert torch.allclose(net(img.expand(3, 1, t, 80, 80)), ref, atol=1e-5), t
        moving = torch.rand(3, 1, 20, 80, 80)
        assert net(moving).shape == (3, 7)
    assert "r2plus1d_wide" in list_models()


def test_trains_on_stills_and_blocks():
    from omgclip.learn.transfer import augment

    net = create_model("r2plus1d_wide", widths=(8, 16, 32))
    x = augment(torch.rand(4, 1, 20, 80, 80))
    assert x.shape == (4, 1, 20, 80, 80) and 0 <= float(x.min()) and float(x.max()) <= 1
    # one transform per clip: a still clip stays still
    still = augment(torch.rand(2, 1, 1, 80, 80).expand(2, 1, 5, 80, 80).contiguous())
    assert torch.allclose(still, still[:, :, :1].expand_as(still))
    loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()


def test_test_time_flip_where_the_weights_say_so(tmp_path):
    """A weights file with ``test_time_flip`` is run (predict, live, serve, evaluate, export)
    as the mean of the clip's and its mirror image's probabilities; one without, as is."""
    from omgclip.learn.checkpoint import load_for_inference, save_weights
    from omgclip.learn.transfer import weights_meta

    torch.manual_seed(0)
    net = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()
    with torch.no_grad():  # a fresh net's outputs are near uniform: give it some opinions
        for prm in net.parameters():
            prm.normal_(0, 0.3)
    meta = weights_meta(net, None)
    assert meta["test_time_flip"] is True  # the recipe's weights ask for it
    flip_file = save_weights(tmp_path / "flip.pt", net, meta)
    plain_file = save_weights(tmp_path / "plain.pt", net, {**meta, "test_time_flip": False})
    x = torch.rand(4, 1, 20, 80, 80)
    with torch.no_grad():
        p, p_mirror = net(x).softmax(1), net(x.flip(-1)).softmax(1)
        assert not torch.allclose(p, p_mirror, atol=1e-3)  # the net alone is not symmetric
        flipped = load_for_inference(flip_file).net
        got = flipped(x).softmax(1)
        torch.testing.assert_close(got, (p + p_mirror) / 2, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(flipped(x.flip(-1)).softmax(1), got, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(load_for_inference(plain_file).net(x).softmax(1), p, atol=1e-6, rtol=1e-5)
        # --no-flip (predict, live): one pass even where the weights ask for the flip
        torch.testing.assert_close(load_for_inference(flip_file, flip=False).net(x).softmax(1), p,
                                   atol=1e-6, rtol=1e-5)
        # ``still_flip`` alone (the bundled ensemble): video as is, still images flipped
        assert meta["still_flip"] is True
        stills_file = save_weights(tmp_path / "stills.pt", net, {**meta, "test_time_flip": False})
        stills = load_for_inference(stills_file)
        torch.testing.assert_close(stills.net(x).softmax(1), p, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(stills.net_for(still=True)(x).softmax(1), (p + p_mirror) / 2,
                                   atol=1e-6, rtol=1e-5)
        assert stills.net_for(still=False) is stills.net
        one = load_for_inference(flip_file)
        assert one.net_for(still=True) is one.net  # flipped already: one net for both
        for off in (load_for_inference(stills_file, flip=False),
                    load_for_inference(save_weights(tmp_path / "none.pt", net, {**meta, "test_time_flip": False,
                                                                                  "still_flip": False}))):
            torch.testing.assert_close(off.net_for(still=True)(x).softmax(1), p, atol=1e-6, rtol=1e-5)


def test_still_images_run_as_one_frame_where_the_net_allows(tmp_path):
    """``LoadedModel.still_len``: the bundled ensemble of ``r2plus1d_wide`` nets classifies a
    still image from its crop once (same probabilities as the crop repeated 20 times, 20 times
    less model time); a net whose zero time padding makes length matter (``r2plus1d``) gets
    the crop repeated ``block_len`` times."""
    from omgclip.learn.checkpoint import load_for_inference, save_weights

    bundled = load_for_inference(None)
    assert bundled.still_len == 1 and bundled.block_len == 20
    img = torch.rand(2, 1, 1, 80, 80)
    with torch.no_grad():
        net = bundled.net_for(still=True)
        torch.testing.assert_close(net(img).softmax(1), net(img.expand(2, 1, 20, 80, 80)).softmax(1),
                                   atol=1e-5, rtol=1e-4)
    torch.manual_seed(0)
    plain = create_model("r2plus1d", widths=(8, 16, 32)).eval()
    with torch.no_grad():
        for prm in plain.parameters():
            prm.normal_(0, 0.3)
        assert not torch.allclose(plain(img), plain(img.expand(2, 1, 20, 80, 80)), atol=1e-3)
    meta = {"model_name": "r2plus1d", "model_kwargs": {"widths": [8, 16, 32]}, "labels": list(EMOTIONS),
            "block_len": 20, "crop_size": 80}
    assert load_for_inference(save_weights(tmp_path / "r2.pt", plain, meta)).still_len == 20


def test_half_weights_file_loads_into_a_float32_net(tmp_path):
    """``save_weights(half=True)`` (the recipe's bundled file) stores float16: half the
    bytes, and the loaded float32 net gives the same probabilities within 1e-2."""
    from omgclip.learn.checkpoint import DEFAULT_WEIGHTS, load_model, save_weights
    from omgclip.learn.transfer import weights_meta

    torch.manual_seed(0)
    net = create_model("r2plus1d_wide", widths=(16, 32, 64)).eval()
    with torch.no_grad():
        for prm in net.parameters():
            prm.normal_(0, 0.3)
    full = save_weights(tmp_path / "full.pt", net, weights_meta(net, None))
    half = save_weights(tmp_path / "half.pt", net, weights_meta(net, None), half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half).net
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(3, 1, 20, 80, 80)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).softmax(1), net(x).softmax(1), atol=1e-2, rtol=0)
    assert DEFAULT_WEIGHTS.stat().st_size < 20_000_000  # the bundled file stays small (issue 7: <= 20 MB)


def test_fold_batchnorm_keeps_outputs_and_removes_every_batchnorm():
    """Inference folds each BN into its conv (predict's model time): no BN is left, and the
    logits match the unfolded net's on real-looking statistics (BN running means and
    variances far from 0 and 1), for both stems."""
    import copy

    import pytest

    from omgclip.learn.models.layers import fold_batchnorm

    for stem in ("s4", "s2x2"):
        torch.manual_seed(1)
        net = create_model("r2plus1d_wide", widths=(8, 16, 32), stem=stem).eval()
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm3d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.2, 3.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
        folded = fold_batchnorm(copy.deepcopy(net))
        n_bn = sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
        assert n_bn > 10 and not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())
        x = torch.rand(3, 1, 20, 80, 80)
        with torch.no_grad():
            torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(net.train())


def test_pretrain_keeps_the_better_of_raw_and_averaged_weights(tmp_path):
    """Stage 1 with ``--ema``: each epoch scores the raw and the averaged weights on
    PublicTest, the record names which one ``best.pt`` holds, and the file loads as a net
    whose PublicTest accuracy is the one recorded."""
    import json

    import numpy as np

    from omgclip.learn import transfer

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 200)
    X = (rng.integers(0, 60, (200, 80, 80)) + (y * 28)[:, None, None]).astype(np.uint8)  # learnable
    usage = np.array(["Training"] * 160 + ["PublicTest"] * 40)
    np.savez(tmp_path / "fer.npz", X=X, y=y, usage=usage)
    best = transfer.pretrain_stills("unused", str(tmp_path / "out"), epochs=3, batch_size=32, widths=(8, 16, 32),
                                    cache=str(tmp_path / "fer.npz"), ema_decay=0.9)
    hist = json.loads((tmp_path / "out" / "history.json").read_text())
    assert len(hist) == 3 and all("ema_public_acc" in r for r in hist)
    for r in hist:
        assert r["public_acc"] == max(r["ema_public_acc"], r["raw_public_acc"])
        assert r["ema"] == (r["ema_public_acc"] > r["raw_public_acc"])
    assert best["public_acc"] == max(r["public_acc"] for r in hist)
    net = transfer._load_init(str(tmp_path / "out" / "best.pt")).eval()
    acc, _ = transfer.accuracy_uar(y[160:], transfer.predict_proba(net, X[160:]))
    assert abs(acc - best["public_acc"]) < 1e-9


def _tiny_dataset(root, n=8):
    """A built-dataset folder of ``n`` random labeled 20-frame blocks (index.csv + .npy)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        rel = f"blocks/train/u{i}/0000.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, rng.integers(0, 255, (20, 80, 80), dtype=np.uint8))
        rows.append({"block_id": f"train/u{i}/0000", "split": "train", "group": f"p{i % 2}", "source": "x.mp4",
                     "video": "", "utterance": f"u{i}", "label": i % 7, "label_name": "", "start_frame": 0,
                     "num_frames": 20, "fps": 25.0, "detect_frac": 1.0, "path": rel})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    return root


def _tiny_stage1_file(path):
    """A stage-1 file (as ``transfer pretrain`` writes ``best.pt``) of a small random
    ``r2plus1d_wide`` (widths 8/16/32, seed 0) at ``path``; returns ``path``."""
    from omgclip.learn import transfer

    torch.manual_seed(0)
    init = transfer.new_net([8, 16, 32])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": init.state_dict(), "arch": dict(init.arch), "widths": list(init.widths), "epoch": 1},
               path)
    return path


def test_finetune_blend_mixes_the_fine_tuned_and_initial_weights(tmp_path):
    """Stage 2's ``blend``: 0 gives back the initial weights exactly, 1 (the recipe's
    default) the fine-tuned ones, 0.5 their midpoint (same seed: the same fine-tuning)."""
    import pytest

    from omgclip.learn import transfer

    data = _tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()
    start = {k: v.clone() for k, v in init.state_dict().items()}

    def run(blend):
        import copy

        return transfer.finetune(copy.deepcopy(init), [str(data)], epochs=1, batch_size=4, seed=3,
                                 blend=blend, bn_recalibrate="off").state_dict()  # the weights as blended

    zero, half, one, default = run(0.0), run(0.5), run(1.0), run(None)
    assert transfer.DEFAULT_BLEND == 1.0
    moved = [k for k, v in start.items() if v.is_floating_point() and not torch.equal(one[k], v)]
    assert len(moved) > 10  # the fine-tuning changed the weights
    for k, v in start.items():
        if v.is_floating_point():  # (BN's step counters are the fine-tuning's)
            torch.testing.assert_close(zero[k], v, atol=0, rtol=0)
            torch.testing.assert_close(half[k], (one[k] + v) / 2, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(default[k], one[k], atol=0, rtol=0)
    with pytest.raises(ValueError, match="blend"):
        run(1.5)


def test_mixup_loss_mixes_inputs_and_targets(tmp_path):
    """``_mixed_loss``: off, plain cross-entropy; on, the loss of the mixed batch against
    both targets, weighted by the same lambda (checked against a by-hand mix)."""
    import numpy as np
    import pytest

    from omgclip.learn import transfer

    torch.manual_seed(0)
    net = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()
    x, y = torch.rand(4, 1, 2, 80, 80), torch.tensor([0, 3, 5, 6])
    with torch.no_grad():
        plain = transfer._mixed_loss(net, x, y, 0.0, np.random.default_rng(0))
        assert torch.allclose(plain, torch.nn.functional.cross_entropy(net(x), y))
        got = transfer._mixed_loss(net, x, y, 0.4, np.random.default_rng(7), label_smoothing=0.1)
        rng = np.random.default_rng(7)
        lam, perm = float(rng.beta(0.4, 0.4)), torch.from_numpy(rng.permutation(4))
        out = net(lam * x + (1 - lam) * x[perm])
        ce = torch.nn.functional.cross_entropy
        want = lam * ce(out, y, label_smoothing=0.1) + (1 - lam) * ce(out, y[perm], label_smoothing=0.1)
        assert torch.allclose(got, want) and not torch.allclose(got, plain)
    data = _tiny_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="mixup"):
        transfer.finetune(net, [str(data)], epochs=1, batch_size=4, mixup=-1)
    tuned = transfer.finetune(net, [str(data)], epochs=1, batch_size=4, mixup=0.4)
    assert not tuned.training


def test_finetune_distills_a_peers_probabilities_on_unlabeled_blocks(tmp_path):
    """``finetune(distill=NPZ)``: unlabeled blocks whose peer probabilities all say 'happy'
    pull the net's output on them towards happy, against the same fine-tuning without them
    (both returning their last weights: on 8 tiny epochs a weight average would lag);
    a negative weight is refused."""
    import copy

    import numpy as np
    import pytest

    from omgclip.learn import transfer

    data = _tiny_dataset(tmp_path / "data")
    rng = np.random.default_rng(1)
    Xd = rng.integers(0, 255, (12, 20, 80, 80), dtype=np.uint8)
    P = np.zeros((12, 20, 7), np.float32)
    P[..., 3] = 1.0
    np.savez(tmp_path / "teacher.npz", X=Xd, P=P, group=np.array(["unl-a"] * 12))
    torch.manual_seed(0)
    init = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()

    def happy(**kw):
        net = transfer.finetune(copy.deepcopy(init), [str(data)], epochs=8, batch_size=4, seed=3, lr=1e-2,
                                ema=0.0, **kw)
        return float(transfer.predict_proba(net, Xd)[:, 3].mean())

    plain, distilled = happy(), happy(distill=str(tmp_path / "teacher.npz"), distill_weight=5.0)
    assert distilled > plain + 0.2, (plain, distilled)
    with pytest.raises(ValueError, match="distill_weight"):
        happy(distill=str(tmp_path / "teacher.npz"), distill_weight=-1.0)


def test_finetune_soup_is_the_mean_of_its_seeds_runs(tmp_path):
    """``finetune(soup=2)`` returns the mean of two fine-tunings from the same start with
    seeds ``seed`` and ``seed + SOUP_SEED_STEP`` (each checked by running it alone), then
    blended like a single run; ``soup=0`` is refused."""
    import copy

    import pytest

    from omgclip.learn import transfer

    data = _tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()
    start = {k: v.clone() for k, v in init.state_dict().items()}

    def run(**kw):
        kw.setdefault("bn_recalibrate", "off")  # the weights as averaged
        return transfer.finetune(copy.deepcopy(init), [str(data)], epochs=1, batch_size=4, **kw).state_dict()

    a, b = run(seed=3), run(seed=3 + transfer.SOUP_SEED_STEP)
    soup, half = run(seed=3, soup=2), run(seed=3, soup=2, blend=0.5)
    differ = [k for k, v in a.items() if v.is_floating_point() and not torch.allclose(a[k], b[k])]
    assert len(differ) > 10  # the two seeds' runs are different nets
    for k, v in a.items():
        if v.is_floating_point():
            torch.testing.assert_close(soup[k], (a[k] + b[k]) / 2, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(half[k], (soup[k] + start[k]) / 2, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="soup"):
        run(soup=0)
    # the recipe's BN split comes after the soup: its still net is the soup itself
    pair = transfer.finetune(copy.deepcopy(init), [str(data)], epochs=1, batch_size=4, seed=3, soup=2,
                             bn_recalibrate="video")
    for k, v in pair.still.state_dict().items():
        assert torch.equal(v, soup[k]), k
    assert any(not torch.equal(v, soup[k]) for k, v in pair.video.state_dict().items() if "running" in k)


def test_finetune_ema_returns_the_moving_average_of_the_weights(tmp_path):
    """``finetune(ema=DECAY)`` returns the exponential moving average of the weights (BN
    statistics included): with a decay of ~0 it is the last weights, with 0.9 a different
    net; a decay outside [0, 1) is refused; the recipe's decay is the default."""
    import copy

    import pytest

    from omgclip.learn import transfer

    data = _tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()

    def run(**kw):
        net = transfer.finetune(copy.deepcopy(init), [str(data)], epochs=2, batch_size=4, seed=5, **kw)
        return net.state_dict()

    last, near0, avg = run(ema=0.0), run(ema=1e-12), run(ema=0.9)
    floats = [k for k, v in last.items() if v.is_floating_point()]
    for k in floats:
        torch.testing.assert_close(near0[k], last[k], atol=1e-6, rtol=1e-5)
    assert any("running_mean" in k for k in floats)
    differ = [k for k in floats if not torch.allclose(avg[k], last[k], atol=1e-5)]
    assert len(differ) > 10 and any("running_mean" in k for k in differ)  # weights and BN statistics
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema"):
            run(ema=bad)
    import inspect

    assert inspect.signature(transfer.finetune).parameters["ema"].default == transfer.FINETUNE_EMA
    assert 0 < transfer.FINETUNE_EMA < 1


def test_finetune_zooms_the_video_blocks_by_video_zoom(tmp_path, monkeypatch):
    """``finetune(video_zoom=(lo, hi))`` is the zoom range of the video blocks' augmentation
    (the FER stills keep augment's own); the recipe's range is the default; a bad range is refused."""
    import copy
    import inspect

    from omgclip.learn import transfer

    data = _tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()
    seen = []
    real = transfer.augment

    def spy(x, zoom=(1.0, 1.35), **kw):
        seen.append(tuple(zoom))
        return real(x, zoom=zoom, **kw)

    monkeypatch.setattr(transfer, "augment", spy)
    transfer.finetune(copy.deepcopy(init), [str(data)], epochs=1, batch_size=4, video_zoom=(0.8, 0.9))
    assert seen and set(seen) == {(0.8, 0.9)}
    seen.clear()
    transfer.finetune(copy.deepcopy(init), [str(data)], epochs=1, batch_size=4)
    assert set(seen) == {tuple(transfer.FINETUNE_VIDEO_ZOOM)}
    assert inspect.signature(transfer.finetune).parameters["video_zoom"].default == transfer.FINETUNE_VIDEO_ZOOM
    for bad in ((1.2, 1.0), (0.0, 1.0), (1.0,)):
        with pytest.raises(ValueError, match="video_zoom"):
            transfer.finetune(copy.deepcopy(init), [str(data)], epochs=1, batch_size=4, video_zoom=bad)


def test_finetune_cli_refuses_a_bad_distillation_file_in_one_line(tmp_path, capsys):
    """``transfer finetune --distill`` with a file that is not a peer_targets one (missing,
    wrong arrays, wrong shapes): exit 2 and one line naming the file, no traceback and no
    weights file written; ``--soup 0``, ``--ema 1``, ``--lwf`` without ``--fer`` and a negative
    ``--lwf``, and ``--min-block-gap 0`` likewise."""
    import numpy as np
    import pytest

    from omgclip.learn import transfer

    data = _tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = tmp_path / "s1.pt"
    net = create_model("r2plus1d_wide", widths=(8, 16, 32))
    torch.save({"state_dict": net.state_dict(), "arch": dict(net.arch), "widths": list(net.widths), "epoch": 1}, init)
    np.savez(tmp_path / "nokeys.npz", A=np.zeros(3))
    np.savez(tmp_path / "shapes.npz", X=np.zeros((4, 20, 80, 80), np.uint8), P=np.zeros((4, 20, 5), np.float32))
    out = tmp_path / "w.pt"
    cases = [(["--distill", str(tmp_path / "missing.npz")], "missing.npz"),
             (["--distill", str(tmp_path / "nokeys.npz")], "not a distillation file"),
             (["--distill", str(tmp_path / "shapes.npz")], "expected X (N, T, S, S)"),
             (["--soup", "0"], "soup must be >= 1"),
             (["--ema", "1"], "ema must be in [0, 1)"),
             (["--lwf", "1"], "lwf needs the FER2013 stills"),
             (["--lwf", "-1"], "lwf must be >= 0"),
             (["--min-block-gap", "0"], "min_block_gap must be a whole number >= 1")]
    for extra, said in cases:
        with pytest.raises(SystemExit) as exc:
            transfer.main(["finetune", "--init", str(init), "--data", str(data), "--epochs", "1", "--threads", "1",
                           "--out", str(out)] + extra)
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # (argparse's usage lines come first)
        assert exc.value.code == 2 and "Traceback" not in err, (extra, err)
        assert last.startswith("python -m omgclip.learn.transfer: error:") and said in last, (extra, err)
        assert not out.exists()


def test_reframe_zooms_real_faces_about_their_centre(fer_faces):
    """``transfer.reframe`` on real FER2013 faces: 1.15 shows more around the face (its border
    is the image's edge replicated), and zooming back in by 1/1.15 gives the original centre
    back; a wrong factor or a shifted centre would not."""
    from omgclip.learn.transfer import CROP_FRAMING_ZOOM, reframe

    x = fer_faces(16)
    assert reframe(x, 1.0) is x
    out = reframe(x, CROP_FRAMING_ZOOM)
    assert out.shape == x.shape and out.dtype == np.uint8
    # the outermost output pixels sample beyond the image: the corner pixel, replicated
    assert np.abs(out[:, 0, 0].astype(int) - x[:, 0, 0]).max() <= 2
    c = slice(12, 68)

    def diff(a, b):
        return np.abs(a[:, c, c].astype(float) - b[:, c, c]).mean()

    back = reframe(out, 1 / CROP_FRAMING_ZOOM)
    assert diff(back, x) < 4 < diff(out, x)
    assert diff(reframe(out, 1 / 1.3), x) > 2 * diff(back, x)  # another factor does not undo it
    blocks = np.stack([x[:4]] * 3, 1)  # (N, T, S, S)
    np.testing.assert_array_equal(reframe(blocks, CROP_FRAMING_ZOOM)[:, 2], out[:4])
    with pytest.raises(ValueError, match="uint8"):
        reframe(x.astype(np.float32), 1.15)
    with pytest.raises(ValueError, match="zoom must be > 0"):
        reframe(x, 0)


def test_finetune_lwf_keeps_stage_ones_outputs_on_the_stills(tmp_path):
    """``finetune(lwf=W)``: the KL term is 0 for the net against its own copy and positive
    once they differ; with it, the fine-tuned net's probabilities on the FER stills stay
    closer to the initial net's than the same fine-tuning without it; a negative weight, or
    the term without stills, is refused."""
    import copy

    import numpy as np
    import pytest

    from omgclip.learn import transfer

    data = _tiny_dataset(tmp_path / "data")
    rng = np.random.default_rng(2)
    X = rng.integers(0, 255, (48, 80, 80), dtype=np.uint8)
    cache = tmp_path / "fer80.npz"
    np.savez(cache, X=X, y=rng.integers(0, 7, 48), usage=np.array(["Training"] * 48, dtype="U12"))
    torch.manual_seed(0)
    init = create_model("r2plus1d_wide", widths=(8, 16, 32)).eval()
    x = transfer.to_clips(torch.from_numpy(X[:8]))
    with torch.no_grad():
        assert float(transfer._kept_loss(init, init, x)) == pytest.approx(0.0, abs=1e-6)
    p0 = transfer.predict_proba(init, X)

    def drift(**kw):
        net = transfer.finetune(copy.deepcopy(init), [str(data)], str(tmp_path), cache=str(cache), epochs=4,
                                batch_size=4, fer_batch_size=16, seed=3, lr=1e-2, ema=0.0, **kw)
        p = transfer.predict_proba(net, X)
        with torch.no_grad():
            assert float(transfer._kept_loss(net, init, x)) > 0
        return float((p0 * (np.log(p0 + 1e-9) - np.log(p + 1e-9))).sum(1).mean())

    plain, kept = drift(), drift(lwf=5.0)
    assert kept < 0.5 * plain, (plain, kept)
    with pytest.raises(ValueError, match="lwf"):
        drift(lwf=-1.0)
    with pytest.raises(ValueError, match="lwf"):
        transfer.finetune(copy.deepcopy(init), [str(data)], epochs=1, batch_size=4, lwf=1.0)


def test_recalibrate_bn_sets_running_statistics_to_the_given_blocks(fer_faces):
    """``transfer.recalibrate_bn``: each BatchNorm's running mean and variance become those
    of its input over the given blocks (real faces, in several batches: a cumulative average
    of the batch means), the weights are untouched, its momentum is restored, eval mode."""
    from omgclip.learn import transfer

    torch.manual_seed(0)
    net = transfer.new_net([8, 16, 32])
    faces = fer_faces(6)
    blocks = np.stack([np.roll(faces, k, axis=2) for k in range(20)], 1)  # (6, 20, 80, 80) moving faces
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))
    seen = []
    hook = bn.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    transfer.recalibrate_bn(net, blocks, batch_size=3)  # two batches of 3
    hook.remove()
    assert not net.training and bn.momentum == 0.1 and len(seen) == 2
    batch_means = [s.mean((0, 2, 3, 4)) for s in seen]
    torch.testing.assert_close(bn.running_mean, (batch_means[0] + batch_means[1]) / 2, atol=1e-5, rtol=1e-4)
    batch_vars = [s.transpose(0, 1).flatten(1).var(1) for s in seen]  # unbiased, as BatchNorm keeps it
    torch.testing.assert_close(bn.running_var, (batch_vars[0] + batch_vars[1]) / 2, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    for k, v in weights.items():
        assert torch.equal(net.state_dict()[k], v), k
