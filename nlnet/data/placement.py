"""Where the dense test clips of a video lie in time: the rule of each codebase (paper §4.1 test).

The multi-clip test takes ``n`` clips of T frames at stride tau from a video of N frames; the
codebases that published Kinetics numbers place them differently, and a number is reproduced only
with its own rule:

- ``nlnet`` (the default): the clips are spread from the start to the end, clip k starting at
  ``(N - span) * k / (n - 1)`` with ``span = (T - 1) * tau + 1``; one clip is centred. Computed in
  seconds (``nlnet.data.sampling.eval_clip_start``), so variable frame rate videos are placed right.
- ``pyslowfast``: clip k starts at ``(N - T * tau) * k / n`` (PySlowFast's ``get_start_end_idx``,
  ``slowfast/datasets/decoder.py``) and its T frames are ``T`` evenly spaced indices from there to
  ``start + T * tau - 1``, truncated to whole frames and clamped to the video.
- ``caffe2``: the official Non-local release (``customized_video_io.cc``) starts clip k at frame
  ``floor(N / n * k)``, takes every tau-th frame from there, and wraps frame indices past the end
  back to the start.

Frames are counted at the video's average rate; a frame index f is the target time ``f / fps``.
"""
from __future__ import annotations

import math

import numpy as np

from nlnet.utils.errors import ConfigError

from .sampling import clip_span, clip_times, eval_clip_start

__all__ = ["CLIP_PLACEMENTS", "check_placement", "clip_frames", "placement_times"]


def _nlnet(video_frames: int, clip_index: int, num_clips: int, num_frames: int, sampling_rate: int) -> np.ndarray:
    span = (num_frames - 1) * sampling_rate + 1
    start = eval_clip_start(video_frames, span, clip_index, num_clips)
    return np.floor(start + np.arange(num_frames) * sampling_rate + 1e-6).astype(np.int64)


def _pyslowfast(video_frames: int, clip_index: int, num_clips: int, num_frames: int,
                sampling_rate: int) -> np.ndarray:
    size = num_frames * sampling_rate  # the clip's frames at the video's rate (target fps = video fps)
    start = max(video_frames - size, 0) * clip_index / num_clips
    index = np.linspace(start, start + size - 1, num_frames)
    return np.clip(index, 0, video_frames - 1).astype(np.int64)  # truncation, as ``Tensor.long()``


def _caffe2(video_frames: int, clip_index: int, num_clips: int, num_frames: int, sampling_rate: int) -> np.ndarray:
    start = math.floor(video_frames / num_clips * clip_index)
    return (start + np.arange(num_frames, dtype=np.int64) * sampling_rate) % video_frames  # periodic


RULES = {"nlnet": _nlnet, "pyslowfast": _pyslowfast, "caffe2": _caffe2}
CLIP_PLACEMENTS = tuple(RULES)


def check_placement(rule: str, key: str = "data.val.clip_placement") -> str:
    """``rule`` if it is one of :data:`CLIP_PLACEMENTS`, else a ConfigError naming ``key``."""
    if rule not in RULES:
        raise ConfigError(f"{key}={rule!r}: valid choices are {', '.join(CLIP_PLACEMENTS)}")
    return rule


def clip_frames(rule: str, video_frames: int, clip_index: int, num_clips: int, *, num_frames: int,
                sampling_rate: int) -> np.ndarray:
    """Frame indices (T,) int64 of test clip ``clip_index`` of ``num_clips`` under ``rule``.

    Args:
        rule: one of :data:`CLIP_PLACEMENTS`.
        video_frames: N, frames in the video.
        clip_index, num_clips: k and n.
        num_frames, sampling_rate: T and tau.
    """
    if not 0 <= clip_index < num_clips:
        raise IndexError(f"clip_index {clip_index} outside 0..{num_clips - 1}")
    return RULES[check_placement(rule)](max(int(video_frames), 1), clip_index, num_clips, num_frames, sampling_rate)


def placement_times(rule: str, info, clip_index: int, num_clips: int, *, num_frames: int,
                    sampling_rate: int) -> np.ndarray:
    """Target times (T,) float64 seconds of test clip ``clip_index`` under ``rule``, for a video with
    ``info`` (``nlnet.data.decoding.VideoInfo``). Caffe2's wrapped clips are not in time order
    (``nlnet.data.sampling.read_frames`` reads them in any order)."""
    if check_placement(rule) == "nlnet":  # in seconds: right for any frame rate
        span = clip_span(num_frames, sampling_rate, info.fps)
        return clip_times(eval_clip_start(info.duration, span, clip_index, num_clips), num_frames, sampling_rate,
                          info.fps)
    frames = clip_frames(rule, info.num_frames, clip_index, num_clips, num_frames=num_frames,
                         sampling_rate=sampling_rate)
    return frames.astype(np.float64) / info.fps
