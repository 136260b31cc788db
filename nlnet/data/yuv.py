"""Planar YUV 4:2:0 clips: taken from decoded frames in the worker, converted to RGB on the device.

With ``VideoDataset(color_convert="device")`` workers skip FFmpeg's RGB conversion: they hand over
the decoded planes, Y at full size and U, V at half width and height (1.5 bytes a pixel instead of
3), resized and cropped like RGB clips but at even offsets, so every 2x2 block of Y keeps its own
chroma sample. The batch prologue (``nlnet.data.prologue``) converts them to uint8 RGB with
:func:`yuv_to_rgb`, as FFmpeg's ``rgb24`` conversion does: the matrix the stream declares (BT.709,
otherwise BT.601, FFmpeg's default) in the range it declares (full for JPEG-range streams, otherwise
limited, 16-235 / 16-240), chroma repeated over its 2x2 block. ``docs/benchmarks.md`` gives the
measured difference to FFmpeg's ``rgb24`` (at most 3 levels, about one on average).

Layout: a :class:`YuvClip` holds uint8 ``y`` (T, 1, H, W) and ``uv`` (T, 2, ceil(H/2), ceil(W/2))
(the (T, C, H, W) order of RGB clips); items carry ``y`` as ``video`` (1, T, H, W), ``uv`` as
``chroma`` (2, T, H', W') and the stream's :data:`FORMATS` index as ``yuv_format``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

__all__ = ["FORMATS", "YuvClip", "frame_format", "frame_planes", "yuv_to_rgb"]

# (matrix, range) of a clip; items carry the index. Matrices by their (Kr, Kb) luma weights.
FORMATS = (("bt601", "limited"), ("bt601", "full"), ("bt709", "limited"), ("bt709", "full"))
_LUMA_WEIGHTS = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}

# FFmpeg's tags (AVColorSpace, AVColorRange) that select BT.709 and the full range; every other value
# takes FFmpeg's defaults (BT.601, limited range; full for the yuvj formats).
_BT709 = 1  # AVCOL_SPC_BT709
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
_JPEG_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p"}
# Decoded formats whose planes are taken as they are (NVDEC's frames arrive as nv12).
_PLANAR = {"yuv420p", "yuvj420p"}
_SEMI_PLANAR = {"nv12"}


@dataclass(frozen=True)
class YuvClip:
    """uint8 planes of a clip (see the module docstring) and its :data:`FORMATS` index.

    Attributes:
        y: (T, 1, H, W) luma.
        uv: (T, 2, ceil(H/2), ceil(W/2)) chroma (U, V).
        format: index into :data:`FORMATS`.
    """

    y: torch.Tensor
    uv: torch.Tensor
    format: int

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the luma plane."""
        return (int(self.y.shape[-2]), int(self.y.shape[-1]))

    def resized(self, height: int, width: int) -> YuvClip:
        """Both planes resized (antialiased, as RGB clips are) to luma (height, width)."""
        if (height, width) == self.size:
            return self
        y = F.resize(self.y, [height, width], antialias=True)
        uv = F.resize(self.uv, [math.ceil(height / 2), math.ceil(width / 2)], antialias=True)
        return YuvClip(y, uv, self.format)

    def cropped(self, top: int, left: int, height: int, width: int) -> YuvClip:
        """Luma window at (top, left), both even, and its chroma."""
        if top % 2 or left % 2:
            raise ValueError(f"YUV 4:2:0 crops start at even offsets, got top={top}, left={left}")
        y = self.y[..., top:top + height, left:left + width]
        uv = self.uv[..., top // 2:(top + height + 1) // 2, left // 2:(left + width + 1) // 2]
        return YuvClip(y, uv, self.format)

    def flipped(self) -> YuvClip:
        """Mirrored along W (exact on even widths: the 2x2 chroma blocks mirror with the luma)."""
        return YuvClip(self.y.flip(-1), self.uv.flip(-1), self.format)

    def item(self) -> dict[str, torch.Tensor | int]:
        """The item's entries: ``video`` (1, T, H, W), ``chroma`` (2, T, H', W'), ``yuv_format``."""
        return {"video": self.y.transpose(0, 1).contiguous(), "chroma": self.uv.transpose(0, 1).contiguous(),
                "yuv_format": self.format}

    def rgb(self) -> torch.Tensor:
        """uint8 (T, 3, H, W) RGB (:func:`yuv_to_rgb`), for tests and tools."""
        video = yuv_to_rgb(self.y.transpose(0, 1)[None], self.uv.transpose(0, 1)[None], torch.tensor([self.format]))
        return video[0].transpose(0, 1)


def frame_format(frame: av.VideoFrame) -> int:
    """The :data:`FORMATS` index of a decoded frame's declared matrix and range (FFmpeg's defaults
    where it declares none)."""
    matrix = "bt709" if _tag(frame, "colorspace") == _BT709 else "bt601"
    full = _tag(frame, "color_range") == _FULL_RANGE or frame.format.name in _JPEG_FORMATS
    return FORMATS.index((matrix, "full" if full else "limited"))


def _tag(frame: av.VideoFrame, attribute: str) -> int:
    try:
        return int(getattr(frame, attribute))
    except (AttributeError, TypeError, ValueError):
        return 0


def frame_planes(frame: av.VideoFrame, width: int | None = None, height: int | None = None,
                 interpolation: str = "BILINEAR") -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W) luma and (2, ceil(H/2), ceil(W/2)) chroma of a decoded frame.

    yuv420p and nv12 frames (software and NVDEC decoding) at their own size are read as they are;
    other formats and sizes go through FFmpeg's scaler to yuv420p (``width``, ``height``: the size
    to scale to, None: the frame's).
    """
    width, height = width or frame.width, height or frame.height
    name = frame.format.name
    if (width, height) != (frame.width, frame.height) or name not in _PLANAR | _SEMI_PLANAR:
        frame = frame.reformat(width=width + width % 2, height=height + height % 2, format="yuv420p",
                               interpolation=interpolation)
        name = "yuv420p"
    ch, cw = (height + 1) // 2, (width + 1) // 2
    y = _plane(frame.planes[0], frame.height, frame.width)[:height, :width]
    if name in _SEMI_PLANAR:  # nv12: one plane of interleaved U, V
        uv = _plane(frame.planes[1], (frame.height + 1) // 2, 2 * ((frame.width + 1) // 2))
        uv = uv.reshape(uv.shape[0], -1, 2).transpose(2, 0, 1)
    else:
        uv = np.stack([_plane(frame.planes[k], (frame.height + 1) // 2, (frame.width + 1) // 2) for k in (1, 2)])
    return np.ascontiguousarray(y), np.ascontiguousarray(uv[:, :ch, :cw])


def _plane(plane, rows: int, columns: int) -> np.ndarray:
    """A frame plane's (rows, columns) bytes, without its line padding."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :columns]


def _matrix(format: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 3) float64 matrix and (3,) offset: RGB on 0..255 = M @ (Y, U, V) + offset (ITU-R BT.601/709)."""
    matrix, range_ = FORMATS[format]
    kr, kb = _LUMA_WEIGHTS[matrix]
    kg = 1.0 - kr - kb
    # Y' = (Y - 16) 255/219 and C' = (C - 128) 255/224 in the limited range; Y, C - 128 in the full range
    ys, cs, y0 = (255 / 219, 255 / 224, 16.0) if range_ == "limited" else (1.0, 1.0, 0.0)
    m = torch.tensor([[ys, 0.0, 2 * (1 - kr) * cs],
                      [ys, -2 * kb * (1 - kb) / kg * cs, -2 * kr * (1 - kr) / kg * cs],
                      [ys, 2 * (1 - kb) * cs, 0.0]], dtype=torch.float64)
    offset = -m @ torch.tensor([y0, 128.0, 128.0], dtype=torch.float64)
    return m, offset


def yuv_to_rgb(y: torch.Tensor, uv: torch.Tensor, formats: torch.Tensor) -> torch.Tensor:
    """uint8 RGB clips from YUV 4:2:0 planes, on the planes' device.

    Args:
        y: uint8 (B, 1, T, H, W) luma.
        uv: uint8 (B, 2, T, ceil(H/2), ceil(W/2)) chroma.
        formats: (B,) :data:`FORMATS` indices (the stream's matrix and range).

    Returns:
        uint8 (B, 3, T, H, W) RGB, rounded and clamped to 0..255 (chroma repeated over its 2x2 block).
    """
    h, w = y.shape[-2:]
    uv = uv.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :h, :w]  # (B, 2, T, H, W)
    yuv = torch.cat([y, uv], dim=1).to(torch.float32)  # (B, 3, T, H, W)
    table = [_matrix(k) for k in range(len(FORMATS))]
    ms = torch.stack([m for m, _ in table]).to(device=y.device, dtype=torch.float32)  # (F, 3, 3)
    offsets = torch.stack([o for _, o in table]).to(device=y.device, dtype=torch.float32)  # (F, 3)
    formats = torch.as_tensor(formats, device=y.device).long()
    rgb = torch.einsum("bij,bjthw->bithw", ms[formats], yuv) + offsets[formats].view(-1, 3, 1, 1, 1)
    return rgb.round_().clamp_(0, 255).to(torch.uint8)
