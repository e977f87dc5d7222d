"""``omgclip live``: the rolling-window labeler on real footage, the capture thread's frame
dropping and bounded reconnects, row files that are complete however the run ends."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from omgclip.errors import OmgclipError
from omgclip.labels import EMOTIONS

ROOT = Path(__file__).resolve().parents[1]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_rows(rows: list[dict]) -> None:
    for r in rows:
        assert r["label"] in EMOTIONS
        probs = [r[f"p_{n}"] for n in EMOTIONS]
        assert math.isclose(sum(probs), 1.0, abs_tol=1e-4)
        assert r["confidence"] == pytest.approx(max(probs), abs=1e-6)
        assert r["label"] == EMOTIONS[int(np.argmax(probs))]
        assert r["x1"] > r["x0"] and r["y1"] > r["y0"]
        assert 0 <= r["latency_s"] < 5
        assert r["wall_time"].endswith("Z")


# --------------------------------------------------------------------------- real footage
def test_live_file_labels_every_hop_frames(mead_video, tmp_path):
    from omgclip.apps.live import LiveConfig, run_live

    out = tmp_path / "rows.jsonl"
    summary = run_live(LiveConfig(str(mead_video), headless=True, out=str(out), pace=False, hop=10))
    rows = _read_jsonl(out)
    # 94 frames, one face found from frame 0: windows end at frames 19, 29, ..., 89
    assert [r["frame"] for r in rows] == list(range(19, 94, 10))
    assert {r["track_id"] for r in rows} == {0}
    assert [r["stream_s"] for r in rows] == [pytest.approx(f / 25.0) for f in range(19, 94, 10)]
    _check_rows(rows)
    assert summary.ended == "end of stream" and summary.frames_read == 94
    assert summary.frames_dropped == 0 and summary.rows == len(rows)
    assert not list(tmp_path.glob(".*part"))  # renamed into place


def test_live_smoothing_and_csv(mead_video, tmp_path):
    import pandas as pd

    from omgclip.apps.live import LiveConfig, run_live

    raw, smooth = tmp_path / "raw.csv", tmp_path / "smooth.csv"
    run_live(LiveConfig(str(mead_video), headless=True, out=str(raw), pace=False, hop=5))
    run_live(LiveConfig(str(mead_video), headless=True, out=str(smooth), pace=False, hop=5, smooth=3))
    a, b = pd.read_csv(raw), pd.read_csv(smooth)
    assert len(a) == len(b) == len(range(19, 94, 5))
    cols = [f"p_{n}" for n in EMOTIONS]
    expect = a[cols].rolling(3, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(b[cols].to_numpy(), expect, atol=1e-5)


def test_live_person_ids_across_cuts(shared_data, tmp_path, write_video):
    """Three shots: M030, then W009, then M030 again. Each shot starts new tracks; the
    person ids say who is who (M030 gets his id back), decided as the stream goes."""
    from omgclip.apps.live import LiveConfig, run_live
    from omgclip.faces.video_io import iter_bgr_frames

    videos = shared_data / "mead_clips" / "videos"
    shots = ["M030_front_happy_level3_001.mp4", "W009_front_happy_level3_001.mp4",
             "M030_front_sad_level3_001.mp4"]
    frames, starts = [], []
    for name in shots:
        starts.append(len(frames))
        frames += [f for _, f in iter_bgr_frames(videos / name)]
    montage = write_video(tmp_path / "montage.mp4", frames, fps=25)
    out = tmp_path / "rows.jsonl"
    run_live(LiveConfig(str(montage), headless=True, out=str(out), pace=False, hop=10))
    rows = _read_jsonl(out)
    shot_of = lambda r: sum(r["frame"] >= s for s in starts) - 1  # noqa: E731
    tracks = {shot_of(r): set() for r in rows}
    persons = {shot_of(r): set() for r in rows}
    for r in rows:
        tracks[shot_of(r)].add(r["track_id"])
        persons[shot_of(r)].add(r["person_id"])
    assert sorted(tracks) == [0, 1, 2]
    assert not (tracks[0] & tracks[1]) and not (tracks[1] & tracks[2])  # cuts end tracks
    assert persons == {0: {0}, 1: {1}, 2: {0}}


def test_live_paced_duration_stops_and_counts(mead_video, tmp_path):
    from omgclip.apps.live import LiveConfig, run_live

    out = tmp_path / "rows.csv"
    t0 = time.monotonic()
    summary = run_live(LiveConfig(str(mead_video), headless=True, out=str(out), duration=1.5))
    assert time.monotonic() - t0 < 8
    assert summary.ended.startswith("duration")
    # paced at 25 fps: about 1.5 s of the clip was read, not all 94 frames at once
    assert 20 <= summary.frames_read <= 60
    assert summary.frames_processed + summary.frames_dropped >= summary.frames_read - 2
    assert out.read_text().startswith("wall_time,stream_s,frame,track_id,person_id,label")


def test_live_ctrl_c_flushes_complete_file(mead_video, tmp_path):
    """A real process, interrupted while it runs: the rows file is complete, exit 0."""
    out = tmp_path / "rows.jsonl"
    code = ("import sys; from omgclip.apps.live import LiveConfig, run_live; "
            "s = run_live(LiveConfig(sys.argv[1], headless=True, out=sys.argv[2], hop=2)); "
            "print(s.line(), file=sys.stderr)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, str(mead_video), str(out)], env=env,
                            stderr=subprocess.PIPE, text=True)
    part = tmp_path / ".rows.jsonl.part"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (part.exists() and part.read_text().count("\n") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "ended: interrupted" in err
    rows = _read_jsonl(out)
    assert len(rows) >= 2 and not part.exists()
    _check_rows(rows)


# --------------------------------------------------------------------------- capture thread
class _FakeCapture:
    """A capture that yields ``n`` frames as fast as asked, then fails."""

    def __init__(self, n: int, fps: float = 0.0, count: int = 0):
        self.n, self.i, self.fps, self.count = n, 0, fps, count

    def read(self):
        if self.i >= self.n:
            return False, None
        self.i += 1
        return True, np.full((4, 4, 3), self.i % 256, np.uint8)

    def get(self, prop):
        return {5: self.fps, 7: self.count}.get(prop, 0.0)

    def release(self):
        pass


def test_source_drops_oldest_frames_when_processing_is_slow():
    """Unit test with a scripted camera: a slow consumer sees recent frames, the rest are
    counted as dropped (the real drop path runs in test_live_paced_duration_stops_and_counts)."""
    from omgclip.apps.live_source import FrameSource

    caps = iter([_FakeCapture(200)])
    src = FrameSource("0", buffer=2, reconnect=0, opener=lambda target: next(caps, None)).start()
    got = []
    while True:
        frame = src.get(timeout=1.0)
        if frame is None and src.ended:
            break
        if frame is not None:
            got.append(frame.index)
            time.sleep(0.01)
    src.stop()
    assert src.stats.read == 200
    assert src.stats.dropped == 200 - len(got) > 0
    assert got == sorted(got) and got[-1] == 199  # in order, and the newest is never lost
    assert src.stats.ended.startswith("stream lost")


def test_source_reconnects_a_bounded_number_of_times():
    from omgclip.apps.live_source import FrameSource

    opened = []

    def opener(target):
        opened.append(time.monotonic())
        return _FakeCapture(5) if len(opened) <= 2 else None  # first open + one reconnect work

    t0 = time.monotonic()
    src = FrameSource("rtsp://127.0.0.1:9/x", buffer=100, reconnect=3, reconnect_delay=0.05,
                      opener=opener).start()
    frames = []
    while not src.ended:
        f = src.get(timeout=0.5)
        if f is not None:
            frames.append(f)
    src.stop()
    assert len(frames) == 10 and len(opened) == 1 + 1 + 3
    assert src.stats.reconnects == 4  # 1 that worked, then 3 that failed
    assert src.stats.ended == "stream lost (3 reconnect tries failed)"
    assert time.monotonic() - t0 < 5


def test_file_with_known_length_ends_without_reconnecting():
    from omgclip.apps.live_source import FrameSource

    calls = []
    src = FrameSource("http://127.0.0.1:9/a.mp4", reconnect=5, buffer=100,
                      opener=lambda t: calls.append(t) or _FakeCapture(7, fps=25, count=7)).start()
    n = 0
    while not src.ended:
        n += src.get(timeout=0.5) is not None
    src.stop()
    assert n == 7 and len(calls) == 1 and src.stats.ended == "end of stream"


# --------------------------------------------------------------------------- errors, drawing
@pytest.mark.parametrize("kwargs, message", [
    (dict(hop=0), "--hop must be at least 1"),
    (dict(smooth=-1), "--smooth"),
    (dict(duration=0), "--duration"),
    (dict(out="rows.txt"), "--out must end in .jsonl or .csv"),
    (dict(out="/no/such/folder/rows.csv"), "does not exist"),
    (dict(buffer=0), "--buffer"),
])
def test_live_config_errors(kwargs, message):
    from omgclip.apps.live import LiveConfig

    with pytest.raises(OmgclipError, match=message):
        LiveConfig("0", **kwargs)


@pytest.mark.parametrize("source, message", [
    ("/no/such/video.mp4", "no such video file"),
    ("ftp://example.org/x.mp4", "unsupported source"),
])
def test_live_source_errors(source, message):
    from omgclip.apps.live_source import parse_source

    with pytest.raises(OmgclipError, match=message):
        parse_source(source)


def test_unopenable_stream_is_one_line_error():
    from omgclip.apps.live_source import FrameSource

    with pytest.raises(OmgclipError, match="cannot open"):
        FrameSource("rtsp://127.0.0.1:9/x", opener=lambda t: None).start()


def test_draw_live_marks_faces_and_fps():
    from omgclip.apps.live import LiveFace
    from omgclip.apps.live_io import draw_live

    frame = np.zeros((120, 160, 3), np.uint8)
    draw_live(frame, [LiveFace(3, (40, 30, 100, 90), "happy", 0.9, 20)], fps=25)
    assert frame[30, 60:80].any() and frame[5:25, 5:60].any()  # box edge, fps text


@pytest.mark.parametrize("source", ["rtsp://127.0.0.1:{port}/x", "http://127.0.0.1:{port}/x.mp4"])
def test_cli_dead_stream_is_one_line_error(source):
    """Nothing listens there: one line on stderr, exit 2, nothing else."""
    from _browser import free_port

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "omgclip", "live", source.format(port=free_port()),
                           "--headless", "--timeout", "3"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("omgclip: error: ")
    assert "cannot open" in proc.stderr and proc.stdout == ""


# --------------------------------------------------------------------------- webcam index
class _ClipCamera:
    """A webcam stand-in for a unit test: the clip's real frames, endlessly, at 25 fps, with
    what a webcam reports (its fps, no frame count)."""

    def __init__(self, clip: Path):
        from omgclip.faces.video_io import iter_bgr_frames

        self.frames = [frame for _, frame in iter_bgr_frames(clip)]
        self.i, self.t0 = 0, None

    def read(self):
        self.t0 = self.t0 or time.monotonic()  # its clock starts at the first read
        time.sleep(max(0.0, self.t0 + self.i / 25 - time.monotonic()))
        self.i += 1
        return True, self.frames[(self.i - 1) % len(self.frames)].copy()

    def get(self, prop):
        return {5: 25.0}.get(prop, 0.0)

    def release(self):
        pass


def test_live_camera_index_opens_that_camera_and_labels(mead_video, tmp_path, monkeypatch):
    """``live 0``: camera 0 is opened by its index (an int, as OpenCV wants), read as an
    endless source, and labeled until --duration. The camera itself is a stand-in (this
    machine has none); the next test runs OpenCV's real camera open."""
    from omgclip.apps.live import LiveConfig, run_live
    from omgclip.faces import video_io

    opened = []
    monkeypatch.setattr(video_io, "open_capture",
                        lambda source, **kw: opened.append(source) or _ClipCamera(mead_video))
    out = tmp_path / "rows.jsonl"
    # The buffer holds every frame the stand-in can deliver in 4 s (100), so a busy CPU makes
    # the run label fewer windows but never drops a frame: the frame steps are exactly the hop.
    # (Dropping under load: test_source_drops_oldest_frames_when_processing_is_slow.)
    summary = run_live(LiveConfig("0", headless=True, out=str(out), duration=4, buffer=200))
    assert opened == [0]
    assert summary.ended == "duration 4 s reached" and summary.reconnects == 0
    assert summary.frames_dropped == 0 and 20 <= summary.frames_read <= 110  # 25 fps, 4 s and its ends
    rows = _read_jsonl(out)
    assert 3 <= len(rows) <= 10
    _check_rows(rows)
    assert [r["frame"] for r in rows] == list(range(rows[0]["frame"], rows[0]["frame"] + 10 * len(rows), 10))


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="this machine has a camera 0")
def test_cli_missing_camera_is_one_line_error():
    """OpenCV's real camera open, on a machine with no camera: one line, exit 2, in seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "omgclip", "live", "0", "--headless"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["omgclip: error: 0: cannot open (no such camera, not a video, or the "
                                        "stream does not answer)"]
    assert proc.stdout == "" and time.monotonic() - t0 < 30
