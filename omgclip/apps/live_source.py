"""Frames for ``omgclip live``: a capture thread that never lets processing fall behind.

A :class:`FrameSource` reads a camera, a file or a stream (through
:func:`omgclip.faces.video_io.open_capture`, the decoder) in its own thread into a small
buffer. When the buffer is full -- processing is slower than the source -- the oldest frame
is dropped and counted, so a frame waits at most ``buffer`` frames before it is processed
and latency stays bounded. A file (also one served over HTTP) is played at its own frame
rate (``pace``), as a camera would deliver it; with ``pace=False`` it is read as fast as it
is processed and nothing is dropped. A stream that stops delivering is reopened up to ``reconnect`` times, waiting
``reconnect_delay`` seconds (doubling, at most 8 s) between tries.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omgclip.errors import OmgclipError

log = logging.getLogger(__name__)

END_OF_STREAM = "end of stream"


@dataclass(frozen=True)
class LiveFrame:
    """One captured frame. ``image``: ``(H, W, 3)`` BGR uint8 as captured; ``index`` counts
    every frame read (dropped ones too); ``t_capture`` is ``time.monotonic()`` when it was
    read, ``wall`` ``time.time()``; ``stream_s`` is its time in the stream (a file's own
    clock; seconds since reading began for cameras and live streams)."""

    index: int
    image: object
    t_capture: float
    wall: float
    stream_s: float


@dataclass
class SourceStats:
    read: int = 0
    dropped: int = 0
    reconnects: int = 0
    ended: str = ""


def parse_source(text: str) -> tuple[str, str | int]:
    """``'0'`` -> ``('camera', 0)``; ``rtsp://``/``http(s)://`` -> ``('stream', url)``; else a
    file, which must exist (``OmgclipError`` otherwise)."""
    text = str(text).strip()
    if text.isdigit():
        return "camera", int(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"):
        return "stream", text
    if scheme:
        raise OmgclipError(f"{text}: unsupported source (a camera index, a video file, or an "
                           f"rtsp:// or http(s):// stream)")
    path = Path(text).expanduser()
    if not path.is_file():
        raise OmgclipError(f"{text}: no such video file (a camera index, a video file, or an "
                           f"rtsp:// or http(s):// stream)")
    return "file", str(path)


class FrameSource:
    """The capture thread. ``start()`` opens the source (``OmgclipError`` if it cannot),
    ``get()`` hands out frames in order (``None`` on timeout or at the end: see
    ``stats.ended``), ``stop()`` ends it."""

    def __init__(self, source: str, buffer: int = 2, pace: bool = True, reconnect: int = 5,
                 reconnect_delay: float = 1.0, timeout: float = 10.0, opener: Callable | None = None):
        self.kind, self.target = parse_source(source)
        self.source = source
        self.buffer = max(1, int(buffer))
        self.pace_files = pace
        self.pace = self.drop = True  # set in start(), once the length is known
        self.reconnect = max(0, int(reconnect))
        self.reconnect_delay = reconnect_delay
        self._opener = opener or (lambda target: _default_opener(target, timeout))
        self.stats = SourceStats()
        self.fps = 0.0
        self.frame_count = 0
        self._buf: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap = None

    def open(self) -> "FrameSource":
        """Open the source (``OmgclipError`` if it cannot); ``start()`` then reads it."""
        self._cap = self._opener(self.target)
        if self._cap is None:
            raise OmgclipError(f"{self.source}: cannot open (no such camera, not a video, or the "
                               f"stream does not answer)")
        fps = float(self._cap.get(5) or 0.0)  # cv2.CAP_PROP_FPS
        self.fps = fps if 0 < fps < 1000 and not math.isnan(fps) else 0.0
        self.frame_count = max(0, int(self._cap.get(7) or 0))  # cv2.CAP_PROP_FRAME_COUNT
        self.pace = self.pace_files and self._finite()
        self.drop = self.pace or not self._finite()
        return self

    def start(self) -> "FrameSource":
        if self._cap is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="omgclip-capture", daemon=True)
        self._thread.start()
        return self

    def get(self, timeout: float = 0.5) -> LiveFrame | None:
        with self._cond:
            if not self._buf and not self.stats.ended:
                self._cond.wait(timeout)
            if self._buf:
                frame = self._buf.popleft()
                self._cond.notify_all()
                return frame
            return None

    @property
    def ended(self) -> str:
        """Why the source ended ('' while it goes on or frames are still buffered)."""
        with self._cond:
            return "" if self._buf else self.stats.ended

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        elif self._cap is not None:  # opened, never started
            self._cap.release()
            self._cap = None

    # -------------------------------------------------------------- the thread
    def _run(self) -> None:
        cap, index, t0, streak = self._cap, 0, time.monotonic(), 0
        try:
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    if self._finite():
                        self._end(END_OF_STREAM)
                        return
                    cap.release()
                    cap, streak = self._reopen(streak)
                    if cap is None:
                        return
                    continue
                streak = 0
                now = time.monotonic()
                clock = index / self.fps if self._finite() and self.fps else now - t0
                self._put(LiveFrame(index, image, now, time.time(), clock))
                index += 1
                if self.pace and self.fps:
                    time.sleep(max(0.0, t0 + index / self.fps - time.monotonic()))
            self._end("stopped")
        except Exception as exc:  # noqa: BLE001 - a capture error ends the stream, with its reason
            log.debug("capture failed", exc_info=True)
            self._end(f"capture failed: {' '.join(str(exc).split())[:200]}")
        finally:
            if cap is not None:
                cap.release()

    def _finite(self) -> bool:
        """A file, or a file served over HTTP (a known length): its end is the end, not a
        drop to reconnect from."""
        return self.kind == "file" or (self.frame_count > 0 and str(self.target).lower().startswith("http"))

    def _reopen(self, streak: int):
        """Reopen after a failed read: ``(capture, failures in a row)``, or ``(None, n)``
        once ``reconnect`` tries in a row have given no frame."""
        cap = None
        while cap is None:
            if streak >= self.reconnect:
                self._end(f"stream lost ({self.reconnect} reconnect tries failed)" if self.reconnect
                          else "stream lost (reconnecting is off)")
                return None, streak
            delay = min(8.0, self.reconnect_delay * 2 ** streak)
            log.warning("%s: no frame; reconnecting (try %d of %d) in %.1f s", self.source,
                        streak + 1, self.reconnect, delay)
            if self._stop.wait(delay):
                self._end("stopped")
                return None, streak
            streak += 1
            self.stats.reconnects += 1
            cap = self._opener(self.target)
        return cap, streak

    def _put(self, frame: LiveFrame) -> None:
        with self._cond:
            if self.drop:
                if len(self._buf) >= self.buffer:
                    self._buf.popleft()
                    self.stats.dropped += 1
            else:
                while len(self._buf) >= self.buffer and not self._stop.is_set():
                    self._cond.wait(0.5)
            self._buf.append(frame)
            self.stats.read += 1
            self._cond.notify_all()

    def _end(self, reason: str) -> None:
        with self._cond:
            if not self.stats.ended:
                self.stats.ended = reason
            self._cond.notify_all()


def _default_opener(target, timeout: float):
    from omgclip.faces.video_io import open_capture

    return open_capture(target, open_timeout_s=timeout, read_timeout_s=timeout)
