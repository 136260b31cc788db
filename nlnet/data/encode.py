"""The one video writer: frames encoded one at a time with PyAV (H.264 by default), written atomically.

Every place that writes video uses it: the synthetic dataset and the test fixtures (``write_video``),
the Kinetics preparation (``nlnet.data.prepare``), the labelled videos of the predict command
(``nlnet.inference.annotate``) and the attention animations (``nlnet.viz.drawing``). Timestamps are in
milliseconds, so any frame timing (variable frame rate, a first timestamp other than zero) survives.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np

from nlnet.utils.io import atomic_path

__all__ = ["H264Writer", "write_video", "write_audio_only"]

_TIME_BASE = Fraction(1, 1000)


class H264Writer:
    """Write frames to a video file one at a time; the file appears under ``path`` only when the
    ``with`` block ends without an error (``nlnet.utils.io.atomic_path``).

    Odd frame sizes are padded by one pixel (yuv420p needs even ones).

    Args:
        path: output file; the extension picks the container (.mp4, .mkv, .webm).
        width, height: frame size.
        fps: nominal frame rate; frame ``i`` is shown at ``i / fps`` unless ``write`` gets a time.
        codec: FFmpeg encoder (``libx264``, ``libvpx-vp9``, ``mpeg4``...); None: VP9 for .webm, else H.264.
        crf: constant rate factor (quality; None: the encoder's default, 23 for libx264).
        preset: libx264 speed preset (e.g. ``veryfast``).
        gop_size: frames between keyframes (None: the encoder's default, 250 for libx264).
        rotation: display rotation in degrees counter-clockwise, stored as the stream's display matrix
            (what phones write); decoders must apply it.
        audio: also write a silent AAC stream as long as the video (decoders must ignore it).
        container_format: force the container format (otherwise from the extension).
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: float = 25.0,
                 codec: str | None = None, crf: int | None = None, preset: str | None = None,
                 gop_size: int | None = None, rotation: int = 0, audio: bool = False,
                 container_format: str | None = None) -> None:
        self.path = os.fspath(path)
        self.width, self.height = int(width), int(height)
        self.fps = fps
        self.codec = codec or ("libvpx-vp9" if self.path.endswith(".webm") else "libx264")
        self.options = {k: str(v) for k, v in (("crf", crf), ("preset", preset)) if v is not None}
        self.gop_size = gop_size
        self.rotation = rotation
        self.audio = audio
        self.container_format = container_format
        self.frames_written = 0
        self._last_pts = -1

    def __enter__(self) -> H264Writer:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._container = stack.enter_context(av.open(tmp, mode="w", format=self.container_format))
            stream = self._stream = self._container.add_stream(self.codec,
                                                               rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = self.width + self.width % 2, self.height + self.height % 2
            stream.pix_fmt = "yuv420p"
            stream.time_base = stream.codec_context.time_base = _TIME_BASE
            if self.gop_size is not None:
                stream.codec_context.gop_size = self.gop_size
            if self.options:
                stream.options = self.options
            if self.rotation:
                stream.set_display_rotation(self.rotation)
            self._audio = self._container.add_stream("aac", rate=16000) if self.audio else None
            self._stack = stack.pop_all()  # closed (and the file renamed into place) in __exit__
        return self

    def write(self, image: np.ndarray | av.VideoFrame, time: float | None = None) -> None:
        """Encode a frame shown at ``time`` seconds (default: the next frame slot).

        Args:
            image: (H, W, 3) uint8 RGB, or a PyAV frame already at the stream's size and format.
            time: presentation time; a time that does not increase by at least 1 ms is moved forward.
        """
        if isinstance(image, av.VideoFrame):
            frame = image
        else:
            if image.shape[:2] != (self.height, self.width):
                raise ValueError(f"frame of size {image.shape[1]}x{image.shape[0]} for a {self.width}x{self.height} "
                                 "video")
            if image.shape[:2] != (self._stream.height, self._stream.width):
                image = np.pad(image, ((0, self._stream.height - self.height), (0, self._stream.width - self.width),
                                       (0, 0)))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        time = self.frames_written / self.fps if time is None else time
        frame.pts = self._last_pts = max(int(round(time / _TIME_BASE)), self._last_pts + 1)
        frame.time_base = _TIME_BASE
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def _finish(self) -> None:
        self._container.mux(self._stream.encode())  # flush the encoder
        if self._audio is not None:
            _write_silence(self._container, self._audio, seconds=float(self._last_pts * _TIME_BASE) + 1 / self.fps)

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            try:
                self._finish()
            except BaseException as error:
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        self._stack.__exit__(*exc)


def _write_silence(container: av.container.OutputContainer, stream: av.AudioStream, *, seconds: float) -> None:
    """Encode ``seconds`` of silence into an audio stream."""
    rate = stream.codec_context.sample_rate
    samples = stream.codec_context.frame_size or 1024
    for i in range(int(math.ceil(seconds * rate / samples))):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = i * samples
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_video(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], *, fps: float = 25.0,
                times: Sequence[float] | None = None, **options) -> None:
    """Encode RGB frames to a video file (:class:`H264Writer`), atomically.

    Args:
        path: output file; the extension picks the container (.mp4, .mkv, .webm).
        frames: (T, H, W, 3) uint8 RGB frames.
        fps: nominal frame rate; frame ``i`` is shown at ``i / fps`` unless ``times`` is given.
        times: presentation time in seconds of every frame (increasing): variable frame rate, or a
            first timestamp other than zero (e.g. ``times[0] = 2.0``).
        options: :class:`H264Writer`'s (codec, crf, preset, gop_size, rotation, audio, container_format).
    """
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    if times is None:
        times = [i / fps for i in range(len(frames))]
    if len(times) != len(frames):
        raise ValueError(f"times has {len(times)} entries for {len(frames)} frames")
    with H264Writer(path, width=frames.shape[2], height=frames.shape[1], fps=fps, **options) as writer:
        for array, t in zip(frames, times):
            writer.write(array, t)


def write_audio_only(path: str | os.PathLike, *, seconds: float = 1.0) -> None:
    """Write a file with an audio stream and no video stream (a bad input for a video dataset), atomically."""
    path = os.fspath(path)
    with atomic_path(path) as tmp, av.open(tmp, "w", format="mp4" if path.endswith((".mp4", ".m4a")) else None) as out:
        _write_silence(out, out.add_stream("aac", rate=16000), seconds=seconds)
