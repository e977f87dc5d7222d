"""Face detection, tracking and clip cutting: on real footage, with small synthetic unit
checks beside them."""

from __future__ import annotations

import numpy as np
import pytest

from omgclip.faces import clips

from omgclip.faces import video_io
from omgclip.faces.detect import FaceBox, FaceConfig, FaceDetector, crop_face
from omgclip.dataset.segment import Block, consecutive_segments
from omgclip.faces.tracking import FaceTracker


def _frame(path, index=0, work_width=640):
    for i, gray in video_io.iter_gray_frames(path, work_width, start=index, stop=index + 1):
        return gray
    raise AssertionError("no frame")


def test_facebox_geometry():
    a, b = FaceBox(0, 0, 10, 10), FaceBox(5, 0, 15, 10)
    assert a.area == 100 and a.center == (5, 5)
    assert a.iou(b) == pytest.approx(50 / 150)
    assert a.iou(a) == 1.0 and a.iou(FaceBox(20, 20, 30, 30)) == 0.0
    assert a.lerp(b, 0.5) == FaceBox(2.5, 0, 12.5, 10)


def test_crop_is_square_uint8_and_pads_at_the_border():
    gray = np.full((100, 120), 7, np.uint8)
    crop = crop_face(gray, FaceBox(-20, -20, 30, 40), size=80, margin=0.2)
    assert crop.shape == (80, 80) and crop.dtype == np.uint8 and (crop == 7).all()


def test_detector_finds_the_real_face_and_agrees_with_naive(mead_video):
    gray = _frame(mead_video)
    detector = FaceDetector(FaceConfig())
    fast, naive = detector.detect(gray), detector.detect_naive(gray, upsample=1)
    assert len(fast) == 1 and len(naive) == 1
    assert fast[0].iou(naive[0]) > 0.6
    assert 40 < fast[0].width < 256


def test_cascade_recovers_a_small_face(mead_video):
    """A face too small for the fast pass (downscaled frame, upsample 0) is still found."""
    import cv2

    gray = _frame(mead_video)
    small_face = np.full((720, 1280), 90, np.uint8)
    small_face[300:364, 600:664] = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    no_cascade = FaceDetector(FaceConfig(cascade=False)).detect(small_face)
    found = FaceDetector(FaceConfig()).detect(small_face)
    assert no_cascade == []
    assert len(found) == 1 and FaceBox(600, 300, 664, 364).iou(found[0]) > 0.3


def test_detector_finds_nothing_in_a_blank_frame():
    assert FaceDetector(FaceConfig()).detect(np.zeros((360, 640), np.uint8)) == []


def test_tracker_keeps_ids_through_a_short_miss_and_never_swaps_people():
    cfg = FaceConfig(detect_every=5, max_gap=10)
    tracker = FaceTracker(cfg)
    left, right = FaceBox(10, 10, 60, 60), FaceBox(300, 10, 350, 60)
    assert tracker.update(0, [left, right]) == [0, 1]
    assert tracker.update(5, [right.lerp(left, 0.02), left]) == [1, 0]
    assert tracker.update(10, [left]) == [0]           # the right face is missed once
    assert tracker.update(15, [right, left]) == [1, 0]  # ... and keeps its id
    t_right = tracker.tracks[1]
    assert tracker.box_at(t_right, 12).real is False    # carried over the miss
    assert tracker.box_at(t_right, 2).real is True      # interpolated between two detections
    assert tracker.update(40, [right]) == [2]           # gone too long: a new id


def test_clips_cover_consecutive_frames_of_a_real_video(mead_video):
    info = video_io.probe(mead_video)
    windows = consecutive_segments(info.frame_count, 20, keep_tail=False)
    results = list(clips.face_clips(video_io.iter_gray_frames(mead_video, 640), windows,
                                    FaceConfig(), follow="largest"))
    assert [r.requested for r in results] == windows
    for r in results:
        assert r.complete and len(r.clips) == 1, r.reason
        clip = r.clips[0]
        assert clip.crops.shape == (20, 80, 80) and clip.crops.dtype == np.uint8
        assert clip.detect_frac == 1.0 and len(clip.boxes) == 20
    # consecutive crops of a talking face are similar but not identical frames
    crops = results[0].clips[0].crops.astype(float)
    diffs = np.abs(np.diff(crops, axis=0)).mean(axis=(1, 2))
    assert (diffs > 0).all() and diffs.max() < 30


def _read_ahead_threads() -> int:
    import threading

    return sum(t.name == "omgclip-read-ahead" for t in threading.enumerate())


def test_read_ahead_yields_every_frame_of_a_real_video_in_order(shared_data):
    """eamm_video_sad.mp4 declares 157 frames but only 110 decode: read-ahead ends there too."""
    path = shared_data / "mead_clips" / "videos" / "eamm_video_sad.mp4"
    direct = list(video_io.iter_gray_frames(path, 320))
    ahead = list(video_io.read_ahead(video_io.iter_gray_frames(path, 320), depth=4))
    assert [i for i, _ in ahead] == [i for i, _ in direct] == list(range(110))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ahead, direct))
    assert _read_ahead_threads() == 0


def test_read_ahead_raises_the_producers_error_where_it_happened():
    def items():
        yield 0
        yield 1
        raise video_io.VideoError("broken at 2")

    got = []
    with pytest.raises(video_io.VideoError, match="broken at 2"):
        for x in video_io.read_ahead(items(), depth=1):
            got.append(x)
    assert got == [0, 1] and _read_ahead_threads() == 0


def test_read_ahead_stopped_early_closes_its_source_and_thread(shared_data):
    closed = []

    def frames():
        try:
            yield from video_io.iter_gray_frames(shared_data / "mead_clips" / "videos" / "eamm_video_sad.mp4", 320)
        finally:
            closed.append(True)

    ahead = video_io.read_ahead(frames(), depth=2)
    assert next(ahead)[0] == 0 and next(ahead)[0] == 1
    ahead.close()  # what a consumer that raises or breaks does
    assert closed == [True] and _read_ahead_threads() == 0
    with pytest.raises(ValueError, match="depth"):
        next(video_io.read_ahead([], depth=0))


def test_a_block_is_never_silently_shortened_at_a_truncated_end(shared_data):
    """eamm_video_sad.mp4 declares 157 frames but only 110 decode."""
    path = shared_data / "mead_clips" / "videos" / "eamm_video_sad.mp4"
    info = video_io.probe(path)
    assert info.frame_count == 157
    windows = [Block(40, 20), Block(100, 20), Block(120, 20)]
    results = list(clips.face_clips(video_io.iter_gray_frames(path, 640), windows, FaceConfig()))
    assert results[0].complete and results[0].clips
    assert not results[1].complete and results[1].block.length == 10
    assert results[2].block.length == 0 and results[2].reason == clips.VIDEO_ENDED


def test_no_face_windows_say_so():
    frames = ((i, np.full((240, 320), 128, np.uint8)) for i in range(40))
    results = list(clips.face_clips(frames, [Block(0, 20), Block(20, 20)], FaceConfig()))
    assert [r.reason for r in results] == [clips.NO_FACE, clips.NO_FACE]


def test_several_people_get_separate_tracks(shared_data):
    path = shared_data / "unlabeled_faces" / "videos" / "face_recognition_short_hamilton_clip.mp4"
    results = list(clips.face_clips(video_io.iter_gray_frames(path, 640),
                                    consecutive_segments(120, 20), FaceConfig(), follow="all"))
    ids = {c.track_id for r in results for c in r.clips}
    assert len(ids) >= 2


class _ScriptedDetector:
    """Unit-test stand-in for FaceDetector (the real one runs in the tests above): a big face
    in frames 0-9 only, a small face in every frame. Frame index is in pixel (0, 0)."""

    big, small = FaceBox(10, 10, 110, 110), FaceBox(200, 20, 240, 60)

    def detect_staged(self, gray, first=0, thorough=True):
        return ([self.big, self.small] if int(gray[0, 0]) < 10 else [self.small]), 0

    def detect_near(self, gray, around):
        return self.detect_staged(gray)[0]


def test_largest_face_that_cannot_be_followed_gives_way_to_the_next():
    frames = ((i, np.full((240, 320), i, np.uint8)) for i in range(60))
    cfg = FaceConfig(detect_every=5, max_gap=10)
    first, second = clips.face_clips(frames, [Block(0, 20), Block(20, 20)], cfg,
                                     detector=_ScriptedDetector(), follow="largest")
    assert [c.track_id for c in first.clips] == [1]          # the small face, followed throughout
    assert first.rejected == ((0, clips.FACE_LOST),)         # the big one left after frame 9
    assert first.clips[0].boxes[0] == _ScriptedDetector.small
    assert [c.track_id for c in second.clips] == [1] and second.rejected == ()


def test_faces_are_found_again_near_where_they_were(mead_video):
    """The cheap region search finds the same face as a whole-frame pass, and a moved-away
    region finds none."""
    detector = FaceDetector(FaceConfig())
    gray = _frame(mead_video)
    (whole,) = detector.detect(gray)
    (near,) = detector.detect_near(gray, [whole])
    assert near.iou(whole) > 0.7
    far = FaceBox(0, 0, 30, 30)
    assert detector.detect_near(gray, [far]) == []


class _FaceUntil:
    """Stand-in detector: one face in frames before ``last + 1`` (frame index in pixel (0, 0))."""

    box = FaceBox(60, 40, 140, 120)

    def __init__(self, last: int):
        self.last = last

    def detect_staged(self, gray, first=0, thorough=True):
        return ([self.box] if int(gray[0, 0]) <= self.last else []), 0

    def detect_near(self, gray, around):
        return self.detect_staged(gray)[0]


@pytest.mark.parametrize("min_frac, kept", [(0.5, True), (0.55, True), (0.56, False), (1.0, False)])
def test_blocks_with_too_few_real_detections_are_skipped(min_frac, kept):
    """Found on key frames 0, 5, 10 and lost after: frames 0-10 are real (11 of 20), 11-19
    are carried. The block is kept exactly when 11/20 reaches the minimum fraction."""
    frames = ((i, np.full((240, 320), i, np.uint8)) for i in range(40))
    cfg = FaceConfig(detect_every=5, max_gap=10, min_detect_frac=min_frac)
    (result,) = clips.face_clips(frames, [Block(0, 20)], cfg, detector=_FaceUntil(12), follow="largest")
    if kept:
        (clip,) = result.clips
        assert clip.real == (True,) * 11 + (False,) * 9 and clip.detect_frac == pytest.approx(0.55)
    else:
        assert result.clips == () and result.reason == clips.FEW_DETECTIONS


def test_dlib_models_load_once_per_thread():
    """dlib's detector is made once per thread (making it takes 0.25 s, ~17% of predicting a
    20-s clip) and never shared between threads (dlib's objects are not thread safe)."""
    import threading

    from omgclip.faces.detect import FaceDetector
    from omgclip.faces.dlib_models import dlib_object

    a, b = FaceDetector(), FaceDetector()
    assert a._detector() is b._detector() is dlib_object("frontal")
    other = []
    t = threading.Thread(target=lambda: other.append(FaceDetector()._detector()))
    t.start()
    t.join()
    assert other and other[0] is not a._detector()
    with pytest.raises(ValueError, match="unknown dlib object"):
        dlib_object("nope")


def test_framing_zoom_turns_a_real_crop_into_the_same_face_at_another_margin(mead_video, tmp_path):
    """``transfer.framing_zoom`` ties a crop margin to a zoom of FER2013's framing: a real dlib
    crop at the default margin, reframed by the ratio of the two margins' zooms, is the crop at
    the tighter margin (about 2 gray levels apart; 20+ without the reframe)."""
    from omgclip.learn.transfer import CROP_FRAMING_ZOOM, framing_zoom, reframe

    gray = _frame(mead_video)
    (box,) = FaceDetector(FaceConfig()).detect(gray)
    wide, tight = crop_face(gray, box, 80, 0.15), crop_face(gray, box, 80, 0.065)
    assert framing_zoom(0.15) == pytest.approx(CROP_FRAMING_ZOOM)
    assert framing_zoom(0.065) == pytest.approx(1.0, abs=1e-3)  # FER2013 as given
    ratio = framing_zoom(0.065) / framing_zoom(0.15)

    def diff(a, b):
        return float(np.abs(a.astype(np.float32) - b).mean())

    assert diff(reframe(wide[None], ratio)[0], tight) < 4
    assert diff(wide, tight) > 3 * diff(reframe(wide[None], ratio)[0], tight)
    with pytest.raises(ValueError, match="margin"):
        framing_zoom(-0.1)
    # a built dataset's framing comes from the margin in its build_config.json
    import json

    from omgclip.learn.transfer import dataset_framing_zoom, face_framing_zoom

    assert face_framing_zoom({"margin": 0.065}) == pytest.approx(framing_zoom(0.065))  # e.g. a weights file's meta
    assert face_framing_zoom(None) == pytest.approx(CROP_FRAMING_ZOOM)

    (tmp_path / "build_config.json").write_text(json.dumps({"face": {"margin": 0.065}}))
    assert dataset_framing_zoom(tmp_path) == pytest.approx(framing_zoom(0.065))
    (tmp_path / "build_config.json").write_text('{"face": ')  # damaged: the default margin
    assert dataset_framing_zoom(tmp_path) == pytest.approx(CROP_FRAMING_ZOOM)
    assert dataset_framing_zoom(tmp_path / "absent") == pytest.approx(CROP_FRAMING_ZOOM)
