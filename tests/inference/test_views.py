"""Which clips a video's views come from: whole-video clips, timeline windows, one decode per clip."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nlnet.data import VideoDataset
from nlnet.data.decoding import VideoInfo
from nlnet.data.synthetic import write_video
from nlnet.data.transforms import normalize
from nlnet.data.sampling import clip_span, eval_clip_start
from nlnet.inference import Timeline, ViewProtocol, Window, clip_starts, timeline_windows
from nlnet.inference.views import ClipViews, VideoViewStream, plan_clips
from nlnet.utils.errors import ConfigError


@pytest.mark.parametrize("duration, window, stride, count", [
    (10.0, 2.0, 1.0, 9),    # starts 0, 1, ..., 8
    (10.0, 2.0, None, 5),   # stride = window: 0, 2, 4, 6, 8
    (10.5, 2.0, 2.0, 6),    # 0, 2, 4, 6, 8 and one flush with the end: 8.5
    (1.92, 0.32, 0.32, 6),
    (1.5, 2.0, 1.0, 1),     # shorter than a window: the whole video
    (2.0, 2.0, 0.5, 1),
])
def test_timeline_length_and_coverage(duration, window, stride, count):
    windows = timeline_windows(duration, window, stride)
    assert len(windows) == count
    assert count == max(1, 1 + math.ceil((duration - window) / (stride or window) - 1e-9))
    assert windows[0].start == 0.0 and windows[-1].end == pytest.approx(duration)
    assert all(w.end - w.start == pytest.approx(min(window, duration)) for w in windows)
    starts = [w.start for w in windows]
    assert starts == sorted(starts)
    # no gap: each window starts before its predecessor ends
    assert all(b.start <= a.end + 1e-9 for a, b in zip(windows, windows[1:]))


def test_whole_video_clips_are_the_test_protocol():
    seconds = clip_span(8, 4, 25.0)
    span = Window(0.0, 10.0)
    assert clip_starts(span, seconds, 10, 10.0) == pytest.approx(
        [eval_clip_start(10.0, seconds, i, 10) for i in range(10)])


def test_a_clip_longer_than_its_window_is_centred_and_stays_inside_the_video():
    # clip 1.0 s, window 0.4 s in the middle of a 5 s video: centred on the window
    assert clip_starts(Window(2.0, 2.4), 1.0, 1, 5.0) == pytest.approx([1.7])
    # at the start and end of the video it is clamped inside
    assert clip_starts(Window(0.0, 0.4), 1.0, 1, 5.0) == [0.0]
    assert clip_starts(Window(4.6, 5.0), 1.0, 1, 5.0) == pytest.approx([4.0])
    # a video shorter than the clip: the clip starts at 0 (the decoder repeats the last frame)
    assert clip_starts(Window(0.0, 0.5), 1.0, 3, 0.5) == [0.0, 0.0, 0.0]


def test_plan_decodes_each_clip_once_for_every_group_it_serves():
    info = VideoInfo(duration=1.92, fps=25.0, num_frames=48, width=32, height=32)
    protocol = ViewProtocol(num_frames=4, sampling_rate=2, short_side=32, crop_size=32, num_clips=1, num_crops=1)
    windows, clips = plan_clips(info, protocol, Timeline(window=1.92))
    assert windows == [Window(0.0, 1.92)]
    (times, groups), = clips.items()  # the whole video's clip is the window's: decoded once, for both
    start = times[0]
    assert start == pytest.approx((1.92 - 7 / 25) / 2) and groups == (0, 1)
    windows, clips = plan_clips(info, protocol, Timeline(window=0.32, clips=2))
    assert len(windows) == 6 and list(clips) == sorted(clips)
    groups = [g for gs in clips.values() for g in gs]
    assert groups.count(0) == 1 and all(groups.count(k) == 2 for k in range(1, 7))


@pytest.mark.parametrize("kwargs, key", [
    (dict(window=0), "window=0"), (dict(window=1.0, stride=-1), "stride=-1"),
    (dict(window=1.0, clips=0), "window_clips=0"),
])
def test_bad_timeline_is_one_line(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        Timeline(**kwargs)


@pytest.mark.parametrize("decode_resize", [False, True])
def test_stream_views_are_the_test_datasets_views(tmp_path, decode_resize):
    """predict's views of a video equal tools/test.py's (VideoDataset in test mode) bit for bit, with the
    resize done where the stored protocol says (here 40 -> 32 pixels: FFmpeg's and torchvision's
    resizes differ)."""
    rng = np.random.default_rng(0)
    write_video(tmp_path / "clip.mp4", rng.integers(0, 256, (30, 40, 56, 3), dtype=np.uint8), fps=25)
    (tmp_path / "list.txt").write_text("clip.mp4 0\n")
    dataset = VideoDataset(root=tmp_path, annotations=tmp_path / "list.txt", mode="test", num_frames=4,
                           sampling_rate=3, test_scale=32, test_crop_size=32, num_clips=2, num_crops=3,
                           decode_resize=decode_resize)
    protocol = ViewProtocol(num_frames=4, sampling_rate=3, short_side=32, crop_size=32, num_clips=2, num_crops=3,
                            decode_resize=decode_resize)
    stream = [r for r in VideoViewStream(paths=[str(tmp_path / "clip.mp4")], protocol=protocol)
              if isinstance(r, ClipViews)]
    assert len(stream) == 2
    expected = torch.stack([normalize(dataset[i]["video"], dataset.mean, dataset.std) for i in range(6)])
    assert torch.equal(torch.cat([r.views for r in stream]), expected)
