"""Drawing what a non-local block attends to (the paper's Figures 1 and 3): a grid figure with
arrows and heatmaps, an animation over the input frames, and the files they are written to.

Weights shown are exactly what the block normalised: softmax values for (embedded) Gaussian,
f / N' for dot product and concatenation (these do not sum to one; dot-product ones can be
negative — the top-k are the largest). Heatmaps run from a row's smallest to its largest weight.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch
from torch import Tensor

from nlnet.utils.errors import ConfigError
from nlnet.utils.io import atomic_path
from nlnet.viz.geometry import AttentionMap, PixelMapping, Point

# one colour per query row (tab10), so arrows and markers of different queries stay apart
_QUERY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf")


def format_point(point: Sequence[float]) -> str:
    """A pixel-coordinate point as short text: ``2.5,19.5,27.5``."""
    return ",".join(f"{c:g}" for c in point)


UNIFORM_SPREAD = 0.01  # rows whose weights differ by less than this fraction of the largest: no heat
TITLE_PIXELS = 18  # height of the figure's title band, when it has a title


def figure_size(num_queries: int, num_panels: int, panel_size: int, *, title: bool = False) -> tuple[int, int]:
    """Pixel (width, height) of the PNG grid: one row per query, one column per feature time step,
    plus a title band of ``TITLE_PIXELS`` when there is a title."""
    return num_panels * panel_size, num_queries * panel_size + (TITLE_PIXELS if title else 0)


def _check_frames(frames: np.ndarray, mapping: PixelMapping) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    if tuple(frames.shape[:3]) != tuple(mapping.input_shape):
        raise ValueError(f"frames of (T, H, W) {frames.shape[:3]} do not match the clip fed to the model "
                         f"{tuple(mapping.input_shape)}")
    return frames


def _weight_range(values: Tensor) -> tuple[float, float]:
    """(smallest, largest) weight of a query's row over its scope (NaN outside it is ignored)."""
    finite = values[~torch.isnan(values)]
    return (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 0.0)


def _heat_rgba(sheet: Tensor, span: tuple[float, float]) -> np.ndarray:
    """(H_k, W_k) weights -> RGBA image, scaled from the row's smallest (clear) to its largest weight
    (opaque, bright): the frame stays visible where a query attends little. A nearly uniform row
    (spread under ``UNIFORM_SPREAD`` of its largest weight, e.g. a block still near its
    initialisation) shows no heat rather than amplified noise. NaN (outside the scope) is clear."""
    from matplotlib import colormaps

    low, high = span
    if high - low <= UNIFORM_SPREAD * max(abs(high), abs(low), 1e-30):
        level = np.zeros(tuple(sheet.shape))
    else:
        level = ((sheet - low) / (high - low)).nan_to_num(0.0).clamp(0, 1).numpy()
    rgba = colormaps["inferno"](0.35 + 0.65 * level)
    rgba[..., 3] = 0.65 * level
    return rgba


def _key_extent(mapping: PixelMapping) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) of the key grid in the frame's pixel coordinates."""
    _, ph, pw = mapping.key_pool
    _, sh, sw = mapping.strides
    _, hk, wk = mapping.key_shape
    return (-0.5, wk * pw * sw - 0.5, hk * ph * sh - 0.5, -0.5)


def draw_attention(
    frames: np.ndarray,
    attention: AttentionMap,
    mapping: PixelMapping,
    queries: Sequence[Point],
    *,
    top_k: int = 5,
    heatmap: bool = True,
    arrows: bool = True,
    panel_size: int = 160,
    title: str | None = None,
) -> Figure:
    """A grid figure: one row per query, one panel per feature time step.

    Each row marks its query (star) on the frame of its time step, overlays the query's weights
    on every frame (heatmap from the row's smallest to its largest weight), circles its top-k keys
    (numbered by rank) and draws arrows from the query to them, across frames as in Fig. 1/3.

    Args:
        frames: (T, H, W, 3) uint8, the clip fed to the model (after crop), in display colours.
        attention: the block's weights for this clip.
        mapping: grids -> frames/pixels of ``frames``.
        queries: query cells (t, y, x) on the feature grid.
        top_k: keys drawn per query.
        heatmap, arrows: what to draw.
        panel_size: pixels per panel; the PNG is ``figure_size(len(queries), T_f, panel_size, title=...)``.
        title: optional text in a band above the panels (e.g. the block's name).
    """
    frames = _check_frames(frames, mapping)
    if not queries:
        raise ValueError("no query points to draw")
    if panel_size < 32:
        raise ConfigError(f"panel_size must be >= 32 pixels, got {panel_size}")
    num_panels = mapping.query_shape[0]
    width, height = figure_size(len(queries), num_panels, panel_size, title=bool(title))
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fontsize = max(5.0, panel_size / 26)
    header = int(fontsize * 2.2)  # pixels kept above each panel for its "frame k" line
    if title:
        fig.text(0.005, 1 - 0.5 * TITLE_PIXELS / height, title, fontsize=8, va="center", ha="left")
    _, frame_h, frame_w = mapping.input_shape
    for row, query in enumerate(queries):
        colour = _QUERY_COLOURS[row % len(_QUERY_COLOURS)]
        weights = attention.row(query)  # (T_k, H_k, W_k), NaN outside the scope
        span = _weight_range(weights)
        keys = attention.top_keys(query, top_k)
        axes = []
        for col in range(num_panels):
            # panel rectangle in figure fractions: the row's cell below the title band, minus the header
            left, bottom = col * panel_size / width, ((len(queries) - 1 - row) * panel_size) / height
            ax = fig.add_axes((left, bottom, panel_size / width, (panel_size - header) / height))
            ax.imshow(frames[mapping.panel_frame(col)], interpolation="nearest")
            tk = col // mapping.key_pool[0]
            if heatmap and tk < attention.key_shape[0]:
                ax.imshow(_heat_rgba(weights[tk], span), interpolation="nearest", extent=_key_extent(mapping))
            ax.set_xlim(-0.5, frame_w - 0.5)
            ax.set_ylim(frame_h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"frame {mapping.panel_frame(col)}", fontsize=fontsize, pad=1.5, loc="left")
            if col == query[0]:  # the query's own panel says where the query is
                ax.text(0.02, 0.02, f"q{row} {format_point(mapping.query_to_pixel(query))}",
                        transform=ax.transAxes, fontsize=fontsize, color="white", va="bottom", ha="left",
                        bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
            axes.append(ax)
        qt, qy, qx = mapping.query_to_pixel(query)
        axes[query[0]].plot(qx, qy, marker="*", markersize=panel_size / 12, color=colour,
                            markeredgecolor="white", markeredgewidth=0.8, zorder=5)
        for rank, (key, _) in enumerate(keys):
            kt, ky, kx = mapping.key_to_pixel(key)
            panels = mapping.key_time_span(key[0])
            for t in panels:
                axes[t].plot(kx, ky, marker="o", markersize=panel_size / 20, markerfacecolor="none",
                             markeredgecolor=colour, markeredgewidth=1.2, zorder=5)
                axes[t].annotate(str(rank + 1), (kx, ky), xytext=(2, 2), textcoords="offset points",
                                 color="white", fontsize=fontsize, zorder=6)
            if arrows:
                target = min(panels, key=lambda t: abs(t - query[0]))  # nearest panel the key covers
                fig.add_artist(ConnectionPatch(
                    xyA=(qx, qy), coordsA=axes[query[0]].transData, xyB=(kx, ky), coordsB=axes[target].transData,
                    arrowstyle="-|>", color=colour, linewidth=1.0 + 1.5 * (1 - rank / max(len(keys), 1)),
                    mutation_scale=panel_size / 16, alpha=0.9, zorder=4,
                ))
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> str:
    """Write ``fig`` as an image at its exact pixel size (no tight bbox), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = os.fspath(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=fig.dpi)
    return path


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` to an (H, W, 3) uint8 array (for TensorBoard's add_image and animations)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render_animation(
    frames: np.ndarray,
    attention: AttentionMap,
    mapping: PixelMapping,
    queries: Sequence[Point],
    *,
    top_k: int = 5,
    panel_size: int = 160,
) -> list[np.ndarray]:
    """Images (H, W, 3) uint8, one per input frame: each query's column shows that frame with the
    weights of the key time step covering it, the query while the frame is in the query's time step,
    and its top-k keys while the frame is in theirs."""
    frames = _check_frames(frames, mapping)
    if not queries:
        raise ValueError("no query points to draw")
    dpi = 100
    fig = Figure(figsize=(len(queries) * panel_size / dpi, panel_size / dpi), dpi=dpi)
    _, frame_h, frame_w = mapping.input_shape
    st = mapping.strides[0]
    cols = []
    for col, query in enumerate(queries):
        colour = _QUERY_COLOURS[col % len(_QUERY_COLOURS)]
        ax = fig.add_axes((col / len(queries), 0, 1 / len(queries), 1))
        ax.set_axis_off()
        image = ax.imshow(frames[0], interpolation="nearest")
        weights = attention.row(query)
        heat = ax.imshow(_heat_rgba(weights[0], (0.0, 0.0)), interpolation="nearest", extent=_key_extent(mapping))
        ax.set_xlim(-0.5, frame_w - 0.5)
        ax.set_ylim(frame_h - 0.5, -0.5)
        _, qy, qx = mapping.query_to_pixel(query)
        (star,) = ax.plot(qx, qy, marker="*", markersize=panel_size / 12, color=colour, markeredgecolor="white")
        key_marks = []
        for key, _weight in attention.top_keys(query, top_k):
            _, ky, kx = mapping.key_to_pixel(key)
            (mark,) = ax.plot(kx, ky, marker="o", markersize=panel_size / 20, markerfacecolor="none",
                              markeredgecolor=colour, markeredgewidth=1.2)
            key_marks.append((key, mark))
        cols.append((query, image, heat, weights, star, key_marks))
    images = []
    for frame_index in range(frames.shape[0]):
        t = min(int((frame_index + 0.5) // st), mapping.query_shape[0] - 1)  # feature time step of this frame
        tk = min(t // mapping.key_pool[0], attention.key_shape[0] - 1)
        for query, image, heat, weights, star, key_marks in cols:
            image.set_data(frames[frame_index])
            heat.set_data(_heat_rgba(weights[tk], _weight_range(weights)))
            star.set_visible(query[0] == t)
            for key, mark in key_marks:
                mark.set_visible(key[0] == tk)
        images.append(figure_to_array(fig))
    return images


def write_gif(images: Sequence[np.ndarray], path: str | os.PathLike, *, fps: float = 4.0) -> str:
    """Write images as an animated GIF (Pillow), atomically."""
    from PIL import Image

    path = os.fspath(path)
    pil = [Image.fromarray(im) for im in images]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path


def write_mp4(images: Sequence[np.ndarray], path: str | os.PathLike, *, fps: int = 4) -> str:
    """Write images as an H.264 MP4 (``nlnet.data.encode.H264Writer``: atomic; odd sizes padded to even)."""
    from nlnet.data.encode import H264Writer

    height, width = images[0].shape[:2]
    with H264Writer(path, width=width, height=height, fps=fps) as writer:
        for image in images:
            writer.write(image)
    return os.fspath(path)
