"""The composition root of ``tools/visualize_attention.py``: a checkpoint and a video to attention
figures (the paper's Figures 1 and 3). Options: ``configs/visualize.yaml``; figure:
docs/visualization.md.
"""
from __future__ import annotations

import os
from typing import Any

from nlnet import config as C
from nlnet.checkpoint.restore import restore_checkpoint
from nlnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from nlnet.viz import attention_figure, decode_clip, format_point, resolve_block, write_outputs


def _stored(stored: Any, path: str, default: Any = None) -> Any:
    """``stored.<path>`` of a checkpoint's config (dotted keys), or ``default`` where it is missing."""
    node = stored
    for key in path.split("."):
        node = node.get(key) if hasattr(node, "get") else None
        if node is None:
            return default
    return node


def visualize(cfg: Any) -> list[str]:
    """Write the figures ``cfg`` asks for (``configs/visualize.yaml``); returns the paths written.

    The model is rebuilt from the config stored in the checkpoint
    (:func:`~nlnet.checkpoint.restore.restore_checkpoint`; it never inflates ImageNet weights) and gets
    the checkpoint's weights; the clip geometry comes from the stored ``data.val`` unless ``cfg.clip.*``
    sets it.
    """
    if not os.path.isfile(cfg.video):
        raise FileNotFoundError(f"video={cfg.video}: no such file")
    restored = restore_checkpoint(cfg.checkpoint)
    model, stored = restored.model, restored.config
    block = resolve_block(model, cfg.block)  # fails early, listing the model's blocks

    def clip_value(key: str, stored_key: str, default: Any = None) -> Any:
        value = cfg.clip[key]
        return value if value is not None else _stored(stored, f"data.val.{stored_key}", default)

    short_side = clip_value("short_side", "test_scale", 256)
    mean = _stored(stored, "data.val.mean") or IMAGENET_MEAN
    std = _stored(stored, "data.val.std") or IMAGENET_STD
    clip, frames = decode_clip(cfg.video, num_frames=clip_value("num_frames", "num_frames"),
                               sampling_rate=clip_value("sampling_rate", "sampling_rate"), short_side=short_side,
                               crop_size=clip_value("crop_size", "test_crop_size") or short_side, mean=mean, std=std)
    result = attention_figure(model, clip, frames, block=block, queries=C.to_container(cfg.queries),
                              num_queries=cfg.num_queries, selection=cfg.query_selection, top_k=cfg.top_k,
                              heatmap=cfg.heatmap, arrows=cfg.arrows, panel_size=cfg.panel_size, device=cfg.device)
    mapping = result.capture.mapping
    classes = restored.class_names or []
    predicted = int(result.capture.logits.argmax())
    print(f"block {block} ({result.capture.attention.scope}): queries on a {mapping.query_shape} grid, keys on "
          f"{mapping.key_shape}, strides (t, y, x) {mapping.strides}; predicted class "
          f"{classes[predicted] if predicted < len(classes) else predicted}")
    for query, keys in zip(result.queries, result.top_keys):  # pixel centres of the cells, weight after ':'
        where = " ".join(f"({format_point(mapping.key_to_pixel(k))}):{w:.3g}" for k, w in keys)
        print(f"query t,y,x=({format_point(mapping.query_to_pixel(query))}) -> top keys {where}")
    paths = write_outputs(result, out=cfg.out, gif=cfg.gif, mp4=cfg.mp4, top_k=cfg.top_k,
                          panel_size=cfg.panel_size, fps=cfg.fps)
    for path in paths:
        print(f"wrote {path}")
    return paths
