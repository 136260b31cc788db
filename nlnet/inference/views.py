"""Which clips of a video the model sees, and the stream of decoded views (paper §4.1 test protocol).

Whole-video prediction takes the test's views (``ViewProtocol``: ``num_clips`` clips placed by its
sampler and ``clip_placement`` x ``num_crops`` crops, or the full frame). A timeline cuts the video
into windows of ``window`` seconds every ``stride`` seconds and takes ``window_clips`` clips x
``num_crops`` crops inside each. Every clip is decoded once, whatever
the number of groups (whole video, windows) it serves.

``VideoViewStream`` is an ``IterableDataset`` over video files: with ``DataLoader(num_workers=N)``
the decoding runs in N processes, each taking every N-th video. It yields plain records
(``ClipViews``, ``VideoDone``, ``VideoFailed``); an unreadable file becomes a ``VideoFailed``
naming the file and the reason, and the stream goes on.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from nlnet.data.decoding import VideoDecodeError, VideoInfo, VideoReader
from nlnet.data.sampling import clip_span, clip_times, eval_clip_start, read_frames
from nlnet.inference.loading import ViewProtocol
from nlnet.utils.errors import ConfigError

__all__ = ["Window", "Timeline", "ClipViews", "VideoDone", "VideoFailed", "VideoViewStream",
           "timeline_windows", "clip_starts", "plan_clips"]

WHOLE_VIDEO = 0  # group of the whole-video views; window k is group k + 1


@dataclass(frozen=True)
class Window:
    """A stretch of a video, in seconds from its first frame."""

    start: float
    end: float


@dataclass(frozen=True)
class Timeline:
    """Top-k per window: ``window`` seconds long, one every ``stride`` seconds, ``clips`` clips each."""

    window: float
    stride: float | None = None
    clips: int = 1

    def __post_init__(self) -> None:
        if not self.window > 0:
            raise ConfigError(f"window={self.window}: must be a positive number of seconds")
        if self.stride is not None and not self.stride > 0:
            raise ConfigError(f"stride={self.stride}: must be a positive number of seconds (or null: = window)")
        if not isinstance(self.clips, int) or self.clips < 1:
            raise ConfigError(f"window_clips={self.clips}: must be a positive integer")


def timeline_windows(duration: float, window: float, stride: float | None = None) -> list[Window]:
    """Windows of ``window`` seconds starting every ``stride`` (default ``window``) seconds.

    They cover the whole video: there are ``1 + ceil((duration - window) / stride)`` of them, the
    last one ends at the end of the video (it is shifted back, so it may overlap its predecessor
    more). A video shorter than ``window`` has one window, the whole video.
    """
    stride = window if stride is None else stride
    if duration <= window:
        return [Window(0.0, duration)]
    count = 1 + math.ceil((duration - window) / stride - 1e-9)
    starts = (min(k * stride, duration - window) for k in range(count))
    return [Window(s, s + window) for s in starts]


def clip_starts(span: Window, clip_seconds: float, num_clips: int, duration: float) -> list[float]:
    """Starts of ``num_clips`` clips spread over ``span`` as the test protocol spreads them over a video
    (``eval_clip_start``); a clip longer than the span is centred on it. Clips stay inside the video."""
    length = span.end - span.start
    shift = max(clip_seconds - length, 0.0) / 2
    latest = max(duration - clip_seconds, 0.0)
    return [min(max(span.start + eval_clip_start(length, clip_seconds, i, num_clips) - shift, 0.0), latest)
            for i in range(num_clips)]


def plan_clips(info: VideoInfo, protocol: ViewProtocol,
               timeline: Timeline | None) -> tuple[list[Window], dict[tuple[float, ...], tuple[int, ...]]]:
    """The windows of a video and its clips: the clip's target times -> the groups (0: whole video,
    k + 1: window k) whose scores that clip's views go to. The whole video's clips are the test's
    (``ViewProtocol.test_times``: its sampler and clip placement); a window's are dense clips spread
    over it. Clips are in time order (decoding moves forward)."""
    seconds = clip_span(protocol.num_frames, protocol.sampling_rate, info.fps)
    planned = [(WHOLE_VIDEO, protocol.test_times(info, k)) for k in range(protocol.num_clips)]
    windows = timeline_windows(info.duration, timeline.window, timeline.stride) if timeline else []
    for k, window in enumerate(windows):
        starts = clip_starts(window, seconds, timeline.clips if timeline else 0, info.duration)
        planned += [(k + 1, clip_times(start, protocol.num_frames, protocol.sampling_rate, info.fps))
                    for start in starts]
    clips: dict[tuple[float, ...], list[int]] = {}
    for group, times in planned:
        clips.setdefault(tuple(round(float(t), 6) for t in times), []).append(group)
    return windows, {times: tuple(groups) for times, groups in sorted(clips.items())}


@dataclass
class ClipViews:
    """The crops of one clip of video ``video``: ``views`` (num_crops, C, T, H, W), for ``groups``."""

    video: int
    groups: tuple[int, ...]
    views: torch.Tensor


@dataclass
class VideoDone:
    """Every view of video ``video`` was yielded."""

    video: int
    info: VideoInfo
    windows: list[Window]


@dataclass
class VideoFailed:
    """Video ``video`` could not be read: ``error`` says why (its views so far are to be dropped)."""

    video: int
    error: str


class VideoViewStream(IterableDataset):
    """Decoded, transformed views of video files, one ``ClipViews`` per clip, then ``VideoDone``.

    Args:
        paths: the video files.
        protocol: frames, stride, short side, crops, normalisation.
        timeline: also the views of each window (None: whole-video views only).
        decode_threads: FFmpeg threads per video (0: FFmpeg decides).
    """

    def __init__(self, *, paths: Sequence[str], protocol: ViewProtocol, timeline: Timeline | None = None,
                 decode_threads: int = 0) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.protocol = protocol
        self.timeline = timeline
        self.decode_threads = decode_threads

    def __iter__(self) -> Iterator[ClipViews | VideoDone | VideoFailed]:
        worker = get_worker_info()
        shard, shards = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for index in range(shard, len(self.paths), shards):
            yield from self.video_views(index)

    def video_views(self, index: int) -> Iterator[ClipViews | VideoDone | VideoFailed]:
        """The records of video ``index``; a file that cannot be read ends with ``VideoFailed``."""
        path = self.paths[index]
        protocol = self.protocol
        transform = protocol.transform()
        try:
            with VideoReader(path, threads=self.decode_threads) as reader:
                info = reader.info
                windows, clips = plan_clips(info, protocol, self.timeline)
                for times, groups in clips.items():
                    video = read_frames(reader, np.asarray(times), short_side=protocol.decode_short_side)
                    views = torch.stack([transform(video, c) for c in range(protocol.num_crops)])
                    yield ClipViews(video=index, groups=groups, views=views)  # (crops, C, T, H, W)
        except (VideoDecodeError, OSError) as exc:  # the record names the file: the reason alone
            yield VideoFailed(video=index, error=f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}")
            return
        yield VideoDone(video=index, info=info, windows=windows)
