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


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class LiveWindow:
    """The OpenCV window: boxes, track ids, labels and an FPS counter. ``show()`` returns
    False once the user closes it (q, Esc, or the window's close button)."""

    def __init__(self, title: str):
        import cv2

        self.cv2, self.title = cv2, title
        self.times: list[float] = []
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise OmgclipError("cannot open a window here (no display, or OpenCV was built without "
                               "GUI support, as opencv-python-headless is): use --headless --out "
                               "rows.jsonl, or install opencv-python") from None

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
