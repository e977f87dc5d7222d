"""``c3d``: the plain reference 3D CNN (three 3x3x3 conv stages, 16-32-64 channels).

Every conv sees the full-resolution 80x80 frames first, so it is accurate but slow on a
CPU (about 15-25 training samples/s on 2 cores); kept as the baseline the faster models
are measured against.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from omgclip.labels import NUM_CLASSES
from omgclip.learn.models.layers import ClassifierHead, ConvBNReLU3d, init_weights, to_channels_last_3d
from omgclip.learn.models.registry import register_model


@register_model("c3d")
class C3D(nn.Module):
    """C3D-style net.

    Shapes for the default input ``(N, 1, 20, 80, 80)``::

        conv1 3x3x3, 16  -> (N, 16, 20, 80, 80)  maxpool (1,2,2) -> (N, 16, 20, 40, 40)
        conv2 3x3x3, 32  -> (N, 32, 20, 40, 40)  maxpool (2,2,2) -> (N, 32, 10, 20, 20)
        conv3 3x3x3, 64  -> (N, 64, 10, 20, 20)  maxpool (2,2,2) -> (N, 64,  5, 10, 10)
        global avg pool, dropout, linear        -> (N, num_classes) logits
    """

    channels_last = True

    def __init__(self, num_classes: int = NUM_CLASSES, widths: Sequence[int] = (16, 32, 64),
                 dropout: float = 0.3):
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)
        self.features = nn.Sequential(
            ConvBNReLU3d(1, w1, 3), nn.MaxPool3d((1, 2, 2)),
            ConvBNReLU3d(w1, w2, 3), nn.MaxPool3d(2),
            ConvBNReLU3d(w2, w3, 3), nn.MaxPool3d(2),
        )
        self.head = ClassifierHead(w3, num_classes, dropout)
        init_weights(self)
        self.to(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, T, H, W)`` in [0, 1] -> ``(N, num_classes)`` logits."""
        return self.head(self.features(to_channels_last_3d(x)))
