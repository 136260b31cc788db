"""The composition root of the attention-figure command: a checkpoint and a video to attention
figures (the paper's Figures 1 and 3). Options: ``configs/visualize.yaml``; figure:
docs/visualization.md.
"""
from __future__ import annotations

import os
from typing import Any

from nlnet import config as C
from nlnet.checkpoint.restore import restore_checkpoint
from nlnet.data.transforms import ViewProtocol
from nlnet.viz import attention_figure, decode_clip, format_point, resolve_block, write_outputs


def visualize(cfg: Any) -> list[str]:
    """Write the figures ``cfg`` asks for (``configs/visualize.yaml``); returns the paths written.

    The model is rebuilt from the config stored in the checkpoint
    (:func:`~nlnet.checkpoint.restore.restore_checkpoint`; it never inflates ImageNet weights) and gets
    the checkpoint's weights; the clip is one of the test's views, read from the stored ``data.val``
    (``ViewProtocol.from_dataset_node``: clip placement, decoder scaling, crop or full frame, mean/std),
    with ``cfg.clip.*`` on top.
    """
    if not os.path.isfile(cfg.video):
        raise FileNotFoundError(f"video={cfg.video}: no such file")
    restored = restore_checkpoint(cfg.checkpoint)
    model, stored = restored.model, restored.config
    block = resolve_block(model, cfg.block)  # fails early, listing the model's blocks

    val = (stored.get("data") or {}).get("val") or {}
    view = ViewProtocol.from_dataset_node(val, **C.to_container(cfg.clip))  # the test's views, clip.* on top
    clip, frames = decode_clip(cfg.video, view)
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
