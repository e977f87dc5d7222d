"""``omgclip build-dataset``: manifests -> videos -> T-frame face blocks on disk (resumable).

The orchestrator. Each source video is one job: it is decoded once, in order, and every
utterance on it is cut into blocks (``segment``), whose face is found, followed and cropped
(``clips`` over ``face``). Each block is saved as its own ``.npy`` (temp name, then rename);
an utterance is marked done (``.state/``) only after all its blocks are on disk, so a run
killed at any moment resumes where it stopped, and the result equals a clean run's. The
index, skips, failures and report are rewritten from the markers at the end of every run.
See :mod:`omgclip.dataset.format` for the layout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from omgclip.dataset import format as fmt
from omgclip.errors import OmgclipError, VideoError
from omgclip.faces.detect import FaceConfig
from omgclip.fsutil import atomic_save_npy, atomic_write_json, atomic_write_text, to_jsonable
from omgclip.labels import EMOTIONS, UNLABELED
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

    def __post_init__(self) -> None:
        if not self.manifests:
            raise OmgclipError("build-dataset needs at least one --manifest")
        if self.block_len < 1 or self.stride < 1:
            raise OmgclipError("--block-len and --stride must be positive")
        if self.workers < 1:
            raise OmgclipError("--workers must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise OmgclipError("--limit must be at least 1")
        if self.split_by not in ("manifest", "link"):
            raise OmgclipError("--split-by must be 'manifest' or 'link'")
        if not 0.0 < self.val_fraction < 1.0:
            raise OmgclipError("--val-fraction must be between 0 and 1")
        if self.face.crop_size != fmt.DEFAULT_CROP_SIZE:
            log.warning("crop size %d differs from the default %d", self.face.crop_size,
                        fmt.DEFAULT_CROP_SIZE)


@dataclass(frozen=True)
class Job:
    """One source (video file or image list) and the utterances cut from it."""

    source: str
    path: str | None                      #: local file; None for image-list sources
    utterances: tuple                     #: tuple[(Utterance, stride)]


@dataclass
class BuildReport:
    out: str
    blocks: int
    counts: dict
    skips_by_reason: dict
    failures: list
    manifest_skips: int

    def summary(self) -> str:
        lines = [f"{self.blocks} blocks in {self.out}"]
        for split, per_class in self.counts.items():
            shown = ", ".join(f"{k} {v}" for k, v in per_class.items() if v)
            lines.append(f"  {split}: {shown or 'none'}")
        if self.skips_by_reason:
            lines.append("skipped: " + ", ".join(f"{r} {n}" for r, n in self.skips_by_reason.items()))
        if self.failures:
            lines.append(f"{len(self.failures)} source(s) failed: see {fmt.FAILURES_FILE}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- planning
def _load_manifests(cfg: BuildConfig):
    from omgclip.dataset.manifest import load_manifest

    utterances, skips, seen = [], [], set()
    for spec in cfg.manifests:
        manifest = load_manifest(spec, cache_dir=cfg.manifest_cache)
        for skip in manifest.skips:
            skips.append({"where": f"{manifest.path}:{skip.row}", "reason": skip.reason})
        chosen = manifest.utterances[: cfg.limit] if cfg.limit else manifest.utterances
        for utt in chosen:
            state_key = f"{utt.split}/{utt.key}"
            if state_key in seen:
                skips.append({"where": f"{manifest.path}:{utt.row}",
                              "reason": "duplicate utterance (in an earlier manifest)"})
                continue
            seen.add(state_key)
            utterances.append(utt)
    if not utterances:
        raise OmgclipError("the manifest(s) hold no usable utterance"
                           + (f" ({len(skips)} rows skipped: see the log)" if skips else ""))
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


def _plan_jobs(utterances, strides: Mapping[int, int], cfg: BuildConfig, paths: Mapping[str, Path],
               failures: Mapping[str, str]) -> list[Job]:
    """One job per source that is at hand (failed downloads are in ``failures.csv``)."""
    by_source: dict[str, list] = {}
    for utt in utterances:
        if utt.source not in failures:
            by_source.setdefault(utt.source, []).append((utt, stride_for(utt.label, cfg.stride, strides)))
    jobs = []
    for source, items in by_source.items():
        local = None if items[0][0].frame_paths else str(paths.get(source, source))
        jobs.append(Job(source, local, tuple(items)))
    return jobs


def _fetch(utterances, cfg: BuildConfig, out: Path):
    """Download the URL sources once each; local files are used in place."""
    from omgclip.dataset.download import DownloadConfig, fetch_sources

    urls = list(dict.fromkeys(u.source for u in utterances if u.is_url))
    if not urls:
        return {}, {}
    video_dir = Path(cfg.video_dir) if cfg.video_dir else out / "videos"
    result = fetch_sources(urls, DownloadConfig(out_dir=str(video_dir), retries=cfg.retries,
                                                sleep_interval=cfg.sleep, progress=cfg.progress))
    return result.paths, {f.link: f.reason for f in result.failures}


# ----------------------------------------------------------------------------- one source
def _state_path(out: Path, utt) -> Path:
    return out / fmt.STATE_DIR / utt.split / f"{utt.key}.json"


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

    def __init__(self, utt, num_blocks: int):
        self.utt = utt
        self.rows: list[dict] = []
        self.skips: list[dict] = []
        self.remaining = num_blocks

    def skip(self, reason: str, block: Block | None = None) -> None:
        where = f"{self.utt.split}/{self.utt.key}" + (f"@{block.start}" if block else "")
        self.skips.append({"where": where, "source": self.utt.source, "reason": reason})

    def save(self, out: Path) -> None:
        atomic_write_json(_state_path(out, self.utt), {"rows": self.rows, "skips": self.skips})


def _video_job(job: Job, cfg: BuildConfig, out: Path) -> None:
    from omgclip.faces import clips
    from omgclip.faces import video_io

    try:
        info = video_io.probe(job.path)
    except VideoError as exc:
        for utt, _ in job.utterances:
            state = _UtteranceState(utt, 0)
            state.skip(f"unreadable video: {exc}")
            state.save(out)
        return
    states, windows = [], []
    for utt, stride in job.utterances:
        frames = time_to_frames(utt.start, utt.end, info.fps, info.frame_count)
        blocks = cut_blocks(frames, cfg.block_len, stride)
        state = _UtteranceState(utt, len(blocks))
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
        state = _UtteranceState(utt, 1)
        try:
            images = video_io.read_image_list(utt.frame_paths)
        except VideoError as exc:
            state.skip(f"unreadable image: {exc}")
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


def run_job(job: Job, cfg: BuildConfig, out: str) -> str:
    """Process one source (in a worker process). Returns the source when done."""
    import cv2

    cv2.setNumThreads(1 if cfg.workers > 1 else 0)
    out_path = Path(out)
    todo = tuple((u, s) for u, s in job.utterances if not _state_path(out_path, u).exists())
    if todo:
        job = dataclasses.replace(job, utterances=todo)
        (_image_list_job if job.path is None else _video_job)(job, cfg, out_path)
    return job.source


# ----------------------------------------------------------------------------- the run
def _check_config(cfg: BuildConfig, out: Path) -> None:
    """A dataset folder is built with one content config; refuse to mix two."""
    saved_path = out / fmt.CONFIG_FILE
    if not saved_path.exists():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError):
        return
    now = to_jsonable(cfg)
    changed = [k for k in _CONTENT_FIELDS if k in saved and saved[k] != now[k]]
    if changed:
        raise OmgclipError(f"{out} was built with different {', '.join(changed)}; "
                           "use another --out, or delete that folder to rebuild")


def _remove_stale_temps(out: Path) -> int:
    """Temp files left by a killed run (never counted as done) are removed on the next."""
    stale = [p for d in (fmt.BLOCKS_DIR, fmt.STATE_DIR) for p in (out / d).rglob(".*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=not enabled, dynamic_ncols=True)


def _run_jobs(jobs: list[Job], cfg: BuildConfig, out: Path) -> None:
    todo = [j for j in jobs if any(not _state_path(out, u).exists() for u, _ in j.utterances)]
    if len(todo) < len(jobs):
        log.info("resuming: %d of %d sources already done", len(jobs) - len(todo), len(jobs))
    with _progress(len(todo), cfg.progress, "faces") as bar:
        if cfg.workers == 1 or len(todo) <= 1:
            for job in todo:
                run_job(job, cfg, str(out))
                bar.update()
            return
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx) as pool:
            futures = [pool.submit(run_job, job, cfg, str(out)) for job in todo]
            for future in as_completed(futures):
                future.result()
                bar.update()


def _collect(utterances, out: Path, splits: Mapping[str, str]):
    rows, skips = [], []
    for utt in utterances:
        path = _state_path(out, utt)
        if not path.exists():
            continue
        state = json.loads(path.read_text())
        final = splits[f"{utt.split}/{utt.key}"]
        rows.extend({**r, "split": final} for r in state["rows"])
        skips.extend(state["skips"])
    rows.sort(key=lambda r: r["block_id"])
    return rows, skips


def _write_tables(out: Path, rows, skips, failures) -> None:
    import pandas as pd

    index = pd.DataFrame(rows, columns=list(fmt.INDEX_COLUMNS))
    atomic_write_text(out / fmt.INDEX_FILE, index.to_csv(index=False))
    atomic_write_text(out / fmt.SKIPS_FILE,
                      pd.DataFrame(skips, columns=["where", "source", "reason"]).to_csv(index=False))
    atomic_write_text(out / fmt.FAILURES_FILE,
                      pd.DataFrame(failures, columns=["source", "reason"]).to_csv(index=False))


def _report(cfg: BuildConfig, out: Path, rows, skips, failures, manifest_skips, strides) -> BuildReport:
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        per = counts.setdefault(r["split"], {name: 0 for name in (*EMOTIONS, "unlabeled")})
        per[r["label_name"] or "unlabeled"] += 1
    by_reason = Counter(_reason_kind(s["reason"]) for s in [*manifest_skips, *skips])
    by_reason.update("download failed" for _ in failures)
    report = BuildReport(str(out), len(rows), counts, dict(by_reason.most_common()), failures,
                         len(manifest_skips))
    atomic_write_json(out / fmt.REPORT_FILE, {
        "blocks": len(rows), "counts": counts, "skips_by_reason": report.skips_by_reason,
        "manifest_skips": manifest_skips, "failures": failures,
        "strides": {EMOTIONS[k]: v for k, v in sorted(strides.items())},
        "config": to_jsonable(cfg),
    })
    return report


def _reason_kind(reason: str) -> str:
    """Group reasons for the report ('unreadable video: x.mp4: ...' -> 'unreadable video')."""
    head = reason.split(":", 1)[0]
    if head.startswith("shorter than one block"):
        return "shorter than one block"
    if head.startswith("starts at"):
        return "starts after the video's end"
    if head.startswith("unknown label"):
        return "unknown label"
    return head


def build_dataset(cfg: BuildConfig) -> BuildReport:
    """Build (or finish building) the dataset described by ``cfg``; see the module doc."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise OmgclipError(f"--out {out} exists and is not a folder")
    _check_config(cfg, out)
    utterances, manifest_skips = _load_manifests(cfg)  # bad manifests fail before any write
    out.mkdir(parents=True, exist_ok=True)
    if _remove_stale_temps(out):
        log.info("removed temp files left by an interrupted run")
    atomic_write_json(out / fmt.CONFIG_FILE, cfg)
    strides = resolve_strides(cfg, utterances)
    splits = assign_splits(utterances, cfg.split_by, cfg.val_fraction, cfg.seed)
    paths, failed = _fetch(utterances, cfg, out)
    jobs = _plan_jobs(utterances, strides, cfg, paths, failed)
    log.info("%d utterances from %d sources (%d sources failed to download)",
             len(utterances), len(jobs), len(failed))
    _run_jobs(jobs, cfg, out)
    rows, skips = _collect(utterances, out, splits)
    failures = [{"source": s, "reason": r} for s, r in failed.items()]
    _write_tables(out, rows, skips, failures)
    return _report(cfg, out, rows, skips, failures, manifest_skips, strides)
