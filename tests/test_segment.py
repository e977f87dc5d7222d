import pytest

from omgclip.dataset.segment import (Block, FrameRange, consecutive_segments, cut_blocks, resample_indices,
                             stride_for, strides_from_frequencies, time_to_frames)


def test_time_to_frames_uses_real_fps_and_clips_to_length():
    assert time_to_frames(1.0, 2.0, 25.0) == FrameRange(25, 50)
    assert time_to_frames(1.0, 2.0, 29.97) == FrameRange(30, 60)
    assert time_to_frames(None, None, 30.0, frame_count=90) == FrameRange(0, 90)
    assert time_to_frames(2.0, 10.0, 30.0, frame_count=90) == FrameRange(60, 90)
    assert len(time_to_frames(5.0, 6.0, 30.0, frame_count=90)) == 0
    with pytest.raises(ValueError):
        time_to_frames(0, 1, 0.0)


def test_cut_blocks_are_whole_consecutive_and_strided():
    blocks = cut_blocks(FrameRange(10, 75), 20, 20)
    assert blocks == [Block(10, 20), Block(30, 20), Block(50, 20)]
    assert all(b.stop <= 75 and list(b.frames()) == list(range(b.start, b.start + 20)) for b in blocks)
    dense = cut_blocks(FrameRange(10, 75), 20, 10)
    assert [b.start for b in dense] == [10, 20, 30, 40, 50]
    assert cut_blocks(FrameRange(0, 19), 20, 10) == []


def test_consecutive_segments_tile_the_video_without_gaps():
    segs = consecutive_segments(95, 20)
    assert segs[0].start == 0 and segs[-1].stop == 95
    assert all(a.stop == b.start for a, b in zip(segs, segs[1:]))
    assert segs[-1].length == 15
    assert consecutive_segments(10, 20) == [Block(0, 10)]


def test_rare_class_strides():
    rare = {1: 10, 2: 10, 6: 10}
    assert stride_for(1, 20, rare) == 10
    assert stride_for(3, 20, rare) == 20
    # OMG train counts: surprise is 34x rarer than neutral -> the minimum stride
    counts = {0: 293, 1: 113, 2: 60, 3: 713, 4: 891, 5: 346, 6: 26}
    strides = strides_from_frequencies(counts, 20)
    assert strides[4] == 20 and strides[6] == 2
    assert strides[1] < strides[0] < strides[4]
    assert strides_from_frequencies({0: 0, 3: 5}, 20) == {3: 20}


def test_resample_indices_stretch_evenly():
    idx = resample_indices(3, 20)
    assert len(idx) == 20 and idx[0] == 0 and idx[-1] == 2 and idx == sorted(idx)
    assert sorted(idx.count(i) for i in range(3)) == [6, 7, 7]


def test_default_rare_strides_follow_the_common_stride():
    from omgclip.dataset.segment import default_rare_strides

    assert default_rare_strides(20) == {1: 10, 2: 10, 6: 10}
    assert default_rare_strides(5) == {1: 2, 2: 2, 6: 2}
    assert default_rare_strides(1) == {1: 1, 2: 1, 6: 1}


def test_a_block_that_fits_exactly_is_kept():
    assert cut_blocks(FrameRange(0, 40), 20, 20) == [Block(0, 20), Block(20, 20)]
    assert cut_blocks(FrameRange(5, 25), 20, 20) == [Block(5, 20)]
    assert cut_blocks(FrameRange(0, 30), 20, 5) == [Block(0, 20), Block(5, 20), Block(10, 20)]


def test_an_evenly_divided_video_has_no_empty_tail_segment():
    assert consecutive_segments(40, 20) == [Block(0, 20), Block(20, 20)]
    assert consecutive_segments(41, 20) == [Block(0, 20), Block(20, 20), Block(40, 1)]
    assert consecutive_segments(0, 20) == []
    # strided segments overlap and never get a short tail
    assert consecutive_segments(50, 20, stride=10) == [Block(0, 20), Block(10, 20), Block(20, 20), Block(30, 20)]
    assert consecutive_segments(45, 20, keep_tail=False) == [Block(0, 20), Block(20, 20)]


def test_auto_strides_are_rounded_not_truncated():
    # 20 * 38 / 100 = 7.6 -> 8 (int() would give 7); 20 * 62 / 100 = 12.4 -> 12
    assert strides_from_frequencies({0: 100, 1: 38, 2: 62}, 20) == {0: 20, 1: 8, 2: 12}
    assert strides_from_frequencies([100, 38, 62], 20) == {0: 20, 1: 8, 2: 12}
    # the floor applies: 20 * 1 / 100 = 0.2 -> min_stride
    assert strides_from_frequencies({0: 100, 6: 1}, 20, min_stride=3) == {0: 20, 6: 3}
    # labels outside 0..6 are ignored
    assert strides_from_frequencies({0: 10, 7: 50, -1: 50}, 20) == {0: 20}


def test_time_to_frames_boundaries():
    # a frame whose timestamp equals the end is outside; one at the start is inside
    assert time_to_frames(0.4, 0.8, 25.0) == FrameRange(10, 20)
    assert time_to_frames(0.41, 0.81, 25.0) == FrameRange(11, 21)
    # a start past the end of the video gives an empty range at the end
    assert time_to_frames(9.0, 12.0, 10.0, frame_count=50) == FrameRange(50, 50)


@pytest.mark.parametrize("fps", [0.0, -25.0, float("nan"), None])
def test_time_to_frames_refuses_a_bad_fps(fps):
    with pytest.raises(ValueError):
        time_to_frames(0, 1, fps)


@pytest.mark.parametrize("call", [lambda: cut_blocks(FrameRange(0, 40), 0, 20),
                                  lambda: cut_blocks(FrameRange(0, 40), 20, 0),
                                  lambda: consecutive_segments(40, 0),
                                  lambda: consecutive_segments(40, 20, stride=0),
                                  lambda: consecutive_segments(40, 0, stride=5),
                                  lambda: resample_indices(0, 20),
                                  lambda: time_to_frames(0, None, 25.0)])
def test_impossible_block_math_raises(call):
    with pytest.raises(ValueError):
        call()


def test_blocks_and_ranges_are_immutable_sortable_values():
    import dataclasses

    assert sorted([Block(20, 20), Block(0, 20), Block(0, 10)]) == [Block(0, 10), Block(0, 20), Block(20, 20)]
    assert len({Block(0, 20), Block(0, 20), Block(20, 20)}) == 2 and len({FrameRange(0, 5), FrameRange(0, 5)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        Block(0, 20).start = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        FrameRange(0, 20).stop = 5
    assert len(FrameRange(0, 40)) == 40 and len(FrameRange(10, 5)) == 0


def test_odd_but_valid_inputs():
    assert time_to_frames(-1.0, 1.0, 25.0) == FrameRange(0, 25)       # negative start clamps to 0
    assert time_to_frames(0.0, 10.0, 0.5) == FrameRange(0, 5)         # a slow frame rate is fine
    assert resample_indices(1, 20) == [0] * 20
    assert [b.start for b in consecutive_segments(25, 20, stride=1)] == [0, 1, 2, 3, 4, 5]
    assert cut_blocks(FrameRange(0, 20), 1, 7) == [Block(0, 1), Block(7, 1), Block(14, 1)]
    assert cut_blocks(FrameRange(0, 22), 20, 1) == [Block(0, 20), Block(1, 20), Block(2, 20)]
    assert consecutive_segments(3, 1) == [Block(0, 1), Block(1, 1), Block(2, 1)]
