"""Montages of real clips with hard cuts (person A, then B, then A again ...), for the
identity tests and ``benchmarks/bench_identity.py``. Written with OpenCV's VideoWriter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class Part:
    """``frames`` frames of ``video`` (from its frame ``skip``), showing ``person``."""

    video: Path
    person: str
    frames: int
    skip: int = 0


@dataclass(frozen=True)
class Shot:
    """Where a part landed in the montage: frames ``[start, stop)``."""

    person: str
    start: int
    stop: int


def make_montage(parts: Sequence[Part], out: Path, size: tuple[int, int] = (640, 360),
                 fps: float = 25.0) -> list[Shot]:
    """Concatenate the parts, each scaled to fit ``size`` (black bars), cut to cut; returns
    the shots. A part whose clip is shorter than asked ends early."""
    import cv2
    import numpy as np

    w, h = size
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {out}")
    shots, at = [], 0
    try:
        for part in parts:
            cap = cv2.VideoCapture(str(part.video))
            n = i = 0
            while n < part.frames:
                ok, frame = cap.read()
                if not ok:
                    break
                i += 1
                if i <= part.skip:
                    continue
                fh, fw = frame.shape[:2]
                s = min(w / fw, h / fh)
                small = cv2.resize(frame, (round(fw * s), round(fh * s)), interpolation=cv2.INTER_AREA)
                canvas = np.zeros((h, w, 3), np.uint8)
                y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
                canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
                writer.write(canvas)
                n += 1
            cap.release()
            shots.append(Shot(part.person, at, at + n))
            at += n
    finally:
        writer.release()
    return shots


def person_at(shots: Sequence[Shot], frame: int) -> str:
    for s in shots:
        if s.start <= frame < s.stop:
            return s.person
    raise ValueError(f"frame {frame} is in no shot")
