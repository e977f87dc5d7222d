"""Interrupted runs leave nothing behind: temporary files live beside their outputs (never in
/tmp), Ctrl-C and SIGTERM remove them, and the next run removes what ``kill -9`` left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _procs import wait_for

ROOT = Path(__file__).resolve().parents[1]
# libav reads its log level at the process's first capture or writer; these tests may make
# one before omgclip does (see omgclip.faces.video_io._cv2).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

_ANNOTATE = """
import sys
from omgclip.apps.annotate import write_annotated_video
write_annotated_video(sys.argv[1], sys.argv[2], {}, fps=25.0)
"""


def _synthetic_video(path: Path, frames: int = 300, size=(240, 320)) -> Path:
    """A faceless video that is cheap to encode: a grey field with a moving square."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size[::-1])
    for i in range(frames):
        frame = np.full((*size, 3), 90, np.uint8)
        x = (3 * i) % (size[1] - 40)
        frame[100:140, x:x + 40] = (40, 200, 240)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def noise_video(tmp_path_factory) -> Path:
    return _synthetic_video(tmp_path_factory.mktemp("src") / "noise.mp4")


def test_annotate_keeps_its_intermediate_beside_the_output_and_the_next_run_sweeps_it(
        noise_video, tmp_path):
    from omgclip.apps.annotate import write_annotated_video
    from omgclip.faces.video_io import count_frames

    out, systmp = tmp_path / "out", tmp_path / "systmp"
    out.mkdir()
    systmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(systmp)}
    proc = subprocess.Popen([sys.executable, "-c", _ANNOTATE, str(noise_video), str(out / "a.mp4")],
                            env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(out.iterdir()) or any(systmp.iterdir()), timeout=120)
        time.sleep(0.05)
    finally:
        proc.kill()  # kill -9: no clean-up code runs
        proc.communicate(timeout=60)
    assert list(systmp.iterdir()) == [], "annotation wrote temporary files into /tmp"
    left = [p.name for p in out.iterdir()]
    assert left and all(n.startswith(".a.mp4.omgclip-") for n in left), left
    write_annotated_video(noise_video, out / "a.mp4", {}, fps=25.0)  # the next run
    assert [p.name for p in out.iterdir()] == ["a.mp4"]
    assert count_frames(out / "a.mp4") == count_frames(noise_video)


def _predict_annotate(src: Path, out: Path, systmp: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(systmp), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "omgclip", "predict", "--no-progress",
                             "--annotate", str(out / "a.mp4"), str(src)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _ours(folder: Path) -> list[Path]:
    """What omgclip left in a folder; torch's own inductor cache folder (made when the
    checkpoint is first built on the meta device) is torch's, not a temporary file."""
    return [p for p in folder.iterdir() if not p.name.startswith("torchinductor_")]


def _annotating(out: Path):
    return [p for p in out.iterdir() if p.name.startswith(".a.mp4.omgclip-")]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_predict_annotate_interrupted_leaves_nothing(sig, code, word, noise_video, tmp_path):
    out, systmp = tmp_path / "out", tmp_path / "systmp"
    out.mkdir()
    systmp.mkdir()
    proc = _predict_annotate(noise_video, out, systmp)
    try:
        wait_for(lambda: [p for p in _annotating(out) if p.suffix == ".mp4"], timeout=120)
    finally:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"omgclip: {word}" and "Traceback" not in err
    assert list(out.iterdir()) == [] and _ours(systmp) == []


def test_predict_annotate_after_kill_9_the_next_run_cleans_up(noise_video, tmp_path):
    out, systmp = tmp_path / "out", tmp_path / "systmp"
    out.mkdir()
    systmp.mkdir()
    proc = _predict_annotate(noise_video, out, systmp)
    try:
        wait_for(lambda: [p for p in _annotating(out) if p.suffix == ".mp4"], timeout=120)
    finally:
        proc.kill()
        proc.communicate(timeout=120)
    assert _annotating(out) and _ours(systmp) == []
    proc = _predict_annotate(noise_video, out, systmp)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert [p.name for p in out.iterdir()] == ["a.mp4"] and _ours(systmp) == []
