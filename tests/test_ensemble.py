"""``ensemble``: several nets of one model as one registered model whose probabilities are
the mean of its members'; saved, loaded, folded, flipped and fine-tuned like any net."""

from __future__ import annotations

import copy

import pytest
import torch

from omgclip.errors import OmgclipError
from omgclip.learn.models import create_model
from omgclip.learn.models.ensemble import Ensemble

TINY = {"widths": [8, 16, 32], "stem": "s2x2"}


def _opinionated(seed: int):
    """A tiny ``r2plus1d_wide`` with weights far from a fresh net's near-uniform outputs."""
    torch.manual_seed(seed)
    net = create_model("r2plus1d_wide", **TINY).eval()
    with torch.no_grad():
        for prm in net.parameters():
            prm.normal_(0, 0.3)
    return net


def test_ensemble_probabilities_are_the_mean_of_its_members():
    a, b = _opinionated(0), _opinionated(1)
    ens = Ensemble.of([a, b], "r2plus1d_wide", **TINY)
    x = torch.rand(4, 1, 20, 80, 80)
    with torch.no_grad():
        pa, pb = a(x).softmax(1), b(x).softmax(1)
        assert not torch.allclose(pa, pb, atol=1e-3)  # two different members
        torch.testing.assert_close(ens(x).softmax(1), (pa + pb) / 2, atol=1e-6, rtol=1e-5)
    assert not ens.training and ens.arch == {"member": "r2plus1d_wide", "count": 2, **TINY}
    # the members hold copies: changing a source net does not change the ensemble
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
        torch.testing.assert_close(ens(x).softmax(1), (pa + pb) / 2, atol=1e-6, rtol=1e-5)


def test_ensemble_weights_file_loads_folds_and_flips_like_one_net(tmp_path):
    """Saved with :func:`weights_meta` (an ensemble asks for no flip by default: two
    members already cost two passes), loaded by ``load_for_inference`` with its batch
    norms folded: the same probabilities; with the flip asked for, the mean with the mirror."""
    from omgclip.learn.checkpoint import load_for_inference, load_model, save_weights
    from omgclip.learn.transfer import weights_meta

    ens = Ensemble.of([_opinionated(0), _opinionated(1)], "r2plus1d_wide", **TINY)
    meta = weights_meta(ens, None)
    assert meta["model_name"] == "ensemble" and meta["test_time_flip"] is False
    assert weights_meta(_opinionated(2), None)["test_time_flip"] is True
    plain = save_weights(tmp_path / "ens.pt", ens, meta)
    flipped = save_weights(tmp_path / "ens_flip.pt", ens, weights_meta(ens, None, flip=True))
    x = torch.rand(3, 1, 20, 80, 80)
    with torch.no_grad():
        p, p_mirror = ens(x).softmax(1), ens(x.flip(-1)).softmax(1)
        loaded = load_model(plain)
        assert loaded.model_name == "ensemble" and isinstance(loaded.net, Ensemble)
        torch.testing.assert_close(loaded.net(x).softmax(1), p, atol=1e-6, rtol=1e-5)
        run = load_for_inference(plain).net
        assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in run.modules())  # folded
        torch.testing.assert_close(run(x).softmax(1), p, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(load_for_inference(flipped).net(x).softmax(1), (p + p_mirror) / 2,
                                   atol=1e-5, rtol=1e-4)


def test_ensemble_refuses_bad_shapes_in_one_line(tmp_path):
    from omgclip.learn.checkpoint import load_model, save_weights
    from omgclip.learn.transfer import weights_meta

    for kwargs, match in [({"count": 1}, "2..8 members"), ({"count": 9}, "2..8 members"),
                          ({"member": "ensemble"}, "cannot be ensembles"),
                          ({"member": "resnet9000"}, "unknown model"),
                          ({"depth": 3}, "does not take")]:
        with pytest.raises(OmgclipError, match=match):
            create_model("ensemble", **kwargs)
    # a file whose meta asks for three members but holds two
    ens = Ensemble.of([_opinionated(0), _opinionated(1)], "r2plus1d_wide", **TINY)
    meta = weights_meta(ens, None)
    bad = save_weights(tmp_path / "bad.pt", ens, {**meta, "model_kwargs": {**meta["model_kwargs"], "count": 3}})
    with pytest.raises(OmgclipError, match="do not fit") as e:
        load_model(bad)
    assert "\n" not in str(e.value)


def test_finetune_ensemble_fine_tunes_each_init_alike(tmp_path):
    """``finetune_ensemble``: each init is fine-tuned with the same arguments (checked by
    running each alone) and the ensemble holds those nets; one init gives just that net;
    members of different shapes are refused."""
    from omgclip.learn import transfer
    from test_r2plus1d_wide import _tiny_dataset

    data = _tiny_dataset(tmp_path / "data")
    a, b = _opinionated(0), _opinionated(1)
    kw = dict(epochs=1, batch_size=4, seed=3)
    alone = [transfer.finetune(copy.deepcopy(n), [str(data)], **kw).state_dict() for n in (a, b)]
    ens = transfer.finetune_ensemble([copy.deepcopy(a), copy.deepcopy(b)], [str(data)], **kw)
    assert isinstance(ens, Ensemble) and not ens.training
    for member, want in zip(ens.members, alone):
        for k, v in member.state_dict().items():
            torch.testing.assert_close(v, want[k], atol=0, rtol=0)
    one = transfer.finetune_ensemble([copy.deepcopy(a)], [str(data)], **kw)
    assert not isinstance(one, Ensemble)
    torch.manual_seed(4)
    other = create_model("r2plus1d_wide", widths=[8, 16, 16], stem="s2x2").eval()
    with pytest.raises(ValueError, match="same shape"):
        transfer.finetune_ensemble([copy.deepcopy(a), other], [str(data)], **kw)


def test_finetune_cli_writes_an_ensemble_from_two_inits(tmp_path):
    """``transfer finetune --init A --init B`` writes one ensemble weights file that the
    apps load; its meta names both inits and asks for no flip."""
    from omgclip.learn import transfer
    from omgclip.learn.checkpoint import load_for_inference
    from test_r2plus1d_wide import _tiny_dataset

    data = _tiny_dataset(tmp_path / "data")
    inits = []
    for seed in (0, 1):
        net = _opinionated(seed)
        path = tmp_path / f"pretrain_s{seed}" / "best.pt"  # two runs' files share a name
        path.parent.mkdir()
        torch.save({"state_dict": net.state_dict(), "arch": dict(net.arch), "widths": list(net.widths),
                    "epoch": 1}, path)
        inits += ["--init", str(path)]
    out = tmp_path / "ens.pt"
    assert transfer.main(["finetune", *inits, "--data", str(data), "--epochs", "1", "--out", str(out)]) == 0
    loaded = load_for_inference(out)
    assert loaded.model_name == "ensemble" and loaded.meta["inits"] == ["pretrain_s0/best.pt", "pretrain_s1/best.pt"]
    assert loaded.meta["test_time_flip"] is False and loaded.meta["model_kwargs"]["count"] == 2
    with torch.no_grad():
        assert loaded.net(torch.rand(2, 1, 20, 80, 80)).shape == (2, 7)
