"""Follow faces across frames: stable track ids from key-frame detections.

Detection runs on key frames only (every ``detect_every``-th frame). A :class:`FaceTracker`
links each key frame's boxes to the live tracks (greedy, by IoU or centre distance), so a
person keeps their id through short misses, and never jumps to another person. A track's
box at any frame is interpolated between its key-frame detections; over a miss of at most
``max_gap`` frames the box is carried, and such frames are marked as not really detected.

Shot cuts (:mod:`omgclip.faces.cuts`), when the caller reports them with
:meth:`FaceTracker.cut`, end every track: a track covers frames of one shot only, so the
face after a cut never inherits the id of the face before it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from omgclip.faces.detect import FaceBox, FaceConfig


@dataclass(frozen=True)
class TrackedBox:
    """A track's box at one frame. ``real`` is False where it was carried over a miss."""

    box: FaceBox
    real: bool


@dataclass
class Track:
    """One face followed through the video: its detections at key frames.

    ``start``/``end``: the frames ``[start, end)`` of the shot it belongs to (``end`` None
    while the shot lasts); the track has no box outside them.
    """

    track_id: int
    key_frames: list[int] = field(default_factory=list)
    boxes: list[FaceBox] = field(default_factory=list)
    start: int = 0
    end: int | None = None

    def add(self, frame: int, box: FaceBox) -> None:
        self.key_frames.append(frame)
        self.boxes.append(box)

    @property
    def last_box(self) -> FaceBox:
        return self.boxes[-1]

    def box_at(self, frame: int, every: int, max_gap: int, last_key: int) -> TrackedBox | None:
        """The box at ``frame``, or None where the face is not known there.

        ``last_key`` is the last key frame the detector has processed so far: frames after
        a detection and before the next processed key frame are interpolation tails.
        """
        if frame < self.start or (self.end is not None and frame >= self.end):
            return None
        keys = self.key_frames
        i = bisect.bisect_right(keys, frame)
        prev = i - 1 if i > 0 else None
        nxt = i if i < len(keys) else None
        if prev is not None and keys[prev] == frame:
            return TrackedBox(self.boxes[prev], True)
        if prev is not None and nxt is not None:
            a, b = keys[prev], keys[nxt]
            span = b - a
            if span <= every:
                return TrackedBox(self.boxes[prev].lerp(self.boxes[nxt], (frame - a) / span), True)
            if span <= max_gap + every:
                return TrackedBox(self.boxes[prev].lerp(self.boxes[nxt], (frame - a) / span), False)
            if frame - a <= max_gap:
                return TrackedBox(self.boxes[prev], False)
            if b - frame <= max_gap:
                return TrackedBox(self.boxes[nxt], False)
            return None
        if prev is not None:
            a = keys[prev]
            cut_next = self.end is not None and self.end - a <= every  # the shot ended first
            if frame - a < every and (last_key <= a or cut_next):
                return TrackedBox(self.boxes[prev], True)  # tail after the last key frame
            if frame - a <= max_gap:
                return TrackedBox(self.boxes[prev], False)
            return None
        if nxt is not None and keys[nxt] - frame <= max_gap:
            return TrackedBox(self.boxes[nxt], False)
        return None


class FaceTracker:
    """Assigns key-frame detections to tracks with stable ids.

    >>> tracker = FaceTracker(FaceConfig())
    >>> tracker.update(frame_index, boxes)   # call for each key frame, in order
    >>> tracker.tracks                       # every track seen so far
    """

    def __init__(self, config: FaceConfig):
        self.config = config
        self.tracks: list[Track] = []
        self.last_key = -1
        self.shot_start = 0

    def _alive(self, frame: int) -> list[Track]:
        horizon = self.config.max_gap + self.config.detect_every
        return [t for t in self.tracks if t.end is None and frame - t.key_frames[-1] <= horizon]

    def cut(self, frame: int) -> None:
        """A new shot begins at ``frame``: every track ends before it, and tracks begun
        from now on have no box before it. Call before ``update`` of that frame."""
        if frame <= self.last_key:
            raise ValueError("a cut must come after the key frames already given")
        for t in self.tracks:
            if t.end is None:
                t.end = frame
        self.shot_start = frame

    def recent_boxes(self, frame: int) -> list[FaceBox]:
        """The last box of every face still followed at ``frame``."""
        return [t.last_box for t in self._alive(frame)]

    def _matches(self, track: Track, box: FaceBox) -> float:
        """Match quality in [0, 2] (higher is better), or -1 when they cannot match."""
        iou = track.last_box.iou(box)
        dist = track.last_box.center_distance(box) / max(track.last_box.width, 1.0)
        if iou >= self.config.match_iou or dist <= self.config.match_dist:
            return iou + (1.0 - min(dist, 1.0))
        return -1.0

    def update(self, frame: int, boxes: list[FaceBox]) -> list[int]:
        """Link ``boxes`` detected at key ``frame``; returns their track ids, in order."""
        if frame <= self.last_key:
            raise ValueError("key frames must come in increasing order")
        self.last_key = frame
        alive = self._alive(frame)
        pairs = sorted(((self._matches(t, b), ti, bi) for ti, t in enumerate(alive)
                        for bi, b in enumerate(boxes)), reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for quality, ti, bi in pairs:
            if quality < 0 or ti in used or ids[bi] is not None:
                continue
            used.add(ti)
            alive[ti].add(frame, boxes[bi])
            ids[bi] = alive[ti].track_id
        for bi in sorted(range(len(boxes)), key=lambda j: -boxes[j].area):
            if ids[bi] is None:
                track = Track(len(self.tracks), start=self.shot_start)
                track.add(frame, boxes[bi])
                self.tracks.append(track)
                ids[bi] = track.track_id
        return [int(i) for i in ids]

    def box_at(self, track: Track, frame: int) -> TrackedBox | None:
        return track.box_at(frame, self.config.detect_every, self.config.max_gap, self.last_key)
