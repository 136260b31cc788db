"""Decoding exactly the frames a clip needs with PyAV.

A clip is a list of target times (seconds from the video's first frame). ``VideoReader.read``
seeks to the keyframe before the first target, decodes forward and stops after the last target;
only the frames that are selected are converted to RGB, and FFmpeg scales them in the same pass
(``VideoFrame.to_ndarray(width=, height=)``). Frames stay uint8 until normalisation.

Correctness details (each has a test in ``tests/data/test_decoding.py``):
- Times come from presentation timestamps (``pts * time_base``), never from frame counts, so
  variable frame rate videos are sampled at the right instants.
- Times are relative to the stream's first timestamp, which is often not zero.
- The display matrix (``frame.rotation``, written by phones) is applied.
- Targets past the last frame select the last frame; targets before the first select the first
  (the clamping of the reference codebases for videos shorter than a clip).
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

__all__ = ["VideoDecodeError", "VideoInfo", "VideoReader", "scaled_size"]

# A target time matches a frame shown up to this fraction of a frame period later (float slack).
_SLACK = 0.01
# Seconds before a clip's first frame from which every frame is decoded (far more than any
# B-frame reordering delay, so no frame of the clip is affected by skipping).
_SKIP_MARGIN = 1.0

# One swscale context per thread, reused across frames and videos: building a scaler per frame
# (what ``frame.to_ndarray(width=...)`` does) costs more than scaling a small frame.
_local = threading.local()


def _reformatter() -> VideoReformatter:
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


class VideoDecodeError(RuntimeError):
    """A file that cannot be read as a video (corrupt, truncated, empty, audio-only, not a video)."""


@dataclass(frozen=True)
class VideoInfo:
    """What sampling needs to know about a video, read from the container without decoding.

    Attributes:
        duration: seconds from the first frame to the end of the last one.
        fps: average frame rate (frames per second).
        num_frames: frame count (from the container, or ``duration * fps``).
        width: coded width (before rotation).
        height: coded height (before rotation).
    """

    duration: float
    fps: float
    num_frames: int
    width: int
    height: int


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the shorter side equal to ``short_side``, aspect ratio kept.

    ``None`` keeps the size.
    """
    if short_side is None:
        return width, height
    if width <= height:
        return short_side, max(1, int(round(height * short_side / width)))
    return max(1, int(round(width * short_side / height))), short_side


class VideoReader:
    """An open video file: ``info`` for sampling, ``read(times, short_side)`` for a clip.

    Use as a context manager (``with VideoReader(path) as reader: ...``) so the file is closed.

    Args:
        path: the video file.
        threads: FFmpeg decoding threads (0: FFmpeg chooses); frame and slice threading are
            enabled (``thread_type = "AUTO"``).
        interpolation: FFmpeg (swscale) scaling filter, e.g. ``BILINEAR``, ``AREA``, ``BICUBIC``.

    Raises:
        VideoDecodeError: the file cannot be opened or has no video stream.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 0, interpolation: str = "BILINEAR") -> None:
        self.path = str(path)
        self.interpolation = interpolation
        try:
            self.container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
            raise VideoDecodeError(f"cannot open: {type(e).__name__}: {e}") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoDecodeError("no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.thread_count = threads
        self.time_base = self.stream.time_base or Fraction(1, 1000)
        self.start_pts = self.stream.start_time
        if self.start_pts is None:
            self.start_pts = 0
        try:
            self.info = self._probe()
        except Exception:
            self.container.close()
            raise

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def _probe(self) -> VideoInfo:
        stream = self.stream
        width = stream.codec_context.width
        height = stream.codec_context.height
        if not width or not height:
            raise VideoDecodeError("video stream has no frame size")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = None
        if stream.duration and stream.duration > 0:
            duration = float(stream.duration * self.time_base)
        else:  # .mkv/.webm: no stream duration; read the last packets' timestamps (no decoding)
            duration = self._duration_from_last_packets()
        if duration is None or duration <= 0:
            raise VideoDecodeError("video stream has no duration (empty or truncated)")
        num_frames = stream.frames
        if num_frames and num_frames > 1:
            fps = num_frames / duration  # average rate of this file, VFR included
        else:
            fps = float(rate) if rate else 25.0
            num_frames = max(1, int(round(duration * fps)))
        return VideoInfo(duration=duration, fps=fps, num_frames=int(num_frames), width=width, height=height)

    def _duration_from_last_packets(self) -> float | None:
        end = None
        try:
            self.container.seek(2**62, stream=self.stream, backward=True)
            for packet in self.container.demux(self.stream):
                if packet.pts is None:
                    continue
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
            self.container.seek(self.start_pts, stream=self.stream, backward=True)
        except av.FFmpegError:
            return None
        if end is None:
            return None
        return float((end - self.start_pts) * self.time_base)

    def read(self, times: Sequence[float], *, short_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames shown at the given times.

        Args:
            times: target times in seconds from the first frame, in increasing order.
            short_side: FFmpeg rescales each selected frame so its shorter side has this length
                (None: native size).

        Returns:
            ``(frames, frame_times)``: uint8 (T, H, W, 3) RGB frames, display-rotated, and the
            presentation time (seconds from the first frame) of the frame chosen for each target.

        Raises:
            VideoDecodeError: nothing could be decoded.
        """
        targets = np.asarray(times, dtype=np.float64)
        if targets.ndim != 1 or len(targets) == 0:
            raise ValueError(f"times must be a non-empty 1-D sequence, got shape {targets.shape}")
        if np.any(np.diff(targets) < 0):
            raise ValueError("times must be in increasing order")
        slack = _SLACK / self.info.fps
        chosen = self._decode(targets, slack, seek=targets[0] > slack)
        if chosen is None:
            raise VideoDecodeError("no frame could be decoded")
        try:
            return self._convert(chosen, short_side)
        except (av.FFmpegError, ValueError) as e:
            raise VideoDecodeError(f"cannot convert frames: {e}") from None

    def frames_between(self, start: float, end: float):
        """Yield ``(time, frame)`` for every frame shown in ``[start, end)`` seconds (decoded, not converted)."""
        slack = _SLACK / self.info.fps
        seek_pts = self.start_pts + int(math.floor(max(start, 0.0) / self.time_base))
        self.container.seek(seek_pts if start > slack else self.start_pts, stream=self.stream, backward=True)
        try:
            for frame in self.container.decode(self.stream):
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    continue
                t = float((pts - self.start_pts) * self.time_base)
                if t >= end - slack:
                    break
                if t >= start - slack:
                    yield t, frame
        except av.FFmpegError as e:
            raise VideoDecodeError(f"corrupt data: {e}") from None

    def count_frames(self) -> int:
        """Decode every frame (no conversion) and count them; raises on corrupt data."""
        count = 0
        try:
            self.container.seek(self.start_pts, stream=self.stream, backward=True)
            for _ in self.container.decode(self.stream):
                count += 1
        except av.FFmpegError as e:
            raise VideoDecodeError(f"corrupt data after {count} frames: {e}") from None
        return count

    def _decode(self, targets: np.ndarray, slack: float, *, seek: bool):
        """For each target, the last frame shown at or before it: list of (time, frame)."""
        tb = self.time_base
        if seek:
            seek_pts = self.start_pts + int(math.floor(targets[0] / tb))
            try:
                self.container.seek(seek_pts, stream=self.stream, backward=True, any_frame=False)
            except av.FFmpegError:
                seek = False
                self.container.seek(self.start_pts, stream=self.stream, backward=True)
        # Frames more than _SKIP_MARGIN before the window are only decoded if other frames refer to
        # them: FFmpeg drops non-reference frames (skip_frame=NONREF), which changes no other frame.
        skip_until = self.start_pts + int(math.floor((targets[0] - _SKIP_MARGIN) / tb))
        frames = self._frames(skip_until if targets[0] > _SKIP_MARGIN else None)
        chosen: list = [None] * len(targets)
        k = 0  # next target to assign
        prev = None  # (time, frame) of the last decoded frame
        try:
            for frame in frames:
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    continue
                t = float((pts - self.start_pts) * tb)
                if prev is None and seek and t > targets[0] + slack:
                    # the seek landed after the window (bad index): decode from the start instead
                    frames.close()
                    self.container.seek(self.start_pts, stream=self.stream, backward=True)
                    return self._decode(targets, slack, seek=False)
                # targets before this frame's time are shown by the previous frame (or by this one
                # when it is the first frame: clamp)
                while k < len(targets) and targets[k] + slack < t:
                    chosen[k] = prev if prev is not None else (t, frame)
                    k += 1
                prev = (t, frame)
                if k == len(targets):
                    break
            frames.close()
        except av.FFmpegError as e:
            raise VideoDecodeError(f"corrupt data at {prev[0] if prev else 0:.2f}s: {e}") from None
        if prev is None:
            return None
        if k < len(targets) and prev[0] + 1.0 / self.info.fps < self.info.duration - max(1.0, 0.1 * self.info.duration):
            raise VideoDecodeError(
                f"truncated: frames end at {prev[0]:.2f}s of the {self.info.duration:.2f}s the container declares"
            )
        while k < len(targets):  # targets past the last frame: clamp to the last frame
            chosen[k] = prev
            k += 1
        return chosen

    def _frames(self, skip_until: int | None):
        """Decoded frames in presentation order; non-reference frames are dropped while packets'
        timestamps are below ``skip_until`` (None: decode everything)."""
        context = self.stream.codec_context
        context.skip_frame = "NONREF" if skip_until is not None else "DEFAULT"
        try:
            for packet in self.container.demux(self.stream):
                if skip_until is not None and (packet.pts is None or packet.pts >= skip_until):
                    context.skip_frame = "DEFAULT"
                    skip_until = None
                yield from packet.decode()
        finally:
            context.skip_frame = "DEFAULT"

    def _convert(self, chosen: list, short_side: int | None) -> tuple[np.ndarray, np.ndarray]:
        arrays: dict[int, np.ndarray] = {}
        out, times = [], []
        for t, frame in chosen:
            key = id(frame)
            if key not in arrays:
                width, height = scaled_size(frame.width, frame.height, short_side)
                rgb = _reformatter().reformat(
                    frame, width, height, "rgb24", interpolation=self.interpolation, threads=1
                )
                array = rgb.to_ndarray().copy()  # (H, W, 3) uint8; the scaler reuses its buffer
                rotation = _rotation(frame)
                if rotation:
                    array = np.ascontiguousarray(np.rot90(array, k=rotation // 90))
                arrays[key] = array
            out.append(arrays[key])
            times.append(t)
        return np.stack(out), np.asarray(times)


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation of a frame in degrees, a multiple of 90 (0 if none)."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return int(round((degrees or 0) / 90.0)) * 90 % 360
