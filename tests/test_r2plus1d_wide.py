"""``r2plus1d_wide``: a still clip gives the same logits at any length (what lets it learn
from photos at T=1 and run on 20-frame blocks unchanged)."""

from __future__ import annotations

import torch

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
