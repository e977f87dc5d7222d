"""``omgclip build-dataset``: manifests -> videos -> T-frame face blocks on disk (resumable).

The orchestrator. Each source video is one job: it is decoded once, in order, and every
utterance on it is cut into blocks (``segment``), whose face is found, followed and cropped
(``clips`` over ``face``). Each block is saved as its own ``.npy`` (temp name, then rename);
an utterance is marked done (``.state/``) only after all its blocks are on disk, so a run
killed at any moment resumes where it stopped, and the result equals a clean run's. A
marker remembers everything that decided its blocks (:mod:`omgclip.dataset.state`): change
a row, its source file or the config, and that utterance is built again. The index, skips,
failures and report are removed when a run starts and rewritten from the markers at its
end, so a killed run never leaves an index that looks finished.
See :mod:`omgclip.dataset.format` for the layout.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from omgclip.dataset import format as fmt
from omgclip.dataset import state as st
from omgclip.dataset.build_report import BuildReport, collect, reason_kind, top_reasons, write_report, write_tables
from omgclip.dataset.pool import run_in_processes
from omgclip.errors import OmgclipError, VideoError, one_line
from omgclip.faces.detect import FaceConfig
from omgclip.fsutil import atomic_save_npy, atomic_write_json, sigterm_raises, to_jsonable
from omgclip.labels import EMOTIONS, UNLABELED
from omgclip.progress import progress_bar
from omgclip.dataset.segment import (Block, cut_blocks, default_rare_strides, resample_indices,
                             stride_for, strides_from_frequencies, time_to_frames)

log = logging.getLogger(__name__)

#: Config fields that change what the blocks contain: a dataset folder keeps them fixed.
_CONTENT_FIELDS = ("block_len", "stride", "rare_strides", "auto_strides", "face")


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``build-dataset`` does is decided here; saved as ``build_config.json``."""

    manifests: tuple[str, ...]
    out: str
    video_dir: str | None = None          #: default: OUT/videos
    workers: int = 1
    limit: int | None = None              #: first N utterances of each manifest
    block_len: int = fmt.DEFAULT_BLOCK_LEN
    stride: int = 20
    rare_strides: Mapping[int, int] | None = None  #: default: half the stride for 1, 2, 6
    auto_strides: bool = False            #: choose strides from the class frequencies instead
    split_by: str = "manifest"            #: 'manifest' or 'link'
    val_fraction: float = 0.2
    seed: int = 0
    face: FaceConfig = field(default_factory=FaceConfig)
    retries: int = 3
    sleep: float = 0.0
    progress: bool = True
    manifest_cache: str | None = None
    scheduler: str | None = None          #: Dask scheduler ('tcp://host:port', 'local[:N]'); None: local pool
    task_retries: int = 2                 #: with a scheduler: reruns of a task that raised
    download_interval: float = 0.0        #: seconds between download starts per host (throttle)
    retry_failed: bool = False            #: request URLs that failed in earlier runs again


    def __post_init__(self) -> None:
        if not self.manifests:
            raise OmgclipError("build-dataset needs at least one --manifest")
        if not (1 <= self.block_len <= 1000 and 1 <= self.stride <= 100_000):
            raise OmgclipError(f"--block-len must be 1..1000 and --stride 1..100000 "
                               f"(got {self.block_len} and {self.stride})")
        for label, stride in (self.rare_strides or {}).items():
            if not (0 <= int(label) < len(EMOTIONS) and 1 <= int(stride) <= 100_000):
                name = EMOTIONS[int(label)] if 0 <= int(label) < len(EMOTIONS) else label
                raise OmgclipError(f"--rare-stride {name}={stride}: a stride must be 1..100000")
        if self.retries < 0 or not 0.0 <= self.sleep <= 3600.0:
            raise OmgclipError("--retries must be >= 0 and --sleep between 0 and 3600 seconds")
        if self.workers < 1:
            raise OmgclipError("--workers must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise OmgclipError("--limit must be at least 1")
        if self.split_by not in ("manifest", "link"):
            raise OmgclipError("--split-by must be 'manifest' or 'link'")
        if not 0.0 < self.val_fraction < 1.0:
            raise OmgclipError("--val-fraction must be between 0 and 1")
        if self.task_retries < 0:
            raise OmgclipError("--task-retries must be 0 or more")
        if not self.download_interval >= 0:
            raise OmgclipError("--download-interval must be 0 or more seconds")
        if self.scheduler is not None:
            from omgclip.dataset.distributed import parse_scheduler

            parse_scheduler(self.scheduler)  # a bad address fails before anything is written
        if self.face.crop_size != fmt.DEFAULT_CROP_SIZE:
            log.warning("crop size %d differs from the default %d", self.face.crop_size,
                        fmt.DEFAULT_CROP_SIZE)


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


# ----------------------------------------------------------------------------- planning
def _load_manifests(cfg: BuildConfig):
    from omgclip.dataset.omg import load_manifest

    utterances, skips, seen = [], [], set()
    for spec in cfg.manifests:
        manifest = load_manifest(spec, cache_dir=cfg.manifest_cache)
        for skip in manifest.skips:
            skips.append({"where": f"{manifest.path}:{skip.row}", "source": "", "reason": skip.reason})
        chosen = manifest.utterances[: cfg.limit] if cfg.limit else manifest.utterances
        for utt in chosen:
            state_key = f"{utt.split}/{utt.key}"
            if state_key in seen:
                skips.append({"where": f"{manifest.path}:{utt.row}", "source": utt.source,
                              "reason": "duplicate utterance (in an earlier manifest)"})
                continue
            seen.add(state_key)
            utterances.append(utt)
    if not utterances:
        reasons = Counter(reason_kind(s["reason"]) for s in skips).most_common()
        raise OmgclipError("the manifest(s) hold no usable utterance"
                           + (f" ({len(skips)} rows skipped: {top_reasons(dict(reasons))})" if skips else ""))
    return utterances, skips


def resolve_strides(cfg: BuildConfig, utterances) -> dict[int, int]:
    """The stride of each class: the rare-class table, or one chosen from frequencies."""
    if cfg.auto_strides:
        counts = Counter(u.label for u in utterances if u.label != UNLABELED)
        return strides_from_frequencies(counts, cfg.stride)
    table = default_rare_strides(cfg.stride) if cfg.rare_strides is None else cfg.rare_strides
    return {int(k): int(v) for k, v in table.items()}


def assign_splits(utterances, split_by: str, val_fraction: float, seed: int) -> dict[str, str]:
    """Final split per utterance state key. ``'link'`` re-splits the labeled train and
    validation utterances so that no source link (group) is on both sides."""
    out = {f"{u.split}/{u.key}": u.split for u in utterances}
    if split_by == "manifest":
        return out
    pool = [u for u in utterances if u.split in ("train", "validation")]
    groups = sorted({u.group for u in pool})
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_val = max(1, round(len(groups) * val_fraction)) if len(groups) > 1 else 0
    val = set(groups[:n_val])
    for u in pool:
        out[f"{u.split}/{u.key}"] = "validation" if u.group in val else "train"
    return out


def _fingerprints(utterances, strides: Mapping[int, int], cfg: BuildConfig) -> dict[str, str]:
    """State key -> the fingerprint of everything that decides that utterance's blocks."""
    content = {k: to_jsonable(getattr(cfg, k)) for k in _CONTENT_FIELDS}
    return {f"{u.split}/{u.key}": st.fingerprint(u, stride_for(u.label, cfg.stride, strides), content,
                                                 None if u.frame_paths or u.is_url else u.source)
            for u in utterances}


def _plan_jobs(utterances, strides: Mapping[int, int], cfg: BuildConfig,
               fingerprints: Mapping[str, str]) -> list[Job]:
    """One job per source, in manifest order; URL sources are fetched by their job."""
    by_source: dict[str, list] = {}
    for utt in utterances:
        by_source.setdefault(utt.source, []).append((utt, stride_for(utt.label, cfg.stride, strides)))
    jobs = []
    for source, items in by_source.items():
        first = items[0][0]
        local = None if first.frame_paths or first.is_url else source
        jobs.append(Job(source, local, tuple(items),
                        {f"{u.split}/{u.key}": fingerprints[f"{u.split}/{u.key}"] for u, _ in items}))
    return jobs


def _download_config(cfg: BuildConfig, out: Path):
    from omgclip.dataset.download import DownloadConfig

    video_dir = Path(cfg.video_dir) if cfg.video_dir else out / "videos"
    return DownloadConfig(out_dir=str(video_dir), retries=cfg.retries, sleep_interval=cfg.sleep,
                          progress=False)


# ----------------------------------------------------------------------------- one source
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
    import numpy as np

    from omgclip.faces import clips

    from omgclip.faces import video_io
    from omgclip.faces.detect import resize_whole

    need = {f for b in blocks for f in b.frames()}
    frames = {i: resize_whole(g, cfg.face.crop_size)
              for i, g in video_io.iter_gray_frames(path, None, keep=need.__contains__)}
    for block in blocks:
        got = [frames[f] for f in block.frames() if f in frames]
        if len(got) < block.length:
            yield clips.WindowFaces(block, Block(block.start, len(got)), (), ())
        else:
            clip = clips.FaceClip(-1, np.stack(got), (), (True,) * block.length)
            yield clips.WindowFaces(block, block, (clip,), ())


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


# ----------------------------------------------------------------------------- the run
def _progress(total: int, enabled: bool, desc: str):
    return progress_bar(total=total, desc=desc, unit="video", enabled=enabled)


def _pending(jobs: list[Job], out: Path) -> list[Job]:
    """Jobs with an utterance not yet marked done (the rest is skipped on a resumed run)."""
    todo = [j for j in jobs if any(not st.is_done(out, u, j.fingerprint(u)) for u, _ in j.utterances)]
    if len(todo) < len(jobs):
        log.info("resuming: %d of %d sources already done", len(jobs) - len(todo), len(jobs))
    return todo


def _run_jobs(jobs: list[Job], cfg: BuildConfig, out: Path) -> list[SourceResult]:
    """Run :func:`build_source` for every pending job: on a Dask cluster when
    ``cfg.scheduler`` is set, else in this process or a local process pool."""
    todo = _pending(jobs, out)
    if cfg.scheduler:
        from omgclip.dataset.distributed import run_on_cluster

        return run_on_cluster(todo, cfg, str(out))
    results = []
    with _progress(len(todo), cfg.progress, "videos") as bar:
        if cfg.workers == 1 or len(todo) <= 1:
            for job in todo:
                results.append(build_source(job, cfg, str(out), threads=0))
                bar.update()
            return results
        for result in run_in_processes(build_source, [(job, cfg, str(out)) for job in todo], cfg.workers):
            results.append(result)
            bar.update()
    return results


def build_dataset(cfg: BuildConfig) -> BuildReport:
    """Build (or finish building) the dataset described by ``cfg``; see the module doc.

    Raises :class:`OmgclipError` when no block at all could be written (after writing the
    skips and failures that say why)."""
    out = Path(cfg.out).absolute()  # tasks may run in other processes and on other machines
    if out.exists() and not out.is_dir():
        raise OmgclipError(f"--out {out} exists and is not a folder")
    st.check_config(to_jsonable(cfg), out, _CONTENT_FIELDS)
    if cfg.video_dir:
        cfg = dataclasses.replace(cfg, video_dir=str(Path(cfg.video_dir).absolute()))
    utterances, manifest_skips = _load_manifests(cfg)  # bad manifests fail before any write
    out.mkdir(parents=True, exist_ok=True)
    with sigterm_raises():
        report = _build(cfg, out, utterances, manifest_skips)
    if not report.blocks:
        raise OmgclipError(f"no block was written to {out}: {top_reasons(report.skips_by_reason) or 'no reason'} "
                           f"(every skip is in {fmt.SKIPS_FILE}, failed sources in {fmt.FAILURES_FILE})")
    return report


def _build(cfg: BuildConfig, out: Path, utterances, manifest_skips) -> BuildReport:
    if st.remove_stale_temps(out):
        log.info("removed temp files left by an interrupted run")
    for name in (fmt.INDEX_FILE, fmt.REPORT_FILE, fmt.SKIPS_FILE, fmt.FAILURES_FILE):
        (out / name).unlink(missing_ok=True)  # a run killed from here on leaves no finished look
    atomic_write_json(out / fmt.CONFIG_FILE, cfg)
    strides = resolve_strides(cfg, utterances)
    splits = assign_splits(utterances, cfg.split_by, cfg.val_fraction, cfg.seed)
    fingerprints = _fingerprints(utterances, strides, cfg)
    changed = st.discard_changed(out, ((u, fingerprints[f"{u.split}/{u.key}"]) for u in utterances))
    if changed:
        log.info("%d utterance(s) changed, or their source could not be read before: building them again", changed)
    jobs = _plan_jobs(utterances, strides, cfg, fingerprints)
    failed = st.known_failures([j.source for j in jobs], out, cfg.retry_failed)
    jobs = [j for j in jobs if j.source not in failed]
    log.info("%d utterances from %d sources", len(utterances), len(jobs))
    results = _run_jobs(jobs, cfg, out)
    new_failures = {r.source: r.failure for r in results if r.failure}
    st.record_failures(out, [r.source for r in results if not r.failure], new_failures)
    failed.update(new_failures)
    st.remove_stale_temps(out)  # left by a task killed mid-write, that then ran again
    rows, skips = collect(utterances, out, splits, fingerprints)
    sources = list(dict.fromkeys(u.source for u in utterances))
    failures = [{"source": s, "reason": failed[s]} for s in sources if s in failed]
    write_tables(out, rows, [*manifest_skips, *skips], failures)
    report = write_report(cfg, out, rows, skips, failures, manifest_skips, strides)
    report.task_seconds = {r.source: r.download_s + r.faces_s for r in results}
    return report
