"""Where ``omgclip live`` puts its labels: rows files (JSON lines or CSV, or stdout) and the
OpenCV window.

A rows file is written under a temporary name beside the target, one complete line at a
time and flushed after each, and renamed to the target when the run ends -- however it
ends (end of stream, ``--duration``, Ctrl-C, an error). So ``rows.jsonl`` is either absent
or complete, and while a run goes on its ``.part`` file can be followed with ``tail -f``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from omgclip.errors import OmgclipError

OUT_SUFFIXES = (".jsonl", ".csv")


def live_columns(labels: Sequence[str]) -> list[str]:
    return ["wall_time", "stream_s", "frame", "track_id", "person_id", "label", "confidence",
            *[f"p_{n}" for n in labels], "latency_s", "x0", "y0", "x1", "y1"]


def check_out(out: str | None) -> None:
    if out is None or out == "-":
        return
    if Path(out).suffix.lower() not in OUT_SUFFIXES:
        raise OmgclipError(f"--out must end in .jsonl or .csv, or be - for stdout, got {Path(out).name!r}")
    parent = Path(out).expanduser().parent
    if not parent.is_dir():
        raise OmgclipError(f"--out {out}: folder {parent} does not exist")


class RowSink:
    """Append rows to ``out`` (``.jsonl``, ``.csv`` or ``-``), flushing each; ``close()``
    renames the finished file into place."""

    def __init__(self, out: str, columns: Sequence[str]):
        check_out(out)
        self.columns = list(columns)
        self.count = 0
        if out == "-":
            self.target = self.part = None
            self.fh = sys.stdout
            self.csv = False
        else:
            self.target = Path(out).expanduser()
            self.part = self.target.with_name(f".{self.target.name}.part")
            self.fh = open(self.part, "w", encoding="utf-8", newline="")
            self.csv = self.target.suffix.lower() == ".csv"
        self.writer = csv.writer(self.fh) if self.csv else None
        if self.writer is not None:
            self.writer.writerow(self.columns)
            self.fh.flush()

    def write(self, row: dict) -> None:
        if self.writer is not None:
            self.writer.writerow(["" if _nan(row.get(c)) else row.get(c) for c in self.columns])
        else:
            plain = {c: (None if _nan(row.get(c)) else row.get(c)) for c in self.columns}
            self.fh.write(json.dumps(plain) + "\n")
        self.fh.flush()
        self.count += 1

    def close(self) -> Path | None:
        if self.part is None:
            self.fh.flush()
            return None
        if not self.fh.closed:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.part, self.target)
        return self.target


_WINDOW_PROBE = ("import cv2\n"
                 "cv2.namedWindow('omgclip probe', cv2.WINDOW_NORMAL)\n"
                 "cv2.destroyAllWindows()\n")


def window_unavailable(timeout: float = 20.0) -> str | None:
    """Why an OpenCV window cannot open here, or ``None`` if it can.

    OpenCV's Qt build (opencv-python) aborts the whole process when there is no display
    to connect to, instead of raising, so a child process tries first."""
    import subprocess

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display: DISPLAY is not set"
    try:
        proc = subprocess.run([sys.executable, "-c", _WINDOW_PROBE], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "the display does not answer"
    if proc.returncode == 0:
        return None
    err = proc.stderr
    if "could not connect to display" in err or "platform plugin" in err:
        return f"cannot connect to display {os.environ.get('DISPLAY', '')!r}".replace(" ''", "")
    if "The function is not implemented" in err or "GUI" in err:
        return "OpenCV has no GUI support (the opencv-python-headless build?)"
    last = [ln for ln in err.strip().splitlines() if ln.strip()]
    return last[-1][:200] if last else f"a test window failed (exit {proc.returncode})"


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class LiveWindow:
    """The OpenCV window: boxes, track ids, labels and an FPS counter. ``show()`` returns
    False once the user closes it (q, Esc, or the window's close button)."""

    def __init__(self, title: str):
        import cv2

        self.cv2, self.title = cv2, title
        self.times: list[float] = []
        reason = window_unavailable()
        if reason is None:
            try:
                cv2.namedWindow(title, cv2.WINDOW_NORMAL)
            except cv2.error:
                reason = "OpenCV has no GUI support (the opencv-python-headless build?)"
        if reason is not None:
            raise OmgclipError(f"cannot open a window here ({reason}): use --headless --out rows.jsonl, "
                               f"or run it where there is a display") from None

    def show(self, image, faces) -> bool:
        cv2 = self.cv2
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < 1.0] + [now]
        frame = draw_live(image.copy(), faces, fps=len(self.times))
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        try:
            self.cv2.destroyWindow(self.title)
        except self.cv2.error:
            pass


def draw_live(frame, faces, fps: float | None = None):
    """Draw each face's box, id and latest label (``...`` while its window fills) and the
    FPS counter on a BGR frame (in place; returned)."""
    import cv2

    from omgclip.apps.annotate import Overlay, draw_overlays

    draw_overlays(frame, [Overlay(f.track_id, f.box, f.label or f"... {f.filled}", f.confidence,
                                  f.person_id) for f in faces])
    if fps is not None:
        cv2.putText(frame, f"{fps:.0f} fps", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (255, 255, 255), 2, cv2.LINE_AA)
    return frame
