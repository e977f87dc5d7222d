"""omgclip.dataset.download against real yt-dlp and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omgclip.dataset.download import (
    ARCHIVE_FILE,
    DEFAULT_FORMAT,
    DownloadConfig,
    _ytdlp_message,
    _ytdlp_params,
    cached_path,
    fetch_one,
    fetch_sources,
    is_readable_video,
    url_stem,
)
from omgclip.errors import OmgclipError

# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny_mp4(tiny_video: Path) -> bytes:
    """A small generated mp4 (no real data needed): 8 frames of 64x48."""
    return tiny_video.read_bytes()


@pytest.fixture(scope="module")
def mead_clip(shared_data: Path) -> Path:
    """A real MEAD clip from ../shared (skipped when the shared data is absent)."""
    return sorted((shared_data / "mead_clips" / "videos").glob("*.mp4"))[0]


def _config(tmp_path: Path) -> DownloadConfig:
    return DownloadConfig(out_dir=str(tmp_path / "videos"), retries=1, socket_timeout=5,
                          progress=False)


def _failure_reasons(result) -> dict[str, str]:
    return {f.link: f.reason for f in result.failures}


# --------------------------------------------------------------------------- downloads

def test_real_clip_downloads_and_decodes(loopback, tmp_path: Path, mead_clip: Path) -> None:
    import cv2

    data = mead_clip.read_bytes()
    with loopback({"/clip.mp4": data}) as server:
        url = server.url("/clip.mp4")
        result = fetch_sources([url, url], _config(tmp_path))  # duplicates: one download
    assert result.failures == []
    assert result.downloaded == 1
    path = result.paths[url]
    assert path.read_bytes() == data
    assert path.name.startswith(url_stem(url)) and path.parent == tmp_path / "videos"
    frames = []
    for video in (path, mead_clip):
        capture = cv2.VideoCapture(str(video))
        ok, frame = capture.read()
        capture.release()
        assert ok
        frames.append(frame)
    assert (frames[0] == frames[1]).all()


def test_dead_and_truncated_links_fail_and_the_run_goes_on(loopback, tmp_path: Path, tiny_mp4: bytes) -> None:
    routes = {"/good.mp4": tiny_mp4}
    cfg = _config(tmp_path)
    with loopback(routes) as server:
        cut = server.add("/cut.mp4", tiny_mp4, truncate=True)
        good, dead = server.url("/good.mp4"), server.url("/missing.mp4")
        result = fetch_sources([dead, cut, good], cfg)

    reasons = _failure_reasons(result)
    assert set(reasons) == {dead, cut}
    assert "HTTP Error 404: Not Found" in reasons[dead]
    assert "bytes" in reasons[cut]  # 'Downloaded N bytes, expected M bytes. Giving up ...'
    for reason in reasons.values():
        assert "\n" not in reason and "\x1b" not in reason and not reason.startswith("ERROR")
    assert list(result.paths) == [good] and result.downloaded == 1
    assert is_readable_video(result.paths[good])

    # nothing of the truncated download counts as done
    assert cached_path(cut, cfg) is None
    finished = {p.name for p in (tmp_path / "videos").iterdir() if p.is_file()}
    assert finished == {result.paths[good].name, ARCHIVE_FILE}
    archive = (tmp_path / "videos" / ARCHIVE_FILE).read_text().splitlines()
    assert len(archive) == 1


def test_complete_rerun_makes_no_request(loopback, tmp_path: Path, tiny_mp4: bytes) -> None:
    cfg = _config(tmp_path)
    local = tmp_path / "local.mp4"
    local.write_bytes(tiny_mp4)
    with loopback({"/a.mp4": tiny_mp4, "/b.mp4": tiny_mp4}) as server:
        sources = [server.url("/a.mp4"), server.url("/b.mp4"), str(local)]
        first = fetch_sources(sources, cfg)
        requests_after_first = server.count()
        second = fetch_sources(sources, cfg)
        assert server.count() == requests_after_first  # no GET (nor HEAD) at all
        assert server.count("GET") >= 2
        assert fetch_one(sources[0], cfg) == first.paths[sources[0]]
        assert server.count() == requests_after_first
    assert first.downloaded == 2 and not first.failures
    assert second.downloaded == 0 and not second.failures
    assert second.paths == first.paths
    assert second.paths[str(local)] == local


def test_file_that_is_not_a_video_is_deleted(loopback, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with loopback({"/junk.mp4": b"\x00not a video" * 400}) as server:
        url = server.url("/junk.mp4")
        result = fetch_sources([url], cfg)
    assert _failure_reasons(result) == {url: "downloaded file is not a readable video"}
    assert cached_path(url, cfg) is None
    leftovers = [p for p in (tmp_path / "videos").rglob(f"{url_stem(url)}*")]
    assert leftovers == []
    assert not (tmp_path / "videos" / ARCHIVE_FILE).exists()


def test_archived_but_deleted_file_is_fetched_again(loopback, tmp_path: Path, tiny_mp4: bytes) -> None:
    cfg = _config(tmp_path)
    with loopback({"/v.mp4": tiny_mp4}) as server:
        url = server.url("/v.mp4")
        first = fetch_sources([url], cfg)
        first.paths[url].unlink()
        again = fetch_sources([url], cfg)
    assert again.downloaded == 1 and not again.failures
    assert again.paths[url].is_file()


def test_same_file_name_under_different_urls(loopback, tmp_path: Path, tiny_mp4: bytes) -> None:
    cfg = _config(tmp_path)
    with loopback({"/a/clip.mp4": tiny_mp4, "/b/clip.mp4": tiny_mp4}) as server:
        urls = [server.url("/a/clip.mp4"), server.url("/b/clip.mp4")]
        result = fetch_sources(urls, cfg)
    assert result.downloaded == 2 and not result.failures
    assert result.paths[urls[0]] != result.paths[urls[1]]


# --------------------------------------------------------------------------- rejected sources

@pytest.mark.parametrize("source", ["-o/etc/x", "file:///etc/passwd", "ftp://127.0.0.1/x.mp4",
                                    "--exec=touch /tmp/x", "javascript:alert(1)"])
def test_non_http_sources_never_reach_ytdlp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            source: str) -> None:
    import yt_dlp

    def forbidden(*args, **kwargs):
        raise AssertionError("yt-dlp must not be called")

    monkeypatch.setattr(yt_dlp, "YoutubeDL", forbidden)
    cfg = _config(tmp_path)
    result = fetch_sources([source], cfg)
    assert _failure_reasons(result) == {source: "not an http(s) URL"}
    assert result.paths == {} and result.downloaded == 0
    with pytest.raises(OmgclipError, match="not an http"):
        fetch_one(source, cfg)


def test_local_sources_are_used_in_place(tmp_path: Path, tiny_mp4: bytes) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(tiny_mp4)
    frames = [tmp_path / f"f{i}.png" for i in range(2)]
    for f in frames:
        f.write_bytes(b"png")
    frame_list = ";".join(str(f) for f in frames)
    missing = str(tmp_path / "nope.mp4")
    result = fetch_sources([str(video), frame_list, missing], _config(tmp_path))
    assert result.paths == {str(video): video, frame_list: Path(frame_list)}
    assert _failure_reasons(result) == {missing: f"file not found: {missing}"}
    assert result.downloaded == 0
    assert not (tmp_path / "videos").exists()  # nothing copied


# --------------------------------------------------------------------------- options and messages

def test_ytdlp_options(tmp_path: Path) -> None:
    cfg = DownloadConfig(out_dir=str(tmp_path / "v"), retries=5, sleep_interval=1.0,
                         max_sleep_interval=3.0, rate_limit="2M", progress=False)
    params = _ytdlp_params("https://example.com/watch?v=x", cfg, use_archive=True)
    assert params["download_archive"] == str(tmp_path / "v" / ARCHIVE_FILE)
    assert params["retries"] == params["fragment_retries"] == 5
    assert params["noplaylist"] and params["quiet"] and params["no_warnings"] and params["noprogress"]
    assert params["sleep_interval"] == 1.0 and params["max_sleep_interval"] == 3.0
    assert params["ratelimit"] == 2 * 1024 * 1024
    assert params["outtmpl"]["default"].startswith(url_stem("https://example.com/watch?v=x"))
    assert callable(params["progress_hooks"][0]) and hasattr(params["logger"], "error")
    assert "+" not in DEFAULT_FORMAT  # never needs ffmpeg to merge streams
    with pytest.raises(OmgclipError, match="rate limit"):
        _ytdlp_params("https://example.com/x", DownloadConfig(str(tmp_path), rate_limit="fast"),
                      use_archive=True)


@pytest.mark.parametrize("message, expected", [
    ("ERROR: [generic] clip: Unable to download webpage: HTTP Error 404: Not Found "
     "(caused by <HTTPError 404: Not Found>)", "Unable to download webpage: HTTP Error 404: Not Found"),
    ("\x1b[0;31mERROR:\x1b[0m [youtube] abc: Video unavailable\nTraceback ...", "Video unavailable"),
    ("ERROR: \r[download] Got error: Downloaded 5 bytes, expected 9 bytes. Giving up after 1 retries",
     "Downloaded 5 bytes, expected 9 bytes. Giving up after 1 retries"),
])
def test_one_line_reason(message: str, expected: str) -> None:
    assert _ytdlp_message(message) == expected


def test_cached_path_ignores_work_files(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    url = "https://example.com/v.mp4"
    out = Path(cfg.out_dir)
    (out / ".partial").mkdir(parents=True)
    (out / ".partial" / f"{url_stem(url)}.mp4").write_bytes(b"x")
    (out / f"{url_stem(url)}.mp4.part").write_bytes(b"x")
    (out / f"{url_stem(url)}.mp4.ytdl").write_bytes(b"x")
    assert cached_path(url, cfg) is None
    (out / f"{url_stem(url)}.mp4").write_bytes(b"x")
    assert cached_path(url, cfg) == out / f"{url_stem(url)}.mp4"
    shutil.rmtree(out)
    assert cached_path(url, cfg) is None
