"""The labelled video: every frame of the input with the current top-3 classes drawn on it, as H.264.

Frames are streamed (decoded, drawn, encoded one at a time), so a long video needs no more memory
than a short one. Each output frame keeps its input frame's timestamp; the file is written under a
temporary name and renamed when complete (``nlnet.data.encode.H264Writer``).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nlnet.data.decoding import VideoReader
from nlnet.data.encode import H264Writer

__all__ = ["H264Writer", "draw_labels", "annotate_video"]

def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
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
