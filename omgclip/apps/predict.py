"""``omgclip predict``: label the emotion of every face in every segment of a video.

A video is cut into consecutive ``T``-frame segments (``T`` = the checkpoint's block
length; ``stride`` frames apart, default ``T``: no gaps, no overlaps). Faces are found,
tracked and cropped by :func:`omgclip.faces.clips.face_clips` -- the very code build-dataset cuts
training blocks with -- and every face clip is classified by the model, batched across
segments. The result is one row per (segment, face)::

    file, segment, start_s, end_s, start_frame, end_frame, track_id, label, confidence,
    p_anger ... p_surprise, detect_frac, x0, y0, x1, y1

* ``end_frame`` is exclusive, so segment ``i``'s ``end_frame`` is segment ``i + 1``'s
  ``start_frame`` and the last ``end_frame`` is the number of frames that really decoded
  (a truncated file ends where its data ends; the container's frame count is not trusted).
  ``start_s = start_frame / fps``, ``end_s = end_frame / fps``.
* A segment with no usable face gets one row with ``track_id = -1``, ``label`` = the
  reason (``'no face'``, ``'face lost for too long'``, ``'too few real detections'``) and
  NaN probabilities, confidence, detect_frac and box.
* The last segment of a video whose length is not a multiple of ``T`` is shorter than
  ``T``; a video shorter than ``T`` frames is one such segment. The model still sees ``T``
  frames: a short clip is padded by repeating its last crop.
* A still image is a one-frame video (``fps`` 0): one segment, frames ``[0, 1)``,
  ``start_s = end_s = 0``, classified as its crop repeated ``T`` times.
* ``x0, y0, x1, y1``: the face's mean box over the segment, in source pixels.
* ``smooth = N`` (> 1) replaces each track's probabilities by their mean over the ``N``
  neighbouring segments centred on it (only segments where the track has a row count;
  ``label``/``confidence`` follow the smoothed probabilities).

Several inputs: each bad one (missing, not a video, unreachable URL) is skipped with a
warning and the others still run; if any failed, :class:`PartialPredictError` (an
:class:`OmgclipError` carrying the rows that did succeed) is raised at the end, so the CLI
prints what it has and exits non-zero. A single bad input raises its own one-line error.
Nothing is written when no input succeeded.

Stage timings (``decode``, ``faces``, ``model`` seconds, video seconds) are kept in
``DataFrame.attrs['timings']`` (a list, one dict per input) for benchmarks.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from omgclip.errors import OmgclipError, VideoError
from omgclip.faces.detect import FaceConfig, FaceDetector, with_overrides
from omgclip.dataset.manifest import is_url
from omgclip.dataset.segment import Block, consecutive_segments

log = logging.getLogger(__name__)

TABLE_FILE_WIDTH = 28
OUT_SUFFIXES = (".csv", ".json")
ANNOTATE_SUFFIXES = (".mp4", ".png", ".jpg", ".jpeg")  # pictures: for still-image inputs
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
DEFAULT_CACHE_DIR = Path("~/.cache/omgclip/videos")

BASE_COLUMNS = ("file", "segment", "start_s", "end_s", "start_frame", "end_frame", "track_id",
                "label", "confidence")
TAIL_COLUMNS = ("detect_frac", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class PredictConfig:
    """What ``omgclip predict`` does (the CLI's options, one to one)."""

    inputs: tuple[str, ...]
    checkpoint: str | None = None          #: None: the bundled default model
    stride: int | None = None              #: segment stride in frames; None: the segment length
    batch_size: int = 32                   #: face clips per forward pass
    smooth: int = 0                        #: average probabilities over N segments (0/1: off)
    out: str | None = None                 #: .csv or .json
    annotate: str | None = None            #: .mp4 with boxes and labels drawn
    plot: str | None = None                #: timeline picture (.png, .pdf, .svg)
    detect_every: int | None = 5           #: run the face detector every k-th frame
    cache_dir: str | None = None           #: where URL inputs are downloaded
    progress: bool = True                  #: tqdm bar over frames
    face: FaceConfig | None = None         #: face settings (detect_every above overrides)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise OmgclipError("predict needs at least one input")
        if self.stride is not None and self.stride < 1:
            raise OmgclipError(f"--stride must be at least 1, got {self.stride}")
        if self.batch_size < 1:
            raise OmgclipError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.smooth < 0:
            raise OmgclipError(f"--smooth must be 0 or more, got {self.smooth}")
        if self.detect_every is not None and self.detect_every < 1:
            raise OmgclipError(f"--detect-every must be at least 1, got {self.detect_every}")
        _check_suffix(self.out, OUT_SUFFIXES, "--out")
        _check_suffix(self.annotate, ANNOTATE_SUFFIXES, "--annotate")
        _check_suffix(self.plot, PLOT_SUFFIXES, "--plot")


class PartialPredictError(OmgclipError):
    """Some inputs failed; ``rows`` holds the predictions for those that did not."""

    def __init__(self, message: str, rows):
        super().__init__(message)
        self.rows = rows


@dataclass
class StageTimes:
    """Wall seconds per stage of one video: decoding frames, finding/tracking/cropping
    faces, running the model (incl. batching), and writing annotations/plots."""

    decode: float = 0.0
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


@dataclass
class VideoPrediction:
    """One input's result: rows (list of dicts), its info, and how long each stage took."""

    file: str
    path: Path
    info: Any
    rows: list[dict]
    overlays: list[tuple[int, int, tuple]] = field(default_factory=list)  # (row, first frame, boxes)
    times: StageTimes = field(default_factory=StageTimes)
    frames_decoded: int = 0


# ----------------------------------------------------------------------------- public API
def predict(cfg: PredictConfig):
    """Run ``cfg`` and return a ``pandas.DataFrame`` of rows (see the module doc); also
    writes ``cfg.out`` / ``cfg.annotate`` / ``cfg.plot`` when given."""
    import pandas as pd

    model = load_predict_model(cfg.checkpoint)
    face = face_config_for(model, cfg)
    sources, errors = _expand_inputs(cfg.inputs)
    several = len(sources) + len(errors) > 1
    if not several and errors:
        raise OmgclipError(errors[0])
    frames_out: list = []
    timings: list[dict] = []
    detector = FaceDetector(face)
    for source in sources:
        try:
            path, name = _resolve_source(source, cfg)
            if cfg.annotate and Path(cfg.annotate).suffix.lower() != ".mp4" and not _is_image(path):
                raise OmgclipError(f"{name}: --annotate for a video must end in .mp4, "
                                   f"got {Path(cfg.annotate).name!r}")
            result = predict_video(path, model, cfg, face=face, name=name, detector=detector)
            t0 = time.perf_counter()
            df = _frame(result.rows, model.labels)
            if cfg.smooth > 1:
                df = smooth_probs(df, cfg.smooth, prob_columns(model.labels))
            if cfg.annotate:
                _annotate(result, df, _per_input_path(cfg.annotate, result.path, several), face)
            if cfg.plot:
                from omgclip.apps.annotate import plot_timeline

                plot_timeline(df, _per_input_path(cfg.plot, result.path, several),
                              labels=model.labels, title=_display_name(name))
            result.times.output = time.perf_counter() - t0
            result.times.total += result.times.output
        except OmgclipError as exc:
            if not several:
                raise
            msg = _one_line(str(exc))
            msg = msg if source in msg else f"{source}: {msg}"
            log.warning("skipped %s", msg)
            errors.append(msg)
            continue
        frames_out.append(df)
        timings.append({"file": name, **_times_dict(result.times)})
        log.info("%s: %d segments, %d frames in %.1fs (%.1fx real time)", name,
                 df["segment"].nunique(), result.frames_decoded, result.times.total,
                 result.times.realtime_factor)
    if not frames_out:
        raise OmgclipError("no input could be processed: " + "; ".join(errors))
    rows = pd.concat(frames_out, ignore_index=True) if len(frames_out) > 1 else frames_out[0]
    rows.attrs["timings"] = timings
    if cfg.out:
        write_rows(rows, cfg.out)
    if errors:
        raise PartialPredictError(
            f"{len(errors)} of {len(errors) + len(frames_out)} inputs failed: " + "; ".join(errors),
            rows)
    return rows


def load_predict_model(checkpoint: str | os.PathLike | None):
    """The model for prediction, in eval mode on the CPU (or the checkpoint's device)."""
    from omgclip.learn.checkpoint import default_checkpoint, load_model

    path = Path(checkpoint).expanduser() if checkpoint else default_checkpoint()
    loaded = load_model(path)  # OmgclipError (one line) for a missing or bad file
    loaded.net.eval()
    return loaded


def face_config_for(model, cfg: PredictConfig) -> FaceConfig:
    """The face settings: the checkpoint's crop size (and crop margin, when its metadata
    records the one it was trained with), the config's detector settings."""
    face = cfg.face or FaceConfig()
    meta = getattr(model, "meta", None) or {}
    margin = None
    for holder in (meta.get("face") if isinstance(meta.get("face"), dict) else {}, meta):
        if isinstance(holder.get("margin"), (int, float)):
            margin = float(holder["margin"])
            break
    return with_overrides(face, crop_size=int(model.crop_size), margin=margin,
                          detect_every=cfg.detect_every)


def prob_columns(labels: Sequence[str]) -> list[str]:
    return [f"p_{name}" for name in labels]


def columns(labels: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *prob_columns(labels), *TAIL_COLUMNS]


# ----------------------------------------------------------------------------- one video
def predict_video(path: str | os.PathLike, model, cfg: PredictConfig, face: FaceConfig | None = None,
                  name: str | None = None, detector: FaceDetector | None = None) -> VideoPrediction:
    """Segments, faces and model outputs for one local video or image.

    Raises ``VideoError`` for a file that cannot be read at all.
    """
    from omgclip.faces.clips import face_clips
    from omgclip.faces.video_io import is_image, iter_gray_frames, probe, work_scale

    t_start = time.perf_counter()
    path = Path(path)
    face = face or face_config_for(model, cfg)
    info = probe(path)
    T = int(model.block_len)
    image = is_image(path)
    windows = _windows(info.frame_count, T, cfg.stride or T, image)
    scale = work_scale(info.width, face.work_width)
    result = VideoPrediction(name or str(path), path, info, [])
    labels = tuple(model.labels)
    runner = _BatchRunner(model, cfg.batch_size, T, labels, result.rows, result.times)

    frames = _Timed(iter_gray_frames(path, face.work_width))
    bar = _progress_bar(info.frame_count, name or path.name, cfg.progress and not image)
    on_frame = (lambda i: bar.update(1)) if bar is not None else None
    clips = face_clips(frames, windows, face, detector or FaceDetector(face), follow="all",
                       extend=not image, on_frame=on_frame)
    fps = info.fps
    segment = 0
    t_faces = 0.0
    last_stop = 0
    try:
        while True:
            t0 = time.perf_counter()
            try:
                wf = next(clips)
            except StopIteration:
                t_faces += time.perf_counter() - t0
                break
            t_faces += time.perf_counter() - t0
            block = wf.block
            if block.length == 0:  # the container promised more frames than it has
                continue
            last_stop = max(last_stop, block.stop)
            base = {"file": result.file, "segment": segment,
                    "start_s": block.start / fps if fps else 0.0,
                    "end_s": block.stop / fps if fps else 0.0,
                    "start_frame": block.start, "end_frame": block.stop}
            if not wf.clips:
                result.rows.append({**base, "track_id": -1, "label": wf.reason,
                                    "confidence": math.nan, "detect_frac": math.nan,
                                    **dict.fromkeys(("x0", "y0", "x1", "y1"), math.nan)})
            for clip in sorted(wf.clips, key=lambda c: c.track_id):
                box = np.mean([(b.left, b.top, b.right, b.bottom) for b in clip.boxes], axis=0) / scale
                row = {**base, "track_id": int(clip.track_id), "label": "",
                       "confidence": math.nan, "detect_frac": float(clip.detect_frac),
                       "x0": float(box[0]), "y0": float(box[1]), "x1": float(box[2]),
                       "y1": float(box[3])}
                result.rows.append(row)
                result.overlays.append((len(result.rows) - 1, block.start, clip.boxes))
                runner.add(len(result.rows) - 1, clip.crops)
            segment += 1
        runner.flush()
    finally:
        if bar is not None:
            bar.close()
    result.times.decode = frames.seconds
    result.times.faces = max(0.0, t_faces - frames.seconds)
    result.frames_decoded = frames.count if not image else 1
    result.times.frames = result.frames_decoded
    result.times.video_s = result.frames_decoded / fps if fps else 0.0
    result.times.total = time.perf_counter() - t_start
    if not result.rows:
        raise VideoError(f"{path}: no frame could be decoded")
    if not image and result.frames_decoded < info.frame_count:
        log.warning("%s: only %d of the %d frames the file announces could be decoded "
                    "(truncated?); segments end at frame %d", result.file, result.frames_decoded,
                    info.frame_count, last_stop)
    return result


def _windows(frame_count: int, T: int, stride: int, image: bool) -> list[Block]:
    """Segments from the container's frame count; ``face_clips(extend=True)`` adds more if
    the video goes on and truncates the last ones where it really ends."""
    if image:
        return [Block(0, T)]
    if stride == T:
        return consecutive_segments(frame_count, T, T, keep_tail=False) or [Block(0, T)]
    return [Block(s, T) for s in range(0, max(frame_count, 1), stride)]


class _Timed:
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


class _BatchRunner:
    """Collect face clips and run the model on ``batch_size`` of them at a time, writing
    label, confidence and probabilities into the rows they belong to."""

    def __init__(self, model, batch_size: int, T: int, labels: Sequence[str], rows: list[dict],
                 times: StageTimes):
        self.net = model.net
        self.batch_size = batch_size
        self.T = T
        self.labels = tuple(labels)
        self.rows = rows
        self.times = times
        self.pending: list[tuple[int, np.ndarray]] = []
        try:
            self.device = next(self.net.parameters()).device
        except (StopIteration, AttributeError):
            self.device = None

    def add(self, row: int, crops: np.ndarray) -> None:
        self.pending.append((row, pad_clip(crops, self.T)))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        import torch

        t0 = time.perf_counter()
        batch = np.stack([c for _, c in self.pending])  # (N, T, S, S) uint8
        x = torch.from_numpy(batch).unsqueeze(1).float().div_(255.0)
        if self.device is not None:
            x = x.to(self.device)
        with torch.inference_mode():
            logits = self.net(x)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        if probs.shape[1] != len(self.labels):
            raise OmgclipError(f"the model gives {probs.shape[1]} outputs for "
                               f"{len(self.labels)} labels")
        for (row, _), p in zip(self.pending, probs):
            k = int(p.argmax())
            r = self.rows[row]
            r["label"] = self.labels[k]
            r["confidence"] = float(p[k])
            r.update({f"p_{name}": float(v) for name, v in zip(self.labels, p)})
        self.pending.clear()
        self.times.model += time.perf_counter() - t0


def pad_clip(crops: np.ndarray, T: int) -> np.ndarray:
    """``(t, S, S)`` -> ``(T, S, S)``: a short clip repeats its last crop; a long one is cut."""
    t = len(crops)
    if t == T:
        return crops
    if t > T:
        return crops[:T]
    if t == 0:
        raise ValueError("empty clip")
    return np.concatenate([crops, np.repeat(crops[-1:], T - t, axis=0)])


# ----------------------------------------------------------------------------- rows
def _frame(rows: list[dict], labels: Sequence[str]):
    import pandas as pd

    cols = columns(labels)
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df:
            df[c] = math.nan
    df = df[cols]
    for c in ("segment", "start_frame", "end_frame", "track_id"):
        df[c] = df[c].astype("int64")
    for c in ("start_s", "end_s", "confidence", "detect_frac", *prob_columns(labels),
              "x0", "y0", "x1", "y1"):
        df[c] = df[c].astype("float64")
    return df


def smooth_probs(df, n: int, prob_cols: Sequence[str]):
    """Each track's probabilities averaged over the ``n`` segments centred on each of its
    rows (segments where it has no row are skipped); labels and confidences follow."""
    if n <= 1 or df.empty:
        return df
    df = df.copy()
    cols = list(prob_cols)
    before, after = (n - 1) // 2, n // 2
    face = df["track_id"] >= 0
    for (_, _), group in df[face].groupby(["file", "track_id"], sort=False):
        seg = group["segment"].to_numpy()
        probs = group[cols].to_numpy(dtype=float)
        out = np.empty_like(probs)
        for i, s in enumerate(seg):
            near = (seg >= s - before) & (seg <= s + after)
            out[i] = probs[near].mean(axis=0)
        df.loc[group.index, cols] = out
        k = out.argmax(axis=1)
        df.loc[group.index, "label"] = [c[2:] for c in np.asarray(cols)[k]]
        df.loc[group.index, "confidence"] = out[np.arange(len(out)), k]
    return df


def write_rows(rows, out: str | os.PathLike) -> Path:
    """Write rows atomically as CSV or JSON records (``pd.read_csv`` / ``pd.read_json``)."""
    from omgclip.fsutil import atomic_write

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        return atomic_write(out, lambda tmp: rows.to_csv(tmp, index=False))
    if suffix == ".json":
        return atomic_write(out, lambda tmp: rows.to_json(tmp, orient="records", indent=1,
                                                          double_precision=6))
    raise OmgclipError(f"--out must end in .csv or .json, got {out.name!r}")


def format_table(rows, max_rows: int | None = 200) -> str:
    """A readable terminal table (one line per row; long tables show their head and tail)
    followed by a per-face summary of the most frequent emotions."""
    if rows is None or len(rows) == 0:
        return "(no rows)"
    lines = [f"{'file':<{TABLE_FILE_WIDTH}} {'seg':>4} {'time (s)':>15} {'face':>4}  "
             f"{'label':<24} {'conf':>5}"]
    files = rows["file"].astype(str)

    def line(i: int) -> str:
        r = rows.iloc[i]
        name = _shorten(Path(files.iloc[i]).name if "://" not in files.iloc[i] else files.iloc[i],
                        TABLE_FILE_WIDTH)
        face = "-" if r["track_id"] < 0 else str(int(r["track_id"]))
        conf = "" if math.isnan(r["confidence"]) else f"{r['confidence']:.2f}"
        span = f"{r['start_s']:7.2f}-{r['end_s']:<7.2f}"
        return (f"{name:<{TABLE_FILE_WIDTH}} {int(r['segment']):>4} {span:>15} {face:>4}  "
                f"{str(r['label']):<24} {conf:>5}")

    n = len(rows)
    if max_rows is None or n <= max_rows:
        lines += [line(i) for i in range(n)]
    else:
        head = max_rows // 2
        lines += [line(i) for i in range(head)]
        lines.append(f"... {n - 2 * head} more rows (write them all with --out) ...")
        lines += [line(i) for i in range(n - head, n)]
    lines.append("")
    lines += summary_lines(rows)
    return "\n".join(lines)


def summary_lines(rows) -> list[str]:
    out = []
    for name, group in rows.groupby("file", sort=False):
        segments = group["segment"].nunique()
        faces = group[group["track_id"] >= 0]
        empty = segments - faces["segment"].nunique()
        out.append(f"{name}: {segments} segments, {faces['track_id'].nunique()} face track(s)"
                   + (f", {empty} segment(s) without a usable face" if empty else ""))
        for tid, tg in faces.groupby("track_id"):
            counts = tg["label"].value_counts()
            top = ", ".join(f"{lab} {cnt / len(tg):.0%}" for lab, cnt in counts.head(3).items())
            out.append(f"  face {int(tid)}: {len(tg)} segments: {top}")
    return out


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


# ----------------------------------------------------------------------------- inputs
def _expand_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Expand globs and folders; return (sources, one-line errors for inputs that match
    nothing). URLs pass through; missing plain paths pass through (probe reports them)."""
    sources: list[str] = []
    errors: list[str] = []
    for item in inputs:
        item = str(item)
        if is_url(item):
            sources.append(item)
            continue
        p = Path(item).expanduser()
        if p.exists() and p.is_dir():
            found = sorted(str(c) for c in p.iterdir() if c.is_file() and _media_suffix(c))
            if not found:
                errors.append(f"{item}: folder holds no video or image files")
            sources += found
        elif not p.exists() and glob.has_magic(item):
            found = sorted(m for m in glob.glob(str(p)) if Path(m).is_file())
            if not found:
                errors.append(f"{item}: no file matches")
            sources += found
        elif "://" in item:
            errors.append(f"{item}: only http(s) URLs can be downloaded")
        else:
            sources.append(item)
    seen: set[str] = set()
    unique = [s for s in sources if not (s in seen or seen.add(s))]
    return unique, errors


def _media_suffix(p: Path) -> bool:
    from omgclip.faces.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    s = p.suffix.lower()
    return s in VIDEO_SUFFIXES or s in IMAGE_SUFFIXES


def _resolve_source(source: str, cfg: PredictConfig) -> tuple[Path, str]:
    """A local path for ``source`` (URLs are downloaded into the cache first) and the name
    its rows carry (the URL itself, or the path as given)."""
    if not is_url(source):
        return Path(source).expanduser(), source
    from omgclip.dataset.download import DownloadConfig, fetch_one

    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else DEFAULT_CACHE_DIR.expanduser()
    try:
        path = fetch_one(source, DownloadConfig(out_dir=str(cache), progress=cfg.progress))
    except OmgclipError as exc:
        msg = _one_line(str(exc))
        raise OmgclipError(msg if source in msg else f"{source}: {msg}") from None
    return Path(path), source


def _per_input_path(target: str, source: Path, several: bool) -> Path:
    """With several inputs, ``out.mp4`` becomes ``out_<input stem>.mp4`` for each."""
    target = Path(target).expanduser()
    if not several:
        return target
    return target.with_name(f"{target.stem}_{source.stem}{target.suffix}")


def _check_suffix(path: str | None, allowed: Sequence[str], option: str) -> None:
    if path and Path(path).suffix.lower() not in allowed:
        raise OmgclipError(f"{option} must end in {' or '.join(allowed)}, got {Path(path).name!r}")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


def _progress_bar(total: int, name: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=_shorten(name, 30), unit="frame", leave=False)


def _times_dict(t: StageTimes) -> dict:
    return {"decode_s": t.decode, "faces_s": t.faces, "model_s": t.model, "output_s": t.output,
            "total_s": t.total, "frames": t.frames, "video_s": t.video_s,
            "realtime_factor": t.realtime_factor}


# ----------------------------------------------------------------------------- annotation
def _annotate(result: VideoPrediction, df, target: Path, face: FaceConfig) -> Path:
    """Draw each face's box and label on the source video (or image)."""
    from omgclip.apps import annotate
    from omgclip.faces.video_io import is_image, work_scale

    scale = work_scale(result.info.width, face.work_width)
    labels = df["label"].tolist()
    confs = df["confidence"].tolist()
    tids = df["track_id"].tolist()
    per_frame: dict[int, dict[int, annotate.Overlay]] = {}
    for row, start, boxes in result.overlays:  # overlapping segments: the later one wins
        for k, box in enumerate(boxes):
            per_frame.setdefault(start + k, {})[int(tids[row])] = annotate.Overlay(
                int(tids[row]), (box.left / scale, box.top / scale, box.right / scale,
                                 box.bottom / scale), str(labels[row]), float(confs[row]))
    overlays = {f: list(d.values()) for f, d in per_frame.items()}
    if target.suffix.lower() != ".mp4":
        if not is_image(result.path):
            raise OmgclipError(f"--annotate for a video must end in .mp4, got {target.name!r}")
        return annotate.write_annotated_image(result.path, target, overlays.get(0, []))
    return annotate.write_annotated_video(result.path, target, overlays, fps=result.info.fps)


def _is_image(path: Path) -> bool:
    from omgclip.faces.video_io import is_image

    return is_image(path)


def _display_name(name: str) -> str:
    return name if is_url(name) else Path(name).name
