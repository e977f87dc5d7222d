"""Small building blocks shared by the models. Shapes: ``N`` batch, ``C`` channels,
``T`` frames, ``H``/``W`` height/width."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(int(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"expected 3 values, got {v!r}")
    return t  # type: ignore[return-value]


class ConvBNReLU3d(nn.Sequential):
    """``Conv3d`` (no bias, 'same'-style padding) -> ``BatchNorm3d`` -> ``ReLU``.

    ``(N, C_in, T, H, W) -> (N, C_out, T / st, H / ss, W / ss)``.
    """

    def __init__(self, c_in: int, c_out: int, kernel=3, stride=1, relu: bool = True):
        k, s = _triple(kernel), _triple(stride)
        layers: list[nn.Module] = [
            nn.Conv3d(c_in, c_out, k, s, tuple(x // 2 for x in k), bias=False),
            nn.BatchNorm3d(c_out),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ConvBNReLU2d(nn.Sequential):
    """``Conv2d`` -> ``BatchNorm2d`` -> ``ReLU``: ``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class ClassifierHead(nn.Sequential):
    """Global average pool -> dropout -> linear: ``(N, C, *) -> (N, num_classes)``."""

    def __init__(self, channels: int, num_classes: int, dropout: float, dims: int = 3):
        pool = nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1)
        super().__init__(pool, nn.Flatten(1), nn.Dropout(dropout), nn.Linear(channels, num_classes))


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs, unit BN, small linear weights. Nothing on the meta device (the
    shape-only copy that checks a checkpoint before loading it): there is nothing to fill,
    and the random fills would import PyTorch's reference kernels (1.3 s)."""
    if any(p.is_meta for p in module.parameters()):
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def to_channels_last_3d(x: torch.Tensor) -> torch.Tensor:
    """Relabel a 5-D tensor as ``channels_last_3d`` (free for a 1-channel input)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


class ClipStandardize(nn.Module):
    """``(N, C, T, H, W) -> same``: each clip to zero mean and unit contrast.

    Removes a clip's overall brightness and contrast (camera, lighting, the 48x48 CK+ frames
    vs dlib crops of video), which carry no emotion. ``eps`` keeps flat clips finite.
    """

    def __init__(self, eps: float = 0.05):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        std = x.std(dim=(1, 2, 3, 4), keepdim=True)
        return (x - mean) / (std + self.eps)


def mean_probability_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(N, K)`` logits whose softmax is the mean of the softmaxes of several ``(N, K)``
    outputs (the log of the mean probability; a cross-entropy on it trains them jointly)."""
    p = torch.stack([torch.softmax(out, dim=1) for out in logits]).mean(0)
    return p.clamp_min(1e-12).log()


class FlipAverage(nn.Module):
    """Test-time flip: ``(N, C, T, H, W) -> (N, K)`` logits whose softmax is the mean of the
    wrapped net's softmax on the clip and on its mirror image (faces are left-right symmetric
    in what they express). Twice the model time; used at inference only, where a weights
    file's meta says ``test_time_flip``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # two calls, not one batch of 2N clips: in bench_predict (20-s clip, 2 threads) the
        # doubled batch took 0.55-0.73 s of model time, two calls 0.36-0.46 s
        return mean_probability_logits([self.net(x), self.net(x.flip(-1))])


class LogitShift(nn.Module):
    """``(N, C, T, H, W) -> (N, K)``: the wrapped net's logits minus fixed per-class
    ``offsets (K,)`` (post-hoc logit adjustment: ``tau * log(prior)`` makes the argmax decide
    under a balanced prior instead of the one the net learnt under; Menon et al. 2021). Used at
    inference only, on video clips, where a weights file's meta says ``video_logit_adjust``."""

    def __init__(self, net: nn.Module, offsets: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("offsets", torch.as_tensor([float(v) for v in offsets], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) - self.offsets


class Temperature(nn.Module):
    """``(N, C, T, H, W) -> (N, K)``: the wrapped net's logits divided by ``temperature``
    (temperature scaling, Guo et al. 2017): > 1 softens overconfident probabilities, < 1
    sharpens them; the argmax is unchanged. Used at inference only, where a weights file's meta
    says ``temperature`` (one for video clips, one for still images, fitted on people the
    model never trained on: ``python -m omgclip.learn.transfer calibrate``)."""

    def __init__(self, net: nn.Module, temperature: float):
        super().__init__()
        self.net = net
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) / self.temperature


def unwrap(net: nn.Module) -> nn.Module:
    """The net inside the inference wrappers (:class:`FlipAverage`, :class:`LogitShift`,
    :class:`Temperature`)."""
    while isinstance(net, (FlipAverage, LogitShift, Temperature)):
        net = net.net
    return net


def find_wrapper(net: nn.Module, kind: type) -> nn.Module | None:
    """The first inference wrapper of class ``kind`` around ``net`` (looking through the
    others: a :class:`Temperature` outside a :class:`FlipAverage`, ...), or ``None``."""
    while isinstance(net, (FlipAverage, LogitShift, Temperature)):
        if isinstance(net, kind):
            return net
        net = net.net
    return None


class StillAware(nn.Module):
    """``(N, C, T, H, W) -> (N, K)`` logits: clips whose frames are all one image (a photo
    stretched to a block, as build-dataset makes a one-image row) go through ``still``, the
    others through ``video``. ``evaluate`` scores blocks with it, so a photo is scored as
    ``predict`` labels it (the still net may add the test-time flip: ``still_flip``)."""

    def __init__(self, video: nn.Module, still: nn.Module):
        super().__init__()
        self.video, self.still = video, still

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        still = (x == x[:, :, :1]).flatten(1).all(1)  # (N,) every frame equals the first
        if not bool(still.any()):
            return self.video(x)
        if bool(still.all()):
            return self.still(x)
        out_still, out_video = self.still(x[still]), self.video(x[~still])
        out = out_video.new_empty((x.shape[0], out_video.shape[1]))
        out[still], out[~still] = out_still.to(out.dtype), out_video
        return out


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """For inference: fold each eval-mode ``BatchNorm`` into the convolution before it (the
    conv gets the BN's scale and shift; the BN becomes ``Identity``), in place. Same outputs
    up to float rounding, ~10% less model time. Folds a conv directly followed by a BN in an
    ``nn.Sequential`` (also a conv wrapped with a ``.conv`` attribute, e.g. time padding).
    Returns ``net``."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if net.training:
        raise ValueError("fold_batchnorm needs a net in eval mode")
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            host, bn = seq[i], seq[i + 1]
            if not isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm3d)):
                continue
            # the conv itself (child ``str(i)`` of the Sequential), or a wrapper's ``.conv``
            wrapped = isinstance(getattr(host, "conv", None), nn.modules.conv._ConvNd)
            owner, attr = (host, "conv") if wrapped else (seq, str(i))
            conv = getattr(owner, attr)
            if not isinstance(conv, nn.modules.conv._ConvNd):
                continue
            fused = fuse_conv_bn_eval(conv, bn)
            if conv.weight.dim() == 5:
                fused = fused.to(memory_format=torch.channels_last_3d)
            setattr(owner, attr, fused)
            seq[i + 1] = nn.Identity()
    return net
