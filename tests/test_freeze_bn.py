"""Stage 2 with the BatchNorm statistics frozen at stage 1's (``finetune(freeze_bn=True)``):
the running statistics come back exactly as they went in, the weights (BN affine ones
included) still learn, and training normalises with the frozen statistics."""

from __future__ import annotations

import copy

import torch

from omgclip.learn import transfer
from test_r2plus1d_wide import _tiny_dataset


def _split(net):
    state = net.state_dict()
    stats = {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    return stats, {k: v for k, v in state.items() if k not in stats}


def test_freeze_bn_keeps_the_initial_statistics_and_still_trains_the_weights(tmp_path):
    data = _tiny_dataset(tmp_path / "data")
    torch.manual_seed(0)
    init = transfer.new_net([8, 16, 32])
    stats0, weights0 = _split(init)
    assert stats0, "the net has BatchNorm layers"
    kw = dict(epochs=1, batch_size=4, seed=3)
    frozen = transfer.finetune(copy.deepcopy(init), [str(data)], freeze_bn=True, **kw)
    free = transfer.finetune(copy.deepcopy(init), [str(data)], freeze_bn=False, **kw)
    stats_f, weights_f = _split(frozen)
    for k, v in stats0.items():
        assert torch.equal(stats_f[k], v), k  # not one statistic moved, EMA of the weights included
    moved = [k for k, v in weights0.items() if not torch.equal(weights_f[k], v)]
    assert len(moved) == len(weights0), "every learnable weight trained"
    bn_names = [n for n, m in init.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(f"{n}.weight" in moved and f"{n}.bias" in moved for n in bn_names)  # BN affine ones too
    stats_u, _ = _split(free)
    assert any(not torch.equal(stats_u[k], v) for k, v in stats0.items() if "running" in k)  # the recipe's do move
    assert not frozen.training


def test_freeze_bn_statistics_puts_only_batchnorm_in_eval_mode():
    torch.manual_seed(0)
    net = transfer.new_net([8, 16, 32]).train()
    transfer._freeze_bn_statistics(net)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert net.training and any(m.training for m in net.modules() if not isinstance(m, type(bns[0])))
    x = torch.rand(2, 1, 4, 80, 80)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    net(x)
    for k, v in net.state_dict().items():
        if "running" in k:
            assert torch.equal(v, before[k]), k


def test_finetune_cli_freeze_bn_writes_the_stage1_statistics(tmp_path):
    """``transfer finetune --freeze-bn`` writes a file whose BN statistics are the stage-1
    file's, value for value (float16 as stored), and whose meta records it."""
    from test_r2plus1d_wide import _tiny_stage1_file

    data = _tiny_dataset(tmp_path / "data")
    init_path = _tiny_stage1_file(tmp_path / "pre" / "best.pt")
    out = tmp_path / "frozen.pt"
    assert transfer.main(["finetune", "--init", str(init_path), "--data", str(data), "--epochs", "1",
                          "--threads", "1", "--freeze-bn", "--out", str(out)]) == 0
    obj = torch.load(out, weights_only=True)
    assert obj["meta"]["freeze_bn"] is True
    start = torch.load(init_path, weights_only=True)["state_dict"]
    from omgclip.learn.checkpoint import load_model

    state = load_model(out).net.state_dict()
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert stats
    for k in stats:
        torch.testing.assert_close(state[k], start[k].half().float(), rtol=0, atol=0, msg=k)
