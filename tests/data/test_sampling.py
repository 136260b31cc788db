"""Clip positions in time (paper §4.1)."""
import numpy as np
import pytest

from nlnet.data import clip_span, clip_times, eval_clip_start, train_clip_start


def test_span_and_times():
    assert clip_span(8, 8, 25.0) == pytest.approx(57 / 25)  # frames 0, 8, ..., 56 -> 57 frames
    np.testing.assert_allclose(clip_times(1.0, 4, 2, 10.0), [1.0, 1.2, 1.4, 1.6])


def test_train_start_covers_every_valid_position():
    span = clip_span(4, 2, 10.0)  # 0.7 s
    assert train_clip_start(5.0, span, 0.0) == 0.0
    assert train_clip_start(5.0, span, 0.999999) == pytest.approx(5.0 - span, abs=1e-4)
    assert train_clip_start(0.5, span, 0.7) == 0.0  # shorter than a clip: start at 0, clamp later


def test_test_clips_first_at_start_last_at_end():
    span = clip_span(4, 2, 10.0)
    starts = [eval_clip_start(5.0, span, i, 10) for i in range(10)]
    assert starts[0] == 0.0
    assert starts[-1] + span == pytest.approx(5.0)  # the last clip ends on the last frame
    assert np.allclose(np.diff(starts), np.diff(starts)[0])  # uniformly spaced
    assert eval_clip_start(5.0, span, 0, 1) == pytest.approx((5.0 - span) / 2)  # one clip: centred
    with pytest.raises(IndexError):
        eval_clip_start(5.0, span, 10, 10)


# ---- segment sampling (TSN; the SSv2 recipes) ------------------------------------------------------
def test_segment_times_hand_written():
    from nlnet.data.sampling import segment_times
    # 4 s at 10 fps, 4 segments of 10 frames, runs of 2 frames at stride 2 (3 frames): 8 first frames possible
    centred = segment_times(40, 10.0, num_segments=4, num_frames=8, sampling_rate=2, offsets=[0.5] * 4)
    np.testing.assert_allclose(centred, [0.4, 0.6, 1.4, 1.6, 2.4, 2.6, 3.4, 3.6])
    some = segment_times(40, 10.0, num_segments=4, num_frames=8, sampling_rate=2, offsets=[0, 0.5, 0.25, 0.99])
    np.testing.assert_allclose(some, [0.0, 0.2, 1.4, 1.6, 2.2, 2.4, 3.7, 3.9])


def test_segment_sampler_train_and_test():
    from nlnet.data.decoding import VideoInfo
    from nlnet.data.sampling import SegmentSampler
    info = VideoInfo(duration=8.0, fps=1.0, num_frames=8, width=32, height=32)
    sampler = SegmentSampler(num_segments=4)
    # one frame per segment of 2 frames: the second (centre) in testing, either in training
    np.testing.assert_allclose(sampler.test_times(info, 0, 1, num_frames=4, sampling_rate=1), [1, 3, 5, 7])
    np.testing.assert_allclose(sampler.test_times(info, 0, 2, num_frames=4, sampling_rate=1), [0, 2, 4, 6])
    np.testing.assert_allclose(sampler.test_times(info, 1, 2, num_frames=4, sampling_rate=1), [1, 3, 5, 7])
    rng = np.random.default_rng(0)
    for _ in range(20):
        times = sampler.train_times(info, sampler.draw(rng), num_frames=4, sampling_rate=1)
        assert np.all((times >= np.arange(4) * 2) & (times < np.arange(4) * 2 + 2))
    with pytest.raises(ValueError, match="num_frames=6 is not a multiple of num_segments=4"):
        sampler.check(6)
