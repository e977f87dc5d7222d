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
