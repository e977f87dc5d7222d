"""The only place that decodes video or images (OpenCV, imported lazily).

Frames come out as ``(H, W)`` uint8 grayscale at a *working* resolution: never wider than
``work_width`` (downscaled with area interpolation), which is all face crops need and keeps
memory bounded. Boxes in that working frame convert to source pixels with ``scale``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from omgclip.dataset.sources import is_image
from omgclip.errors import VideoError

log = logging.getLogger(__name__)
T = TypeVar("T")



def _cv2():
    # libav's own lines ("moov atom not found") would sit beside our one-line errors; OpenCV
    # reads this at its first VideoCapture. Set OPENCV_FFMPEG_LOGLEVEL yourself to see them.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (``frame_count`` may overstate a truncated
    file: decoding stops where the data ends)."""

    path: str
    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps else 0.0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` and read its fps, frame count and size; check that one frame decodes.

    Raises ``VideoError`` (one line) for a missing, empty or undecodable file.
    """
    cv2 = _cv2()
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: file not found")
    if p.is_dir():
        raise VideoError(f"{p}: is a folder, not a video")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes)")
    _check_readable(p)
    if is_image(p):
        img = _read_image(p, cv2.IMREAD_GRAYSCALE)
        return VideoInfo(str(p), 0.0, 1, img.shape[1], img.shape[0])
    said: list[str] = []  # libav's own lines, should cv2 have been set up before us
    with _native_stderr_caught(said):
        cap = cv2.VideoCapture(str(p))
        opened = cap.isOpened()
        ok, frame = cap.read() if opened else (False, None)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
    why = f" ({said[0]})" if said else ""
    if said:
        log.debug("%s: decoder said: %s", p, said[0])
    if not opened:
        raise VideoError(f"{p}: not a readable video{why}")
    if not ok or frame is None:
        raise VideoError(f"{p}: no frame could be decoded (not a video, or truncated){why}")
    if not fps or math.isnan(fps) or fps <= 0 or fps > 1000:
        raise VideoError(f"{p}: the video reports no usable frame rate ({fps})")
    return VideoInfo(str(p), fps, max(count, 1), frame.shape[1], frame.shape[0])


def work_scale(width: int, work_width: int | None) -> float:
    """Factor from source pixels to working pixels (<= 1)."""
    if not work_width or width <= work_width:
        return 1.0
    return work_width / width


def to_work_gray(frame, scale: float):
    """BGR (or gray) source frame -> ``(H, W)`` uint8 grayscale working frame."""
    cv2 = _cv2()
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if scale != 1.0:
        h, w = gray.shape
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    return gray


def _check_readable(path: Path) -> None:
    """OpenCV says only "cannot open" for a file it may not read; say why."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise VideoError(f"{path}: permission denied (cannot read the file)") from None
    except IsADirectoryError:
        raise VideoError(f"{path}: is a folder, not a video") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


_damage_reported: set[str] = set()
_LIBAV_PREFIX = re.compile(r"\[[^\]\n]* @ 0x[0-9a-fA-F]+\]\s*")  # "[mov,mp4,... @ 0x55f1...] "


@contextlib.contextmanager
def _native_stderr_caught(said: list[str]):
    """libpng and libjpeg print straight to file descriptor 2 ("libpng error: Read Error",
    "Premature end of JPEG file"), beside omgclip's one-line errors. Catch those lines
    (into ``said``, as one line) so the caller can put them in its error or warning."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(4000).decode("utf-8", "replace")
            text = " ".join(_LIBAV_PREFIX.sub("", text).split())
            if text:
                said.append(text[:300])


def _read_image(path: Path, flags: int):
    _check_readable(path)
    said: list[str] = []
    with _native_stderr_caught(said):
        img = _cv2().imread(str(path), flags)
    if img is None:
        raise VideoError(f"{path}: not a readable image" + (f" ({said[0]})" if said else ""))
    if said and str(path) not in _damage_reported:  # once per file, not per read
        _damage_reported.add(str(path))
        log.warning("%s: the image is damaged and decodes only in part (%s)", path, said[0])
    return img


def _iter_decoded(path: Path, start: int = 0, stop: int | None = None,
                  keep: Callable[[int], bool] | None = None) -> Iterator[tuple[int, "object"]]:
    """``(index, decoded frame as OpenCV gives it)`` for the frames asked for; the others
    are only grabbed. Ends quietly where a truncated file runs out of data."""
    cap = _cv2().VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: not a readable video")
    try:
        index = 0
        while stop is None or index < stop:
            if index < start or (keep is not None and not keep(index)):
                if not cap.grab():
                    return
            else:
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                yield index, frame
            index += 1
    finally:
        cap.release()


def iter_gray_frames(path: str | os.PathLike, work_width: int | None = 640, start: int = 0,
                     stop: int | None = None, keep: Callable[[int], bool] | None = None
                     ) -> Iterator[tuple[int, "object"]]:
    """Yield ``(frame_index, gray_work_frame)`` for frames ``[start, stop)`` in order.

    Frames before ``start``, and those for which ``keep(index)`` is false, are skipped
    with ``grab()`` (no pixel conversion) and not yielded. Decoding ends early, without
    error, where a truncated file runs out of data; the caller sees how many frames came.
    A still image is a one-frame video.
    """
    p = Path(path)
    if is_image(p):
        img = _read_image(p, _cv2().IMREAD_GRAYSCALE)
        if start <= 0 and (stop is None or stop > 0):
            yield 0, to_work_gray(img, work_scale(img.shape[1], work_width))
        return
    scale = None
    for index, frame in _iter_decoded(p, start, stop, keep):
        if scale is None:
            scale = work_scale(frame.shape[1], work_width)
        yield index, to_work_gray(frame, scale)


def read_ahead(items: Iterable[T], depth: int = 48) -> Iterator[T]:
    """Yield ``items`` in order, produced by a background thread up to ``depth`` ahead.

    Decoding (OpenCV/libav) releases the GIL, so on 2+ cores the next frames decode while
    the caller finds faces in this one. An exception in the producer is raised here, at the
    item where it happened; when the caller stops early (``close()``, an exception, garbage
    collection) the producer is told to stop, ``items`` is closed in its own thread and the
    thread is joined, so no capture is left open. ``depth`` bounds the memory held: at most
    ``depth`` items (a 640x360 gray frame is 230 KB).
    """
    import queue
    import threading

    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((None, item)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((exc, None))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="omgclip-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            flag, item = buffer.get()
            if flag is done:
                return
            if flag is not None:
                raise flag
            yield item
    finally:
        stop.set()
        thread.join()


def read_image_list(paths: Sequence[str | os.PathLike], work_width: int | None = None) -> list:
    """Read still images (e.g. apex frames of a sequence) as grayscale arrays, downscaled
    to at most ``work_width`` like video frames (so a huge photo costs no more to detect on)."""
    flags = _cv2().IMREAD_GRAYSCALE
    out = []
    for path in paths:
        img = _read_image(Path(path), flags)
        out.append(to_work_gray(img, work_scale(img.shape[1], work_width)))
    return out


def count_frames(path: str | os.PathLike) -> int:
    """Decode the whole file and count the frames that really decode (slow; tests/tools)."""
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def iter_bgr_frames(path: str | os.PathLike) -> Iterator[tuple[int, "object"]]:
    """Yield ``(frame_index, bgr (H, W, 3) uint8)`` for every frame at the source's own
    resolution, in colour (for drawing annotations). A still image yields one frame."""
    cv2 = _cv2()
    p = Path(path)
    if is_image(p):
        yield 0, _read_image(p, cv2.IMREAD_COLOR)
        return
    for index, frame in _iter_decoded(p):
        yield index, (cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)


def open_capture(source: "str | int", open_timeout_s: float = 10.0, read_timeout_s: float = 10.0,
                 rtsp_transport: str = "tcp"):
    """An OpenCV ``VideoCapture`` on a camera index, a file or a stream URL (``rtsp://``,
    ``http(s)://``) for live use, or ``None`` when it cannot be opened.

    Streams are opened with FFmpeg and the given timeouts, so a dead stream fails in
    seconds instead of blocking; RTSP uses ``rtsp_transport`` (TCP by default: no lost
    packets, so no smeared H.264 frames).
    """
    cv2 = _cv2()
    # OpenCV's own WARN lines would repeat our one-line errors (unless the user set its level)
    own_log = "OPENCV_LOG_LEVEL" not in os.environ and hasattr(cv2, "utils")
    if own_log:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if isinstance(source, int):
        # probing a missing camera, OpenCV's backends print their own [ERROR] lines; the
        # caller says it in one line instead
        if own_log:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            cap = cv2.VideoCapture(source)
        finally:
            if own_log:
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    else:
        if str(source).lower().startswith("rtsp"):
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{rtsp_transport}"
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1000)]
        cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        return None
    return cap


def decode_image_bytes(data: bytes):
    """An encoded picture (JPEG, PNG, ...) -> ``(H, W, 3)`` BGR uint8, or ``None`` if it is
    not one (the browser's webcam frames in ``omgclip serve``)."""
    import numpy as np

    if not data:
        return None
    img = _cv2().imdecode(np.frombuffer(data, np.uint8), _cv2().IMREAD_COLOR)
    return img if img is not None and img.size else None
