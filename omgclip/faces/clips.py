"""Stream a video into face clips: ``T`` consecutive frames of one tracked face, cropped.

This is the face pipeline that ``build`` (one face per block) and ``predict`` (every face
in every segment) share, so a training block and a predicted segment are cropped by the
same code. Frames are consumed once, in order; only the frames of windows not yet
finished are held in memory, so a long video needs no more memory than a short one.

A window (a :class:`~omgclip.dataset.segment.Block`) is finished once the detector has seen the
key frames up to ``max_gap + detect_every`` frames past its end, which is all the tracker
needs to interpolate or carry boxes inside it.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from omgclip.faces.cuts import CutDetector
from omgclip.faces.detect import FaceBox, FaceConfig, FaceDetector, crop_face, resize_whole
from omgclip.dataset.segment import Block
from omgclip.faces.tracking import FaceTracker, Track, TrackedBox

if TYPE_CHECKING:
    from omgclip.faces.identity import PersonTracker

log = logging.getLogger(__name__)

NO_FACE = "no face"
FACE_LOST = "face lost for too long"
FEW_DETECTIONS = "too few real detections"
VIDEO_ENDED = "video ended before the block"


@dataclass(frozen=True)
class FaceClip:
    """One face through one window.

    ``crops``: ``(T, S, S)`` uint8; ``boxes``: its box in each frame (working-frame pixels);
    ``real``: whether each frame's box came from a detection (or its interpolation between
    two consecutive key frames) rather than being carried over a miss. ``span``: the frames
    ``[lo, hi)`` of the window where this face is on screen; where a shot cut splits the
    window, the frames on the other side repeat the edge crop and box (``real`` False).
    """

    track_id: int
    crops: np.ndarray
    boxes: tuple[FaceBox, ...]
    real: tuple[bool, ...]
    span: tuple[int, int] | None = None

    @property
    def detect_frac(self) -> float:
        return sum(self.real) / len(self.real) if self.real else 0.0


@dataclass(frozen=True)
class WindowFaces:
    """The result for one window: usable clips, and why others (or all) were rejected.

    ``block`` is the window as decoded; at the end of a truncated video it is shorter than
    ``requested`` (length 0 when the video ended before it began).
    """

    requested: Block
    block: Block
    clips: tuple[FaceClip, ...]
    rejected: tuple[tuple[int, str], ...]

    @property
    def complete(self) -> bool:
        return self.block.length == self.requested.length

    @property
    def reason(self) -> str:
        """Why there is no clip ('' when there is one)."""
        if self.clips:
            return ""
        if self.block.length == 0:
            return VIDEO_ENDED
        return self.rejected[0][1] if self.rejected else NO_FACE


def lookahead(config: FaceConfig) -> int:
    """Frames past a window's end that must be seen before it can be finished."""
    return config.max_gap + config.detect_every


def needed_frames(windows: Sequence[Block], config: FaceConfig) -> Callable[[int], bool]:
    """A predicate: does the pipeline need to see (decode, maybe detect on) frame ``i``?

    Frames far from every window are only grabbed, not decoded to pixels.
    """
    margin = lookahead(config)
    spans: list[list[int]] = []
    for w in sorted(windows):
        lo, hi = w.start - margin, w.stop + margin
        if spans and lo <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], hi)
        else:
            spans.append([lo, hi])
    starts = [s[0] for s in spans]

    def need(i: int) -> bool:
        k = bisect.bisect_right(starts, i) - 1
        return k >= 0 and i < spans[k][1]

    return need


class _Windows:
    """The windows still to finish, in start order, with the frames they need."""

    def __init__(self, windows: Sequence[Block], extend: bool):
        self.items = sorted(windows)
        self.next = 0
        self.extend = extend

    def pending(self) -> list[Block]:
        return self.items[self.next:]

    def grow_to(self, frame: int) -> None:
        """With ``extend``, add consecutive windows while frames keep coming."""
        if not self.extend or not self.items:
            return
        while frame >= self.items[-1].stop:
            last = self.items[-1]
            self.items.append(Block(last.stop, max(last.length, self.items[0].length)))

    def holds(self, frame: int) -> bool:
        for w in self.items[self.next:]:
            if w.start > frame:
                return False
            if frame < w.stop:
                return True
        return False


def _by_size_at_start(tracks: list[Track], tracker: FaceTracker, window: Block) -> list[Track]:
    """Tracks present in the window, largest first where the window starts (at the
    earliest frame that has any face)."""
    for f in window.frames():
        here = [(tb.box.area, t.track_id, t) for t in tracks if (tb := tracker.box_at(t, f)) is not None]
        if here:
            ranked = [t for _, _, t in sorted(here, key=lambda p: (-p[0], p[1]))]
            return ranked + [t for t in tracks if t not in ranked]
    return list(tracks)


def _clip_for(track: Track, tracker: FaceTracker, window: Block, frames: dict, config: FaceConfig
              ) -> FaceClip | str:
    lo = max(window.start, track.start)  # a track ends at shot cuts: its part of the window
    hi = window.stop if track.end is None else min(window.stop, track.end)
    if hi <= lo:
        return FACE_LOST
    boxed: list[TrackedBox] = []
    for f in range(lo, hi):
        tb = tracker.box_at(track, f)
        if tb is None:
            return FACE_LOST
        boxed.append(tb)
    before, after = lo - window.start, window.stop - hi
    real = (False,) * before + tuple(tb.real for tb in boxed) + (False,) * after
    if sum(real) < config.min_detect_frac * len(real):
        return FEW_DETECTIONS
    crops = [crop_face(frames[f], tb.box, config.crop_size, config.margin)
             for f, tb in zip(range(lo, hi), boxed)]
    crops = np.stack([crops[0]] * before + crops + [crops[-1]] * after)
    boxes = [tb.box for tb in boxed]
    boxes = [boxes[0]] * before + boxes + [boxes[-1]] * after
    return FaceClip(track.track_id, crops, tuple(boxes), real, (lo, hi))


def _finish(window: Block, requested: Block, tracker: FaceTracker, frames: dict,
            config: FaceConfig, follow: str, identity: "PersonTracker | None" = None
            ) -> WindowFaces:
    if window.length == 0:
        return WindowFaces(requested, window, (), ())
    present = [t for t in tracker.tracks
               if t.key_frames and t.key_frames[0] <= window.stop + config.max_gap
               and t.key_frames[-1] >= window.start - config.max_gap - config.detect_every]
    if follow == "largest":
        present = _by_size_at_start(present, tracker, window)
    clips, rejected = [], []
    for track in present:
        result = _clip_for(track, tracker, window, frames, config)
        if isinstance(result, FaceClip):
            clips.append(result)
            if follow == "largest":  # one face per block: the largest that can be followed
                break
        else:
            rejected.append((track.track_id, result))
    if identity is not None:
        for clip in clips:
            identity.observe(clip, window, tracker.tracks[clip.track_id], frames)
    return WindowFaces(requested, window, tuple(clips), tuple(rejected))


def face_clips(frames: Iterable[tuple[int, np.ndarray]], windows: Sequence[Block],
               config: FaceConfig | None = None, detector: FaceDetector | None = None,
               follow: str = "largest", extend: bool = False,
               on_frame: Callable[[int], None] | None = None,
               cuts: CutDetector | None = None, identity: "PersonTracker | None" = None
               ) -> Iterator[WindowFaces]:
    """Yield one :class:`WindowFaces` per window, in start order.

    ``frames``: ``(index, gray (H, W) uint8)`` in increasing index order (indices may skip
    frames no window needs, see :func:`needed_frames`). ``follow='largest'`` keeps one face
    per window (build-dataset): the largest at its start, followed by its own track through
    the window -- or, where that face cannot be followed through it, the next largest;
    ``follow='all'`` gives a clip for every tracked face (predict). ``extend=True`` adds
    consecutive windows while the video goes on past the last one.

    ``cuts``: a :class:`~omgclip.faces.cuts.CutDetector` that sees every frame; at each cut
    all tracks end and the cut frame is a key frame (predict). Without it tracks follow
    faces across cuts (build-dataset, whose blocks stay as they were built).
    ``identity``: a :class:`~omgclip.faces.identity.PersonTracker` that describes the faces
    of finished clips (on a few of each track's clips) for person ids.
    """
    config = config or FaceConfig()
    if follow not in ("largest", "all"):
        raise ValueError("follow must be 'largest' or 'all'")
    detector = detector or FaceDetector(config)
    tracker = FaceTracker(config)
    todo = _Windows(windows, extend)
    held: dict[int, np.ndarray] = {}
    ahead = lookahead(config)
    last = -1
    keys = misses = stage = 0
    for index, gray in frames:
        if todo.next >= len(todo.items):
            break
        todo.grow_to(index)
        last = index
        if on_frame is not None:
            on_frame(index)
        cut = cuts is not None and cuts.update(index, gray)
        if cut:
            tracker.cut(index)
        if cut or index % config.detect_every == 0:
            boxes, stage = _detect_key_frame(detector, gray, keys, misses, stage,
                                             tracker.recent_boxes(index))
            keys += 1
            misses = 0 if boxes else misses + 1
            tracker.update(index, boxes)
        if todo.holds(index):
            held[index] = gray
        while todo.next < len(todo.items) and index >= todo.items[todo.next].stop - 1 + ahead:
            w = todo.items[todo.next]
            yield _finish(w, w, tracker, held, config, follow, identity)
            todo.next += 1
            _release(held, todo)
    while todo.next < len(todo.items):  # the video ended: finish what remains
        w = todo.items[todo.next]
        got = Block(w.start, max(0, min(w.stop, last + 1) - w.start))
        yield _finish(got, w, tracker, held, config, follow, identity)
        todo.next += 1
        _release(held, todo)


def _detect_key_frame(detector: FaceDetector, gray: np.ndarray, keys: int, misses: int,
                      stage: int, recent: list[FaceBox]) -> tuple[list[FaceBox], int]:
    """One key frame, with detection adapted to the video so far.

    * Faces followed a moment ago are looked for near where they were
      (:meth:`FaceDetector.detect_near`); only if one of them is not found there, and on
      every 4th key frame (to catch faces that appear), does the whole frame go through
      the cascade.
    * The cascade starts at the stage that last found faces (small faces need the
      costlier stages); every 4th key frame starts from the cheapest again.
    * After 2 key frames without any face, the full-resolution stage runs on every 3rd
      key frame only, so stretches without people stay cheap.
    """
    if recent and keys % 4 != 0:
        near = detector.detect_near(gray, recent)
        if len(near) >= len(recent):
            return near, stage
    first = 0 if keys % 4 == 0 else stage
    thorough = misses < 2 or misses % 3 == 0
    boxes, found_at = detector.detect_staged(gray, first=first, thorough=thorough)
    return boxes, (found_at if boxes else stage)


def whole_frame_clips(frames: Iterable[tuple[int, np.ndarray]], windows: Sequence[Block], size: int = 80,
                      extend: bool = False, on_frame: Callable[[int], None] | None = None
                      ) -> Iterator[WindowFaces]:
    """For frames that are already face crops (``crop='none'``: a manifest row's ``crop``
    column in build-dataset, ``predict --crop none``): one :class:`WindowFaces` per window, in
    start order, whose one clip (track 0) is each whole frame resized to ``(size, size)``
    (:func:`~omgclip.faces.detect.resize_whole`); its box is the whole frame. No detection, so
    no frame is dropped and a window is ``T`` consecutive frames. ``frames``, ``extend`` and
    ``on_frame`` as in :func:`face_clips`; a window the video ends inside is returned short
    (no clip where it got no frame)."""
    todo = _Windows(windows, extend)
    held: dict[int, np.ndarray] = {}
    whole: FaceBox | None = None
    last = -1
    for index, gray in frames:
        todo.grow_to(index)  # first: the last window may have just finished (no lookahead here)
        if todo.next >= len(todo.items):
            break
        last = index
        if on_frame is not None:
            on_frame(index)
        if todo.holds(index):
            held[index] = resize_whole(gray, size)
            whole = whole or FaceBox(0.0, 0.0, float(gray.shape[1]), float(gray.shape[0]))
        while todo.next < len(todo.items) and index >= todo.items[todo.next].stop - 1:
            w = todo.items[todo.next]
            yield _whole_window(w, w, held, whole)
            todo.next += 1
            _release(held, todo)
    while todo.next < len(todo.items):  # the video ended: finish what remains
        w = todo.items[todo.next]
        yield _whole_window(Block(w.start, max(0, min(w.stop, last + 1) - w.start)), w, held, whole)
        todo.next += 1
        _release(held, todo)


def _whole_window(got: Block, requested: Block, held: dict, whole: FaceBox | None) -> WindowFaces:
    crops = [held[f] for f in got.frames() if f in held]
    if not crops or len(crops) < got.length or whole is None:  # (whole is set once any frame is held)
        return WindowFaces(requested, Block(got.start, len(crops)), (), ())
    clip = FaceClip(0, np.stack(crops), (whole,) * len(crops), (True,) * len(crops))
    return WindowFaces(requested, got, (clip,), ())


def _release(held: dict, todo: _Windows) -> None:
    pending = todo.pending()
    keep_from = pending[0].start if pending else float("inf")
    for f in [f for f in held if f < keep_from]:
        del held[f]
