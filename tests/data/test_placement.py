"""The rules that place dense test clips in time (nlnet, PySlowFast, Caffe2), checked frame by frame
against expectations worked out by hand, and the clips the dataset then decodes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nlnet.data.decoding import VideoInfo, VideoReader
from nlnet.data.placement import CLIP_PLACEMENTS, check_placement, clip_frames, placement_times
from nlnet.data.sampling import read_frames
from nlnet.data.synthetic import write_video
from nlnet.data.transforms import ViewProtocol
from nlnet.utils.errors import ConfigError

# N = 100 frames, n = 3 clips of T = 4 frames at tau = 8.
EXPECTED = {
    # span (T - 1) * tau + 1 = 25; starts (100 - 25) * k / 2 = 0, 37.5, 75: first to last frame
    "nlnet": [[0, 8, 16, 24], [37, 45, 53, 61], [75, 83, 91, 99]],
    # clip size T * tau = 32; starts (100 - 32) * k / 3 = 0, 22.67, 45.33; 4 frames evenly spaced over
    # [start, start + 31] (steps of 31 / 3), truncated: 22.67 33 43.33 53.67 -> 22 33 43 53
    "pyslowfast": [[0, 10, 20, 31], [22, 33, 43, 53], [45, 55, 66, 76]],
    # starts floor(100 / 3 * k) = 0, 33, 66, every 8th frame from there
    "caffe2": [[0, 8, 16, 24], [33, 41, 49, 57], [66, 74, 82, 90]],
}


@pytest.mark.parametrize("rule", CLIP_PLACEMENTS)
def test_each_rule_places_the_clips_as_its_codebase(rule):
    frames = [clip_frames(rule, 100, k, 3, num_frames=4, sampling_rate=8).tolist() for k in range(3)]
    assert frames == EXPECTED[rule]


def test_caffe2_wraps_past_the_end_and_pyslowfast_clamps():
    # N = 20, one clip of 4 x 8 (32 frames, longer than the video)
    assert clip_frames("caffe2", 20, 0, 1, num_frames=4, sampling_rate=8).tolist() == [0, 8, 16, 4]
    # Caffe2's second of 2 clips starts at frame 10: 10 18 26 34 -> 10 18 6 14
    assert clip_frames("caffe2", 20, 1, 2, num_frames=4, sampling_rate=8).tolist() == [10, 18, 6, 14]
    # PySlowFast: start 0, 4 frames over [0, 31] (0, 10.33, 20.67, 31), clamped to frame 19
    assert clip_frames("pyslowfast", 20, 0, 1, num_frames=4, sampling_rate=8).tolist() == [0, 10, 19, 19]
    # nlnet: a single clip is centred (room 75: it starts at 37.5)
    assert clip_frames("nlnet", 100, 0, 1, num_frames=4, sampling_rate=8).tolist() == [37, 45, 53, 61]


def test_nlnet_rule_in_seconds_is_the_frame_rule():
    info = VideoInfo(duration=4.0, fps=25.0, num_frames=100, width=32, height=32)
    for k in range(3):
        times = placement_times("nlnet", info, k, 3, num_frames=4, sampling_rate=8)
        assert np.floor(times * info.fps + 1e-6).astype(int).tolist() == EXPECTED["nlnet"][k]
        times = placement_times("caffe2", info, k, 3, num_frames=4, sampling_rate=8)
        assert (times * info.fps).round().astype(int).tolist() == EXPECTED["caffe2"][k]


def test_an_unknown_rule_is_one_line():
    with pytest.raises(ConfigError, match=r"data.val.clip_placement='tsn': valid choices are nlnet, pyslowfast, "
                                          r"caffe2"):
        check_placement("tsn")
    with pytest.raises(ConfigError, match=r"views.clip_placement='tsn'"):
        ViewProtocol(num_frames=4, sampling_rate=2, clip_placement="tsn")


def test_wrapped_clips_are_decoded_in_their_order(tmp_path):
    """Caffe2's wrapped clip asks for frames out of time order; they come back in the clip's order."""
    video = np.zeros((20, 16, 16, 3), np.uint8)
    video[:] = (np.arange(20) * 12)[:, None, None, None]  # frame f is flat grey 12 f
    path = tmp_path / "ramp.mp4"
    write_video(path, video, fps=10)
    view = ViewProtocol(num_frames=4, sampling_rate=8, short_side=16, crop_size=16, num_clips=2, num_crops=1,
                        clip_placement="caffe2")
    with VideoReader(str(path)) as reader:
        clip = read_frames(reader, view.test_times(reader.info, 1))
    grey = clip[:, 0, 8, 8].to(torch.int64)
    assert (grey - torch.tensor([10, 18, 6, 14]) * 12).abs().max() <= 6  # frames 10 18 6 14, H.264 error aside
    # YUV planes (``color_convert="device"``) come back in the same order
    with VideoReader(str(path)) as reader:
        times = view.test_times(reader.info, 1)
        planes = read_frames(reader, times, planes=True)
    with VideoReader(str(path)) as reader:
        ordered = read_frames(reader, np.sort(times), planes=True)
    back = np.argsort(np.argsort(times, kind="stable"))
    assert torch.equal(planes.y, ordered.y[back]) and torch.equal(planes.uv, ordered.uv[back])
