"""build-dataset's own logic on small generated videos (no real data, a few seconds):
strides, resume, splits by link, config refusal, temp clean-up.

The manifests mark the videos ``crop=none`` (sources that are already face crops), so no
face detection runs (except the minimum-detections test, which pastes one real face frame
from ../shared); the face path on real footage is in test_build.py and test_face.py.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omgclip.dataset import format as fmt
from omgclip.dataset.build import BuildConfig, build_dataset
from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceConfig

FPS = 25.0
FRAMES = 100  # 4 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory, write_video) -> Path:
    """A 100-frame 64x64 video whose brightness encodes the frame number."""
    path = tmp_path_factory.mktemp("synthetic") / "clip.mp4"
    return write_video(path, [np.full((64, 64, 3), 2 * i, np.uint8) for i in range(FRAMES)], fps=FPS)


def _manifest(path: Path, clip: Path, rows: list[tuple]) -> Path:
    """rows: (label, group[, start, end]); every row takes the whole clip by default."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "start", "end", "label", "group", "id", "crop"])
        for i, (label, group, *span) in enumerate(rows):
            start, end = span or ("", "")
            w.writerow([clip, start, end, label, group, f"u{i:02d}", "none"])
    return path


def _build(tmp_path: Path, manifest: Path, **kw):
    cfg = BuildConfig(manifests=(str(manifest),), out=str(tmp_path / "ds"), progress=False, **kw)
    return build_dataset(cfg), pd.read_csv(tmp_path / "ds" / fmt.INDEX_FILE)


def _starts(index: pd.DataFrame, utterance_id: str) -> list[int]:
    rows = index[index.block_id.str.contains(f"/{utterance_id}/")]
    return sorted(rows.start_frame.tolist())


def test_strides_per_class_default_rare_and_explicit(tmp_path, clip):
    m = _manifest(tmp_path / "m.csv", clip, [("happy", "a"), ("fear", "b"), ("disgust", "c")])
    _, index = _build(tmp_path, m)
    assert _starts(index, "u00") == [0, 20, 40, 60, 80]               # common stride 20
    assert _starts(index, "u01") == list(range(0, 81, 10))             # rare: half the stride
    _, index = _build(tmp_path / "explicit", m, rare_strides={2: 40, 1: 30})
    assert _starts(index, "u00") == [0, 20, 40, 60, 80]
    assert _starts(index, "u01") == [0, 40, 80]
    assert _starts(index, "u02") == [0, 30, 60]
    report = json.loads((tmp_path / "explicit" / "ds" / fmt.REPORT_FILE).read_text())
    assert report["strides"] == {"disgust": 30, "fear": 40}


def test_auto_strides_follow_the_class_frequencies(tmp_path, clip):
    rows = [("happy", f"h{i}") for i in range(4)] + [("sad", "s0"), ("sad", "s1"), ("fear", "f0")]
    m = _manifest(tmp_path / "m.csv", clip, rows)
    _, index = _build(tmp_path, m, auto_strides=True)
    assert _starts(index, "u00") == [0, 20, 40, 60, 80]               # most frequent: 20
    assert _starts(index, "u04") == [0, 10, 20, 30, 40, 50, 60, 70, 80]  # half as frequent: 10
    assert _starts(index, "u06") == list(range(0, 81, 5))              # 4x rarer: 5
    report = json.loads((tmp_path / "ds" / fmt.REPORT_FILE).read_text())
    assert report["strides"] == {"fear": 5, "happy": 20, "sad": 10}


def test_blocks_hold_the_frames_the_index_names(tmp_path, clip):
    m = _manifest(tmp_path / "m.csv", clip, [("happy", "a", 0.4, 2.4)])
    _, index = _build(tmp_path, m, stride=15)
    assert index.start_frame.tolist() == [10, 25, 40]                  # 0.4 s * 25 fps = frame 10
    for row in index.itertuples():
        block = np.load(tmp_path / "ds" / row.path)
        assert block.shape == (20, 80, 80)
        # brightness 2 * frame: consecutive frames, starting at the row's start frame
        means = block.reshape(20, -1).mean(axis=1)
        np.testing.assert_allclose(means, 2 * np.arange(row.start_frame, row.start_frame + 20), atol=3)


def test_a_resumed_run_only_does_the_new_work(tmp_path, clip):
    rows = [("happy", "a"), ("sad", "b")]
    m = _manifest(tmp_path / "m.csv", clip, rows)
    _build(tmp_path, m)
    out = tmp_path / "ds"
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.npy")}
    before_state = {p: p.stat().st_ino for p in (out / fmt.STATE_DIR).rglob("*.json")}
    assert len(before) == 10 and len(before_state) == 2
    _manifest(tmp_path / "m.csv", clip, rows + [("anger", "c")])
    report, index = _build(tmp_path, m)
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.npy")}
    assert {p: after[p] for p in before} == before                      # nothing redone
    assert {p: p.stat().st_ino for p in before_state} == before_state
    assert len(after) == 15 and report.blocks == 15 and len(index) == 15


def test_split_by_link_honours_the_validation_fraction(tmp_path, clip):
    rows = [("happy" if i % 2 else "sad", f"link{i}", 0.0, 1.0) for i in range(10)]
    m = _manifest(tmp_path / "m.csv", clip, rows)
    for fraction, n_val in ((0.3, 3), (0.5, 5), (0.1, 1)):
        _, index = _build(tmp_path / str(fraction), m, split_by="link", val_fraction=fraction)
        sides = index.groupby("group").split.agg(set)
        assert (sides.map(len) == 1).all()
        assert (index.groupby("split").group.nunique().to_dict()
                == {"train": 10 - n_val, "validation": n_val}), fraction
    # another seed picks other links, the same seed the same ones
    _, a = _build(tmp_path / "s1", m, split_by="link", val_fraction=0.3, seed=1)
    _, b = _build(tmp_path / "s1b", m, split_by="link", val_fraction=0.3, seed=1)
    _, c = _build(tmp_path / "s2", m, split_by="link", val_fraction=0.3, seed=2)
    val = [set(x[x.split == "validation"].group) for x in (a, b, c)]
    assert val[0] == val[1] and val[0] != val[2]


@pytest.mark.parametrize("change", [{"stride": 10}, {"block_len": 10}, {"rare_strides": {2: 4}},
                                    {"auto_strides": True}, {"face": FaceConfig(margin=0.3)},
                                    {"face": FaceConfig(detect_every=3)}],
                         ids=["stride", "block_len", "rare_strides", "auto_strides", "face_margin", "face_every"])
def test_a_changed_content_config_is_refused(tmp_path, clip, change):
    m = _manifest(tmp_path / "m.csv", clip, [("happy", "a")])
    _build(tmp_path, m)
    index = (tmp_path / "ds" / fmt.INDEX_FILE).read_bytes()
    with pytest.raises(OmgclipError, match="different") as e:
        _build(tmp_path, m, **change)
    assert list(change)[0] in str(e.value)
    assert (tmp_path / "ds" / fmt.INDEX_FILE).read_bytes() == index
    # what does not change the blocks may change
    _build(tmp_path, m, seed=5, retries=1)


def test_temp_files_of_a_killed_run_are_removed(tmp_path, clip):
    m = _manifest(tmp_path / "m.csv", clip, [("happy", "a")])
    _build(tmp_path, m)
    out = tmp_path / "ds"
    stale = [out / fmt.BLOCKS_DIR / "train" / ".0003.npy.x1.tmp", out / fmt.STATE_DIR / "train" / ".u00.json.x2.tmp"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    _build(tmp_path, m)
    assert not any(p.exists() for p in stale)
    assert not list(out.rglob("*.tmp"))


_KILL_MID_WRITE = """
import os, signal, sys, runpy
import numpy as np
real_save, calls = np.save, [0]
def save(file, arr, *a, **k):
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_AT"]):   # the Nth block: write half of it, then die
        real_save(file, arr[: len(arr) // 2], *a, **k)
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(file, arr, *a, **k)
np.save = save
sys.argv = ["omgclip"] + sys.argv[1:]
runpy.run_module("omgclip", run_name="__main__")
"""


def _snapshot(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / fmt.BLOCKS_DIR).rglob("*")
             if p.is_file()}
    files[fmt.INDEX_FILE] = (out / fmt.INDEX_FILE).read_bytes()
    return files


def test_kill_minus_9_in_the_middle_of_a_block_write(tmp_path, clip):
    import subprocess
    import sys

    m = _manifest(tmp_path / "m.csv", clip, [("happy", "a"), ("fear", "b"), ("sad", "c")])
    argv = ["-q", "build-dataset", "--manifest", str(m), "--no-progress", "--out"]
    subprocess.run([sys.executable, "-m", "omgclip", *argv, str(tmp_path / "clean")], check=True, timeout=120)
    killed = tmp_path / "killed"
    env = {**os.environ, "KILL_AT": "8"}  # utterance 'a' has 5 blocks: die inside 'b'
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_WRITE, *argv, str(killed)], env=env, timeout=120)
    assert proc.returncode == -9
    half = list(killed.rglob(".*.tmp"))
    assert len(half) == 1 and half[0].suffix == ".tmp"        # it died holding a half-written block
    assert not (killed / fmt.INDEX_FILE).exists()
    subprocess.run([sys.executable, "-m", "omgclip", *argv, str(killed)], check=True, timeout=120)
    assert _snapshot(killed) == _snapshot(tmp_path / "clean")
    assert not list(killed.rglob("*.tmp"))


def test_the_command_line_flags_reach_the_build(tmp_path, clip):
    """--rare-stride, --auto-stride, --split-by link and --val-fraction through `omgclip`."""
    from omgclip.cli import main

    rows = [("happy", f"h{i}", 0.0, 2.0) for i in range(6)] + [("fear", "f0", 0.0, 2.0), ("sad", "s0", 0.0, 2.0)]
    m = _manifest(tmp_path / "m.csv", clip, rows)

    def build(name: str, *flags: str) -> pd.DataFrame:
        assert main(["-q", "build-dataset", "--manifest", str(m), "--out", str(tmp_path / name),
                     "--no-progress", *flags]) == 0
        return pd.read_csv(tmp_path / name / fmt.INDEX_FILE)

    index = build("rare", "--rare-stride", "fear=15", "--rare-stride", "sad=6")
    assert _starts(index, "u06") == [0, 15, 30] and _starts(index, "u07") == [0, 6, 12, 18, 24, 30]
    assert _starts(index, "u00") == [0, 20]
    index = build("auto", "--auto-stride")                       # fear and sad 6x rarer: 20 / 6 -> 3
    assert _starts(index, "u06") == list(range(0, 31, 3)) and _starts(index, "u00") == [0, 20]
    index = build("link", "--split-by", "link", "--val-fraction", "0.5")
    assert index.groupby("split").group.nunique().to_dict() == {"train": 4, "validation": 4}


def test_one_link_is_never_split_off_and_the_fraction_is_rounded(tmp_path, clip):
    m = _manifest(tmp_path / "one.csv", clip, [("happy", "only", 0.0, 1.0), ("sad", "only", 1.0, 2.0)])
    _, index = _build(tmp_path / "one", m, split_by="link", val_fraction=0.5)
    assert set(index.split) == {"train"}                       # a single link stays in train
    m = _manifest(tmp_path / "two.csv", clip, [("happy", "x", 0.0, 1.0), ("sad", "y", 1.0, 2.0)])
    _, index = _build(tmp_path / "two", m, split_by="link", val_fraction=0.2)
    assert index.groupby("split").group.nunique().to_dict() == {"train": 1, "validation": 1}  # at least one
    rows = [("happy", f"link{i}", 0.0, 1.0) for i in range(7)]
    m = _manifest(tmp_path / "seven.csv", clip, rows)
    _, index = _build(tmp_path / "seven", m, split_by="link", val_fraction=0.5)
    assert index.groupby("split").group.nunique().to_dict() == {"train": 3, "validation": 4}  # 3.5 -> 4


def test_url_sources_are_downloaded_once_and_a_dead_one_is_recorded(tmp_path, clip, loopback):
    body = clip.read_bytes()
    with loopback({"/v/clip.mp4": body, "/v/one.mp4": body}) as server:
        url, one, dead = server.url("/v/clip.mp4"), server.url("/v/one.mp4"), server.url("/v/gone.mp4")
        with open(tmp_path / "m.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["source", "start", "end", "label", "group", "crop"])
            w.writerow([dead, 0, 2, "anger", "d", "none"])      # first: it must not hide the others
            w.writerow([url, 0, 2, "happy", "a", "none"])
            w.writerow([url, 2, 4, "sad", "a", "none"])
            w.writerow([one, 0, 1, "fear", "b", "none"])
        started = time.monotonic()
        report, index = _build(tmp_path, tmp_path / "m.csv")
        took = time.monotonic() - started
        gets = server.count("GET", "/v/clip.mp4")          # yt-dlp's generic extractor looks first
        _build(tmp_path, tmp_path / "m.csv")
        assert server.count("GET", "/v/clip.mp4") == gets  # a rerun fetches nothing new
    assert report.blocks == len(index) == 5
    assert sorted(index[index.label == 3].start_frame) == [0, 20] and sorted(index[index.label == 5].start_frame) == [50, 70]
    assert index[index.label == 2].start_frame.tolist() == [0]     # 25 frames: one block of 20
    assert len(list((tmp_path / "ds" / "videos").glob("*.mp4"))) == 2
    failures = pd.read_csv(tmp_path / "ds" / fmt.FAILURES_FILE)
    assert failures.source.tolist() == [dead] and "404" in failures.reason.iloc[0]
    assert set(report.task_seconds) == {dead, url, one}
    assert all(0 < v <= took for v in report.task_seconds.values())


def test_an_image_list_becomes_one_stretched_block(tmp_path):
    import cv2

    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.png"
        cv2.imwrite(str(p), np.full((80, 80), 60 * (i + 1), np.uint8))
        paths.append(str(p))
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "start", "end", "label", "group", "crop"])
        w.writerow([";".join(paths), "", "", "fear", "s1", "none"])
    report, index = _build(tmp_path, tmp_path / "m.csv")
    assert report.blocks == 1 and index.label.tolist() == [2]
    block = np.load(tmp_path / "ds" / index.path.iloc[0])
    assert block.shape == (20, 80, 80)
    levels = [int(v) for v in block.reshape(20, -1).mean(axis=1).round()]
    assert levels == sorted(levels) and {levels[0], levels[-1]} == {60, 180} and levels.count(120) >= 6


def test_an_empty_out_folder_is_fine_and_a_damaged_config_is_refused(tmp_path, clip):
    m = _manifest(tmp_path / "m.csv", clip, [("happy", "a")])
    (tmp_path / "ds").mkdir()
    report, _ = _build(tmp_path, m)                                  # existing but empty: fine
    assert report.blocks == 5
    config = tmp_path / "ds" / fmt.CONFIG_FILE
    saved = json.loads(config.read_text())
    del saved["face"]
    config.write_text(json.dumps(saved))
    with pytest.raises(OmgclipError, match="damaged"):
        _build(tmp_path, m)


@pytest.mark.parametrize("min_frac, kept", [(0.5, True), (0.6, False)])
def test_a_block_with_too_few_real_detections_is_skipped_and_counted(tmp_path, write_video, mead_video,
                                                                     min_frac, kept):
    """A real face (dlib) in frames 0-10, then black frames: with key frames every 5, frames
    0-10 are real and 11-19 carried, so block 0 has 11/20 = 0.55 real frames. It is built
    at a minimum of 0.5 and skipped (and counted, with its reason) at 0.6."""
    import cv2

    from omgclip.faces import clips

    cap = cv2.VideoCapture(str(mead_video))
    ok, face = cap.read()
    cap.release()
    assert ok
    frames = [face if i <= 10 else np.zeros_like(face) for i in range(40)]
    video = write_video(tmp_path / "cut.mp4", frames, fps=FPS)
    m = tmp_path / "m.csv"
    plain = write_video(tmp_path / "plain.mp4", frames, fps=FPS)
    # u01 (another file, whole frames, no detection) keeps the build from having no block at all
    m.write_text("source,start,end,label,group,id,crop\n"
                 f"{video},,,happy,a,u00,detect\n{plain},,,sad,b,u01,none\n")
    face_cfg = FaceConfig(detect_every=5, max_gap=10, min_detect_frac=min_frac)
    report, index = _build(tmp_path, m, face=face_cfg)
    skips = pd.read_csv(tmp_path / "ds" / fmt.SKIPS_FILE)
    block0 = skips[skips["where"].str.endswith("/u00@0")]
    u00 = index[index.block_id.str.contains("/u00/")]
    assert _starts(index, "u01") and report.blocks == len(index)
    if kept:
        assert u00.start_frame.tolist() == [0] and u00.detect_frac.tolist() == [pytest.approx(0.55)]
        assert block0.empty
    else:
        assert u00.empty
        assert block0["reason"].tolist() == [clips.FEW_DETECTIONS]
        assert report.skips_by_reason.get(clips.FEW_DETECTIONS) == 1
