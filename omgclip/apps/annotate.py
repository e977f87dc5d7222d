"""Pictures of a prediction: the annotated video and the emotion timeline.

* :func:`write_annotated_video`: the input video at full resolution, in colour, with each
  face's box and current label drawn in its emotion's colour; one output frame per input
  frame. Written with OpenCV's ``mp4v`` codec, then -- when an ffmpeg binary is found
  (``PATH`` or ``imageio-ffmpeg``) -- re-encoded to H.264 / yuv420p (plays everywhere),
  keeping the input's audio when it has some. The file appears atomically.
* :func:`plot_timeline`: each person's emotion over time, one lane per person (or per face
  track for rows without ``person_id``) (matplotlib, Agg, no global pyplot state).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from omgclip.errors import OmgclipError, one_line
from omgclip.labels import EMOTIONS
from omgclip.fsutil import atomic_write, commit_temp, discard_temp, temp_path
from omgclip.faces.video_io import iter_bgr_frames

log = logging.getLogger(__name__)

#: One colour per emotion (RGB, 0-255), OMG order.
EMOTION_RGB: dict[str, tuple[int, int, int]] = {
    "anger": (220, 38, 38),
    "disgust": (110, 160, 30),
    "fear": (150, 70, 200),
    "happy": (245, 190, 20),
    "neutral": (150, 150, 150),
    "sad": (40, 100, 220),
    "surprise": (255, 120, 0),
}
OTHER_RGB = (255, 255, 255)
MAX_TRACK_PANELS = 6


def emotion_rgb(label: str) -> tuple[int, int, int]:
    return EMOTION_RGB.get(str(label), OTHER_RGB)


def emotion_bgr(label: str) -> tuple[int, int, int]:
    r, g, b = emotion_rgb(label)
    return (b, g, r)


@dataclass(frozen=True)
class Overlay:
    """One face to draw on one frame: box ``(x0, y0, x1, y1)`` in source pixels.
    Tagged with the person (``P3``, or the known person's name) where ``person_id`` >= 0,
    else with the track id."""

    track_id: int
    box: tuple[float, float, float, float]
    label: str
    confidence: float
    person_id: int = -1
    person: str = ""

    @property
    def tag(self) -> str:
        if self.person:
            return self.person
        return f"P{self.person_id}" if self.person_id >= 0 else str(self.track_id)


# ----------------------------------------------------------------------------- drawing
def draw_overlays(frame, overlays: Iterable[Overlay]):
    """Draw boxes and ``P1: label 0.87`` tags onto a BGR frame (in place; returned)."""
    import cv2

    h, w = frame.shape[:2]
    thick = max(2, round(min(h, w) / 240))
    font_scale = max(0.45, min(h, w) / 720)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for ov in overlays:
        colour = emotion_bgr(ov.label)
        x0, y0, x1, y1 = (int(round(v)) for v in ov.box)
        cv2.rectangle(frame, (x0, y0), (x1, y1), colour, thick, cv2.LINE_AA)
        conf = "" if ov.confidence != ov.confidence else f" {ov.confidence:.2f}"  # NaN check
        text = f"{ov.tag}: {ov.label}{conf}"
        (tw, th), base = cv2.getTextSize(text, font, font_scale, max(1, thick - 1))
        ty = y0 - base - 2 if y0 - th - base - 4 >= 0 else min(h - base - 2, y1 + th + 4)
        tx = max(0, min(x0, w - tw - 2))
        cv2.rectangle(frame, (tx, ty - th - 2), (tx + tw + 2, ty + base), colour, cv2.FILLED)
        dark = sum(colour) / 3 > 140
        cv2.putText(frame, text, (tx + 1, ty), font, font_scale,
                    (0, 0, 0) if dark else (255, 255, 255), max(1, thick - 1), cv2.LINE_AA)
    return frame


def write_annotated_image(src: str | os.PathLike, dst: str | os.PathLike,
                          overlays: Sequence[Overlay]) -> Path:
    """Draw ``overlays`` on a still image and write it (format from ``dst``'s suffix)."""
    import cv2


    _, frame = next(iter(iter_bgr_frames(src)))
    draw_overlays(frame, overlays)
    suffix = Path(dst).suffix.lower() or ".png"

    def write(tmp: Path) -> None:
        ok, data = cv2.imencode(suffix, frame)
        if not ok:
            raise OmgclipError(f"{dst}: cannot encode a {suffix} picture")
        tmp.write_bytes(data.tobytes())

    return atomic_write(dst, write)


def write_annotated_video(src: str | os.PathLike, dst: str | os.PathLike,
                          overlays: Mapping[int, Sequence[Overlay]], fps: float,
                          reencode: bool = True) -> Path:
    """Write ``src`` with ``overlays[frame_index]`` drawn on each frame to ``dst`` (.mp4).

    Every decoded input frame becomes one output frame. Returns ``dst``. The mp4v
    intermediate is a tagged temporary file in ``dst``'s folder (see :mod:`omgclip.fsutil`).
    """

    dst = Path(dst)
    fps = fps if fps and fps > 0 else 1.0
    dst.parent.mkdir(parents=True, exist_ok=True)
    raw = temp_path(dst, suffix=".mp4")  # beside dst, not in /tmp: removed on any exit
    try:
        written = _write_mp4v(src, raw, dst, overlays, fps)
        if written == 0:
            raise OmgclipError(f"{src}: no frame could be decoded for annotation")
        ffmpeg = find_ffmpeg() if reencode else None
        if ffmpeg is not None:
            try:
                return _reencode_h264(ffmpeg, raw, Path(src), dst)
            except OmgclipError as exc:
                log.warning("%s; keeping the mp4v encoding", exc)
        elif reencode:
            log.warning("no ffmpeg found: %s stays mp4v (some players cannot play it); "
                        "`pip install imageio-ffmpeg` for H.264", dst)
        return commit_temp(raw, dst)
    finally:
        discard_temp(raw)


def _write_mp4v(src, raw: Path, dst: Path, overlays: Mapping[int, Sequence[Overlay]],
                fps: float) -> int:
    """Every frame of ``src`` with its overlays, as OpenCV mp4v into ``raw``; the count."""
    import cv2


    writer = None
    written = 0
    try:
        for index, frame in iter_bgr_frames(src):
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise OmgclipError(f"{dst}: OpenCV cannot write an mp4v video here")
            writer.write(draw_overlays(frame, overlays.get(index, ())))
            written += 1
    finally:
        if writer is not None:
            writer.release()
    return written


def find_ffmpeg() -> str | None:
    """An ffmpeg binary: on ``PATH``, else the one ``imageio-ffmpeg`` ships, else None."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform
        return None
    return exe if exe and Path(exe).exists() else None


def _reencode_h264(ffmpeg: str, raw: Path, src: Path, dst: Path) -> Path:
    """``raw`` -> H.264 yuv420p ``dst`` (atomically), with ``src``'s audio if it has any."""

    video = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
             "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-fps_mode", "passthrough",
             "-movflags", "+faststart", "-f", "mp4"]
    attempts = [
        ["-i", str(raw), "-i", str(src), "-map", "0:v:0", "-map", "1:a:0?", *video,
         "-c:a", "aac"],
        ["-i", str(raw), "-map", "0:v:0", *video, "-an"],
    ]
    last = ""
    for args in attempts:
        def write(tmp: Path, args=args) -> None:
            proc = subprocess.run([ffmpeg, "-y", "-v", "error", "-nostdin", *args, str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                err = one_line(proc.stderr, fallback="")[-300:]
                raise OmgclipError(f"ffmpeg could not re-encode {dst.name} to H.264: {err}")

        try:
            return atomic_write(dst, write)
        except OmgclipError as exc:
            last = str(exc)
            log.debug("%s", last)
    raise OmgclipError(last)


# ----------------------------------------------------------------------------- timeline
def plot_timeline(rows, dst: str | os.PathLike, labels: Sequence[str] = EMOTIONS,
                  title: str | None = None) -> Path:
    """Each person's emotion over time, written to ``dst`` (.png/.pdf/.svg).

    Top panel: one lane per person (``person_id``; all of a person's tracks share the lane;
    rows without that column: one lane per ``track_id``), each segment coloured by its label
    (paler = less confident); grey hatching where no face was usable. Below, for the
    persons seen longest (up to 6): the stacked class probabilities per segment.
    """
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels = tuple(labels)
    timed = bool((rows["end_s"] > rows["start_s"]).any())
    x0 = rows["start_s"] if timed else rows["segment"]
    x1 = rows["end_s"] if timed else rows["segment"] + 1
    rows = rows.assign(_x0=x0.to_numpy(), _w=(x1 - x0).to_numpy())
    key = "person_id" if "person_id" in rows.columns else "track_id"
    faces = rows[rows[key] >= 0]
    tracks = list(faces[key].value_counts().sort_index().index)
    panels = sorted(tracks, key=lambda t: -(faces[key] == t).sum())[:MAX_TRACK_PANELS]
    panels.sort()
    names = _lane_names(faces, key)

    n_lanes = max(1, len(tracks))
    heights = [0.6 + 0.35 * n_lanes] + [1.4] * len(panels)
    fig = Figure(figsize=(11, sum(heights) + 1.3), layout="constrained")
    axes = fig.subplots(len(heights), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    empty = rows[rows[key] < 0]
    _draw_lanes(axes[0], empty, faces, key, tracks, names, title)
    _draw_prob_panels(axes[1:], faces, key, panels, names, labels)
    axes[-1].set_xlabel("time (s)" if timed else "segment")
    axes[-1].set_xlim(0, float((rows["_x0"] + rows["_w"]).max()))
    handles = [Patch(color=np.array(emotion_rgb(n)) / 255, label=n) for n in labels]
    if len(empty):
        handles.append(Patch(facecolor="0.93", edgecolor="0.7", hatch="//", label="no usable face"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    if len(tracks) > len(panels):
        log.info("timeline: probability panels for the %d longest of %d lanes", len(panels),
                 len(tracks))
    fmt = Path(dst).suffix.lower().lstrip(".") or "png"
    return atomic_write(dst, lambda tmp: fig.savefig(tmp, format=fmt, dpi=110))


def _draw_lanes(ax, empty, faces, key: str, tracks: list, names: dict, title: str | None) -> None:
    """The top panel: one lane per person/track, each segment coloured by its label (paler =
    less confident); grey hatching over the segments in ``empty`` (no usable face)."""
    import numpy as np

    for _, r in empty.iterrows():
        ax.axvspan(r["_x0"], r["_x0"] + r["_w"], facecolor="0.93", edgecolor="0.7", hatch="//",
                   lw=0, zorder=0)
    for lane, tid in enumerate(tracks):
        tr = faces[faces[key] == tid]
        for _, r in tr.iterrows():
            rgb = np.array(emotion_rgb(r["label"])) / 255
            conf = r["confidence"] if r["confidence"] == r["confidence"] else 1.0
            ax.broken_barh([(r["_x0"], r["_w"])], (lane - 0.4, 0.8),
                           facecolors=[(*rgb, 0.35 + 0.65 * float(conf))], edgecolor="none")
    ax.set_yticks(range(len(tracks)), [names[t] for t in tracks] if tracks else [])
    ax.set_ylim(-0.6, max(1, len(tracks)) - 0.4)
    ax.invert_yaxis()
    ax.set_title((f"emotion per {'person' if key == 'person_id' else 'face'} over time" + (f" - {title}" if title else ""))
                 + ("" if tracks else " (no face found)"), fontsize=11, loc="left")


def _draw_prob_panels(axes, faces, key: str, panels: list, names: dict, labels: tuple) -> None:
    """One panel per lane in ``panels``: the stacked class probabilities per segment."""
    import numpy as np

    for a, tid in zip(axes, panels):
        tr = faces[faces[key] == tid]
        bottom = np.zeros(len(tr))
        for name in labels:
            vals = tr[f"p_{name}"].fillna(0).to_numpy()
            a.bar(tr["_x0"], vals, width=tr["_w"], bottom=bottom, align="edge",
                  color=np.array(emotion_rgb(name)) / 255, linewidth=0)
            bottom += vals
        a.set_ylim(0, 1)
        a.set_ylabel(f"{names[tid]}\nP(emotion)", fontsize=9)


def _lane_names(faces, key: str) -> dict:
    """``person 0 (Maria)`` / ``person 1`` / ``face 3`` for each lane id."""
    out = {}
    for lane, group in faces.groupby(key):
        if key != "person_id":
            out[lane] = f"face {int(lane)}"
            continue
        named = [n for n in group.get("person", []) if isinstance(n, str) and n]
        out[lane] = f"person {int(lane)}" + (f" ({named[0]})" if named else "")
    return out
