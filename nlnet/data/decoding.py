"""Decoding exactly the frames a clip needs with PyAV.

A clip is a list of target times (seconds from the video's first frame). ``VideoReader.read``
seeks to the keyframe before the first target, decodes forward and stops after the last target;
only the frames that are selected are converted to RGB, and FFmpeg scales them in the same pass
(``VideoFrame.to_ndarray(width=, height=)``). Frames stay uint8 until normalisation.

Correctness details (each has a test in the decoding tests):
- Times come from presentation timestamps (``pts * time_base``), never from frame counts, so
  variable frame rate videos are sampled at the right instants.
- Times are relative to the stream's first timestamp, which is often not zero.
- The display matrix (``frame.rotation``, written by phones) is applied.
- Targets past the last frame select the last frame; targets before the first select the first
  (the clamping of the reference codebases for videos shorter than a clip).
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
from av.codec.hwaccel import HWAccel
from av.video.reformatter import VideoReformatter

from nlnet.utils.errors import UserError

from .yuv import YuvClip, frame_format, frame_planes

__all__ = ["VideoDecodeError", "VideoInfo", "VideoReader", "scaled_size", "MAX_FRAME_PIXELS", "DECODE_TIMEOUT"]

# Default caps of what one clip may cost (configurable per dataset): frames over 4096x4096 pixels
# (4K UHD is 3840x2160) and more than a minute of decoding per clip are failures, not work.
MAX_FRAME_PIXELS = 4096 * 4096
DECODE_TIMEOUT = 60.0

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


class VideoDecodeError(UserError, RuntimeError):
    """A file that cannot be read as a video (corrupt, truncated, empty, audio-only, not a video, over a cap).

    Args:
        reason: what is wrong, one line.
        path: the file (named first in the message).
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


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
    Every error PyAV or FFmpeg raises on a damaged file becomes a ``VideoDecodeError`` naming the
    file; a seek that fails or lands outside the clip (a damaged index) falls back to decoding from
    the first packet.

    Args:
        path: the video file.
        threads: FFmpeg decoding threads (0: FFmpeg chooses); frame and slice threading are
            enabled (``thread_type = "AUTO"``).
        interpolation: FFmpeg (swscale) scaling filter, e.g. ``BILINEAR``, ``AREA``, ``BICUBIC``.
        max_frame_pixels: refuse a video whose frames are larger (width x height, as declared by the
            file and as decoded); None: no cap. A few KB can declare 8192x8192 frames.
        decode_timeout: seconds one ``read`` may take before it fails (None: no limit).
        hwaccel: PyAV's ``HWAccel`` to decode with (e.g. NVDEC through CUDA, ``nlnet.data.hwdecode``);
            None: FFmpeg's software decoders.

    Raises:
        VideoDecodeError: the file cannot be opened, has no decodable video stream or is over the cap.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 0, interpolation: str = "BILINEAR",
                 max_frame_pixels: int | None = MAX_FRAME_PIXELS, decode_timeout: float | None = None,
                 hwaccel: HWAccel | None = None) -> None:
        self.path = str(path)
        self.hwaccel = hwaccel
        self.threads = threads
        self.interpolation = interpolation
        self.max_frame_pixels = max_frame_pixels
        self.decode_timeout = decode_timeout
        with self._reported("cannot open"):
            self._open()
        try:
            with self._reported("cannot read the stream header"):
                self.time_base = self.stream.time_base or Fraction(1, 1000)
                self.start_pts = self.stream.start_time or 0
                self.info = self._probe()
        except VideoDecodeError:
            self.container.close()
            raise

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    @contextlib.contextmanager
    def _reported(self, action: str) -> Iterator[None]:
        """Any error inside becomes a ``VideoDecodeError`` naming the file (the data boundary)."""
        try:
            yield
        except VideoDecodeError as e:
            raise VideoDecodeError(e.reason, self.path) from None
        except Exception as e:  # PyAV raises FFmpegError, OSError, ValueError, AttributeError, ... on damaged files
            raise VideoDecodeError(f"{action}: {type(e).__name__}: {' '.join(str(e).split())}", self.path) from None

    def _open(self) -> None:
        self.container = av.open(self.path, metadata_errors="ignore", hwaccel=self.hwaccel)
        if not self.container.streams.video:
            self.container.close()
            raise VideoDecodeError("no video stream")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:
            self.container.close()
            raise VideoDecodeError("no decoder for the video stream (unknown or damaged codec id)")
        self.stream.thread_type = "AUTO"
        self.stream.thread_count = self.threads

    def _rewind(self) -> None:
        """Back to the first packet: seek to the start, or open the file again when seeking fails."""
        try:
            self.container.seek(self.start_pts, stream=self.stream, backward=True)
        except av.FFmpegError:
            self.container.close()
            self._open()

    def _check_size(self, width: int, height: int) -> None:
        if self.max_frame_pixels is not None and width * height > self.max_frame_pixels:
            raise VideoDecodeError(f"frames of {width}x{height} are over the cap of {self.max_frame_pixels} pixels "
                                   "(max_frame_pixels)")

    def _probe(self) -> VideoInfo:
        stream = self.stream
        width = stream.codec_context.width
        height = stream.codec_context.height
        if not width or not height:
            raise VideoDecodeError("video stream has no frame size")
        self._check_size(width, height)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        duration = None
        if stream.duration and stream.duration > 0:
            duration = float(stream.duration * self.time_base)
        else:  # .mkv/.webm: no stream duration; read the last packets' timestamps (no decoding)
            duration = self._duration_from_packets()
        if duration is None or duration <= 0:
            raise VideoDecodeError("video stream has no duration (empty or truncated)")
        num_frames = stream.frames
        if num_frames and num_frames > 1:
            fps = num_frames / duration  # average rate of this file, VFR included
        else:
            fps = float(rate) if rate else 25.0
            num_frames = max(1, int(round(duration * fps)))
        return VideoInfo(duration=duration, fps=fps, num_frames=int(num_frames), width=width, height=height)

    def _duration_from_packets(self) -> float | None:
        """The end of the last packet: from a seek near the end, else (no index) from every packet."""
        end = None
        for seek in (True, False):
            try:
                if seek:
                    self.container.seek(2**62, stream=self.stream, backward=True)
                for packet in self.container.demux(self.stream):
                    if packet.pts is not None:
                        stop = packet.pts + (packet.duration or 0)
                        end = stop if end is None else max(end, stop)
            except av.FFmpegError:
                pass
            self._rewind()
            if end is not None:
                return float((end - self.start_pts) * self.time_base)
        return None

    def read(self, times: Sequence[float] | np.ndarray, *,
             short_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames shown at the given times.

        Args:
            times: target times in seconds from the first frame, in increasing order.
            short_side: FFmpeg rescales each selected frame so its shorter side has this length
                (None: native size).

        Returns:
            ``(frames, frame_times)``: uint8 (T, H, W, 3) RGB frames, display-rotated, and the
            presentation time (seconds from the first frame) of the frame chosen for each target.

        Raises:
            VideoDecodeError: nothing could be decoded, corrupt or truncated data, over a cap.
        """
        return self._convert(self._select(times), short_side)

    def read_planes(self, times: Sequence[float] | np.ndarray, *,
                    short_side: int | None = None) -> tuple[YuvClip, np.ndarray]:
        """The frames of :meth:`read` as YUV 4:2:0 planes (``nlnet.data.yuv``), not converted to RGB.

        Returns:
            ``(clip, frame_times)``: a :class:`~nlnet.data.yuv.YuvClip` of (T, 1, H, W) luma and
            (T, 2, ceil(H/2), ceil(W/2)) chroma, display-rotated, and the chosen frames' times.
        """
        chosen = self._select(times)
        with self._reported("cannot read the planes"):
            return self._planes(chosen, short_side)

    def _select(self, times: Sequence[float] | np.ndarray) -> list:
        """The (time, frame) decoded for each target time (see :meth:`read`)."""
        targets = np.asarray(times, dtype=np.float64)
        if targets.ndim != 1 or len(targets) == 0:
            raise ValueError(f"times must be a non-empty 1-D sequence, got shape {targets.shape}")
        if np.any(np.diff(targets) < 0):
            raise ValueError("times must be in increasing order")
        deadline = None if self.decode_timeout is None else time.monotonic() + self.decode_timeout
        with self._reported("cannot decode"):
            slack = _SLACK / self.info.fps
            chosen = None
            if targets[0] > slack and self._seek(targets[0]):
                chosen = self._decode(targets, slack, seek=True, deadline=deadline)
            if chosen is None:  # no seek, a failed one, or one that landed outside the clip: from the start
                self._rewind()
                chosen = self._decode(targets, slack, seek=False, deadline=deadline)
            if chosen is None:
                raise VideoDecodeError("no frame could be decoded")
            return chosen

    def _seek(self, t: float) -> bool:
        """Seek to the keyframe at or before ``t`` seconds; False when FFmpeg cannot."""
        try:
            self.container.seek(self.start_pts + int(math.floor(t / self.time_base)), stream=self.stream,
                                backward=True, any_frame=False)
        except av.FFmpegError:
            return False
        return True

    def frames_between(self, start: float, end: float):
        """Yield ``(time, frame)`` for every frame shown in ``[start, end)`` seconds (decoded, not converted)."""
        with self._reported("corrupt data"):
            slack = _SLACK / self.info.fps
            if not (start > slack and self._seek(start)):
                self._rewind()
            for frame in self.container.decode(self.stream):
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None:
                    continue
                t = float((pts - self.start_pts) * self.time_base)
                if t >= end - slack:
                    break
                if t >= start - slack:
                    yield t, frame

    def count_frames(self) -> int:
        """Decode every frame (no conversion) and count them; raises on corrupt data."""
        count = 0
        with self._reported("corrupt data"):
            self._rewind()
            for frame in self.container.decode(self.stream):
                self._check_size(frame.width, frame.height)
                count += 1
        return count

    def _decode(self, targets: np.ndarray, slack: float, *, seek: bool, deadline: float | None):
        """For each target, the last frame shown at or before it: list of (time, frame); None when
        nothing was decoded or (after a seek) the first frame is already past the first target."""
        tb = self.time_base
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
                    return None  # the seek landed after the window (bad index)
                self._check_size(frame.width, frame.height)
                if deadline is not None and time.monotonic() > deadline:
                    raise VideoDecodeError(f"decoding took more than {self.decode_timeout:g}s (decode_timeout), "
                                           f"at {t:.2f}s of the video")
                # targets before this frame's time are shown by the previous frame (or by this one
                # when it is the first frame: clamp)
                while k < len(targets) and targets[k] + slack < t:
                    chosen[k] = prev if prev is not None else (t, frame)
                    k += 1
                prev = (t, frame)
                if k == len(targets):
                    break
        except av.FFmpegError as e:
            raise VideoDecodeError(f"corrupt data at {prev[0] if prev else 0:.2f}s: {e}") from None
        finally:
            frames.close()
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
                if frame.format.name == "nv12":  # NVDEC's layout: planar first, so RGB is the software path's
                    frame = frame.reformat(format="yuv420p")
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

    def _planes(self, chosen: list, short_side: int | None) -> tuple[YuvClip, np.ndarray]:
        planes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for _, frame in chosen:
            if id(frame) not in planes:
                width, height = scaled_size(frame.width, frame.height, short_side)
                y, uv = frame_planes(frame, width, height, self.interpolation)
                k = _rotation(frame) // 90
                if k:  # (H, W) and (2, H', W') turned counter-clockwise
                    y, uv = np.rot90(y, k), np.rot90(uv, k, axes=(1, 2))
                planes[id(frame)] = (np.ascontiguousarray(y), np.ascontiguousarray(uv))
        y = np.stack([planes[id(frame)][0] for _, frame in chosen])[:, None]  # (T, 1, H, W)
        uv = np.stack([planes[id(frame)][1] for _, frame in chosen])  # (T, 2, H', W')
        clip = YuvClip(torch.from_numpy(y), torch.from_numpy(uv), frame_format(chosen[0][1]))
        return clip, np.asarray([t for t, _ in chosen])


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation of a frame in degrees, a multiple of 90 (0 if none)."""
    try:
        degrees = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return int(round((degrees or 0) / 90.0)) * 90 % 360
