"""An ensemble of same-shaped nets: one registered model whose output averages its members'.

``create_model("ensemble", member="r2plus1d_wide", count=2, widths=[64, 128, 256], ...)``
builds ``count`` members with the member's options; a weights file stores them as
``members.0.*``, ``members.1.*``, ... and loads like any other model. The members are
trained apart (e.g. two stage-1 seeds, each fine-tuned: :func:`omgclip.learn.transfer.finetune`
with several inits) and joined with :meth:`Ensemble.of`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from omgclip.errors import OmgclipError
from omgclip.labels import NUM_CLASSES
from omgclip.learn.models.layers import mean_probability_logits
from omgclip.learn.models.registry import create_model, register_model

#: the most members a file may ask for (each is a whole net)
MAX_MEMBERS = 8


@register_model("ensemble")
class Ensemble(nn.Module):
    """``(N, 1, T, H, W) -> (N, num_classes)`` logits whose softmax is the mean of the
    members' softmax (log of the mean probability: a cross-entropy on it trains the members
    jointly). ``member``: a registered model name (not ``"ensemble"``); ``count``: 2 to
    :data:`MAX_MEMBERS`; other options go to each member."""

    def __init__(self, num_classes: int = NUM_CLASSES, member: str = "r2plus1d_wide", count: int = 2,
                 **member_kwargs: Any):
        super().__init__()
        if member == "ensemble":
            raise OmgclipError("an ensemble's members cannot be ensembles")
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_MEMBERS:
            raise OmgclipError(f"an ensemble needs 2..{MAX_MEMBERS} members (count={count!r})")
        self.members = nn.ModuleList(create_model(member, num_classes=num_classes, **member_kwargs)
                                     for _ in range(count))
        #: the constructor options that fix the weights' shapes, as saved in weights files
        self.arch = {"member": member, "count": count, **member_kwargs}

    @classmethod
    def of(cls, nets: Sequence[nn.Module], member: str, **member_kwargs: Any) -> "Ensemble":
        """An ensemble holding copies of the weights of ``nets`` (``member``-models built
        with ``member_kwargs``; their state dicts must fit), in eval mode."""
        ens = cls(num_classes=_num_classes(nets[0]), member=member, count=len(nets), **member_kwargs)
        for mine, net in zip(ens.members, nets):
            mine.load_state_dict(net.state_dict(), strict=True)
        return ens.eval()

    @property
    def still_clip_invariant(self) -> bool:
        """Whether every member gives a one-image clip the same logits at any length."""
        return all(getattr(m, "still_clip_invariant", False) for m in self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_probability_logits([m(x) for m in self.members])


def _num_classes(net: nn.Module) -> int:
    last = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("cannot tell the number of classes of a net without a Linear layer")
    return int(last[-1].out_features)
