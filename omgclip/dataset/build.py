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
from omgclip.dataset.segment import default_rare_strides, stride_for, strides_from_frequencies
from omgclip.dataset.tasks import Job, SourceResult, build_source
from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceConfig
from omgclip.fsutil import atomic_write_json, sigterm_raises, to_jsonable
from omgclip.labels import EMOTIONS, UNLABELED
from omgclip.progress import progress_bar

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
