"""Fetch manifest sources: one download per unique URL, through yt-dlp's Python API.

Layout of ``DownloadConfig.out_dir``::

    <sha1(url)[:16]>.<ext>    finished, verified videos (the only files that count as done)
    .partial/                 yt-dlp's working files (``.part`` etc.); moved out only after
                              the video was checked to decode
    download_archive.txt      yt-dlp's download archive

A source that is already done costs no network request on a re-run. Only ``http(s)://``
URLs are given to yt-dlp; local files are used in place; anything else (another scheme, a
value starting with ``-``) is rejected before yt-dlp sees it. A link that fails (dead,
404, refused, truncated, not a video) becomes a :class:`DownloadFailure` and the run goes on.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from omgclip.errors import OmgclipError, VideoError
from omgclip.progress import progress_bar
from omgclip.dataset.sources import FRAME_SEPARATOR, is_local_path, is_url
from omgclip.faces.video_io import probe

log = logging.getLogger(__name__)

DEFAULT_FORMAT = (
    # H.264 in mp4 up to 720p, with or without audio (we need no audio); a single file each,
    # so ffmpeg is never needed to merge streams. Unknown heights (direct links) pass `<=?`.
    "bv*[vcodec^=avc1][height<=?720][ext=mp4]"
    "/bv*[vcodec^=avc1][height<=?720]"
    "/bv*[height<=?720][ext=mp4]"
    "/bv*[height<=?720]"
    "/wv*"
)
ARCHIVE_FILE = "download_archive.txt"
TEMP_DIR = ".partial"
_INCOMPLETE_SUFFIXES = (".part", ".ytdl", ".tmp", ".temp")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MESSAGE_PREFIXES = (
    re.compile(r"^(?:ERROR|WARNING|Postprocessing):\s*"),
    re.compile(r"^\[[\w:.-]+\]\s+(?:[^\s:]+:\s+)?"),  # "[generic] clip: ", "[download] "
    re.compile(r"^Got error:\s*"),
)


@dataclass(frozen=True)
class DownloadConfig:
    """How to download. ``out_dir`` holds the videos, yt-dlp's archive and its work files."""

    out_dir: str
    format: str = DEFAULT_FORMAT
    retries: int = 3
    sleep_interval: float = 0.0
    max_sleep_interval: float = 0.0
    rate_limit: str | None = None
    socket_timeout: float = 20.0
    progress: bool = True


@dataclass(frozen=True)
class DownloadFailure:
    """A source that could not be fetched, with a one-line reason."""

    link: str
    reason: str


@dataclass
class DownloadResult:
    """``paths``: source -> local file (local sources map to themselves; a frame-list source
    maps to ``Path(source)``, use ``Utterance.frame_paths`` for its images)."""

    paths: dict[str, Path] = field(default_factory=dict)
    failures: list[DownloadFailure] = field(default_factory=list)
    downloaded: int = 0


# --------------------------------------------------------------------------- public API

def fetch_sources(sources: Iterable[str], cfg: DownloadConfig) -> DownloadResult:
    """Make every unique source available locally; never stops on a bad link.

    URLs already done (see :func:`cached_path`) are not requested again; ``downloaded``
    counts only the files fetched by this call.
    """
    unique = list(dict.fromkeys(sources))
    result = DownloadResult()
    for source in _progress(unique, cfg):
        try:
            path, fetched = _fetch_source(source, cfg)
        except OmgclipError as exc:
            reason = _ytdlp_message(str(exc))
            log.warning("cannot fetch %s: %s", source, reason)
            result.failures.append(DownloadFailure(source, reason))
            continue
        result.paths[source] = path
        result.downloaded += int(fetched)
    log.info("sources: %d available (%d downloaded now), %d failed",
             len(result.paths), result.downloaded, len(result.failures))
    return result


def fetch_one(url: str, cfg: DownloadConfig) -> Path:
    """Download one http(s) URL into ``cfg.out_dir`` (or return the finished file from an
    earlier run) and return its path. Raises :class:`OmgclipError` with a one-line reason."""
    _require_http_url(url)
    done = cached_path(url, cfg)
    if done is not None:
        return done
    path = _run_ytdlp(url, cfg, use_archive=True)
    if path is None:
        # yt-dlp skipped it as already in its archive, yet our file is gone: fetch it again.
        log.info("%s is in %s but its file is missing; downloading it again", url, ARCHIVE_FILE)
        path = _run_ytdlp(url, cfg, use_archive=False)
    if path is None:
        raise OmgclipError("yt-dlp finished without producing a video file")
    return path


def cached_path(url: str, cfg: DownloadConfig) -> Path | None:
    """The finished, verified file for ``url`` in ``cfg.out_dir``, if any (never a
    ``.part`` or other work file). For an existing local file, the file itself."""
    if not is_url(url):
        local = _local_source(url) if is_local_path(url) else None
        return local if local is not None and local.is_file() else None
    out_dir = Path(cfg.out_dir).expanduser()
    if not out_dir.is_dir():
        return None
    candidates = sorted(p for p in out_dir.glob(f"{url_stem(url)}.*") if _is_finished_file(p))
    return candidates[0] if candidates else None


def url_stem(url: str) -> str:
    """Deterministic file stem for a URL: the first 16 hex digits of its sha1."""
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- per source

def _fetch_source(source: str, cfg: DownloadConfig) -> tuple[Path, bool]:
    """(local path, whether it was downloaded now) for one source, or OmgclipError."""
    if is_url(source):
        done = cached_path(source, cfg)
        if done is not None:
            return done, False
        return fetch_one(source, cfg), True
    if not is_local_path(source):
        raise OmgclipError("not an http(s) URL")
    return _check_local(source), False


def _local_source(source: str) -> Path | None:
    return Path(source).expanduser() if FRAME_SEPARATOR not in source else None


def _check_local(source: str) -> Path:
    """A local video or ``;``-separated image list must exist; it is used in place."""
    entries = [e for e in source.split(FRAME_SEPARATOR) if e] if FRAME_SEPARATOR in source else [source]
    for entry in entries:
        if not Path(entry).expanduser().is_file():
            raise OmgclipError(f"file not found: {entry}")
    return Path(source).expanduser() if len(entries) == 1 else Path(source)


def _require_http_url(url: str) -> None:
    if not is_url(url) or url.strip().startswith("-"):
        raise OmgclipError("not an http(s) URL")


def _is_finished_file(path: Path) -> bool:
    name = path.name
    return (path.is_file() and not name.startswith(".") and ".part-Frag" not in name
            and not name.endswith(_INCOMPLETE_SUFFIXES))


# --------------------------------------------------------------------------- yt-dlp

def _run_ytdlp(url: str, cfg: DownloadConfig, *, use_archive: bool) -> Path | None:
    """Run one yt-dlp download; return the finished file, or None if yt-dlp skipped it."""
    import yt_dlp
    from yt_dlp.utils import YoutubeDLError

    params = _ytdlp_params(url, cfg, use_archive=use_archive)
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            for when, pp in _postprocessors(url_stem(url)):
                ydl.add_post_processor(pp, when=when)
            ydl.extract_info(url, download=True)
    except YoutubeDLError as exc:
        raise OmgclipError(_ytdlp_message(str(exc)) or type(exc).__name__) from None
    return cached_path(url, cfg)


def _ytdlp_params(url: str, cfg: DownloadConfig, *, use_archive: bool) -> dict[str, Any]:
    """yt-dlp options for one URL (option names as in ``yt_dlp.YoutubeDL``'s docstring)."""
    out_dir = Path(cfg.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {
        "format": cfg.format,
        "outtmpl": {"default": f"{url_stem(url)}.%(ext)s"},
        "paths": {"home": str(out_dir), "temp": str(out_dir / TEMP_DIR)},
        "download_archive": str(out_dir / ARCHIVE_FILE) if use_archive else None,
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "socket_timeout": cfg.socket_timeout,
        "noplaylist": True,
        "playlist_items": "1",
        "continuedl": True,
        "overwrites": False,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "progress_hooks": [_progress_hook(url)],
        "logger": _YtdlpLogger(log),
    }
    if cfg.sleep_interval > 0:
        params["sleep_interval"] = cfg.sleep_interval
        if cfg.max_sleep_interval > cfg.sleep_interval:
            params["max_sleep_interval"] = cfg.max_sleep_interval
    if cfg.rate_limit:
        params["ratelimit"] = _parse_rate(cfg.rate_limit)
    return params


def _parse_rate(text: str) -> int:
    from yt_dlp.utils import parse_bytes

    value = parse_bytes(text)
    if not value:
        raise OmgclipError(f"invalid rate limit {text!r} (e.g. 500K, 2M)")
    return int(value)


def _postprocessors(stem: str) -> list[tuple[str, Any]]:
    """Hooks added to yt-dlp: a unique archive id for generic links, and a decode check
    that runs before the file leaves the work folder (and before the archive is written)."""
    from yt_dlp.postprocessor import PostProcessor
    from yt_dlp.utils import PostProcessingError

    class UniqueGenericId(PostProcessor):
        """Direct-file links get ids from the URL's file name, so ``a/clip.mp4`` and
        ``b/clip.mp4`` would share one archive entry; make them distinct."""

        def run(self, info: dict) -> tuple[list, dict]:
            if info.get("extractor_key") == "Generic" and info.get("id"):
                info["id"] = f"{info['id']}-{stem}"
            return [], info

    class VerifyVideo(PostProcessor):
        """Delete a downloaded file that does not decode, and fail the download."""

        def run(self, info: dict) -> tuple[list, dict]:
            path = Path(info["filepath"])
            if not is_readable_video(path):
                path.unlink(missing_ok=True)
                raise PostProcessingError("downloaded file is not a readable video")
            return [], info

    return [("pre_process", UniqueGenericId()), ("post_process", VerifyVideo())]


def is_readable_video(path: str | Path) -> bool:
    """True if the decoder (:func:`omgclip.faces.video_io.probe`) opens ``path`` and decodes a frame."""

    try:
        probe(path)
    except VideoError:
        return False
    return True


class _YtdlpLogger:
    """yt-dlp ``logger``: everything goes to our logger at DEBUG (failures are reported once,
    by :func:`fetch_sources`, as warnings)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger

    def debug(self, message: str) -> None:
        self._log.debug("yt-dlp: %s", message.removeprefix("[debug] "))

    def info(self, message: str) -> None:
        self._log.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        self._log.debug("yt-dlp warning: %s", _ytdlp_message(message))

    def error(self, message: str) -> None:
        self._log.debug("yt-dlp error: %s", _ytdlp_message(message))


def _progress_hook(url: str) -> Callable[[dict], None]:
    def hook(status: dict) -> None:
        state = status.get("status")
        if state == "finished":
            log.debug("fetched %s -> %s (%s bytes)", url, status.get("filename"),
                      status.get("total_bytes") or status.get("downloaded_bytes"))
        elif state == "error":
            log.debug("download error for %s", url)
    return hook


def _ytdlp_message(message: str) -> str:
    """yt-dlp's message as one short line: no ANSI codes, ``ERROR:`` prefixes, extractor
    tags, ``(caused by ...)`` tails or bug-report boilerplate."""
    text = _ANSI.sub("", message or "").replace("\r", " ")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    while True:
        stripped = line
        for prefix in _MESSAGE_PREFIXES:
            stripped = prefix.sub("", stripped)
        if stripped == line:
            break
        line = stripped
    line = re.sub(r"\s*\(caused by .*$", "", line)
    line = re.sub(r";\s*please report this issue.*$", "", line)
    return line.strip()


def _progress(items: list[str], cfg: DownloadConfig) -> Iterable[str]:
    """A tqdm bar over sources when ``cfg.progress``; yt-dlp itself prints nothing."""
    return progress_bar(items, desc="download", unit="source", enabled=cfg.progress)
