"""Where a clip lies in time (paper §4.1): one random clip for training, K uniform clips for testing.

A clip of ``num_frames`` frames at stride ``sampling_rate`` (the paper's T x tau, e.g. 32x2) covers
``(num_frames - 1) * sampling_rate + 1`` frames of the video, measured in seconds with the video's
average frame rate (as PySlowFast does), so sampling is correct for any frame rate and variable
frame rate videos. Targets are times; the decoder maps each to the frame shown at that time.

Test clips are spread so that the first starts at the first frame and the last ends on the last
frame (pytorchvideo 0.1.5's ``ConstantClipsPerVideoSampler`` and PySlowFast's ``start = delta *
i / K`` never reach the end).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .decoding import VideoReader
    from .yuv import YuvClip

__all__ = ["clip_span", "clip_times", "train_clip_start", "eval_clip_start", "read_clip"]


def clip_span(num_frames: int, sampling_rate: int, fps: float) -> float:
    """Seconds from a clip's first sampled frame to the end of its last one."""
    return ((num_frames - 1) * sampling_rate + 1) / fps


def clip_times(start: float, num_frames: int, sampling_rate: int, fps: float) -> np.ndarray:
    """Target times (seconds from the first frame) of a clip starting at ``start``: (T,) float64."""
    return start + np.arange(num_frames, dtype=np.float64) * (sampling_rate / fps)


def train_clip_start(duration: float, span: float, u: float) -> float:
    """Start of a training clip: uniform over every position that keeps the clip inside the video.

    Args:
        duration: video length in seconds.
        span: clip length in seconds (``clip_span``).
        u: a uniform random number in [0, 1) (from the item's seeded generator).
    Videos shorter than the clip start at 0 (the decoder clamps the targets past the end).
    """
    return u * max(duration - span, 0.0)


def eval_clip_start(duration: float, span: float, clip_index: int, num_clips: int) -> float:
    """Start of test clip ``clip_index`` of ``num_clips`` uniformly spaced ones.

    The first clip starts at 0 and the last ends at the end of the video; a single clip is centred.
    """
    if not 0 <= clip_index < num_clips:
        raise IndexError(f"clip_index {clip_index} outside 0..{num_clips - 1}")
    room = max(duration - span, 0.0)
    if num_clips == 1:
        return room / 2
    return room * clip_index / (num_clips - 1)


def read_clip(reader: VideoReader, *, num_frames: int, sampling_rate: int,
              start: float | Callable[[float, float], float], short_side: int | None = None,
              planes: bool = False) -> torch.Tensor | YuvClip:
    """uint8 (T, C, H, W) frames of a T x tau clip (the one decoding path of datasets, inference, viz).

    Args:
        reader: the open video.
        num_frames, sampling_rate: T and tau.
        start: seconds from the first frame, or ``start(duration, span)`` giving them (e.g.
            ``lambda d, s: train_clip_start(d, s, u)``).
        short_side: the decoder scales frames to this short side (None: native size).
        planes: return the same frames as YUV 4:2:0 planes (a ``nlnet.data.yuv.YuvClip``), not RGB.
    """
    info = reader.info
    if callable(start):
        start = start(info.duration, clip_span(num_frames, sampling_rate, info.fps))
    times = clip_times(start, num_frames, sampling_rate, info.fps)
    if planes:
        return reader.read_planes(times, short_side=short_side)[0]
    frames, _ = reader.read(times, short_side=short_side)
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, C) -> (T, C, H, W)
