"""Where a clip lies in time (paper §4.1): one random clip for training, K uniform clips for testing.

A clip of ``num_frames`` frames at stride ``sampling_rate`` (the paper's T x tau, e.g. 32x2) covers
``(num_frames - 1) * sampling_rate + 1`` frames of the video, measured in seconds with the video's
average frame rate (as PySlowFast does), so sampling is correct for any frame rate and variable
frame rate videos. Targets are times; the decoder maps each to the frame shown at that time.

Test clips are spread so that the first starts at the first frame and the last ends on the last
frame (pytorchvideo 0.1.5's ``ConstantClipsPerVideoSampler`` and PySlowFast's ``start = delta *
i / K`` never reach the end).

Two samplers, chosen by config (``data.*.sampler``): :class:`DenseSampler`, the paper's one T x tau
clip (Kinetics), and :class:`SegmentSampler`, the whole video cut into N equal segments with a short
run of frames from each (TSN-style, how Something-Something v2 models are trained and tested in
PySlowFast and mmaction2): a random offset in each segment for training, the centre for testing.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .decoding import VideoReader
    from .yuv import YuvClip

__all__ = ["clip_span", "clip_times", "train_clip_start", "eval_clip_start", "read_clip", "read_frames",
           "segment_times", "DenseSampler", "SegmentSampler"]


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
              start: float | Callable[[float, float], float], short_side: int | None = None) -> torch.Tensor:
    """uint8 (T, C, H, W) frames of a T x tau clip (the one decoding path of datasets, inference, viz).

    Args:
        reader: the open video.
        num_frames, sampling_rate: T and tau.
        start: seconds from the first frame, or ``start(duration, span)`` giving them (e.g.
            ``lambda d, s: train_clip_start(d, s, u)``).
        short_side: the decoder scales frames to this short side (None: native size).
    """
    info = reader.info
    if callable(start):
        start = start(info.duration, clip_span(num_frames, sampling_rate, info.fps))
    return read_frames(reader, clip_times(start, num_frames, sampling_rate, info.fps), short_side=short_side)


def read_frames(reader: VideoReader, times: np.ndarray, *, short_side: int | None = None,
                planes: bool = False) -> torch.Tensor | YuvClip:
    """uint8 (T, C, H, W) frames shown at ``times`` (seconds from the first frame); with ``planes``
    the same frames as YUV 4:2:0 planes (a ``nlnet.data.yuv.YuvClip``), not RGB."""
    if planes:
        return reader.read_planes(times, short_side=short_side)[0]
    frames, _ = reader.read(times, short_side=short_side)
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, C) -> (T, C, H, W)


def segment_times(video_frames: int, fps: float, *, num_segments: int, num_frames: int, sampling_rate: int,
                  offsets: Sequence[float]) -> np.ndarray:
    """Target times of segment sampling: ``num_segments`` equal segments of the video, in each a run of
    ``num_frames // num_segments`` frames at stride ``sampling_rate``.

    Positions are whole frames, as mmaction2's ``SampleFrames``: a segment of L frames leaves
    ``L - span + 1`` first frames for a run spanning ``span`` frames, and ``offset`` picks
    ``floor(offset * (L - span + 1))`` of them (one-frame runs: frame L/2 of each segment at 0.5).

    Args:
        video_frames: frames in the video; fps: its average frame rate.
        num_segments: N; num_frames: frames in all (a multiple of N).
        sampling_rate: stride within a run, in frames.
        offsets: per segment, a fraction in [0, 1) (uniform random in training, 0.5, the centre, in
            testing).
    Returns:
        (num_frames,) float64 seconds (frame start times), segment after segment. A segment shorter
        than its run starts at the segment's start (the decoder clamps targets past the end).
    """
    run = num_frames // num_segments
    segment = video_frames / num_segments
    positions = max(segment - ((run - 1) * sampling_rate + 1) + 1, 1.0)
    starts = np.floor(np.arange(num_segments) * segment + np.asarray(offsets, dtype=np.float64) * positions)
    return (starts[:, None] + np.arange(run)[None, :] * sampling_rate).reshape(-1).astype(np.float64) / fps


class DenseSampler:
    """One clip of T frames at stride tau (paper Sec. 4.1): at a random position in training; the
    ``num_clips`` test clips spread from the first frame to the last (:func:`eval_clip_start`)."""

    def check(self, num_frames: int) -> None:
        """Any clip length works."""

    def draw(self, rng: np.random.Generator) -> float:
        """The random choice of a training clip: its position ``u`` in [0, 1)."""
        return float(rng.random())

    def train_times(self, info, u: float, *, num_frames: int, sampling_rate: int) -> np.ndarray:
        span = clip_span(num_frames, sampling_rate, info.fps)
        return clip_times(train_clip_start(info.duration, span, u), num_frames, sampling_rate, info.fps)

    def test_times(self, info, clip_index: int, num_clips: int, *, num_frames: int, sampling_rate: int) -> np.ndarray:
        span = clip_span(num_frames, sampling_rate, info.fps)
        start = eval_clip_start(info.duration, span, clip_index, num_clips)
        return clip_times(start, num_frames, sampling_rate, info.fps)


class SegmentSampler:
    """Segment sampling over the whole video (TSN; PySlowFast's and mmaction2's SSv2 recipes).

    The clip's T frames (``num_frames``) are ``num_segments`` runs of T / N frames at stride tau.
    Training: each run at a uniform random position in its segment. Testing: test clip ``c`` of
    ``K`` places every run at fraction ``(c + 0.5) / K`` of its segment's room (one clip: centred;
    two: mmaction2's ``twice_sample``-like quarter and three-quarter offsets).

    Args:
        num_segments: N, segments per video (8 or 16 in the SSv2 recipes, one frame each).
    """

    def __init__(self, *, num_segments: int) -> None:
        if not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"num_segments={num_segments!r}: must be a positive integer")
        self.num_segments = num_segments

    def check(self, num_frames: int) -> None:
        """Raise ValueError unless ``num_frames`` splits into equal runs."""
        if num_frames % self.num_segments:
            raise ValueError(f"num_frames={num_frames} is not a multiple of num_segments={self.num_segments} "
                             "(frames per segment = num_frames / num_segments)")

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """The random choices of a training clip: one offset in [0, 1) per segment."""
        return rng.random(self.num_segments)

    def train_times(self, info, offsets: Sequence[float], *, num_frames: int, sampling_rate: int) -> np.ndarray:
        self.check(num_frames)
        return segment_times(info.num_frames, info.fps, num_segments=self.num_segments, num_frames=num_frames,
                             sampling_rate=sampling_rate, offsets=offsets)

    def test_times(self, info, clip_index: int, num_clips: int, *, num_frames: int, sampling_rate: int) -> np.ndarray:
        self.check(num_frames)
        if not 0 <= clip_index < num_clips:
            raise IndexError(f"clip_index {clip_index} outside 0..{num_clips - 1}")
        offsets = [(clip_index + 0.5) / num_clips] * self.num_segments
        return segment_times(info.num_frames, info.fps, num_segments=self.num_segments, num_frames=num_frames,
                             sampling_rate=sampling_rate, offsets=offsets)
