"""``omgclip live`` with its OpenCV window, as a person at a screen uses it: the real CLI in its
own process on a virtual X display (Debian's Xvfb), the window found and screenshotted from
outside (xdotool, ffmpeg's x11grab), then closed with the q key; and the one-line errors
where no window can open (no display, a display that does not answer)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _browser import need_ffmpeg
from _procs import stop, wait_for
from omgclip.labels import EMOTIONS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture()
def xdisplay():
    """A virtual X display (``:N``), its number chosen by Xvfb itself; stopped afterwards."""
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb or xdotool is not installed (apt-get install xvfb xdotool; .ci/run does)")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    try:
        yield f":{number}"
    finally:
        stop(proc, 10)


def _xdotool(display: str, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True, timeout=timeout)


def _screenshot(ffmpeg: str, display: str, out: Path) -> np.ndarray:
    import cv2

    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "x11grab", "-video_size", "1024x768", "-i", display,
                    "-frames:v", "1", str(out)], check=True, timeout=30)
    return cv2.imread(str(out))


def _label_colour_pixels(image: np.ndarray) -> int:
    """How many pixels have (within 6 levels) the exact colour of one of the emotions' boxes
    and tags: the most of any one emotion."""
    from omgclip.apps.annotate import emotion_bgr

    img = image.astype(np.int16)
    return max(int((np.abs(img - np.array(emotion_bgr(e), np.int16)).max(axis=2) <= 6).sum()) for e in EMOTIONS)


def test_live_window_shows_labels_and_closes_on_q(mead_video, xdisplay, tmp_path):
    import cv2

    ffmpeg = need_ffmpeg()
    looped = tmp_path / "looped.mp4"  # 4 x 94 frames = 15 s at 25 fps: still playing when q is pressed
    subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", "3", "-i", str(mead_video), "-c", "copy",
                    str(looped)], check=True, timeout=60)
    rows_file = tmp_path / "rows.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "omgclip", "-q", "live", str(looped), "--out", str(rows_file)],
                            env=_env(DISPLAY=xdisplay), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = _xdotool(xdisplay, "search", "--sync", "--onlyvisible", "--name", "omgclip live", timeout=90)
        assert found.returncode == 0 and found.stdout.split(), f"no window appeared: {found.stderr}"
        # a label comes out once the face's 20-frame window is full: look at the screen until
        # its box and tag are drawn (the rows file appears only at the end, complete)
        shots = []
        wait_for(lambda: _label_colour_pixels(shots.append(_screenshot(ffmpeg, xdisplay, tmp_path / "screen.png"))
                                              or shots[-1]) > 1000, 60)
        shot = shots[-1]
        assert not rows_file.exists()
        pressed = _xdotool(xdisplay, "search", "--onlyvisible", "--name", "omgclip live", "windowfocus", "--sync", "key", "q")
        assert pressed.returncode == 0, pressed.stderr
        _, stderr = proc.communicate(timeout=60)
    finally:
        stop(proc, 10)
    assert proc.returncode == 0, stderr
    assert "ended: window closed" in stderr
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert rows and all(r["label"] in EMOTIONS and r["track_id"] == 0 for r in rows)
    assert rows[-1]["frame"] < 4 * 94 - 20, "q did not end the run before the video did"
    # the window is on the screen, showing the video with a box and label tag drawn on it
    cap = cv2.VideoCapture(str(mead_video))
    ok, first = cap.read()
    cap.release()
    assert ok
    assert (shot.max(axis=2) > 30).sum() > 0.8 * first.shape[0] * first.shape[1], "no video in the window"
    assert _label_colour_pixels(shot) > 1000 > 200 > _label_colour_pixels(first)


def test_live_without_a_display_is_one_line_error(mead_video):
    proc = subprocess.run([sys.executable, "-m", "omgclip", "live", str(mead_video)], env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "omgclip: error: cannot open a window here (no display: DISPLAY is not set): use --headless "
        "--out rows.jsonl, or run it where there is a display"]


def test_live_with_a_dead_display_is_one_line_error(mead_video, xdisplay):
    """DISPLAY names a display that is not there: OpenCV's Qt build would abort the process
    (no exception to catch); live probes first and says so in one line."""
    dead = f":{int(xdisplay[1:]) + 50}"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "omgclip", "live", str(mead_video)], env=_env(DISPLAY=dead),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"omgclip: error: cannot open a window here (cannot connect to display '{dead}'): use --headless "
        f"--out rows.jsonl, or run it where there is a display"]
    assert time.monotonic() - t0 < 60
