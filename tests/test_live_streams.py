"""``omgclip live`` on real streams, run as a user runs it (the CLI, its own process): a clip
served over HTTP on 127.0.0.1, and an H.264 RTSP stream that ffmpeg publishes on loopback,
cut once (a reconnect) and then gone for good (a bounded end)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _browser import need_ffmpeg
from _rtsp import rtsp_stream
from omgclip.labels import EMOTIONS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _live(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "omgclip", "-q", "live", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_live_over_http(mead_video, loopback, tmp_path):
    """An mp4 streamed over HTTP, as web servers and cameras send one: its index first
    (``-movflags +faststart``), so it plays while it arrives."""
    from omgclip.apps.annotate import find_ffmpeg

    ffmpeg = find_ffmpeg() or pytest.skip("no ffmpeg (imageio-ffmpeg ships one)")
    streamable = tmp_path / "clip.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(mead_video), "-c", "copy",
                    "-movflags", "+faststart", str(streamable)], check=True, timeout=60)
    with loopback({"/clip.mp4": streamable.read_bytes()}) as server:
        proc = _live(server.url("/clip.mp4"), "--headless", "--out", "-")
    assert proc.returncode == 0, proc.stderr
    assert "ended: end of stream" in proc.stderr and "0 reconnects" in proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]  # JSON lines on stdout
    # 94 frames played at 25 fps; a label every 10 processed frames once 20 are in the window
    assert 4 <= len(rows) <= 8
    assert all(r["label"] in EMOTIONS and r["track_id"] == 0 for r in rows)
    frames = [r["frame"] for r in rows]
    assert frames == sorted(frames) and frames[0] >= 19 and frames[-1] <= 93
    assert all(r["stream_s"] == pytest.approx(r["frame"] / 25.0, abs=1e-3) for r in rows)
    assert max(r["latency_s"] for r in rows) < 1.0


def test_live_over_rtsp_reconnects_then_ends(mead_video, tmp_path):
    ffmpeg = need_ffmpeg()
    out = tmp_path / "rows.csv"
    with rtsp_stream(ffmpeg, mead_video, tmp_path, loops=-1) as relay:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "omgclip", "-q", "live", relay.url, "--headless", "--out", str(out),
             "--reconnect", "2", "--reconnect-delay", "0.3", "--timeout", "3"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        part = tmp_path / ".rows.csv.part"
        _wait_for_lines(part, 3, 60)
        relay.drop_clients()  # the network drops the stream once: live reconnects
        before = part.read_text().count("\n")
        _wait_for_lines(part, before + 3, 30)
        relay.stop()  # the camera is gone for good
        t_gone = time.monotonic()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert time.monotonic() - t_gone < 30  # bounded: 2 tries, 3 s timeouts
    assert "ended: stream lost (2 reconnect tries failed)" in err
    reconnects = int(re.search(r"(\d+) reconnects", err).group(1))
    assert reconnects >= 3  # one that worked after the cut, then the 2 that failed
    import pandas as pd

    rows = pd.read_csv(out)
    assert len(rows) >= before + 2
    assert set(rows["label"]) <= set(EMOTIONS)
    assert rows["stream_s"].is_monotonic_increasing and rows["latency_s"].max() < 1.0


def _wait_for_lines(path: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path.name}: fewer than {n} lines after {timeout} s")
