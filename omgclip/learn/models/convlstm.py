"""``convlstm``: per-frame 2D conv features, then a ConvLSTM over time.

Fast on a CPU because the per-frame encoder downsamples early (80x80 -> 20x20 in its first
conv, 10x10 in its second), adjacent frames are averaged (``time_stride``) before the
recurrence, and the input-to-gate convolution of every step is computed as one batched
conv; only the hidden-to-gate conv runs inside the time loop.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from omgclip.labels import NUM_CLASSES
from omgclip.learn.models.layers import ConvBNReLU2d, init_weights
from omgclip.learn.models.registry import register_model


class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell (Shi et al. 2015, without peepholes).

    ``step(x_gates, (h, c)) -> (h, c)`` with ``h, c: (B, hidden, H, W)`` and ``x_gates`` the
    input's contribution to the four gates, ``(B, 4 * hidden, H, W)``, from
    :meth:`input_gates`. Gates in order input, forget, output, candidate::

        i, f, o = sigmoid(.), g = tanh(.)      of  W_x * x + W_h * h + b
        c' = f * c + i * g,   h' = o * tanh(c')
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.hidden = hidden
        self.x_conv = nn.Conv2d(in_channels, 4 * hidden, kernel, padding=kernel // 2, bias=True)
        self.h_conv = nn.Conv2d(hidden, 4 * hidden, kernel, padding=kernel // 2, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.x_conv.weight)
        nn.init.orthogonal_(self.h_conv.weight.flatten(1))
        with torch.no_grad():
            self.x_conv.bias.zero_()
            self.x_conv.bias[self.hidden:2 * self.hidden].fill_(1.0)  # forget gate open

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, 4 * hidden, H, W)``; batch all time steps at once."""
        return self.x_conv(x)

    def init_state(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(h, c)``, each ``(B, hidden, H, W)``, for gates shaped like ``like``."""
        b, _, h, w = like.shape
        zeros = like.new_zeros(b, self.hidden, h, w)
        return zeros, zeros

    def step(self, x_gates: torch.Tensor,
             state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        gates = x_gates + self.h_conv(h)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from the raw input ``x: (B, C_in, H, W)``."""
        x_gates = self.input_gates(x)
        return self.step(x_gates, state if state is not None else self.init_state(x_gates))


@register_model("convlstm")
class ConvLSTMNet(nn.Module):
    """Frame encoder + ConvLSTM.

    Shapes for the default input ``(N, 1, 20, 80, 80)``, ``widths=(16, 32)``, ``hidden=48``,
    ``encoder_depth=2``::

        frames as a batch                         (N*20, 1, 80, 80)
        conv 7x7 stride 4, 16                  -> (N*20, 16, 20, 20)
        (encoder_depth - 1) x conv 3x3, 16     -> (N*20, 16, 20, 20)
        conv 3x3 stride 2, 32                  -> (N*20, 32, 10, 10)
        (encoder_depth - 1) x conv 3x3, 32     -> (N*20, 32, 10, 10)
        mean of each time_stride=2 frames      -> (N, 10, 32, 10, 10)
        ConvLSTM 3x3, hidden 48, over 10 steps -> last h (N, 48, 10, 10)
        global avg pool                        -> (N, 48)
        skip: + mean frame features            -> (N, 48 + 32)
        dropout, linear                        -> (N, num_classes) logits

    ``skip`` (default on) feeds the time- and space-averaged frame features to the classifier
    beside the ConvLSTM's last state: appearance need not squeeze through the recurrence
    (on CK+ faces it lifted UAR from about 0.26 to 0.49).
    """

    channels_last = False

    def __init__(self, num_classes: int = NUM_CLASSES, widths: Sequence[int] = (16, 32),
                 hidden: int = 48, time_stride: int = 2, encoder_depth: int = 2, skip: bool = True,
                 dropout: float = 0.3):
        super().__init__()
        w1, w2 = (int(w) for w in widths)
        if time_stride < 1:
            raise ValueError("time_stride must be >= 1")
        self.time_stride = int(time_stride)
        layers: list[nn.Module] = [ConvBNReLU2d(1, w1, 7, 4)]
        layers += [ConvBNReLU2d(w1, w1, 3, 1) for _ in range(int(encoder_depth) - 1)]
        layers.append(ConvBNReLU2d(w1, w2, 3, 2))
        layers += [ConvBNReLU2d(w2, w2, 3, 1) for _ in range(int(encoder_depth) - 1)]
        self.encoder = nn.Sequential(*layers)
        self.cell = ConvLSTMCell(w2, hidden, 3)
        self.skip = bool(skip)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden + (w2 if self.skip else 0), num_classes))
        init_weights(self.encoder)
        init_weights(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, T, H, W)`` in [0, 1] -> ``(N, num_classes)`` logits."""
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        feats = self.encoder(frames)                                   # (N*T, C, h, w)
        _, fc, fh, fw = feats.shape
        feats = feats.reshape(n, t, fc, fh, fw)
        s = self.time_stride
        if s > 1:
            steps = -(-t // s)
            pad = steps * s - t
            if pad:  # repeat the last frame so every step averages `s` frames
                feats = torch.cat([feats, feats[:, -1:].expand(n, pad, fc, fh, fw)], dim=1)
            feats = feats.reshape(n, steps, s, fc, fh, fw).mean(dim=2)
        steps = feats.shape[1]
        gates = self.cell.input_gates(feats.reshape(n * steps, fc, fh, fw))
        gates = gates.reshape(n, steps, *gates.shape[1:])
        state = self.cell.init_state(gates[:, 0])
        for k in range(steps):
            state = self.cell.step(gates[:, k], state)
        pooled = state[0].mean(dim=(2, 3))                              # (N, hidden)
        if self.skip:  # appearance shortcut: time- and space-averaged frame features
            pooled = torch.cat([pooled, feats.mean(dim=(1, 3, 4))], dim=1)
        return self.head(pooled)
