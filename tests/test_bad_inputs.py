"""Bad inputs to predict and the decoder: one clear line, no C-library noise, no traceback."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _procs import unprivileged
from omgclip.errors import VideoError

ROOT = Path(__file__).resolve().parents[1]
# libav reads its log level at the process's first capture or writer; these tests may make
# one before omgclip does (see omgclip.faces.video_io._cv2).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _cli(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "omgclip", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def _assert_one_line(proc: subprocess.CompletedProcess, needle: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("omgclip: error: ") and needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("pictures")
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for suffix in ("png", "jpg"):
        cv2.imwrite(str(folder / f"ok.{suffix}"), img)
        data = (folder / f"ok.{suffix}").read_bytes()
        (folder / f"cut.{suffix}").write_bytes(data[: len(data) // 2])
    return folder


def test_truncated_png_is_one_error_without_libpng_noise(pictures, capfd):
    from omgclip.faces.video_io import probe

    with pytest.raises(VideoError, match=r"not a readable image \(libpng error"):
        probe(pictures / "cut.png")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_truncated_jpeg_decodes_in_part_with_one_warning_instead_of_libjpeg_lines(
        pictures, capfd, caplog):
    from omgclip.faces.video_io import iter_gray_frames, probe

    with caplog.at_level(logging.WARNING, logger="omgclip"):
        info = probe(pictures / "cut.jpg")
        frames = list(iter_gray_frames(pictures / "cut.jpg"))
    assert (info.width, info.height) == (160, 120) and len(frames) == 1
    assert capfd.readouterr().err == ""
    damage = [r for r in caplog.records if "decodes only in part" in r.getMessage()]
    assert len(damage) == 1 and "JPEG" in damage[0].getMessage()


@pytest.mark.parametrize("name", ["ok.png", "noise.mp4"])
def test_unreadable_input_says_permission_denied(name, pictures, tmp_path):
    src = tmp_path / name
    if name.endswith(".mp4"):
        src.write_bytes(b"\x00" * 4096)  # content does not matter: it cannot be opened
    else:
        shutil.copy(pictures / name, src)
    src.chmod(0)
    proc = _cli("predict", "--no-progress", str(src), prefix=unprivileged())
    _assert_one_line(proc, "permission denied")


def test_libav_lines_go_into_the_error_even_when_cv2_was_set_up_first(tmp_path):
    """Another library may have made the process's first capture before omgclip could set
    libav's log level; probe still keeps libav's "moov atom not found" off stderr."""
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    (tmp_path / "notes.mp4").write_text("this is text, not a video\n" * 50)
    code = ("import sys, cv2\ncv2.VideoCapture(sys.argv[2]).release()\n"
            "from omgclip.faces.video_io import probe\n"
            "try:\n    probe(sys.argv[1])\nexcept Exception as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "notes.mp4"),
                           str(tmp_path / "absent.mp4")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.stderr == "" and "not a readable video (moov atom not found)" in proc.stdout, proc
