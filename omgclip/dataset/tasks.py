"""One ``build-dataset`` task per source: fetch it (URL), decode it once, cut every
utterance on it into blocks, and write the blocks and each utterance's done-marker.

:func:`build_source` is what the local process pool and Dask workers run; the
orchestrator (:mod:`omgclip.dataset.build`) plans the :class:`Job` records and collects
the :class:`SourceResult` records.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from omgclip.dataset import format as fmt
from omgclip.dataset import state as st
from omgclip.dataset.segment import Block, cut_blocks, resample_indices, time_to_frames
from omgclip.errors import OmgclipError, VideoError, one_line
from omgclip.fsutil import atomic_save_npy, atomic_write_json
from omgclip.labels import EMOTIONS, UNLABELED

if TYPE_CHECKING:
    from omgclip.dataset.build import BuildConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One source (URL, video file or image list) and the utterances cut from it."""

    source: str
    path: str | None                      #: local file; None for URLs (until fetched) and image lists
    utterances: tuple                     #: tuple[(Utterance, stride)]
    fingerprints: Mapping[str, str] = field(default_factory=dict)  #: state key -> fingerprint

    def fingerprint(self, utt) -> str:
        return self.fingerprints.get(f"{utt.split}/{utt.key}", "")


@dataclass(frozen=True)
class SourceResult:
    """What one source task reports back: a download failure's reason, and its timings."""

    source: str
    failure: str | None = None            #: one-line reason when the source could not be fetched
    download_s: float = 0.0
    faces_s: float = 0.0


def _block_path(utt, number: int) -> str:
    return f"{fmt.BLOCKS_DIR}/{utt.split}/{utt.key}/{number:04d}.npy"


def _row(utt, number: int, block: Block, fps: float, detect_frac: float) -> dict:
    return {
        "block_id": f"{utt.split}/{utt.key}/{number:04d}", "split": utt.split, "group": utt.group,
        "source": utt.source, "video": utt.video, "utterance": utt.utterance, "label": utt.label,
        "label_name": EMOTIONS[utt.label] if utt.label != UNLABELED else "",
        "start_frame": block.start, "num_frames": block.length, "fps": round(float(fps), 6),
        "detect_frac": round(float(detect_frac), 4), "path": _block_path(utt, number),
    }


class _UtteranceState:
    """Rows and skips of one utterance, written as its done-marker once complete."""

    def __init__(self, utt, num_blocks: int, fingerprint: str):
        self.utt = utt
        self.rows: list[dict] = []
        self.skips: list[dict] = []
        self.remaining = num_blocks
        self.fingerprint = fingerprint
        self.retry = False  #: the source could not be read at all: check it again next run

    def skip(self, reason: str, block: Block | None = None) -> None:
        where = f"{self.utt.split}/{self.utt.key}" + (f"@{block.start}" if block else "")
        self.skips.append({"where": where, "source": self.utt.source, "reason": reason})

    def save(self, out: Path) -> None:
        atomic_write_json(st.state_path(out, self.utt), {"fingerprint": self.fingerprint, "retry": self.retry,
                                                        "rows": self.rows, "skips": self.skips})


def _video_job(job: Job, cfg: BuildConfig, out: Path) -> None:
    from omgclip.faces import clips
    from omgclip.faces import video_io

    try:
        info = video_io.probe(job.path)
    except VideoError as exc:
        for utt, _ in job.utterances:
            state = _UtteranceState(utt, 0, job.fingerprint(utt))
            state.skip(f"unreadable video: {exc}")
            state.retry = True
            state.save(out)
        return
    states, windows = [], []
    for utt, stride in job.utterances:
        frames = time_to_frames(utt.start, utt.end, info.fps, info.frame_count)
        blocks = cut_blocks(frames, cfg.block_len, stride)
        state = _UtteranceState(utt, len(blocks), job.fingerprint(utt))
        if not blocks:
            if utt.start is not None and info.duration and utt.start >= info.duration:
                state.skip(f"starts at {utt.start:.2f}s, after the video's end ({info.duration:.2f}s)")
            else:
                state.skip(f"shorter than one block ({len(frames)} frames < {cfg.block_len})")
            state.save(out)
            continue
        states.append(state)
        windows.extend((block, state, i) for i, block in enumerate(blocks))
    if not windows:
        return
    windows.sort(key=lambda w: (w[0].start, w[0].length))
    blocks = [w[0] for w in windows]
    if all(u.crop == "none" for u, _ in job.utterances):
        results = _whole_frame_windows(job.path, blocks, cfg)
    else:
        frames = video_io.iter_gray_frames(job.path, cfg.face.work_width,
                                           keep=clips.needed_frames(blocks, cfg.face))
        results = clips.face_clips(frames, blocks, cfg.face, follow="largest")
    # face_clips yields in the (sorted) window order, one result per window.
    for (block, state, number), result in zip(windows, results):
        if result.clips and result.complete:
            clip = result.clips[0]
            atomic_save_npy(out / _block_path(state.utt, number), clip.crops)
            state.rows.append(_row(state.utt, number, block, info.fps, clip.detect_frac))
        else:
            state.skip(result.reason if result.complete else clips.VIDEO_ENDED, block)
        state.remaining -= 1
        if state.remaining == 0:
            state.save(out)


def _whole_frame_windows(path: str, blocks: list[Block], cfg: BuildConfig):
    """For sources that are already face crops: the whole frame of each block's frames."""
    from omgclip.faces import clips, video_io

    need = {f for b in blocks for f in b.frames()}
    frames = video_io.iter_gray_frames(path, None, keep=need.__contains__)
    return clips.whole_frame_clips(frames, blocks, cfg.face.crop_size)


def _image_list_job(job: Job, cfg: BuildConfig, out: Path) -> None:
    """A frame-list source (e.g. CK+ apex frames): stretched to one block of T frames."""
    import numpy as np

    from omgclip.faces import video_io
    from omgclip.faces.detect import FaceDetector, crop_face, largest, resize_whole

    for utt, _ in job.utterances:
        state = _UtteranceState(utt, 1, job.fingerprint(utt))
        try:
            images = video_io.read_image_list(utt.frame_paths, cfg.face.work_width)
        except VideoError as exc:
            state.skip(f"unreadable image: {exc}")
            state.retry = True
            state.save(out)
            continue
        if utt.crop == "none":
            crops = [resize_whole(img, cfg.face.crop_size) for img in images]
        else:
            detector = FaceDetector(cfg.face)
            boxes = [largest(detector.detect(img)) for img in images]
            if any(b is None for b in boxes):
                state.skip("no face in one of the images")
                state.save(out)
                continue
            crops = [crop_face(img, b, cfg.face.crop_size, cfg.face.margin)
                     for img, b in zip(images, boxes)]
        block = np.stack([crops[i] for i in resample_indices(len(crops), cfg.block_len)])
        atomic_save_npy(out / _block_path(utt, 0), block)
        state.rows.append(_row(utt, 0, Block(0, cfg.block_len), 0.0, 1.0))
        state.save(out)


def build_source(job: Job, cfg: BuildConfig, out: str, threads: int = 1) -> SourceResult:
    """The one task per source, run by the local process pool and by Dask workers alike:
    fetch a URL source (into ``--video-dir``), decode, detect, write its blocks and done-markers.

    Idempotent: utterances already marked done are left alone, and every file is written
    under a temp name then renamed, so a task killed at any moment can simply run again
    (here or on another machine) and the result is the same. ``out`` must be the same folder
    for every process that runs tasks (a shared filesystem with a cluster)."""
    import time

    import cv2

    cv2.setNumThreads(threads)
    out_path = Path(out)
    if not (out_path / fmt.CONFIG_FILE).is_file():  # written before any task is sent
        import socket

        raise OmgclipError(f"{socket.gethostname()} does not see {out} (it must be a shared folder)")
    todo = tuple((u, s) for u, s in job.utterances if not st.is_done(out_path, u, job.fingerprint(u)))
    if not todo:
        return SourceResult(job.source)
    job = dataclasses.replace(job, utterances=todo)
    t0 = time.perf_counter()
    if job.path is None and todo[0][0].is_url:
        try:
            job = dataclasses.replace(job, path=str(_download(job.source, cfg, out_path)))
        except OmgclipError as exc:
            reason = one_line(str(exc), type(exc).__name__)
            log.warning("cannot fetch %s: %s", job.source, reason)
            return SourceResult(job.source, failure=reason, download_s=time.perf_counter() - t0)
    t1 = time.perf_counter()
    (_image_list_job if job.path is None else _video_job)(job, cfg, out_path)
    return SourceResult(job.source, None, t1 - t0, time.perf_counter() - t1)


def _download(url: str, cfg: BuildConfig, out: Path) -> Path:
    """The finished file of ``url``: from an earlier run, or downloaded now (after the
    per-host throttle's turn, when ``cfg.download_interval`` is set)."""
    from omgclip.dataset.download import cached_path, fetch_one
    from omgclip.dataset.throttle import host_of, wait_turn

    dl = _download_config(cfg, out)
    if cfg.download_interval > 0 and cached_path(url, dl) is None:
        wait_turn(dl.out_dir, host_of(url), cfg.download_interval)
    return fetch_one(url, dl)


def _download_config(cfg: BuildConfig, out: Path):
    from omgclip.dataset.download import DownloadConfig

    video_dir = Path(cfg.video_dir) if cfg.video_dir else out / "videos"
    return DownloadConfig(out_dir=str(video_dir), retries=cfg.retries, sleep_interval=cfg.sleep,
                          progress=False)
