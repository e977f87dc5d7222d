"""``omgclip predict``: label the emotion of every face in every segment of a video.

A video is cut into consecutive ``T``-frame segments (``T`` = the checkpoint's block
length; ``stride`` frames apart, default ``T``: no gaps, no overlaps). Faces are found,
tracked and cropped by :func:`omgclip.faces.clips.face_clips` -- the very code build-dataset cuts
training blocks with -- and every face clip is classified by the model, batched across
segments. The result is one row per (segment, face)::

    file, segment, start_s, end_s, start_frame, end_frame, track_id, person_id, [person,]
    label, confidence, p_anger ... p_surprise, detect_frac, x0, y0, x1, y1

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
  ``start_s = end_s = 0``, classified as its crop repeated ``T`` times (the bundled net gives
  that the same logits as the crop alone, so it runs the crop once); where the weights
  ask for the flip on stills (``still_flip``, the bundled model), as the mean of that clip's
  and its mirror image's probabilities (one frame: the flip costs next to nothing).
* ``crop = 'none'`` (``--crop none``, as a manifest's ``crop`` column in build-dataset): the
  inputs are already face crops (FER2013-style photos, cropped face videos). Nothing is
  detected: each whole frame, resized, is the face (track 0, person 0, box = the frame,
  ``detect_frac`` 1), so every segment gets a label.
* ``x0, y0, x1, y1``: the face's mean box over the segment, in source pixels.
* ``track_id``: one continuous track, within one shot (shot cuts end tracks);
  ``person_id``: one id per person within the video, across cuts, occlusions and returns
  (dlib face descriptors, :mod:`omgclip.faces.identity`); -1 where there is no face.
  ``person``: with ``people`` (reference photos ``DIR/<name>/*.jpg``), the known person's
  name, '' for others. A segment split by a cut gives each side's face its own row (the
  model sees that side's crops, the edge crop repeated).
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

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from omgclip.apps.inputs import (OutputPlan, check_not_an_input, display_name, expand_inputs,
                                 plan_outputs, resolve_source)
from omgclip.apps.prediction import SegmentFace, Timed, VideoPrediction, annotate_result
from omgclip.apps.report import OUT_SUFFIXES, prob_columns, smooth_probs, to_frame, write_rows
from omgclip.dataset.manifest import CROP_MODES
from omgclip.dataset.segment import Block, consecutive_segments
from omgclip.dataset.sources import is_image
from omgclip.errors import OmgclipError, VideoError, one_line
from omgclip.faces.detect import DETECTORS, FaceBox, FaceConfig, FaceDetector, with_overrides
from omgclip.learn.inference import ClipBatcher
from omgclip.progress import progress_bar

log = logging.getLogger(__name__)

ANNOTATE_SUFFIXES = (".mp4", ".png", ".jpg", ".jpeg")  # pictures: for still-image inputs
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


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
    scheduler: str | None = None           #: Dask scheduler: one task per input (see predict_cluster)
    face: FaceConfig | None = None         #: face settings (detect_every above overrides)
    detector: str = "hog"                  #: 'hog' (fast) or 'cnn' (dlib MMOD: more angles, ~40x slower)
    crop: str = "detect"                   #: 'detect' (find faces) or 'none' (each frame is already one face)
    people: str | None = None              #: reference photos DIR/<name>/*.jpg naming persons
    persons: bool = True                   #: person ids (False: person_id -1; tracks still end at cuts)
    flip: bool = True                      #: test-time flip where the weights ask for it (False: one pass, faster)
    read_ahead: bool = True                #: decode the next frames in a thread while faces are found

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
        if self.scheduler is not None:
            from omgclip.dataset.distributed import parse_scheduler

            parse_scheduler(self.scheduler)
        if self.people and not self.persons:
            raise OmgclipError("--people names persons: it cannot go with --no-persons")
        if self.crop not in CROP_MODES:
            raise OmgclipError(f"--crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}")
        if self.crop == "none" and self.people:
            raise OmgclipError("--people names persons by their faces: it cannot go with --crop none")
        if self.detector not in DETECTORS:
            raise OmgclipError(f"--detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        _check_suffix(self.out, OUT_SUFFIXES, "--out")
        _check_suffix(self.annotate, ANNOTATE_SUFFIXES, "--annotate")
        _check_suffix(self.plot, PLOT_SUFFIXES, "--plot")


class PartialPredictError(OmgclipError):
    """Some inputs failed; ``rows`` holds the predictions for those that did not."""

    def __init__(self, message: str, rows):
        super().__init__(message)
        self.rows = rows


# ----------------------------------------------------------------------------- public API
def predict(cfg: PredictConfig):
    """Run ``cfg`` and return a ``pandas.DataFrame`` of rows (see the module doc); also
    writes ``cfg.out`` / ``cfg.annotate`` / ``cfg.plot`` when given. Inputs and output
    paths are checked before the model is loaded (see :func:`~omgclip.apps.inputs.plan_outputs`)."""
    import pandas as pd

    sources, errors = expand_inputs(cfg.inputs)
    several = len(sources) + len(errors) > 1
    if not several and errors:
        raise OmgclipError(errors[0])
    plan = plan_outputs(sources, several, cfg.out, cfg.annotate, cfg.plot, cfg.cache_dir)
    model = load_predict_model(cfg.checkpoint, cfg.flip)  # after the cheap checks; a bad one fails here
    if cfg.scheduler:
        from omgclip.apps.predict_cluster import predict_on_cluster

        frames_out, timings = predict_on_cluster(sources, cfg, several, errors, plan)
    else:
        frames_out, timings = _predict_here(sources, model, cfg, plan, several, errors)
    if not frames_out:
        raise OmgclipError("no input could be processed: " + "; ".join(errors))
    rows = pd.concat(frames_out, ignore_index=True) if len(frames_out) > 1 else frames_out[0]
    rows.attrs["timings"] = timings
    if plan.out is not None:
        write_rows(rows, plan.out)
    if errors:
        raise PartialPredictError(
            f"{len(errors)} of {len(errors) + len(frames_out)} inputs failed: " + "; ".join(errors),
            rows)
    return rows


def _predict_here(sources: list[str], model, cfg: PredictConfig, plan: OutputPlan, several: bool,
                  errors: list[str]) -> tuple[list, list[dict]]:
    """Every input in this process: (row frames, timings); failures appended to ``errors``."""
    face = face_config_for(model, cfg)
    frames_out: list = []
    timings: list[dict] = []
    detector = FaceDetector(face, kind=cfg.detector)
    gallery = None
    if cfg.people:
        from omgclip.faces.identity import Gallery

        gallery = Gallery.from_dir(cfg.people)
    for source in sources:
        try:
            df, result = _predict_one(source, model, cfg, face, detector, plan, gallery)
        except OmgclipError as exc:
            if not several:
                raise
            msg = one_line(str(exc))
            msg = msg if source in msg else f"{source}: {msg}"
            log.warning("skipped %s", msg)
            errors.append(msg)
            continue
        frames_out.append(df)
        timings.append({"file": result.file, "partial": result.partial, **result.times.as_dict()})
        log.info("%s: %d segments, %d frames in %.1fs (%.1fx real time)", result.file,
                 df["segment"].nunique(), result.frames_decoded, result.times.total,
                 result.times.realtime_factor)
    return frames_out, timings


def _predict_one(source: str, model, cfg: PredictConfig, face: FaceConfig, detector: FaceDetector,
                 plan: OutputPlan, gallery=None):
    """One input: predict, smooth, then write its annotation/plot. ``(rows, result)``."""
    path, name = resolve_source(source, cfg.cache_dir, cfg.progress)
    check_not_an_input(plan, path)  # a downloaded file, too
    if cfg.annotate and Path(cfg.annotate).suffix.lower() != ".mp4" and not is_image(path):
        raise OmgclipError(f"{name}: --annotate for a video must end in .mp4, "
                           f"got {Path(cfg.annotate).name!r}")
    result = predict_video(path, model, cfg, face=face, name=name, detector=detector,
                           gallery=gallery)
    t0 = time.perf_counter()
    df = to_frame(result.rows, model.labels, named=bool(cfg.people))
    if cfg.smooth > 1:
        df = smooth_probs(df, cfg.smooth, prob_columns(model.labels))
    if source in plan.annotate:
        annotate_result(result, df, plan.annotate[source])
    if source in plan.plot:
        from omgclip.apps.annotate import plot_timeline

        plot_timeline(df, plan.plot[source], labels=model.labels, title=display_name(name))
    result.times.output = time.perf_counter() - t0
    result.times.total += result.times.output
    return df, result


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


def load_predict_model(checkpoint: str | os.PathLike | None, flip: bool = True):
    """The model for prediction, in eval mode (``None``: the bundled default model); with the
    test-time flip where its weights ask for it, unless ``flip`` is False."""
    from omgclip.learn.checkpoint import load_for_inference

    return load_for_inference(checkpoint, flip=flip)


# ----------------------------------------------------------------------------- one video
def predict_video(path: str | os.PathLike, model, cfg: PredictConfig, face: FaceConfig | None = None,
                  name: str | None = None, detector: FaceDetector | None = None,
                  on_frame: Callable[[int], None] | None = None, gallery=None) -> VideoPrediction:
    """Segments, faces, persons and model outputs for one local video or image.

    ``on_frame(index)`` is called for each decoded frame (``serve``'s progress).
    ``gallery``: a :class:`~omgclip.faces.identity.Gallery` of known people, or None.
    Raises ``VideoError`` for a file that cannot be read at all.
    """
    from omgclip.faces.clips import face_clips, whole_frame_clips
    from omgclip.faces.cuts import CutDetector
    from omgclip.faces.identity import PersonTracker
    from omgclip.faces.video_io import iter_gray_frames, probe, read_ahead, work_scale

    t_start = time.perf_counter()
    path = Path(path)
    face = face or face_config_for(model, cfg)
    info = probe(path)
    T = int(model.block_len)
    image = is_image(path)
    result = VideoPrediction(name or str(path), path, info, labels=tuple(model.labels))
    scale = work_scale(info.width, face.work_width)
    # a still image: its crop once where the net allows (LoadedModel.still_len), else T times
    batcher = ClipBatcher(model.net_for(still=image), model.still_len if image else T, cfg.batch_size,
                          _store_probs)
    decoded = Timed(iter_gray_frames(path, face.work_width))  # in the read-ahead thread
    frames = Timed(read_ahead(decoded) if cfg.read_ahead else decoded)  # waits for frames
    bar = progress_bar(total=info.frame_count, desc=name or path.name, unit="frame",
                       enabled=cfg.progress and not image)
    windows = _windows(info.frame_count, T, cfg.stride or T, image)
    if cfg.crop == "none":  # the frames are face crops already: no detection, one face (person 0)
        people = None
        clips = Timed(whole_frame_clips(frames, windows, face.crop_size, extend=not image,
                                        on_frame=_on_frame(bar, on_frame)))
    else:
        people = PersonTracker() if cfg.persons else None
        clips = Timed(face_clips(frames, windows, face, detector or FaceDetector(face, kind=cfg.detector),
                                 follow="all", extend=not image, on_frame=_on_frame(bar, on_frame),
                                 cuts=CutDetector(), identity=people))
    segment = 0
    try:
        for wf in clips:
            if wf.block.length == 0:  # the container promised more frames than it has
                continue
            new = _segment_faces(wf, segment, scale)
            segment += 1
            result.faces += new
            for rec in new:
                if rec.crops is not None:
                    batcher.add(rec, rec.crops)
        batcher.flush()
    finally:
        bar.close()
    t_people = time.perf_counter()
    if people is not None:
        _assign_persons(result.faces, people, gallery)
    elif cfg.crop == "none" and cfg.persons:
        for rec in (r for r in result.faces if r.track_id >= 0):
            rec.person_id = 0
    t_people = time.perf_counter() - t_people
    _finish_times(result, frames, clips, batcher, image, t_start)
    result.times.decode_thread = decoded.seconds if cfg.read_ahead else 0.0
    result.times.faces += t_people  # describing faces is face work
    if not result.faces:
        raise VideoError(f"{path}: no frame could be decoded")
    if not image and result.frames_decoded < info.frame_count:
        result.partial = True
        log.warning("%s: only %d of the %d frames the file announces could be decoded "
                    "(truncated?); segments end at frame %d", result.file, result.frames_decoded,
                    info.frame_count, max(f.block.stop for f in result.faces))
    return result


def _on_frame(bar, hook: Callable[[int], None] | None) -> Callable[[int], None]:
    if hook is None:
        return lambda i: bar.update(1)

    def both(i: int) -> None:
        bar.update(1)
        hook(i)

    return both


def _segment_faces(wf, segment: int, scale: float) -> list[SegmentFace]:
    """The records of one segment from ``face_clips``' output: one per face clip (ordered
    by track id), or one faceless record carrying the reason."""
    if not wf.clips:
        return [SegmentFace(segment, wf.block, reason=wf.reason)]
    out = []
    for c in sorted(wf.clips, key=lambda c: c.track_id):
        lo, hi = c.span or (wf.block.start, wf.block.stop)  # frames where the face is on screen
        boxes = c.boxes[lo - wf.block.start:hi - wf.block.start]
        out.append(SegmentFace(segment, wf.block, track_id=int(c.track_id),
                               detect_frac=float(c.detect_frac), first=lo,
                               boxes=tuple(_to_source(b, scale) for b in boxes), crops=c.crops))
    return out


def _assign_persons(faces: list[SegmentFace], people, gallery) -> None:
    """Person ids (and known names) onto the records, once the whole video is seen."""
    who = people.who(gallery)
    for rec in (r for r in faces if r.track_id >= 0):
        rec.person_id, rec.person = who.get(rec.track_id, (-1, ""))


def _to_source(box: FaceBox, scale: float) -> FaceBox:
    """A working-frame box in source pixels."""
    if scale == 1.0:
        return box
    return FaceBox(box.left / scale, box.top / scale, box.right / scale, box.bottom / scale, box.score)


def _store_probs(rec: SegmentFace, probs: np.ndarray) -> None:
    rec.probs = probs
    rec.crops = None  # classified: the crops are no longer needed


def _finish_times(result: VideoPrediction, frames: Timed, clips: Timed, batcher: ClipBatcher,
                  image: bool, t_start: float) -> None:
    t = result.times
    t.decode = frames.seconds
    t.faces = max(0.0, clips.seconds - frames.seconds)
    t.model = batcher.seconds
    result.frames_decoded = frames.count if not image else 1
    t.frames = result.frames_decoded
    t.video_s = result.frames_decoded / result.info.fps if result.info.fps else 0.0
    t.total = time.perf_counter() - t_start


def _windows(frame_count: int, T: int, stride: int, image: bool) -> list[Block]:
    """Segments from the container's frame count; ``face_clips(extend=True)`` adds more if
    the video goes on and truncates the last ones where it really ends."""
    if image:
        return [Block(0, T)]
    if stride == T:
        return consecutive_segments(frame_count, T, T, keep_tail=False) or [Block(0, T)]
    return [Block(s, T) for s in range(0, max(frame_count, 1), stride)]


def _check_suffix(path: str | None, allowed, option: str) -> None:
    if path and Path(path).suffix.lower() not in allowed:
        raise OmgclipError(f"{option} must end in {' or '.join(allowed)}, got {Path(path).name!r}")
