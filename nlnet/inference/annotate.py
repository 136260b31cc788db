"""The labelled video: every frame of the input with the current top-3 classes drawn on it, as H.264.

Frames are streamed (decoded, drawn, encoded one at a time), so a long video needs no more memory
than a short one. Each output frame keeps its input frame's timestamp; the file is written under a
temporary name and renamed when complete (``nlnet.utils.io.atomic_path``).
"""
from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from typing import Callable, Sequence

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nlnet.data.decoding import VideoReader
from nlnet.utils.io import atomic_path

__all__ = ["H264Writer", "draw_labels", "annotate_video"]

_TIME_BASE = Fraction(1, 1000)  # millisecond timestamps: any frame timing (variable frame rate) survives


class H264Writer:
    """Write RGB frames to an H.264 (yuv420p) file one at a time, atomically.

    Use as a context manager; the file appears under ``path`` only when the block ends without an
    error. Odd frame sizes are padded by one pixel (yuv420p needs even ones).

    Args:
        path: output file (.mp4, .mkv).
        width, height: frame size.
        fps: nominal frame rate.
        crf: libx264 quality (lower is better, 23 is libx264's default).
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, fps: float = 25.0, crf: int = 20) -> None:
        self.path = os.fspath(path)
        self.width, self.height = int(width), int(height)
        self.fps = fps
        self.crf = crf
        self.frames_written = 0
        self._last_pts = -1

    def __enter__(self) -> "H264Writer":
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._container = stack.enter_context(av.open(tmp, mode="w"))
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = self.width + self.width % 2, self.height + self.height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = self._stream.codec_context.time_base = _TIME_BASE
            self._stream.options = {"crf": str(self.crf)}
            self._stack = stack.pop_all()  # closed (and the file renamed into place) in __exit__
        return self

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        """Encode an (H, W, 3) uint8 RGB frame shown at ``time`` seconds (default: the next frame slot)."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame of size {image.shape[1]}x{image.shape[0]} for a {self.width}x{self.height} video")
        if image.shape[:2] != (self._stream.height, self._stream.width):
            image = np.pad(image, ((0, self._stream.height - self.height), (0, self._stream.width - self.width),
                                   (0, 0)))
        time = self.frames_written / self.fps if time is None else time
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self._last_pts = max(int(round(time / _TIME_BASE)), self._last_pts + 1)
        frame.time_base = _TIME_BASE
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            try:
                self._container.mux(self._stream.encode())  # flush the encoder
            except BaseException as error:
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        self._stack.__exit__(*exc)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (FreeType)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_labels(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with ``lines`` written in its top-left corner on a dark box."""
    if not lines:
        return image
    height = image.shape[0]
    font = _font(max(10, height // 24))
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas, "RGBA")
    pad = max(2, height // 120)
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    line_height = max(b[3] for b in boxes) + pad
    width = max(b[2] for b in boxes)
    draw.rectangle((0, 0, width + 2 * pad, line_height * len(lines) + pad), fill=(0, 0, 0, 160))
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_height), line, font=font, fill=(255, 255, 255, 255))
    return np.asarray(canvas)


def annotate_video(src: str | os.PathLike, dst: str | os.PathLike, labels_at: Callable[[float], Sequence[str]],
                   *, min_short_side: int = 0, crf: int = 20) -> int:
    """Write ``src`` to ``dst`` (H.264) with ``labels_at(time)`` drawn on every frame.

    Frames are display-rotated (what a player shows) and keep their timestamps. Frames whose short
    side is below ``min_short_side`` are enlarged by the smallest integer factor that reaches it
    (each pixel repeated, nothing interpolated), so that the labels stay legible on small videos.

    Returns:
        The number of frames written.

    Raises:
        nlnet.data.decoding.VideoDecodeError: ``src`` cannot be read.
    """
    with VideoReader(src) as reader, contextlib.ExitStack() as stack:
        writer = None
        for time, frame in reader.frames_between(0.0, float("inf")):
            image = frame.to_ndarray(format="rgb24")
            rotation = getattr(frame, "rotation", 0) or 0  # counter-clockwise, a multiple of 90 degrees
            if rotation:
                image = np.ascontiguousarray(np.rot90(image, k=int(round(rotation / 90)) % 4))
            factor = -(-min_short_side // min(image.shape[:2])) if min_short_side else 1  # ceil
            if factor > 1:
                image = image.repeat(factor, axis=0).repeat(factor, axis=1)
            if writer is None:
                writer = stack.enter_context(H264Writer(dst, width=image.shape[1], height=image.shape[0],
                                                        fps=reader.info.fps, crf=crf))
            writer.write(draw_labels(image, labels_at(time)), time)
        return writer.frames_written if writer is not None else 0
