"""Visualisation: what the non-local blocks attend to (the paper's Figures 1 and 3).

``geometry`` (grids to frames and pixels, one clip's weights on the global grids), ``capture`` (run
the model, read a block's attention through its accessor, choose queries), ``drawing`` (figures,
animations, files) and ``pipeline`` (video file + model -> figure files).
"""
from nlnet.viz.capture import (
    BlockCapture,
    capture_attention,
    default_queries,
    nonlocal_names,
    queries_from_pixels,
    resolve_block,
    select_queries,
)
from nlnet.viz.drawing import (
    draw_attention,
    figure_size,
    figure_to_array,
    format_point,
    render_animation,
    save_figure,
    write_gif,
    write_mp4,
)
from nlnet.viz.geometry import AttentionMap, PixelMapping
from nlnet.viz.pipeline import AttentionFigure, attention_figure, decode_clip, unnormalize, write_outputs

__all__ = [
    "AttentionFigure",
    "attention_figure",
    "decode_clip",
    "unnormalize",
    "write_outputs",
    "AttentionMap",
    "BlockCapture",
    "PixelMapping",
    "capture_attention",
    "default_queries",
    "draw_attention",
    "figure_size",
    "format_point",
    "figure_to_array",
    "nonlocal_names",
    "queries_from_pixels",
    "render_animation",
    "resolve_block",
    "save_figure",
    "select_queries",
    "write_gif",
    "write_mp4",
]
