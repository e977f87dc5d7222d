"""``omgclip predict`` end to end on real footage, plus its pure helpers.

Real videos come from ``../shared/data/unlabeled_faces`` (skipped with a reason when that
folder is absent). The model is the bundled one: these tests check the segments, faces,
files and errors, not whether the labels are right.
"""

from __future__ import annotations

import json

import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omgclip.cli import main
from omgclip.errors import OmgclipError
from omgclip.labels import EMOTIONS
from omgclip.apps.predict import (
    PartialPredictError, PredictConfig, predict, predict_video, _windows)
from omgclip.apps.report import columns, format_table, smooth_probs
from omgclip.learn.inference import pad_clip
from omgclip.dataset.segment import Block
from omgclip.faces.video_io import count_frames, probe

TALKING = "pyfeat_WolfgangLanger_Pexels.mp4"      # 640x360, 23.976 fps, 472 frames, one face
SHORT = "pyfeat_single_face.mp4"                  # 640x360, 30 fps, 72 frames
HAMILTON = "face_recognition_short_hamilton_clip.mp4"  # 640x360, several people
PROBS = [f"p_{e}" for e in EMOTIONS]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def videos(shared_data) -> Path:
    return shared_data / "unlabeled_faces" / "videos"


@pytest.fixture(scope="session")
def talking_run(videos, checkpoint, tmp_path_factory):
    """One predict run on the talking-head video writing every output."""
    out = tmp_path_factory.mktemp("talking")
    cfg = PredictConfig(inputs=(str(videos / TALKING),), checkpoint=checkpoint, progress=False,
                        out=str(out / "rows.csv"), annotate=str(out / "annotated.mp4"),
                        plot=str(out / "timeline.png"))
    rows = predict(cfg)
    return rows, out


@pytest.fixture(scope="session")
def still_image(videos, tmp_path_factory) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(videos / SHORT))
    for _ in range(10):
        ok, frame = cap.read()
    cap.release()
    assert ok
    path = tmp_path_factory.mktemp("still") / "face.jpg"
    cv2.imwrite(str(path), frame)
    return path


def _first_frames(path: Path, n: int):
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def _check_tiling(rows: pd.DataFrame, decoded: int, fps: float, length: int = 20) -> None:
    seg = rows.drop_duplicates("segment").sort_values("segment")
    assert list(seg["segment"]) == list(range(len(seg)))
    assert seg["start_frame"].iloc[0] == 0
    assert (seg["end_frame"].to_numpy()[:-1] == seg["start_frame"].to_numpy()[1:]).all()
    assert seg["end_frame"].iloc[-1] == decoded
    sizes = (seg["end_frame"] - seg["start_frame"]).to_numpy()
    assert (sizes[:-1] == length).all() and 0 < sizes[-1] <= length
    np.testing.assert_allclose(rows["start_s"], rows["start_frame"] / fps, atol=1e-9)
    np.testing.assert_allclose(rows["end_s"], rows["end_frame"] / fps, atol=1e-9)
    # every row of a segment agrees on its span
    assert rows.groupby("segment")[["start_frame", "end_frame"]].nunique().max().max() == 1


def _one_line_error(capfd, argv) -> str:
    code = main(argv)
    captured = capfd.readouterr()
    err_lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code != 0, captured
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert len(err_lines) == 1, captured.err
    assert err_lines[0].startswith("omgclip: error: ")
    return err_lines[0]


# ----------------------------------------------------------------------------- real videos
def test_segments_tile_the_whole_video(talking_run, videos):
    rows, _ = talking_run
    path = videos / TALKING
    info = probe(path)
    decoded = count_frames(path)
    _check_tiling(rows, decoded, info.fps)
    assert rows["end_s"].max() == pytest.approx(decoded / info.fps)
    assert list(rows.columns) == columns(EMOTIONS)


def test_a_face_is_found_in_a_talking_head_video(talking_run):
    rows, _ = talking_run
    segments = rows["segment"].nunique()
    with_face = rows.loc[rows["track_id"] >= 0, "segment"].nunique()
    assert with_face >= 0.9 * segments
    faces = rows[rows["track_id"] >= 0]
    assert faces["label"].isin(EMOTIONS).all()
    np.testing.assert_allclose(faces[PROBS].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(faces["confidence"], faces[PROBS].max(axis=1))
    assert (faces["detect_frac"] > 0).all() and (faces["detect_frac"] <= 1).all()
    # boxes are in source pixels, inside (or just around) the 640x360 frame
    assert (faces["x1"] > faces["x0"]).all() and (faces["y1"] > faces["y0"]).all()
    assert faces["x0"].min() > -50 and faces["x1"].max() < 690 and faces["y1"].max() < 410


def test_csv_and_json_read_back_in_one_line(talking_run, tmp_path):
    from omgclip.apps.report import write_rows

    rows, out = talking_run
    back = pd.read_csv(out / "rows.csv")
    assert list(back.columns) == columns(EMOTIONS)
    assert len(back) == len(rows)
    np.testing.assert_allclose(back[PROBS].to_numpy(), rows[PROBS].to_numpy(), atol=1e-9)
    write_rows(rows, tmp_path / "rows.json")
    doc = json.loads((tmp_path / "rows.json").read_text())  # {"rows": [...], "people": [...]}
    back = pd.DataFrame(doc["rows"])
    assert list(back.columns) == columns(EMOTIONS)
    assert [p["person_id"] for p in doc["people"]] == sorted(rows.loc[rows["person_id"] >= 0,
                                                                      "person_id"].unique())
    assert back["segment"].tolist() == rows["segment"].tolist()
    np.testing.assert_allclose(back[PROBS].to_numpy(), rows[PROBS].to_numpy(), atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no leftovers


def test_annotated_video_is_playable_with_every_frame(talking_run, videos):
    import cv2

    _, out = talking_run
    src = videos / TALKING
    path = out / "annotated.mp4"
    info, ann = probe(src), probe(path)
    assert (ann.width, ann.height) == (info.width, info.height)
    assert count_frames(path) == count_frames(src)
    assert ann.fps == pytest.approx(info.fps, rel=1e-3)
    from omgclip.apps.annotate import find_ffmpeg

    if find_ffmpeg():
        cap = cv2.VideoCapture(str(path))
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
        cap.release()
        assert fourcc.lower() in ("avc1", "h264"), fourcc
    # boxes were drawn: the annotated frames differ from the source where the face is
    a, b = _first_frames(src, 30)[-1], _first_frames(path, 30)[-1]
    assert np.mean(np.abs(a.astype(int) - b.astype(int)) > 60) > 0.002


def test_timeline_plot_is_written(talking_run):
    _, out = talking_run
    png = out / "timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import cv2

    img = cv2.imread(str(png))
    assert img.shape[1] >= 800 and img.shape[0] >= 300


def test_several_faces_get_several_tracks(videos, checkpoint):
    rows = predict(PredictConfig(inputs=(str(videos / HAMILTON),), checkpoint=checkpoint,
                                 progress=False))
    tracks = rows.loc[rows["track_id"] >= 0, "track_id"].unique()
    assert len(tracks) > 1
    _check_tiling(rows, count_frames(videos / HAMILTON), probe(videos / HAMILTON).fps)
    # a segment lists each track at most once
    assert not rows[rows["track_id"] >= 0].duplicated(["segment", "track_id"]).any()


def test_still_image(still_image, checkpoint, tmp_path):
    rows = predict(PredictConfig(inputs=(str(still_image),), checkpoint=checkpoint, progress=False,
                                 annotate=str(tmp_path / "face.png")))
    assert len(rows) == 1
    r = rows.iloc[0]
    assert (r["segment"], r["start_frame"], r["end_frame"], r["start_s"], r["end_s"]) == (0, 0, 1, 0, 0)
    assert r["track_id"] >= 0 and r["label"] in EMOTIONS
    assert (tmp_path / "face.png").stat().st_size > 0


def test_still_image_gets_the_flip_the_weights_ask_for_on_stills(still_image, checkpoint, monkeypatch):
    """The bundled weights ask for the test-time flip on still images only (``still_flip``;
    video runs as is: test_bundled_model_is_a_two_net_ensemble_that_no_flip_leaves_alone).
    A photo's probabilities are the mean of its real crop's and the mirrored crop's; with
    --no-flip, the crop's alone."""
    from omgclip.learn.checkpoint import load_for_inference, load_model
    from omgclip.learn.inference import ClipBatcher, clip_probabilities

    assert load_model(checkpoint).meta.get("still_flip") is True
    seen: list[np.ndarray] = []
    add = ClipBatcher.add
    monkeypatch.setattr(ClipBatcher, "add", lambda self, item, crops: (seen.append(crops), add(self, item, crops))[1])
    flipped = predict(PredictConfig(inputs=(str(still_image),), checkpoint=checkpoint, progress=False))
    plain = predict(PredictConfig(inputs=(str(still_image),), checkpoint=checkpoint, progress=False, flip=False))
    assert len(seen) == 2 and np.array_equal(seen[0], seen[1])  # the same real face crop both times
    net = load_for_inference(checkpoint, flip=False).net
    clip = pad_clip(seen[0], 20)[None]
    p, p_mirror = clip_probabilities(net, clip)[0], clip_probabilities(net, clip[..., ::-1])[0]
    assert np.abs(p - p_mirror).max() > 1e-3  # the mirror image really is classified differently
    np.testing.assert_allclose(plain[PROBS].to_numpy()[0], p, atol=1e-5)
    np.testing.assert_allclose(flipped[PROBS].to_numpy()[0], (p + p_mirror) / 2, atol=1e-5)


def test_crop_none_labels_every_photo_that_is_already_a_face(shared_data, checkpoint):
    """``--crop none``: inputs that are already face crops (here 24 real FER2013 PublicTest
    photos, 48x48) are not searched for faces: each whole image, resized to 80x80 as
    build-dataset's ``crop none`` does, is the face. Every photo gets a label, and its
    probabilities are the still net's on that resized image (with the flip), while dlib's
    detector misses some of these tight crops."""
    import cv2
    import pandas as pd

    from omgclip.faces.detect import resize_whole
    from omgclip.learn.checkpoint import load_for_inference
    from omgclip.learn.inference import clip_probabilities

    table = pd.read_csv(shared_data / "fer2013" / "labels.csv")
    files = [str(shared_data / "fer2013" / f) for f in table[table["usage"] == "PublicTest"]["file"][:24]]
    rows = predict(PredictConfig(inputs=tuple(files), checkpoint=checkpoint, progress=False, crop="none"))
    assert list(rows["file"]) == files and (rows["track_id"] == 0).all() and (rows["person_id"] == 0).all()
    assert (rows["detect_frac"] == 1).all() and rows["label"].isin(EMOTIONS).all()
    assert (rows[["x0", "y0", "x1", "y1"]].to_numpy() == [0, 0, 48, 48]).all()
    net = load_for_inference(checkpoint).net_for(still=True)
    crops = np.stack([resize_whole(cv2.imread(f, cv2.IMREAD_GRAYSCALE), 80)[None] for f in files])
    np.testing.assert_allclose(rows[PROBS].to_numpy(), clip_probabilities(net, crops), atol=1e-5)
    detected = predict(PredictConfig(inputs=tuple(files), checkpoint=checkpoint, progress=False, persons=False))
    assert 0 < (detected["track_id"] >= 0).sum() < len(files)  # dlib misses some tight crops


def test_crop_none_on_a_video_gives_every_segment_its_whole_frames(videos, checkpoint):
    """A video of a face crop (here a real 640x360 talking head, 72 frames) with
    ``--crop none``: consecutive 20-frame segments, each classified from its own whole
    frames (the last one padded), none skipped."""
    import cv2

    from omgclip.faces.detect import resize_whole
    from omgclip.learn.checkpoint import load_for_inference
    from omgclip.learn.inference import clip_probabilities

    rows = predict(PredictConfig(inputs=(str(videos / SHORT),), checkpoint=checkpoint, progress=False,
                                 crop="none"))
    assert list(rows["start_frame"]) == [0, 20, 40, 60] and list(rows["end_frame"]) == [20, 40, 60, 72]
    assert (rows["track_id"] == 0).all() and (rows[["x1", "y1"]].to_numpy() == [640, 360]).all()
    frames = np.stack([resize_whole(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), 80) for f in _first_frames(videos / SHORT, 40)])
    want = clip_probabilities(load_for_inference(checkpoint).net, np.stack([frames[:20], frames[20:40]]))
    np.testing.assert_allclose(rows[PROBS].to_numpy()[:2], want, atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [({"crop": "tight"}, "--crop must be one of detect, none"),
                                             ({"crop": "none", "people": "faces/"}, "cannot go with --crop none")])
def test_crop_config_errors_are_one_line(kwargs, message):
    with pytest.raises(OmgclipError, match=message):
        PredictConfig(inputs=("a.mp4",), **kwargs)


def test_video_shorter_than_a_segment(write_video, videos, checkpoint, tmp_path):
    path = write_video(tmp_path / "short.mp4", _first_frames(videos / SHORT, 13), fps=30)
    rows = predict(PredictConfig(inputs=(str(path),), checkpoint=checkpoint, progress=False))
    assert rows["segment"].nunique() == 1
    assert (rows["start_frame"].iloc[0], rows["end_frame"].iloc[0]) == (0, 13)
    assert rows["end_s"].iloc[0] == pytest.approx(13 / 30)
    assert (rows["track_id"] >= 0).all()


def test_truncated_video_ends_where_the_data_ends(videos, checkpoint, tmp_path):
    from omgclip.apps.annotate import find_ffmpeg

    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        pytest.skip("needs ffmpeg to move the index to the front before truncating")
    full = tmp_path / "faststart.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(videos / TALKING), "-c", "copy",
                    "-movflags", "+faststart", str(full)], check=True)
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 5])
    decoded = count_frames(cut)
    assert 0 < decoded < probe(cut).frame_count
    rows = predict(PredictConfig(inputs=(str(cut),), checkpoint=checkpoint, progress=False))
    _check_tiling(rows, decoded, probe(cut).fps)


def test_video_without_a_face_gives_explicit_rows(write_video, checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [np.full((240, 320, 3), 90, np.uint8) + rng.integers(0, 8, (240, 320, 3), dtype=np.uint8)
              for _ in range(45)]
    path = write_video(tmp_path / "empty_room.mp4", frames, fps=25)
    out = tmp_path / "rows.csv"
    assert main(["predict", "--checkpoint", checkpoint, "--no-progress", "--out", str(out), str(path)]) == 0
    rows = pd.read_csv(out)
    assert rows["segment"].tolist() == [0, 1, 2]
    assert (rows["track_id"] == -1).all() and (rows["label"] == "no face").all()
    assert rows[PROBS + ["confidence"]].isna().all().all()
    assert rows["end_frame"].iloc[-1] == 45
    assert "no face" in capsys.readouterr().out


@pytest.fixture(scope="module")
def short_raw(videos, checkpoint):
    return predict(PredictConfig(inputs=(str(videos / SHORT),), checkpoint=checkpoint, progress=False))


def test_stride_windows_overlap_and_reach_the_end(videos, checkpoint):
    rows = predict(PredictConfig(inputs=(str(videos / SHORT),), checkpoint=checkpoint, progress=False,
                                 stride=10))
    seg = rows.drop_duplicates("segment").sort_values("segment")
    decoded = count_frames(videos / SHORT)  # 72
    assert seg["start_frame"].tolist() == list(range(0, decoded, 10))
    assert seg["end_frame"].tolist() == [min(s + 20, decoded) for s in range(0, decoded, 10)]
    assert rows.loc[rows["start_frame"] == 0, "track_id"].ge(0).all()


def test_smooth_averages_each_faces_neighbouring_segments(videos, checkpoint, short_raw):
    smooth = predict(PredictConfig(inputs=(str(videos / SHORT),), checkpoint=checkpoint, progress=False,
                                   smooth=3))
    raw = short_raw
    assert len(smooth) == len(raw) and (raw["track_id"] >= 0).sum() >= 3
    expect = smooth_probs(raw, 3, PROBS)
    np.testing.assert_allclose(smooth[PROBS].to_numpy(float), expect[PROBS].to_numpy(float), atol=1e-6)
    assert not np.allclose(smooth[PROBS].to_numpy(float), raw[PROBS].to_numpy(float), atol=1e-6)
    faces = smooth[smooth["track_id"] >= 0]
    np.testing.assert_allclose(faces[PROBS].sum(axis=1), 1.0, atol=1e-5)
    assert (faces["label"] == faces[PROBS].idxmax(axis=1).str[2:]).all()
    np.testing.assert_allclose(faces["confidence"], faces[PROBS].max(axis=1))


def test_bundled_model_is_a_two_net_ensemble_that_no_flip_leaves_alone(videos, checkpoint, short_raw):
    """The bundled weights are two fine-tuned nets whose probabilities are averaged (two
    passes already); they ask for no test-time flip, so --no-flip gives the very same rows.
    (--no-flip on a file that asks for the flip: test_r2plus1d_wide.)"""
    from omgclip.learn.checkpoint import load_model

    loaded = load_model(checkpoint)
    assert loaded.model_name == "ensemble" and loaded.meta["model_kwargs"]["count"] == 2
    assert loaded.meta.get("test_time_flip") is False
    one = predict(PredictConfig(inputs=(str(videos / SHORT),), checkpoint=checkpoint, progress=False, flip=False))
    faces = short_raw["track_id"] >= 0
    assert faces.sum() >= 3
    pd.testing.assert_frame_equal(one, short_raw)


@pytest.fixture(scope="module")
def one_net_flip_file(checkpoint, tmp_path_factory) -> Path:
    """The bundled ensemble's first net alone, as a weights file that asks for the test-time
    flip (bit for bit the one-net default that shipped before the ensemble)."""
    from omgclip.learn.checkpoint import load_model, save_weights
    from omgclip.learn.transfer import weights_meta

    loaded = load_model(checkpoint)
    net = loaded.net.members[0]
    meta = weights_meta(net, loaded.meta["face"])
    assert meta["model_name"] == "r2plus1d_wide" and meta["test_time_flip"] is True
    return save_weights(tmp_path_factory.mktemp("one_net") / "one_net.pt", net, meta, half=True)


def test_no_flip_is_one_pass_of_a_model_that_asks_for_the_flip(videos, one_net_flip_file):
    """Weights that ask for the test-time flip; --no-flip gives the plain net's probabilities
    for the same faces and segments (a little different, same boxes)."""
    cfg = dict(inputs=(str(videos / SHORT),), checkpoint=str(one_net_flip_file), progress=False)
    raw = predict(PredictConfig(**cfg))
    one = predict(PredictConfig(**cfg, flip=False))
    keys = ["segment", "track_id", "x0", "y0", "x1", "y1"]
    pd.testing.assert_frame_equal(one[keys], raw[keys])
    faces = raw["track_id"] >= 0
    assert faces.sum() >= 3
    diff = np.abs(one.loc[faces, PROBS].to_numpy(float) - raw.loc[faces, PROBS].to_numpy(float))
    assert 1e-4 < diff.max() < 0.5


@pytest.fixture(scope="module")
def two_faces_wide(videos, tmp_path_factory):
    """1280x720, 30 frames: the single-face clip's frames x 130..450 on the left and the
    talking head's x 260..580 on the right, each enlarged 2x (so the faces are as big in the
    640-wide working frame as in the originals)."""
    import cv2

    left, right = _first_frames(videos / SHORT, 30), _first_frames(videos / TALKING, 30)
    path = tmp_path_factory.mktemp("wide") / "two_faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (1280, 720))
    for a, b in zip(left, right):
        writer.write(np.concatenate([cv2.resize(a[:, 130:450], (640, 720)),
                                     cv2.resize(b[:, 260:580], (640, 720))], axis=1))
    writer.release()
    assert count_frames(path) == 30
    return path


def test_two_faces_in_one_segment_both_labeled_with_boxes_in_source_pixels(two_faces_wide, checkpoint,
                                                                           short_raw):
    rows = predict(PredictConfig(inputs=(str(two_faces_wide),), checkpoint=checkpoint, progress=False))
    assert rows["segment"].tolist() == [0, 0, 1, 1]  # 30 frames: 20 + 10, two faces in each
    faces = rows[rows["track_id"] >= 0]
    assert len(faces) == 4 and faces.groupby("segment")["track_id"].nunique().tolist() == [2, 2]
    assert faces["label"].isin(EMOTIONS).all()
    assert faces[["x0", "y0", "x1", "y1"]].notna().all().all()
    assert ((faces["detect_frac"] > 0.5) & (faces["detect_frac"] <= 1)).all()
    cx = (faces["x0"] + faces["x1"]) / 2
    left, right = faces[cx < 640], faces[cx >= 640]
    assert len(left) == 2 and len(right) == 2 and left["track_id"].nunique() == right["track_id"].nunique() == 1
    # boxes are in the 1280x720 source's pixels (the frames were decoded at 640x360): the
    # left face is where it is in the original, moved and enlarged as the frame was
    alone = short_raw[(short_raw["segment"] == 0) & (short_raw["track_id"] >= 0)].iloc[0]
    here = left[left["segment"] == 0].iloc[0]
    expect = {"x0": 2 * (alone["x0"] - 130), "x1": 2 * (alone["x1"] - 130), "y0": 2 * alone["y0"],
              "y1": 2 * alone["y1"]}
    width = expect["x1"] - expect["x0"]
    assert width > 200
    for c, v in expect.items():
        assert abs(here[c] - v) < 0.12 * width, (c, here[c], v)
    assert (right["x0"] > 640).all() and (right["y1"] > 400).all()
    # and in the second segment the left face is still where it was (boxes of its own frames)
    later = left[left["segment"] == 1].iloc[0]
    assert abs(later["x0"] - here["x0"]) < 0.25 * width and abs(later["y0"] - here["y0"]) < 0.25 * width


def test_url_input_is_downloaded_into_the_cache(loopback, videos, checkpoint, tmp_path):
    body = (videos / SHORT).read_bytes()
    with loopback({"/clip.mp4": body}) as server:
        url = server.url("/clip.mp4")
        rows = predict(PredictConfig(inputs=(url,), checkpoint=checkpoint, progress=False,
                                     cache_dir=str(tmp_path / "cache")))
    assert (rows["file"] == url).all()
    assert rows["end_frame"].max() == count_frames(videos / SHORT)
    assert any((tmp_path / "cache").iterdir())


def test_several_inputs_a_bad_one_is_reported_and_the_others_run(write_video, videos, checkpoint, tmp_path, capfd):
    good = write_video(tmp_path / "good.mp4", _first_frames(videos / SHORT, 25), fps=30)
    out = tmp_path / "rows.csv"
    argv = ["predict", "--checkpoint", checkpoint, "--no-progress", "--out", str(out),
            str(good), str(tmp_path / "missing.mp4")]
    code = main(argv)
    captured = capfd.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("omgclip: error: 1 of 2 inputs failed")
    assert "missing.mp4" in captured.err and "good.mp4" in captured.out
    back = pd.read_csv(out)
    assert set(back["file"]) == {str(good)} and back["end_frame"].max() == 25
    with pytest.raises(PartialPredictError) as info:
        predict(PredictConfig(inputs=(str(good), str(tmp_path / "missing.mp4")),
                              checkpoint=checkpoint, progress=False))
    assert len(info.value.rows) == 2


def test_batches_across_segments(videos, checkpoint):
    from omgclip.apps.predict import load_predict_model

    model = load_predict_model(checkpoint)
    sizes = []
    forward = model.net.forward

    def spy(x):
        sizes.append(x.shape[0])
        assert tuple(x.shape[1:]) == (1, 20, 80, 80)
        assert float(x.min()) >= 0 and float(x.max()) <= 1
        return forward(x)

    model.net.forward = spy
    cfg = PredictConfig(inputs=("unused",), batch_size=8, progress=False)
    result = predict_video(videos / TALKING, model, cfg)
    clips = sum(1 for r in result.rows if r["track_id"] >= 0)
    assert sizes[:-1] == [8] * (len(sizes) - 1) and sum(sizes) == clips
    assert result.times.decode > 0 and result.times.faces > 0 and result.times.model > 0


def test_read_ahead_changes_the_timing_not_the_labels(videos, checkpoint):
    """Decoding in a thread beside the face stage (the default) gives the very rows of
    decoding in line; its own time is kept apart from the time the pipeline waited."""
    from omgclip.apps.predict import load_predict_model

    model = load_predict_model(checkpoint)
    runs = {ra: predict_video(videos / TALKING, model, PredictConfig(inputs=("unused",), progress=False,
                                                                    read_ahead=ra))
            for ra in (True, False)}
    ahead, inline = runs[True], runs[False]
    assert pd.DataFrame(ahead.rows).equals(pd.DataFrame(inline.rows))
    assert ahead.frames_decoded == inline.frames_decoded == 472
    assert ahead.times.decode_thread > 0 and inline.times.decode_thread == 0
    assert inline.times.decode > 0 and ahead.times.decode < ahead.times.decode_thread


# ----------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize("case", ["missing", "not_a_video", "empty", "no_glob_match", "bad_out",
                                  "unreachable_url", "ftp_url"])
def test_bad_input_is_one_line_error(loopback, case, checkpoint, tmp_path, capfd):
    args = ["predict", "--checkpoint", checkpoint, "--no-progress"]
    if case == "missing":
        args.append(str(tmp_path / "nothere.mp4"))
    elif case == "not_a_video":
        (tmp_path / "notes.mp4").write_text("this is text, not a video\n" * 50)
        args.append(str(tmp_path / "notes.mp4"))
    elif case == "empty":
        (tmp_path / "empty.mp4").write_bytes(b"")
        args.append(str(tmp_path / "empty.mp4"))
    elif case == "no_glob_match":
        args.append(str(tmp_path / "*.mp4"))
    elif case == "bad_out":
        args += ["--out", str(tmp_path / "rows.txt"), str(tmp_path / "x.mp4")]
    elif case == "unreachable_url":
        with loopback() as server:
            url = server.url("/gone.mp4")  # answers 404
        args += ["--cache-dir", str(tmp_path / "cache"), url]  # the server is shut: refused
    elif case == "ftp_url":
        args.append("ftp://127.0.0.1/x.mp4")
    line = _one_line_error(capfd, args)
    assert len(line) < 400
    assert not list(tmp_path.glob("*.csv"))


@pytest.mark.parametrize("case", ["junk", "missing", "not_ours"])
def test_bad_checkpoint_is_one_line_error(case, still_image, tmp_path, capfd):
    path = tmp_path / "model.pt"
    if case == "junk":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    elif case == "not_ours":
        import torch

        torch.save({"weights": torch.zeros(3)}, path)
    out = tmp_path / "rows.csv"
    _one_line_error(capfd, ["predict", "--checkpoint", str(path), "--no-progress",
                            "--out", str(out), str(still_image)])
    assert not out.exists()


# ----------------------------------------------------------------------------- pure helpers
def test_pad_clip_repeats_the_last_crop():
    clip = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    padded = pad_clip(clip, 5)
    assert padded.shape == (5, 4, 4)
    assert (padded[:3] == clip).all() and (padded[3] == clip[2]).all() and (padded[4] == clip[2]).all()
    assert pad_clip(clip, 3) is clip


@pytest.mark.parametrize("count", [1, 19, 20, 21, 100, 105])
def test_windows_start_whole_and_extend(count):
    ws = _windows(count, 20, 20, image=False)
    assert ws[0] == Block(0, 20)
    assert all(a.stop == b.start for a, b in zip(ws, ws[1:]))
    assert all(w.length == 20 for w in ws)


def test_smooth_probs_averages_each_track_over_neighbours():
    probs = np.eye(7)[[3, 3, 0, 3, 3]]
    rows = pd.DataFrame({"file": "v", "segment": [0, 1, 2, 3, 4], "track_id": 0, "label": "",
                         "confidence": 0.0, **{c: probs[:, i] for i, c in enumerate(PROBS)}})
    out = smooth_probs(rows, 3, PROBS)
    np.testing.assert_allclose(out.loc[2, PROBS].to_numpy(float), (probs[1] + probs[2] + probs[3]) / 3)
    np.testing.assert_allclose(out.loc[0, PROBS].to_numpy(float), (probs[0] + probs[1]) / 2)
    assert out["label"].tolist() == ["happy"] * 5
    assert out.loc[2, "confidence"] == pytest.approx(2 / 3)


def test_format_table_lists_rows_and_a_summary():
    rows = pd.DataFrame({"file": ["a.mp4", "a.mp4"], "segment": [0, 1], "start_s": [0.0, 0.8],
                         "end_s": [0.8, 1.6], "start_frame": [0, 20], "end_frame": [20, 40],
                         "track_id": [0, -1], "label": ["happy", "no face"],
                         "confidence": [0.9, math.nan]})
    text = format_table(rows)
    assert "happy" in text and "no face" in text and "face 0" in text
    assert format_table(rows.iloc[:0]) == "(no rows)"


@pytest.mark.parametrize("options", [{"inputs": ()}, {"annotate": "x.avi"}, {"stride": 0},
                                     {"smooth": -1}, {"batch_size": 0}])
def test_config_rejects_bad_options(options):
    with pytest.raises(OmgclipError):
        PredictConfig(**{"inputs": ("a.mp4",), **options})


@pytest.mark.parametrize("n, window", [(2, (0, 1)), (3, (-1, 1)), (4, (-1, 2)), (5, (-2, 2))])
def test_smoothing_windows_are_n_segments_wide(n, window):
    """Segment s averages segments s + window[0] .. s + window[1] of the same face (an even
    n leans forward); other faces and missing segments do not count."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=9)
    rows = pd.DataFrame({"file": "v", "segment": [0, 1, 2, 3, 4, 5, 6, 8, 3], "track_id": [0] * 8 + [1],
                         "label": "", "confidence": 0.0, **{c: probs[:, i] for i, c in enumerate(PROBS)}})
    out = smooth_probs(rows, n, PROBS)
    segs = rows["segment"].to_numpy()
    for i in range(8):
        near = [j for j in range(8) if window[0] <= segs[j] - segs[i] <= window[1]]
        np.testing.assert_allclose(out.loc[i, PROBS].to_numpy(float), probs[near].mean(axis=0), err_msg=str(i))
    np.testing.assert_allclose(out.loc[8, PROBS].to_numpy(float), probs[8])  # alone on its track
    assert smooth_probs(rows, 1, PROBS) is rows


def test_windows_exactly():
    """The planned windows (face_clips extends them while the video goes on, and cuts the
    last ones where it really ends): whole segments of the announced frames, or every
    ``stride`` frames; an image is one segment."""
    assert _windows(105, 20, 20, image=False) == [Block(s, 20) for s in (0, 20, 40, 60, 80)]
    assert _windows(50, 20, 10, image=False) == [Block(s, 20) for s in (0, 10, 20, 30, 40)]
    assert _windows(0, 20, 10, image=False) == [Block(0, 20)]
    assert _windows(0, 20, 20, image=False) == [Block(0, 20)]
    assert _windows(1, 20, 20, image=True) == [Block(0, 20)]


def test_windows_of_a_one_frame_video_with_a_small_stride_is_one_window():
    """A video of 0 or 1 announced frames gives a single window, whatever the stride."""
    assert _windows(1, 20, 1, image=False) == [Block(0, 20)]
    assert _windows(0, 20, 1, image=False) == [Block(0, 20)]
    assert _windows(3, 20, 1, image=False) == [Block(0, 20), Block(1, 20), Block(2, 20)]


def _clip(track_id, boxes, real, span=None):
    from omgclip.faces.clips import FaceClip
    return FaceClip(track_id=track_id, crops=np.zeros((len(boxes), 4, 4), np.uint8), boxes=tuple(boxes),
                    real=tuple(real), span=span)


def test_segment_faces_keeps_only_the_on_screen_frames_after_a_shot_cut():
    """Window frames 20..40; a cut at frame 25 leaves track 3 on screen for frames [25, 33):
    its record starts at frame 25 and holds exactly those 8 boxes, halved back to source
    pixels (working scale 0.5). Track 1, on screen throughout, keeps all 20 boxes from 20."""
    from omgclip.apps.predict import _segment_faces
    from omgclip.faces.clips import WindowFaces
    from omgclip.faces.detect import FaceBox
    boxes = [FaceBox(i, 10 + i, 50 + i, 60 + i, 0.5) for i in range(20)]  # box k = frame 20 + k
    real = [5 <= k < 13 for k in range(20)]
    wf = WindowFaces(requested=Block(20, 20), block=Block(20, 20), rejected=(),
                     clips=(_clip(3, boxes, real, span=(25, 33)), _clip(1, boxes, [True] * 20)))
    recs = _segment_faces(wf, 1, 0.5)
    assert [r.track_id for r in recs] == [1, 3]
    full, cut = recs
    assert full.first == 20 and len(full.boxes) == 20 and cut.first == 25
    assert [b.left for b in cut.boxes] == [2.0 * k for k in range(5, 13)]
    assert cut.boxes[0] == FaceBox(10.0, 30.0, 110.0, 130.0, 0.5)
    assert cut.detect_frac == pytest.approx(8 / 20) and cut.segment == 1 and cut.block == Block(20, 20)
    empty = WindowFaces(requested=Block(40, 20), block=Block(40, 20), clips=(), rejected=((0, "too few"),))
    [none] = _segment_faces(empty, 2, 0.5)
    assert none.track_id == -1 and none.reason == empty.reason and none.boxes == ()


def test_to_source_divides_working_pixels_by_the_scale():
    from omgclip.apps.predict import _to_source
    from omgclip.faces.detect import FaceBox
    box = FaceBox(10.0, 20.0, 30.0, 40.0, 0.7)
    assert _to_source(box, 2.0) == FaceBox(5.0, 10.0, 15.0, 20.0, 0.7)
    assert _to_source(box, 0.5) == FaceBox(20.0, 40.0, 60.0, 80.0, 0.7)
    assert _to_source(box, 1.0) == box


def test_smooth_probs_of_integer_columns_keeps_the_fractions():
    """One-hot probabilities read as integers (a CSV of 0s and 1s): the average of
    segments 0..2 is 1/3 and 2/3, not truncated to 0."""
    probs = np.eye(7, dtype=np.int64)[[3, 0, 3]]
    rows = pd.DataFrame({"file": "v", "segment": [0, 1, 2], "track_id": 0, "label": "",
                         "confidence": 0.0, **{c: probs[:, i] for i, c in enumerate(PROBS)}})
    out = smooth_probs(rows, 3, PROBS)
    np.testing.assert_allclose(out.loc[1, PROBS].to_numpy(float), [1 / 3, 0, 0, 2 / 3, 0, 0, 0])
    np.testing.assert_allclose(out.loc[0, PROBS].to_numpy(float), [1 / 2, 0, 0, 1 / 2, 0, 0, 0])
    assert out.loc[1, "label"] == "happy" and out.loc[1, "confidence"] == pytest.approx(2 / 3)
