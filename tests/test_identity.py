"""Person ids: shot cuts end tracks, dlib descriptors group tracks into persons, known
people are named. Real footage (montages of shared clips with hard cuts) beside small
synthetic unit checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _montage import Part, make_montage, person_at
from omgclip.dataset.segment import Block
from omgclip.errors import OmgclipError
from omgclip.faces import clips, video_io
from omgclip.faces.cuts import CutConfig, CutDetector
from omgclip.faces.detect import FaceBox, FaceConfig, FaceDetector
from omgclip.faces.identity import FaceEncoder, Gallery, PersonTracker, group_tracks
from omgclip.faces.tracking import FaceTracker


def _mead(shared_data, name):
    return shared_data / "mead_clips" / "videos" / name


def _frame(path, index=0):
    for _, gray in video_io.iter_gray_frames(path, 640, start=index, stop=index + 1):
        return gray
    raise AssertionError("no frame")


# ----------------------------------------------------------------------------- cuts
def test_cut_detector_finds_the_three_hard_cuts_of_the_hamilton_clip(shared_data):
    path = shared_data / "unlabeled_faces" / "videos" / "face_recognition_short_hamilton_clip.mp4"
    cuts = CutDetector()
    for i, gray in video_io.iter_gray_frames(path, 640):
        cuts.update(i, gray)
    assert cuts.cuts == [20, 82, 211]  # stage -> close-up, -> the man on stage, -> audience


def test_cut_detector_sees_no_cut_in_single_shot_clips(shared_data):
    """23 MEAD clips (talking, moving heads) are single shots; a hand sweeping past a
    close-up face (styletalk furious_talk1_clip1) gives at most one false cut."""
    videos = sorted((shared_data / "mead_clips" / "videos").glob("*.mp4"))
    assert len(videos) >= 20
    for video in videos:
        cuts = CutDetector()
        for i, gray in video_io.iter_gray_frames(video, 640):
            cuts.update(i, gray)
        assert cuts.cuts == [], video.name
    cuts = CutDetector()
    path = shared_data / "unlabeled_faces" / "videos" / "styletalk_style_furious_talk1_clip1.mp4"
    for i, gray in video_io.iter_gray_frames(path, 640):
        cuts.update(i, gray)
    assert len(cuts.cuts) <= 1


def test_cut_detector_ignores_motion_and_light_and_sees_a_switch():
    rng = np.random.default_rng(0)
    scene_a = rng.integers(0, 120, (90, 160), dtype=np.uint8)
    scene_b = rng.integers(100, 255, (90, 160), dtype=np.uint8)
    frames = [np.roll(scene_a, 2 * i, axis=1) for i in range(10)]          # a slow pan
    frames += [np.clip(frames[-1].astype(int) + 3 * i, 0, 255).astype(np.uint8)
               for i in range(1, 6)]                                         # lights up a little
    frames += [scene_b] * 5                                                  # cut at frame 15
    cuts = CutDetector()
    assert [i for i, f in enumerate(frames) if cuts.update(i, f)] == [15]
    with pytest.raises(OmgclipError):
        CutConfig(min_pixel=0.0)


def test_a_track_never_crosses_a_cut():
    tracker = FaceTracker(FaceConfig(detect_every=5, max_gap=10))
    face = FaceBox(100, 100, 180, 180)
    assert tracker.update(0, [face]) == [0]
    assert tracker.update(5, [face]) == [0]
    tracker.cut(8)
    assert tracker.update(8, [face]) == [1]  # same place, other shot: a new track
    old, new = tracker.tracks
    assert tracker.box_at(old, 7) is not None and tracker.box_at(old, 8) is None
    assert tracker.box_at(new, 7) is None and tracker.box_at(new, 9) is not None
    with pytest.raises(ValueError):
        tracker.cut(8)


class _Detector:
    """Stand-in for FaceDetector: one face, always in the same place."""

    box = FaceBox(100, 60, 180, 140)

    def detect_staged(self, gray, first=0, thorough=True):
        return [self.box], 0

    def detect_near(self, gray, around):
        return [self.box]


def test_a_window_split_by_a_cut_gives_each_side_its_own_clip():
    frames = [(i, np.full((240, 320), 30 if i < 30 else 220, np.uint8)) for i in range(60)]
    for i, f in frames:
        f[::7, ::5] = 0  # some texture for the thumbnail
    cfg = FaceConfig(detect_every=5, max_gap=10, min_detect_frac=0.4)
    windows = [Block(0, 20), Block(20, 20), Block(40, 20)]
    got = list(clips.face_clips(iter(frames), windows, cfg, detector=_Detector(), follow="all",
                                cuts=CutDetector()))
    middle = got[1]
    assert sorted(c.span for c in middle.clips) == [(20, 30), (30, 40)]
    before, after = sorted(middle.clips, key=lambda c: c.span)
    assert before.track_id != after.track_id
    assert before.real[10:] == (False,) * 10 and after.real[:10] == (False,) * 10
    assert (before.crops[10:] == before.crops[9]).all()  # the other side repeats the edge crop
    assert [c.track_id for c in got[2].clips] == [after.track_id]


# ----------------------------------------------------------------------------- descriptors
def test_model_files_come_from_the_installed_package(monkeypatch):
    from omgclip.faces import dlib_models

    path = dlib_models.model_file(dlib_models.RESNET_FILE)
    assert path.is_file() and path.parent.parent.name == "face_recognition_models"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(OmgclipError, match="face-recognition-models"):
        dlib_models.model_file(dlib_models.RESNET_FILE)


def test_descriptors_tell_two_real_people_apart(shared_data):
    enc, det = FaceEncoder(), FaceDetector(FaceConfig())
    descs = {}
    for name in ("M030_front_angry_level3_001.mp4", "M030_front_happy_level3_001.mp4",
                 "W009_front_angry_level3_001.mp4"):
        gray = _frame(_mead(shared_data, name), 30)
        descs[name[:4] + name[11:14]] = enc.describe(gray, det.detect(gray)[:1])[0]
    same = np.linalg.norm(descs["M030ang"] - descs["M030hap"])
    other = np.linalg.norm(descs["M030ang"] - descs["W009ang"])
    assert descs["M030ang"].shape == (128,)
    assert same < 0.5 < 0.6 < other


def test_tracks_group_by_descriptor_and_never_when_on_screen_together():
    a, b = np.zeros(128), np.zeros(128)
    a[0], b[1] = 1.0, 1.0
    tracks = [(0, a, 0, 50), (1, b, 50, 100), (2, a + 0.01, 100, 150), (3, a, 120, 160),
              (4, None, 160, 170)]
    assert group_tracks(tracks, 0.55) == {0: 0, 1: 1, 2: 0, 3: 2, 4: 3}


# ----------------------------------------------------------------------------- montages
def _person_rows(path):
    cuts, people = CutDetector(), PersonTracker()
    info = video_io.probe(path)
    windows = [Block(s, 20) for s in range(0, info.frame_count, 20)]
    results = list(clips.face_clips(video_io.iter_gray_frames(path, 640), windows, FaceConfig(),
                                    follow="all", extend=True, cuts=cuts, identity=people))
    ids = people.person_ids()
    return [(c.track_id, ids[c.track_id], (c.span[0] + c.span[1]) // 2)
            for r in results for c in r.clips], cuts.cuts, people


def test_montage_a_b_a_keeps_one_person_id_for_a(shared_data, tmp_path):
    """Person A (M030), then B (W009), then A again in another clip, with hard cuts: A's two
    stretches share one person id, B gets another, and no track crosses a cut."""
    shots = make_montage([Part(_mead(shared_data, "M030_front_angry_level3_001.mp4"), "A", 80),
                          Part(_mead(shared_data, "W009_front_happy_level3_001.mp4"), "B", 80),
                          Part(_mead(shared_data, "M030_front_happy_level3_001.mp4"), "A", 80)],
                         tmp_path / "aba.mp4")
    rows, cuts, people = _person_rows(tmp_path / "aba.mp4")
    assert cuts == [80, 160]
    assert 3 <= people.described <= 3 * people.config.max_samples
    truth = {frame: person_at(shots, frame) for _, _, frame in rows}
    ids_of = {p: {pid for _, pid, f in rows if truth[f] == p} for p in "AB"}
    assert len(ids_of["A"]) == 1 and len(ids_of["B"]) == 1 and ids_of["A"] != ids_of["B"]
    tracks_a = {tid for tid, _, f in rows if truth[f] == "A"}
    assert len(tracks_a) == 2  # A's stretches are two tracks (one per shot) of one person
    for tid in {t for t, _, _ in rows}:
        assert len({truth[f] for t, _, f in rows if t == tid}) == 1
    assert len({truth[f] for f in truth}) == 2 and len(rows) >= 10


def test_one_track_costs_no_descriptor(mead_video):
    rows, cuts, people = _person_rows(mead_video)
    assert cuts == [] and {(tid, pid) for tid, pid, _ in rows} == {(0, 0)}
    assert people.described == 0 and people.tracks[0].chips  # aligned, never described
    assert people.centroids()[0].shape == (128,) and people.described >= 1


def test_known_people_are_named_from_their_photos(shared_data, tmp_path):
    import cv2

    for person, clip in (("Maria", "W009_front_neutral_level1_001.mp4"),
                         ("Marco", "M030_front_neutral_level1_001.mp4")):
        (tmp_path / "people" / person).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "people" / person / "1.jpg"), _frame(_mead(shared_data, clip), 10))
    (tmp_path / "people" / "Nobody").mkdir()
    cv2.imwrite(str(tmp_path / "people" / "Nobody" / "blank.jpg"), np.full((100, 100), 128, np.uint8))
    gallery = Gallery.from_dir(tmp_path / "people")
    assert sorted(set(gallery.names)) == ["Marco", "Maria"]
    enc, det = FaceEncoder(), FaceDetector(FaceConfig())
    for clip, name in (("W009_front_angry_level3_001.mp4", "Maria"),
                       ("M030_front_sad_level3_001.mp4", "Marco")):
        gray = _frame(_mead(shared_data, clip), 40)
        assert gallery.name_for(enc.describe(gray, det.detect(gray)[:1])[0]) == name
    assert gallery.name_for(np.zeros(128, np.float32)) == ""
    with pytest.raises(OmgclipError, match="no face found"):
        Gallery.from_dir(tmp_path / "people" / "Nobody")
    with pytest.raises(OmgclipError, match="not a folder"):
        Gallery.from_dir(tmp_path / "missing")


# ----------------------------------------------------------------------------- cnn detector
def test_cnn_detector_finds_more_of_the_hamilton_audience_than_hog(shared_data):
    """Frame 240 is the audience shot: three-quarter and profile faces. HOG finds one face,
    dlib's MMOD CNN (from face-recognition-models) several."""
    path = shared_data / "unlabeled_faces" / "videos" / "face_recognition_short_hamilton_clip.mp4"
    gray = _frame(path, 240)
    hog = FaceDetector(FaceConfig()).detect(gray)
    cnn = FaceDetector(FaceConfig(), kind="cnn").detect(gray)
    assert len(cnn) >= 3 > len(hog)
    with pytest.raises(OmgclipError, match="--detector"):
        FaceDetector(FaceConfig(), kind="haar")


# ----------------------------------------------------------------------------- predict
def test_predict_rows_carry_person_ids_names_and_a_person_summary(shared_data, tmp_path, capsys):
    """``omgclip predict`` on an A-B-A montage with ``--people``: every row has a person_id,
    A's two stretches share one and carry A's name, B (no photo) keeps a number; the JSON
    holds a per-person summary; the terminal summary and the timeline are per person."""
    import json

    import cv2
    import pandas as pd

    from omgclip.cli import main

    video = tmp_path / "aba.mp4"
    shots = make_montage([Part(_mead(shared_data, "M030_front_angry_level3_001.mp4"), "A", 80),
                          Part(_mead(shared_data, "W009_front_happy_level3_001.mp4"), "B", 80),
                          Part(_mead(shared_data, "M030_front_happy_level3_001.mp4"), "A", 80)], video)
    (tmp_path / "people" / "Marco").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "people" / "Marco" / "a.jpg"),
                _frame(_mead(shared_data, "M030_front_neutral_level1_001.mp4"), 10))
    out, plot = tmp_path / "rows.json", tmp_path / "timeline.png"
    assert main(["predict", str(video), "--people", str(tmp_path / "people"), "--out", str(out),
                 "--plot", str(plot), "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    rows = pd.DataFrame(doc["rows"])
    assert {"track_id", "person_id", "person"} <= set(rows.columns)
    faces = rows[rows["track_id"] >= 0]
    assert len(faces) == 12 and (rows.loc[rows["track_id"] < 0, "person_id"] == -1).all()
    who = faces.assign(truth=[person_at(shots, (a + b) // 2)
                              for a, b in zip(faces["start_frame"], faces["end_frame"])])
    a, b = who[who["truth"] == "A"], who[who["truth"] == "B"]
    assert a["person_id"].nunique() == 1 and b["person_id"].nunique() == 1
    assert a["person_id"].iloc[0] != b["person_id"].iloc[0] and a["track_id"].nunique() == 2
    assert set(a["person"]) == {"Marco"} and set(b["person"]) == {""}
    people = {p["person_id"]: p for p in doc["people"]}
    assert sorted(people) == sorted(faces["person_id"].unique())
    for pid, p in people.items():
        mine = faces[faces["person_id"] == pid]
        assert p["segments"] == len(mine) and sum(p["segment_counts"].values()) == len(mine)
        assert abs(sum(p["share"].values()) - 1.0) < 1e-6
        assert p["dominant"] == max(p["share"], key=p["share"].get)
    text = capsys.readouterr().out
    assert f"person {a['person_id'].iloc[0]} (Marco):" in text and "mostly" in text
    assert plot.stat().st_size > 0


def test_predict_with_the_cnn_detector_and_bad_people_folders(shared_data, tmp_path, capsys):
    import cv2

    from omgclip.cli import main

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), _frame(_mead(shared_data, "W009_front_happy_level3_001.mp4"), 20))
    out = tmp_path / "rows.csv"
    assert main(["predict", str(image), "--detector", "cnn", "--out", str(out), "--no-progress"]) == 0
    from omgclip.apps.report import read_rows

    rows = read_rows(out)
    assert rows["track_id"].tolist() == [0] and rows["person_id"].tolist() == [0]
    assert main(["predict", str(image), "--no-persons", "--out", str(out), "--no-progress"]) == 0
    assert read_rows(out)["person_id"].tolist() == [-1]
    capsys.readouterr()
    assert main(["predict", str(image), "--no-persons", "--people", str(tmp_path)]) == 2
    assert "--no-persons" in capsys.readouterr().err
    assert main(["predict", str(image), "--people", str(tmp_path / "nope"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("omgclip: error: --people") and "\n" not in err
