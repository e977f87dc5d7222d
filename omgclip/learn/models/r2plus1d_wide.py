"""``r2plus1d_wide``: the bundled model's net, a wider :class:`R2Plus1D` whose still clips
behave exactly like images, so it can learn faces from photos (FER2013) before video.

Two changes from ``r2plus1d``:

* every conv with a temporal extent (the stem's ``(3, 7, 7)`` and the blocks' ``(3, 1, 1)``)
  pads time by **replicating** the first and last frame instead of zero padding. A clip
  whose frames are all the same image then gives the same features at every time step, for
  any clip length: a 1-frame clip ``(N, 1, 1, 80, 80)`` and the same image repeated over 20
  frames give identical logits (a test checks this). Pretraining on photos runs at T=1,
  20 times cheaper than on 20-frame blocks, and the weights are used unchanged on video;
* wider stages: ``widths=(48, 96, 192)`` by default (960k parameters, 3.9 MB of float32
  weights), because 28k FER2013 faces underfit the 32-64-128 net. The bundled model uses
  ``widths=(64, 128, 256), stem='s2x2'`` (1.7M parameters, 3.4 MB as float16; the options it was built
  with are saved in its weights file, ``arch``).

Shapes for ``(N, 1, 20, 80, 80)`` are those of :class:`R2Plus1D` with these widths.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from omgclip.labels import NUM_CLASSES
from omgclip.learn.models.r2plus1d import R2Plus1D
from omgclip.learn.models.registry import register_model


class TimeReplicatePad(nn.Module):
    """Wraps a ``Conv3d``: pads time by edge replication, then convolves (the conv keeps its
    zero padding in space). ``(N, C, T, H, W) -> conv output``."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.pad_t = int(conv.padding[0])
        conv.padding = (0, *conv.padding[1:])
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_t:
            x = F.pad(x, (0, 0, 0, 0, self.pad_t, self.pad_t), mode="replicate")
        return self.conv(x)


@register_model("r2plus1d_wide")
class R2Plus1DWide(R2Plus1D):
    """:class:`R2Plus1D` with replicate time padding and 48-96-192 widths (see module doc)."""

    #: a clip whose frames are all one image gives the same logits at any length, so a
    #: still image can be classified as a 1-frame clip (``LoadedModel.still_len``)
    still_clip_invariant = True

    def __init__(self, num_classes: int = NUM_CLASSES, widths: Sequence[int] = (48, 96, 192),
                 depths: Sequence[int] = (1, 2, 2), stem: str = "s4", stem_t_stride: int = 2,
                 dropout: float = 0.3, standardize: bool = True):
        super().__init__(num_classes=num_classes, widths=widths, depths=depths, stem=stem,
                         stem_t_stride=stem_t_stride, dropout=dropout, standardize=standardize)
        self.widths = tuple(int(w) for w in widths)
        #: the constructor options that fix the weights' shapes, as saved in weights files
        self.arch = {"widths": list(self.widths), "depths": [int(d) for d in depths], "stem": str(stem),
                     "stem_t_stride": int(stem_t_stride)}
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Conv3d) and child.kernel_size[0] > 1:
                    setattr(module, name, TimeReplicatePad(child))
        self.to(memory_format=torch.channels_last_3d)
