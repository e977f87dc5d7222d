"""``omgclip live SOURCE``: emotion labels for every face of a camera, file or stream, as it plays.

Each tracked face keeps a rolling window of its last ``T`` crops (``T`` = the model's block,
20 frames). Once the window is full, a label comes out every ``hop`` frames: the model sees
the face's last ``T`` processed frames, just as ``predict`` sees a segment. Faces are found
and followed by the same detector and tracker as ``predict``, causally: the detector runs on
every ``detect_every``-th processed frame and the box is carried in between.

Rows (one per label) carry ``wall_time`` (UTC, ISO 8601), ``stream_s``, ``frame`` (the last
frame of the window, counting dropped frames), ``track_id``, ``label``, ``confidence``, the
probabilities ``p_anger .. p_surprise``, ``latency_s`` (from the capture of that frame to
the label) and the face box ``x0 y0 x1 y1`` in source pixels. ``smooth = N`` averages each
face's last ``N`` probability vectors.

The run ends at the end of the stream, after ``duration`` seconds, when the window is
closed, or on Ctrl-C / SIGTERM; rows are flushed as they come and the output file is
complete in every case. Frames the processing could not keep up with are dropped by the
capture thread (:mod:`omgclip.apps.live_source`) and counted in the summary.
"""

from __future__ import annotations

import collections
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

from omgclip.apps.live_io import RowSink, check_out, live_columns
from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceBox, FaceConfig, FaceDetector, crop_face

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveConfig:
    """What ``omgclip live`` does (the CLI's options, one to one)."""

    source: str
    checkpoint: str | None = None   #: None: the bundled default model
    hop: int = 10                   #: a label every hop frames per face (once its window is full)
    smooth: int = 0                 #: average each face's last N probability vectors (0/1: off)
    headless: bool = False          #: no window; rows to ``out``
    out: str | None = None          #: rows.jsonl, rows.csv or '-' (stdout, JSON lines)
    duration: float | None = None   #: stop after this many seconds
    reconnect: int = 5              #: reopen a dropped stream at most this many times
    reconnect_delay: float = 1.0    #: seconds before the first reopen (doubling, at most 8)
    buffer: int = 2                 #: frames that may wait; older ones are dropped
    timeout: float = 10.0           #: seconds a stream may take to open or to give a frame
    pace: bool = True               #: play a file at its frame rate (False: as fast as possible)
    detect_every: int | None = 5    #: run the face detector on every k-th processed frame
    persons: bool = True            #: person ids across tracks (dlib face descriptors)
    flip: bool = True               #: test-time flip where the weights ask for it (False: one pass)
    threads: int = 1                #: torch threads for the model (this process)
    face: FaceConfig | None = None

    def __post_init__(self) -> None:
        if not str(self.source).strip():
            raise OmgclipError("live needs a SOURCE: a camera index, a video file or a stream URL")
        if self.hop < 1:
            raise OmgclipError(f"--hop must be at least 1, got {self.hop}")
        if self.smooth < 0:
            raise OmgclipError(f"--smooth must be 0 or more, got {self.smooth}")
        if self.duration is not None and not self.duration > 0:
            raise OmgclipError(f"--duration must be more than 0 seconds, got {self.duration}")
        if self.reconnect < 0 or self.reconnect_delay < 0:
            raise OmgclipError("--reconnect and --reconnect-delay must be 0 or more")
        if not self.timeout > 0:
            raise OmgclipError(f"--timeout must be more than 0 seconds, got {self.timeout}")
        if self.buffer < 1:
            raise OmgclipError(f"--buffer must be at least 1, got {self.buffer}")
        if self.detect_every is not None and self.detect_every < 1:
            raise OmgclipError(f"--detect-every must be at least 1, got {self.detect_every}")
        if self.threads < 1:
            raise OmgclipError(f"--threads must be at least 1, got {self.threads}")
        check_out(self.out)


@dataclass(frozen=True)
class LiveFace:
    """A face on the current frame: box in source pixels, its latest label (``''`` until its
    first window is full) and how many frames its window holds."""

    track_id: int
    box: tuple[float, float, float, float]
    label: str
    confidence: float
    filled: int
    person_id: int = -1


@dataclass
class LiveStep:
    faces: list[LiveFace]
    rows: list[dict]


@dataclass
class _TrackState:
    crops: collections.deque
    real: collections.deque
    since: int = 0
    last_t: float = 0.0
    last_index: int = 0
    label: str = ""
    confidence: float = math.nan
    person_id: int = -1
    history: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))


class LiveLabeler:
    """The rolling-window model: push frames in order, get faces and new label rows.

    ``model``: a loaded model (``LoadedModel``); ``face``: face settings (its crop size must
    be the model's); ``persons``: person ids across tracks (:mod:`omgclip.apps.live_people`),
    or False; ``encoder``: a face encoder to share between labelers (one is loaded if None).
    One labeler follows one stream; it is not thread-safe.
    """

    def __init__(self, model, face: FaceConfig, hop: int = 10, smooth: int = 0,
                 detector: FaceDetector | None = None, model_lock: threading.Lock | None = None,
                 persons: bool = True, encoder=None):
        from omgclip.faces.cuts import CutDetector
        from omgclip.faces.tracking import FaceTracker

        self.model = model
        self.face = face
        self.T = int(model.block_len)
        self.hop = hop
        self.smooth = smooth
        self.labels = tuple(model.labels)
        self.detector = detector or FaceDetector(face)
        self.tracker = FaceTracker(face)
        self.cuts = CutDetector()
        self.model_lock = model_lock
        self.tracks: dict[int, _TrackState] = {}
        self.persons = None
        if persons:
            from omgclip.apps.live_people import LivePersons

            self.persons = LivePersons(encoder=encoder)
        self.count = 0
        self.keys = self.misses = self.stage = 0

    def warm_up(self) -> None:
        """Load dlib and run the model once, so the first real frames are not late."""
        self.detector.detect(np.zeros((120, 160), np.uint8))
        if self.persons is not None:
            self.persons.encoder.describe(np.zeros((160, 160), np.uint8), [FaceBox(40, 40, 120, 120)])
        classify(self.model, np.zeros((1, self.T, self.face.crop_size, self.face.crop_size),
                                      np.uint8), self.model_lock)

    def push(self, gray, scale: float, index: int, t_capture: float, wall: float,
             stream_s: float) -> LiveStep:
        """One frame: ``gray`` ``(H, W)`` uint8 at working size, ``scale`` = working/source
        pixels. Returns the faces on it and the rows of any labels it completes."""
        k = self.count
        self.count += 1
        cut = self.cuts.update(k, gray)
        if cut:  # a new shot: every track ends (the face after a cut is a new track)
            self.tracker.cut(k)
        if cut or k % self.face.detect_every == 0:
            self._detect(gray, k)
        ready, faces = [], []
        horizon = self.face.max_gap + self.face.detect_every
        for track in self.tracker.tracks:
            if k - track.key_frames[-1] > horizon:
                self.tracks.pop(track.track_id, None)
                continue
            tb = self.tracker.box_at(track, k)
            if tb is None:
                self.tracks.pop(track.track_id, None)
                continue
            st = self.tracks.get(track.track_id)
            if st is None:
                st = self.tracks[track.track_id] = _TrackState(
                    collections.deque(maxlen=self.T), collections.deque(maxlen=self.T))
            st.crops.append(crop_face(gray, tb.box, self.face.crop_size, self.face.margin))
            st.real.append(tb.real)
            st.since += 1
            st.last_t, st.last_index = t_capture, index
            box = _source_box(tb.box, scale)
            if (len(st.crops) == self.T and st.since >= self.hop
                    and sum(st.real) >= self.face.min_detect_frac * self.T):
                ready.append((track.track_id, st, box, tb.box))
            faces.append((track.track_id, st, box))
        if ready and self.persons is not None:
            on_screen = [tid for tid, _, _ in faces]
            for tid, st, _, work_box in ready:
                st.person_id = self.persons.person_for(tid, gray, work_box, on_screen)
        rows = self._label(ready, wall, stream_s) if ready else []
        out = [LiveFace(tid, box, st.label, st.confidence, len(st.crops), st.person_id)
               for tid, st, box in faces]
        return LiveStep(out, rows)

    def _detect(self, gray, k: int) -> None:
        from omgclip.faces.clips import _detect_key_frame  # the cascade predict uses

        boxes, self.stage = _detect_key_frame(self.detector, gray, self.keys, self.misses,
                                              self.stage, self.tracker.recent_boxes(k))
        self.keys += 1
        self.misses = 0 if boxes else self.misses + 1
        self.tracker.update(k, boxes)
        for track in self.tracker.tracks:  # only the last key frames matter here: bounded memory
            if len(track.key_frames) > 4:
                del track.key_frames[:-4], track.boxes[:-4]

    def _label(self, ready: list, wall: float, stream_s: float) -> list[dict]:
        batch = np.stack([np.stack(st.crops) for _, st, _, _ in ready])  # (N, T, S, S) uint8
        probs = classify(self.model, batch, self.model_lock)
        done = time.monotonic()
        rows = []
        for (tid, st, box, _), p in zip(ready, probs):
            st.since = 0
            st.history.append(p)
            if self.smooth > 1:
                p = np.mean(list(st.history)[-self.smooth:], axis=0)
            j = int(np.argmax(p))
            st.label, st.confidence = self.labels[j], float(p[j])
            rows.append({"wall_time": _iso(wall), "stream_s": round(float(stream_s), 3),
                         "frame": int(st.last_index), "track_id": int(tid),
                         "person_id": int(st.person_id), "label": st.label,
                         "confidence": st.confidence,
                         **{f"p_{n}": float(v) for n, v in zip(self.labels, p)},
                         "latency_s": round(done - st.last_t, 4),
                         **dict(zip(("x0", "y0", "x1", "y1"), (round(v, 1) for v in box)))})
        return rows


def classify(model, clips: np.ndarray, lock: threading.Lock | None = None) -> np.ndarray:
    """``(N, T, S, S)`` uint8 crops -> ``(N, C)`` class probabilities (under ``lock``, when
    several streams share the model)."""
    from omgclip.learn.inference import clip_probabilities

    if lock is None:
        return clip_probabilities(model.net, clips)
    with lock:
        return clip_probabilities(model.net, clips)


def _source_box(box: FaceBox, scale: float) -> tuple[float, float, float, float]:
    return (box.left / scale, box.top / scale, box.right / scale, box.bottom / scale)


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# ----------------------------------------------------------------------------- the run
@dataclass
class LiveSummary:
    """How a live run went."""

    source: str
    ended: str = ""
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    rows: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def latency(self, q: float) -> float:
        return float(np.quantile(self.latencies, q)) if self.latencies else math.nan

    @property
    def processed_fps(self) -> float:
        return self.frames_processed / self.seconds if self.seconds > 0 else math.nan

    def line(self) -> str:
        drop = self.frames_dropped / self.frames_read if self.frames_read else 0.0
        return (f"live: {self.frames_read} frames read, {self.frames_dropped} dropped ({drop:.1%}) "
                f"to keep up, {self.rows} labels, {self.processed_fps:.1f} frames/s processed, "
                f"latency median {self.latency(0.5):.3f} s, max {self.latency(1.0):.3f} s, "
                f"{self.reconnects} reconnects; ended: {self.ended}")


def run_live(cfg: LiveConfig, model=None) -> LiveSummary:
    """Run ``cfg`` until the stream ends, ``cfg.duration`` passes, or Ctrl-C / SIGTERM."""
    from omgclip.apps.live_source import FrameSource
    from omgclip.apps.predict import face_config_for, load_predict_model

    import torch

    # One thread: a single clip gains little from more, and on a busy CPU several OpenMP
    # threads can take 40x longer (measured: 29 ms vs 1.2 s at load 17 on 2 cores).
    torch.set_num_threads(cfg.threads)
    window = None if cfg.headless else _open_window(cfg.source)
    source = FrameSource(cfg.source, buffer=cfg.buffer, pace=cfg.pace, reconnect=cfg.reconnect,
                         reconnect_delay=cfg.reconnect_delay, timeout=cfg.timeout).open()
    try:
        model = model or load_predict_model(cfg.checkpoint, cfg.flip)
        face = face_config_for(model, cfg)
        labeler = LiveLabeler(model, face, cfg.hop, cfg.smooth, persons=cfg.persons)
        labeler.warm_up()
        out = cfg.out if cfg.out or not cfg.headless else "-"
        sink = RowSink(out, live_columns(labeler.labels)) if out else None
    except BaseException:
        source.stop()
        if window is not None:
            window.close()
        raise
    source.start()
    summary = LiveSummary(cfg.source)
    restore = _sigterm_as_interrupt()
    t0 = time.monotonic()
    try:
        summary.ended = _loop(cfg, source, labeler, face, sink, window, summary, t0)
    except KeyboardInterrupt:
        summary.ended = "interrupted"
    finally:
        restore()
        source.stop()
        if sink is not None:
            sink.close()
        if window is not None:
            window.close()
        summary.seconds = time.monotonic() - t0
        summary.frames_read, summary.frames_dropped = source.stats.read, source.stats.dropped
        summary.reconnects = source.stats.reconnects
    return summary


def _loop(cfg, source, labeler, face, sink, window, summary, t0) -> str:
    from omgclip.faces.video_io import to_work_gray, work_scale

    scale = None
    while True:
        if cfg.duration is not None and time.monotonic() - t0 >= cfg.duration:
            return f"duration {cfg.duration:g} s reached"
        frame = source.get(timeout=0.25)
        if frame is None:
            if source.ended:
                return source.ended
            continue
        if scale is None:
            scale = work_scale(frame.image.shape[1], face.work_width)
        gray = to_work_gray(frame.image, scale)
        step = labeler.push(gray, scale, frame.index, frame.t_capture, frame.wall, frame.stream_s)
        summary.frames_processed += 1
        for row in step.rows:
            summary.latencies.append(row["latency_s"])
            summary.rows += 1
            if sink is not None:
                sink.write(row)
        if window is not None and not window.show(frame.image, step.faces):
            return "window closed"


def _open_window(source: str):
    from omgclip.apps.live_io import LiveWindow

    return LiveWindow(f"omgclip live: {source}")


def _sigterm_as_interrupt():
    """In the main thread, SIGTERM ends the run like Ctrl-C (rows flushed, file complete)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def faces_table(faces: Sequence[LiveFace]) -> list[dict]:
    """Faces as plain dicts (for JSON answers)."""
    return [{"track_id": f.track_id, "person_id": f.person_id, "box": [round(v, 1) for v in f.box], "label": f.label,
             "confidence": None if math.isnan(f.confidence) else round(f.confidence, 4),
             "filled": f.filled} for f in faces]
