"""Every registered model: output shape, finiteness, gradient flow; the registry's errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from omgclip.errors import OmgclipError
from omgclip.learn.models import DEFAULT_MODEL, create_model, list_models, register_model
from omgclip.learn.models.convlstm import ConvLSTMCell


def test_registry_lists_the_models():
    names = list_models()
    assert {"c3d", "r2plus1d", "convlstm"} <= set(names)
    assert DEFAULT_MODEL in names


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str):
    torch.manual_seed(0)
    net = create_model(name, num_classes=7)
    net.train()
    x = torch.rand(3, 1, 20, 80, 80)
    logits = net(x)
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3, 6])).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    # the input layer learns (gradient reaches the first weights)
    first = next(p for p in net.parameters() if p.ndim > 1)
    assert first.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 20, 80, 80))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_other_sizes_and_classes(name: str):
    net = create_model(name, num_classes=4).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 16, 64, 64))
    assert out.shape == (1, 4)


def test_default_model_is_small():
    net = create_model(DEFAULT_MODEL)
    n_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    n_bytes += sum(b.numel() * b.element_size() for b in net.buffers())
    assert n_bytes < 2_000_000


def test_unknown_model_lists_names():
    with pytest.raises(OmgclipError) as e:
        create_model("resnet9000")
    msg = str(e.value)
    assert "resnet9000" in msg and all(n in msg for n in list_models())


def test_unknown_option():
    with pytest.raises(OmgclipError, match="does not take"):
        create_model("c3d", depth=5)


def test_register_duplicate_name():
    with pytest.raises(ValueError):
        register_model("c3d")(lambda num_classes=7: torch.nn.Linear(1, num_classes))


def test_convlstm_cell_shapes():
    cell = ConvLSTMCell(8, 16)
    x = torch.rand(2, 8, 10, 10)
    h, c = cell(x)
    assert h.shape == c.shape == (2, 16, 10, 10)
    h2, c2 = cell(x, (h, c))
    assert h2.shape == (2, 16, 10, 10) and h2.abs().max() <= 1.0
    assert torch.allclose(cell.x_conv.bias[16:32], torch.ones(16))  # forget gate starts open


def test_train_default_matches_registry():
    from omgclip.learn import train

    assert train.DEFAULT_MODEL == DEFAULT_MODEL


def test_import_stays_light():
    code = ("import sys, omgclip, omgclip.learn.train; "
            "heavy = [m for m in ('torch', 'pytorch_lightning', 'lightning') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_checkpoint_shape_check_does_not_fill_meta_weights(monkeypatch):
    """Loading a checkpoint first builds a shape-only copy of the net on the meta device;
    random fills there are useless and cost 1.3 s of predict's start-up (4.4 s -> 3.3 s
    for a 20-s clip), so init_weights leaves a meta net alone and fills only the real one."""
    from omgclip.learn.checkpoint import load_for_inference

    filled = []
    real = torch.nn.init.kaiming_normal_
    monkeypatch.setattr(torch.nn.init, "kaiming_normal_",
                        lambda t, *a, **k: filled.append(t.is_meta) or real(t, *a, **k))
    loaded = load_for_inference(None)
    assert filled and not any(filled)  # the real net was initialised, the meta copy was not
    assert not any(p.is_meta for p in loaded.net.parameters())
