"""The records ``omgclip predict`` fills and every output reads: one :class:`SegmentFace`
per (segment, face), one :class:`VideoPrediction` per input with its :class:`StageTimes`;
and :func:`annotate_result`, which draws a prediction's boxes and labels on its source."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from omgclip.dataset.segment import Block
from omgclip.dataset.sources import is_image
from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceBox


@dataclass
class StageTimes:
    """Wall seconds per stage of one video: decoding frames, finding/tracking/cropping
    faces, running the model (incl. batching), and writing annotations/plots.

    With read-ahead (the default) frames decode in a thread beside the face stage:
    ``decode`` is then the time the pipeline *waited* for frames, and ``decode_thread`` the
    decoding thread's own time (0 without read-ahead, where ``decode`` is all of it)."""

    decode: float = 0.0
    decode_thread: float = 0.0
    faces: float = 0.0
    model: float = 0.0
    output: float = 0.0
    total: float = 0.0
    frames: int = 0
    video_s: float = 0.0

    @property
    def realtime_factor(self) -> float:
        """Video seconds processed per wall second (decode + faces + model)."""
        busy = self.decode + self.faces + self.model
        return self.video_s / busy if busy > 0 else float("nan")

    def as_dict(self) -> dict:
        return {"decode_s": self.decode, "decode_thread_s": self.decode_thread, "faces_s": self.faces,
                "model_s": self.model, "output_s": self.output, "total_s": self.total, "frames": self.frames,
                "video_s": self.video_s, "realtime_factor": self.realtime_factor}


@dataclass
class SegmentFace:
    """One (segment, face) result: the record every output (rows, annotation) reads.

    ``track_id`` -1 means the segment has no usable face (``reason`` says why, and boxes,
    crops and probabilities are empty). ``boxes`` are the face's per-frame boxes in source
    pixels, frame ``block.start + k`` for box ``k``. ``probs`` ``(K,)`` is set by the model;
    ``crops`` ``(t, S, S)`` uint8 are dropped once classified. ``first``: the frame of
    ``boxes[0]`` where a shot cut leaves the face only part of the segment (None: the
    segment's start). ``person_id``/``person``: set once the video is done.
    """

    segment: int
    block: Block
    track_id: int = -1
    person_id: int = -1
    person: str = ""
    first: int | None = None
    reason: str = ""
    detect_frac: float = math.nan
    boxes: tuple[FaceBox, ...] = ()
    crops: np.ndarray | None = None
    probs: np.ndarray | None = None

    def row(self, file: str, fps: float, labels) -> dict:
        """The output row (see the module doc)."""
        b = self.block
        row: dict[str, Any] = {
            "file": file, "segment": self.segment,
            "start_s": b.start / fps if fps else 0.0, "end_s": b.stop / fps if fps else 0.0,
            "start_frame": b.start, "end_frame": b.stop, "track_id": self.track_id,
            "person_id": self.person_id, "person": self.person, "label": self.reason, "confidence": math.nan, "detect_frac": self.detect_frac}
        if self.boxes:
            box = np.mean([(f.left, f.top, f.right, f.bottom) for f in self.boxes], axis=0)
            row.update(x0=float(box[0]), y0=float(box[1]), x1=float(box[2]), y1=float(box[3]))
        if self.probs is not None:
            k = int(np.argmax(self.probs))
            row.update(label=labels[k], confidence=float(self.probs[k]))
            row.update({f"p_{name}": float(v) for name, v in zip(labels, self.probs)})
        return row


@dataclass
class VideoPrediction:
    """One input's result: its per-segment-face records, its info, and stage times."""

    file: str
    path: Path
    info: Any
    faces: list[SegmentFace] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)
    frames_decoded: int = 0
    labels: tuple[str, ...] = ()
    partial: bool = False  #: fewer frames decoded than the file announces (truncated)

    @property
    def rows(self) -> list[dict]:
        fps = self.info.fps
        return [f.row(self.file, fps, self.labels) for f in self.faces]


class Timed:
    """Wrap an iterator; count its items and the seconds spent producing them."""

    def __init__(self, iterable: Iterable):
        self.it = iter(iterable)
        self.seconds = 0.0
        self.count = 0

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        t0 = time.perf_counter()
        try:
            item = next(self.it)
        finally:
            self.seconds += time.perf_counter() - t0
        self.count += 1
        return item


def annotate_result(result: VideoPrediction, df, target: Path) -> Path:
    """Draw each face's box and label (as in ``df``, i.e. after smoothing) on the source
    video (or image). ``df`` has one row per record of ``result``, in the same order."""
    from omgclip.apps import annotate

    if len(df) != len(result.faces):
        raise AssertionError("rows and segment records differ in number")
    per_frame: dict[int, dict[int, annotate.Overlay]] = {}
    for rec, label, conf in zip(result.faces, df["label"].tolist(), df["confidence"].tolist()):
        first = rec.block.start if rec.first is None else rec.first
        for k, box in enumerate(rec.boxes):  # overlapping segments: the later one wins
            per_frame.setdefault(first + k, {})[rec.track_id] = annotate.Overlay(
                rec.track_id, (box.left, box.top, box.right, box.bottom), str(label), float(conf),
                rec.person_id, rec.person)
    overlays = {f: list(d.values()) for f, d in per_frame.items()}
    if target.suffix.lower() != ".mp4":
        if not is_image(result.path):
            raise OmgclipError(f"--annotate for a video must end in .mp4, got {target.name!r}")
        return annotate.write_annotated_image(result.path, target, overlays.get(0, []))
    return annotate.write_annotated_video(result.path, target, overlays, fps=result.info.fps)
