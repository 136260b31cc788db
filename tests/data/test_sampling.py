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
