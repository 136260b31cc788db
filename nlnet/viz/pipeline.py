"""From a video file and a model to attention figures: decode one test clip, capture, draw, write.

Used by ``nlnet.viz.visualize`` (the attention-figure command) and by the trainer's attention
hook; every argument is a plain value (the composition root unpacks its config).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from nlnet.data.decoding import VideoReader
from nlnet.data.sampling import read_frames
from nlnet.data.transforms import ViewProtocol
from nlnet.viz.capture import BlockCapture, capture_attention, default_queries, queries_from_pixels
from nlnet.viz.drawing import draw_attention, render_animation, save_figure, write_gif, write_mp4
from nlnet.viz.geometry import Point


def unnormalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised float (C, T, H, W) -> display frames (T, H, W, 3) uint8 (inverse of the test transform)."""
    mean_t = torch.tensor(mean, dtype=clip.dtype).view(-1, 1, 1, 1)
    std_t = torch.tensor(std, dtype=clip.dtype).view(-1, 1, 1, 1)
    pixels = (clip * std_t + mean_t).clamp(0, 1).mul(255).round().to(torch.uint8)  # (C, T, H, W)
    return pixels.permute(1, 2, 3, 0).numpy()


def decode_clip(path: str | os.PathLike, view: ViewProtocol, *, clip_index: int | None = None,
                crop_index: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """One of the test's views of a video, decoded and transformed exactly as the test does it (paper §4.1).

    Args:
        path: the video file.
        view: the test views (a checkpoint's ``TrainedModel.protocol``, a dataset's ``view``): the clip's
            frames, its placement in time, the decoder's scaling (``decode_resize``), the short side,
            the crop (or the full frame) and the normalisation.
        clip_index: which of the ``view.num_clips`` clips (None: the middle one, ``num_clips // 2``).
        crop_index: which of the ``view.num_crops`` crops (None: the middle one, the centre crop for 1 or 3).

    Returns:
        ``(clip, frames)``: normalised float32 (C, T, H, W) for the model, and the same view as
        uint8 (T, H, W, 3) for drawing.

    Raises:
        FileNotFoundError: naming ``path`` when there is no such file.
        nlnet.data.decoding.VideoDecodeError: the file cannot be decoded.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video not found: {path}")
    clip_index = view.num_clips // 2 if clip_index is None else clip_index
    crop_index = view.num_crops // 2 if crop_index is None else crop_index
    with VideoReader(path) as reader:
        video = read_frames(reader, view.test_times(reader.info, clip_index),
                            short_side=view.decode_short_side)  # (T, 3, H, W)
    clip = view.transform()(video, crop_index)  # (C, T, H, W)
    return clip, unnormalize(clip, view.mean, view.std)


@dataclass
class AttentionFigure:
    """One drawn figure and what it shows.

    Attributes:
        figure: the matplotlib figure (one row per query).
        capture: the captured block (attention, mapping, response, logits).
        queries: the query cells drawn, (t, y, x) on the feature grid.
        top_keys: per query, its top-k keys [((t_k, y_k, x_k), weight)].
        frames: the uint8 (T, H, W, 3) frames drawn over.
    """

    figure: Figure
    capture: BlockCapture
    queries: list[Point]
    top_keys: list[list[tuple[Point, float]]]
    frames: np.ndarray = field(repr=False)


def attention_figure(
    model: nn.Module,
    clip: torch.Tensor,
    frames: np.ndarray,
    *,
    block: str | None = None,
    queries: Sequence[Sequence[float]] | None = None,
    num_queries: int = 3,
    selection: str = "response",
    top_k: int = 5,
    heatmap: bool = True,
    arrows: bool = True,
    panel_size: int = 160,
    device: str | torch.device = "cpu",
) -> AttentionFigure:
    """Run ``model`` on ``clip`` and draw what block ``block`` attends to.

    Args:
        model: a network whose non-local blocks offer ``attention(x)`` (``ResNet3d``).
        clip: normalised (C, T, H, W).
        frames: the same clip as uint8 (T, H, W, 3).
        block: non-local block name (``model.nonlocal_names()``); default the last.
        queries: query points [t, y, x] in frame/pixel coordinates of ``frames``; None: the
            ``num_queries`` strongest (``selection``: ``response`` or ``peak``, see ``default_queries``).
        top_k: keys drawn per query.
        heatmap, arrows, panel_size: see ``draw_attention``.
        device: where the model runs.
    """
    model = model.to(device)
    capture = capture_attention(model, clip.to(device), block)
    if queries is None:
        cells = default_queries(capture, num_queries, selection=selection)
    else:
        cells = queries_from_pixels(capture.mapping, queries)
    title = f"{capture.name} ({capture.attention.scope})"
    figure = draw_attention(frames, capture.attention, capture.mapping, cells, top_k=top_k, heatmap=heatmap,
                            arrows=arrows, panel_size=panel_size, title=title)
    top = [capture.attention.top_keys(q, top_k) for q in cells]
    return AttentionFigure(figure=figure, capture=capture, queries=cells, top_keys=top, frames=frames)


def write_outputs(
    result: AttentionFigure,
    *,
    out: str | os.PathLike | None,
    gif: str | os.PathLike | None = None,
    mp4: str | os.PathLike | None = None,
    top_k: int = 5,
    panel_size: int = 160,
    fps: float = 4.0,
) -> list[str]:
    """Write the PNG grid and, when asked, the animation as GIF and/or MP4. Returns the paths written."""
    written = []
    if out:
        written.append(save_figure(result.figure, out))
    if gif or mp4:
        capture = result.capture
        images = render_animation(result.frames, capture.attention, capture.mapping, result.queries, top_k=top_k,
                                  panel_size=panel_size)
        if gif:
            written.append(write_gif(images, gif, fps=fps))
        if mp4:
            written.append(write_mp4(images, mp4, fps=max(1, int(round(fps)))))
    return written
