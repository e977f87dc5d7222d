"""omgclip.faces.tracking: track ids from key-frame boxes, and each track's box at any frame.

Pure unit tests on hand-made boxes (the real detector on real footage is in test_face.py)."""

from __future__ import annotations

import pytest

from omgclip.faces.detect import FaceBox, FaceConfig
from omgclip.faces.tracking import FaceTracker

EVERY, GAP = 5, 10


def _tracker() -> FaceTracker:
    return FaceTracker(FaceConfig(detect_every=EVERY, max_gap=GAP))


def _box(x: float, y: float = 0.0, size: float = 60.0) -> FaceBox:
    return FaceBox(x, y, x + size, y + size)


def _coords(b: FaceBox) -> tuple[float, float, float, float]:
    return (b.left, b.top, b.right, b.bottom)


def test_new_tracks_are_numbered_largest_first():
    t = _tracker()
    assert t.update(0, [_box(0, size=40), _box(200, size=90), _box(400, size=60)]) == [2, 0, 1]


def test_one_track_never_takes_two_boxes():
    t = _tracker()
    assert t.update(0, [_box(100)]) == [0]
    # both new boxes overlap the one track: the closer keeps the id, the other is a new face
    assert t.update(5, [_box(130), _box(104)]) == [1, 0]
    assert [len(tr.key_frames) for tr in t.tracks] == [2, 1]
    assert _coords(t.tracks[0].last_box) == _coords(_box(104))


def test_greedy_matching_takes_the_best_pairs_first():
    """Two overlapping faces side by side: each box overlaps both tracks, and only taking
    the best pairs first keeps them apart (worst-first would swap the two people)."""
    t = _tracker()
    left, right = _box(0, size=100), _box(50, size=100)  # IoU 1/3: each could match either
    assert t.update(0, [left, right]) == [0, 1]
    assert t.update(5, [left, right]) == [0, 1]
    assert t.update(10, [right, left]) == [1, 0]


def test_interpolation_runs_forward_in_time_with_exact_coordinates():
    t = _tracker()
    t.update(0, [FaceBox(0, 10, 60, 70)])
    assert t.update(5, [FaceBox(20, 14, 84, 78)]) == [0]
    track = t.tracks[0]
    for f, frac in ((0, 0.0), (1, 0.2), (2, 0.4), (4, 0.8), (5, 1.0)):
        tb = t.box_at(track, f)
        assert tb.real is True
        expect = (20 * frac, 10 + 4 * frac, 60 + 24 * frac, 70 + 8 * frac)
        assert _coords(tb.box) == pytest.approx(expect), f


def test_a_moving_face_keeps_its_id_and_is_followed_between_key_frames():
    t = _tracker()
    for k in range(10):  # 5 px per frame to the right, 1 px per frame down
        assert t.update(k * EVERY, [_box(25 * k, 5 * k)]) == [0]
    track = t.tracks[0]
    for f in range(0, 45):
        tb = t.box_at(track, f)
        assert tb is not None and tb.real
        assert (tb.box.left, tb.box.top) == pytest.approx((5 * f, f)), f


def test_crossing_faces_never_swap_ids():
    """Two people walk past each other (one a little lower): each keeps their own id, and
    each track's interpolated box follows that person's own path."""
    t = _tracker()
    for k in range(12):
        a, b = _box(20 * k, 0), _box(220 - 20 * k, 45)
        boxes = [a, b] if k % 2 == 0 else [b, a]  # detection order must not matter
        ids = t.update(k * EVERY, boxes)
        assert (ids if k % 2 == 0 else ids[::-1]) == [0, 1], k
    ta, tb = t.tracks
    for f in (7, 23, 31, 52):
        assert t.box_at(ta, f).box.left == pytest.approx(4 * f)
        assert t.box_at(tb, f).box.left == pytest.approx(220 - 4 * f)
        assert t.box_at(ta, f).box.top == 0 and t.box_at(tb, f).box.top == 45


def test_a_track_lives_exactly_max_gap_plus_detect_every_frames():
    t = _tracker()
    assert t.update(0, [_box(100)]) == [0]
    assert t.update(15, [_box(100)]) == [0]   # 15 frames later: still the same face
    assert t.update(35, [_box(100)]) == [1]   # 20 frames without it: a new face


def test_boxes_over_a_miss_are_carried_and_marked_not_real():
    t = _tracker()
    t.update(0, [_box(0)])
    t.update(5, [])
    t.update(10, [])
    t.update(15, [_box(30)])
    track = t.tracks[0]
    # a gap of 15 frames <= max_gap + detect_every: interpolated, but not really detected
    assert [t.box_at(track, f).real for f in (0, 1, 7, 14, 15)] == [True, False, False, False, True]
    assert t.box_at(track, 6).box.left == pytest.approx(12.0)


def test_carrying_stops_exactly_after_max_gap_frames():
    t = _tracker()
    t.update(0, [_box(0)])
    for k in range(1, 8):
        t.update(k * EVERY, [])
    track = t.tracks[0]
    assert t.box_at(track, 4).real is False           # tail before the next key frame said 'gone'
    assert _coords(t.box_at(track, GAP).box) == _coords(_box(0))
    assert t.box_at(track, GAP).real is False
    assert t.box_at(track, GAP + 1) is None
    # and before a track's first detection, its box is carried back at most max_gap frames
    t2 = _tracker()
    t2.update(0, [])
    t2.update(20, [_box(0)])
    track2 = t2.tracks[0]
    assert t2.box_at(track2, 20 - GAP).real is False and t2.box_at(track2, 20 - GAP - 1) is None


def test_a_face_back_after_a_long_miss_is_a_new_track_and_the_old_one_ends():
    t = _tracker()
    t.update(0, [_box(0)])
    assert t.update(30, [_box(0)]) == [1]   # 30 > max_gap + detect_every
    old, new = t.tracks
    assert t.box_at(old, GAP).real is False and t.box_at(old, GAP + 1) is None
    assert t.box_at(new, 30 - GAP).real is False and t.box_at(new, 30 - GAP - 1) is None


def test_the_tail_after_the_last_key_frame_is_real_until_the_next_key_frame():
    t = _tracker()
    t.update(0, [_box(0)])
    track = t.tracks[0]
    assert t.box_at(track, 4).real is True   # the detector has not looked again yet
    t.update(5, [])
    assert t.box_at(track, 4).real is False  # it looked at frame 5 and the face was gone


def test_key_frames_must_increase():
    t = _tracker()
    t.update(5, [])
    with pytest.raises(ValueError):
        t.update(5, [])


# --------------------------------------------------------------------------- matching rules
def test_a_far_away_face_while_a_track_is_alive_is_a_new_face():
    t = _tracker()
    assert t.update(0, [_box(0)]) == [0]
    assert t.update(5, [_box(400)]) == [1]


def test_a_box_matches_by_overlap_alone():
    t = FaceTracker(FaceConfig(detect_every=EVERY, max_gap=GAP, match_iou=0.25, match_dist=0.01))
    t.update(0, [_box(0, size=100)])
    assert t.update(5, [_box(60, size=100)]) == [0]     # IoU exactly 0.25, centres 0.6 widths apart
    t2 = FaceTracker(FaceConfig(detect_every=EVERY, max_gap=GAP, match_iou=0.26, match_dist=0.01))
    t2.update(0, [_box(0, size=100)])
    assert t2.update(5, [_box(60, size=100)]) == [1]


def test_a_box_matches_by_centre_distance_alone():
    # a much smaller box 30 px from the centre of a 100-px track: IoU 0.04, distance 0.3 widths
    t = FaceTracker(FaceConfig(detect_every=EVERY, max_gap=GAP, match_iou=0.5, match_dist=0.3))
    t.update(0, [_box(0, size=100)])
    assert t.update(5, [FaceBox(70, 40, 90, 60)]) == [0]
    t2 = FaceTracker(FaceConfig(detect_every=EVERY, max_gap=GAP, match_iou=0.5, match_dist=0.29))
    t2.update(0, [_box(0, size=100)])
    assert t2.update(5, [FaceBox(70, 40, 90, 60)]) == [1]


def test_the_better_match_combines_overlap_and_centre_distance():
    """Box A: same centre, half the size (IoU 0.25, distance 0 -> 1.25). Box B: same size,
    a third of a width to the side (IoU 0.50, distance 0.33 -> 1.17). A continues the track."""
    t = _tracker()
    t.update(0, [_box(0, size=100)])
    assert t.update(5, [FaceBox(33, 0, 133, 100), FaceBox(25, 25, 75, 75)]) == [1, 0]


def test_a_taken_box_does_not_stop_the_matching_of_the_others():
    """Pairs by quality: (L, l) 2.0, (R, l) 0.83 -- l is taken --, (R, r) 0.65: R still gets r."""
    t = _tracker()
    t.update(0, [_box(0, size=100), _box(50, size=100)])
    assert t.update(5, [_box(0, size=100), _box(110, size=100)]) == [0, 1]


# --------------------------------------------------------------------------- Track itself
def test_a_track_built_by_hand_interpolates_carries_and_gives_up():
    from omgclip.faces.tracking import Track

    track = Track(7)
    track.add(10, _box(10))
    track.add(25, _box(40))        # 15 frames later: interpolated, but not really detected
    track.add(60, _box(40))        # 35 frames later: carried from both ends, nothing between
    assert track.box_at(10, EVERY, GAP, 60) == t_box(_box(10), True)
    mid = track.box_at(20, EVERY, GAP, 60)
    assert mid.real is False and mid.box.left == pytest.approx(30.0)
    assert track.box_at(25 + GAP, EVERY, GAP, 60) == t_box(_box(40), False)
    assert track.box_at(25 + GAP + 1, EVERY, GAP, 60) is None
    assert track.box_at(60 - GAP - 1, EVERY, GAP, 60) is None
    assert track.box_at(60 - GAP, EVERY, GAP, 60) == t_box(_box(40), False)
    # after the last key frame: real until the detector looks again, then carried up to max_gap
    assert track.box_at(64, EVERY, GAP, 60).real is True
    assert track.box_at(65, EVERY, GAP, 60).real is False
    assert track.box_at(64, EVERY, GAP, 65).real is False
    assert track.box_at(70, EVERY, GAP, 65).real is False and track.box_at(71, EVERY, GAP, 65) is None
    # before the first key frame: carried back max_gap frames
    assert track.box_at(0, EVERY, GAP, 60) == t_box(_box(10), False)
    first = Track(0)
    first.add(0, _box(0))
    assert first.box_at(0, EVERY, GAP, 0).real is True


def test_a_cut_ends_the_tail_exactly_at_the_new_shot():
    t = _tracker()
    t.update(0, [_box(0)])
    t.update(10, [_box(0)])
    t.cut(15)                       # the shot ends one detect_every after the last key frame
    t.update(15, [_box(300)])
    old = t.tracks[0]
    assert t.box_at(old, 14).real is True          # the tail up to the cut stays real
    assert t.box_at(old, 15) is None and t.box_at(old, 11).real is True
    assert t.tracks[1].track_id == 1 and t.box_at(t.tracks[1], 14) is None


def test_tracked_boxes_are_immutable():
    import dataclasses

    tb = t_box(_box(0), True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tb.real = False


def t_box(box: FaceBox, real: bool):
    from omgclip.faces.tracking import TrackedBox

    return TrackedBox(box, real)
