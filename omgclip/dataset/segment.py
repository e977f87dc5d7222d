"""Pure block math: seconds to frames, 20-frame blocks, strided oversampling of rare classes.

No I/O and no heavy imports: everything here is a function of numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from omgclip.labels import NUM_CLASSES

#: The classes the reference project oversampled (disgust, fear, surprise): by default they
#: are cut at half the common stride (10 instead of 20).
DEFAULT_RARE_CLASSES: tuple[int, ...] = (1, 2, 6)


def default_rare_strides(stride: int) -> dict[int, int]:
    """Half the common ``stride`` (at least 1) for the default rare classes."""
    return {c: max(1, stride // 2) for c in DEFAULT_RARE_CLASSES}


@dataclass(frozen=True, order=True)
class Block:
    """``length`` consecutive frames ``[start, start + length)`` of one video."""

    start: int
    length: int

    @property
    def stop(self) -> int:
        return self.start + self.length

    def frames(self) -> range:
        return range(self.start, self.stop)


@dataclass(frozen=True)
class FrameRange:
    """Frames ``[first, stop)`` of a video that an utterance covers."""

    first: int
    stop: int

    def __len__(self) -> int:
        return max(0, self.stop - self.first)


def time_to_frames(start_s: float | None, end_s: float | None, fps: float,
                   frame_count: int | None = None) -> FrameRange:
    """The frames whose timestamps ``i / fps`` fall in ``[start_s, end_s)``.

    ``None`` bounds mean the start / end of the video. The range is clipped to
    ``frame_count`` when it is known. ``fps`` must be the video's real frame rate.
    """
    if not fps or fps <= 0 or math.isnan(fps):
        raise ValueError(f"invalid fps {fps!r}")
    first = 0 if start_s is None else max(0, math.ceil(start_s * fps - 1e-6))
    if end_s is None:
        if frame_count is None:
            raise ValueError("an open end needs the frame count")
        stop = frame_count
    else:
        stop = max(first, math.ceil(end_s * fps - 1e-6))
    if frame_count is not None:
        stop = min(stop, frame_count)
        first = min(first, stop)
    return FrameRange(first, stop)


def cut_blocks(frames: FrameRange, length: int, stride: int) -> list[Block]:
    """Blocks of ``length`` consecutive frames inside ``frames``, every ``stride`` frames.

    Only whole blocks: a range shorter than ``length`` gives none, and the tail that
    does not fill a block is left out (never padded, never shortened).
    """
    if length <= 0 or stride <= 0:
        raise ValueError("block length and stride must be positive")
    return [Block(s, length) for s in range(frames.first, frames.stop - length + 1, stride)]


def consecutive_segments(frame_count: int, length: int, stride: int | None = None,
                         keep_tail: bool = True) -> list[Block]:
    """Segments that tile a whole video of ``frame_count`` frames (for ``predict``).

    With ``stride == length`` (default) the segments cover the video without gaps or
    overlaps; the last one is shorter than ``length`` when ``keep_tail`` and the
    video does not divide evenly.
    """
    stride = length if stride is None else stride
    if length <= 0 or stride <= 0:
        raise ValueError("segment length and stride must be positive")
    out = [Block(s, length) for s in range(0, frame_count - length + 1, stride)]
    covered = out[-1].stop if out else 0
    if keep_tail and covered < frame_count and stride == length:
        out.append(Block(covered, frame_count - covered))
    return out


def stride_for(label: int, base_stride: int, rare_strides: Mapping[int, int]) -> int:
    """The block stride for an utterance of class ``label``."""
    return int(rare_strides.get(label, base_stride))


def strides_from_frequencies(counts: Mapping[int, int] | Sequence[int], base_stride: int,
                             min_stride: int = 2) -> dict[int, int]:
    """Choose a stride per class so rarer classes yield proportionally more blocks.

    A class ``r`` times rarer than the most frequent one gets ``base_stride / r``
    (rounded, at least ``min_stride``); classes as frequent as the top one keep
    ``base_stride``. Classes with no examples are left out.
    """
    if not isinstance(counts, Mapping):
        counts = dict(enumerate(counts))
    present = {int(k): int(v) for k, v in counts.items() if v > 0 and 0 <= int(k) < NUM_CLASSES}
    if not present:
        return {}
    top = max(present.values())
    return {k: max(min_stride, min(base_stride, round(base_stride * v / top)))
            for k, v in present.items()}


def resample_indices(n_source: int, length: int) -> list[int]:
    """Indices into ``n_source`` frames that stretch them evenly to ``length`` frames
    (nearest-frame resampling: each source frame is repeated about equally often)."""
    if n_source <= 0:
        raise ValueError("no frames to resample")
    return [min(n_source - 1, (i * n_source) // length) for i in range(length)]
