"""Shot cuts: the frames where one camera shot ends and the next begins.

A track must never run across a cut, or the face after it inherits the id of the face
before it. A cut is where two consecutive frames differ in *both* their pixels and their
brightness histogram, measured on a small thumbnail of the gray working frame
(``thumb_width`` wide, ~0.1 ms a frame), and the pixel difference is also several times
the recent frame-to-frame level: camera motion and gestures change pixels but hardly the
histogram, a light change shifts the histogram a little; a cut does both, at once.

Measured on the shared data: the Hamilton clip's three hard cuts score pixel 0.11 /
histogram 0.19-0.40 while its other frame pairs stay under 0.06 / 0.08; a cut between two
MEAD talking heads (same studio, same framing) scores only 0.06 / 0.15 against ~0.01 / 0.03
within the clips. Over the 63 real clips of the shared data (13,363 frames) it finds those 3,
one real jump cut, and one false cut (a hand sweeping past a close-up face; a false cut only
ends a track: the person id carries on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omgclip.errors import OmgclipError


@dataclass(frozen=True)
class CutConfig:
    """When two consecutive frames are on different sides of a cut."""

    min_pixel: float = 0.04   #: mean absolute thumbnail difference, in [0, 1] of full scale
    min_hist: float = 0.10    #: half the L1 distance of the 32-bin histograms, in [0, 1]
    min_ratio: float = 3.0    #: pixel difference over the median of the last ``recent`` ones
    recent: int = 8
    min_shot: int = 6         #: frames: a cut this soon after another is taken for motion
    thumb_width: int = 64     #: thumbnail width in pixels (height keeps the aspect)

    def __post_init__(self) -> None:
        if not (0.0 < self.min_pixel <= 1.0 and 0.0 < self.min_hist <= 1.0):
            raise OmgclipError("cut thresholds must be in (0, 1]")
        if self.min_ratio < 1.0 or self.recent < 1:
            raise OmgclipError("cut ratio must be at least 1 and recent at least 1")
        if self.thumb_width < 8:
            raise OmgclipError("cut thumbnail width must be at least 8")


@dataclass
class CutDetector:
    """Feed it every decoded frame in order; it says which ones start a new shot.

    >>> cuts = CutDetector()
    >>> cuts.update(index, gray)    # True when ``index`` is the first frame of a new shot
    >>> cuts.cuts                   # every cut frame seen so far
    """

    config: CutConfig = field(default_factory=CutConfig)
    cuts: list[int] = field(default_factory=list)
    _prev: tuple | None = None
    _levels: list[float] = field(default_factory=list)

    def update(self, index: int, gray) -> bool:
        """``gray``: the ``(H, W)`` uint8 working frame. The first frame is no cut."""
        thumb, hist = self._features(gray)
        prev, self._prev = self._prev, (thumb, hist)
        if prev is None or prev[0].shape != thumb.shape:
            return False
        cfg = self.config
        pixel, histo = self.scores(prev, (thumb, hist))
        level = sorted(self._levels)[len(self._levels) // 2] if self._levels else 0.0
        soon = bool(self.cuts) and index - self.cuts[-1] < cfg.min_shot
        if (pixel >= cfg.min_pixel and histo >= cfg.min_hist and pixel >= cfg.min_ratio * level
                and not soon):
            self.cuts.append(index)
            self._levels.clear()  # the new shot sets its own level
            return True
        self._levels = (self._levels + [pixel])[-cfg.recent:]
        return False

    @staticmethod
    def scores(a: tuple, b: tuple) -> tuple[float, float]:
        """(pixel, histogram) distances between two frames' features."""
        import numpy as np

        pixel = float(np.abs(a[0] - b[0]).mean()) / 255.0
        return pixel, 0.5 * float(np.abs(a[1] - b[1]).sum())

    def _features(self, gray) -> tuple:
        import cv2
        import numpy as np

        h, w = gray.shape[:2]
        tw = min(self.config.thumb_width, w)
        th = max(1, round(h * tw / w))
        step = max(1, w // (2 * tw))  # every step-th pixel first: a quarter of the resize work
        small = cv2.resize(gray[::step, ::step], (tw, th), interpolation=cv2.INTER_AREA)
        hist = np.bincount((small >> 3).ravel(), minlength=32).astype(np.float32)
        return small.astype(np.float32), hist / max(1.0, float(small.size))
