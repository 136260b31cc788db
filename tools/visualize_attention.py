"""Draw what a checkpoint's non-local blocks attend to (the paper's Figures 1 and 3).

    python tools/visualize_attention.py checkpoint=outputs/demo/checkpoints/best.pt video=clip.mp4
    python tools/visualize_attention.py checkpoint=... video=... block=res4.nonlocal5 \\
        'queries=[[4,56,80]]' top_k=8 out=attn.png gif=attn.gif mp4=attn.mp4

Rebuilds the model from the config stored in the checkpoint, decodes the video's middle clip with a
centre crop as multi-view testing does, runs the model with ``return_attention=True`` and writes a
PNG grid (one row per query, one panel per feature time step), optionally a GIF/MP4. See
``configs/visualize.yaml`` for every option and ``docs/visualization.md`` for what the figure shows.
"""
from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig, OmegaConf

from nlnet.config import from_container, instantiate, to_container
from nlnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from nlnet.engine.checkpoint import load_checkpoint
from nlnet.utils.cli import run_main
from nlnet.utils.errors import ConfigError, one_line
from nlnet.viz import attention_figure, decode_clip, format_point, resolve_block, write_outputs


def visualize(cfg: DictConfig) -> list[str]:
    """Write the figures ``cfg`` asks for; returns the paths written."""
    if not os.path.isfile(cfg.video):
        raise FileNotFoundError(f"video={cfg.video}: no such file")
    state = load_checkpoint(cfg.checkpoint)
    if "config" not in state or "model" not in state:
        raise ConfigError(f"checkpoint={cfg.checkpoint}: not an nlnet training checkpoint (no stored config/model)")
    stored = from_container(state["config"])
    model = instantiate(stored.model.net, pretrained=None)  # the weights come from the checkpoint
    model.load_state_dict(state["model"])
    block = resolve_block(model, cfg.block)  # fails early, listing the model's blocks

    def clip_value(key: str, stored_key: str, default=None):
        value = cfg.clip[key]
        return value if value is not None else OmegaConf.select(stored, f"data.val.{stored_key}", default=default)

    short_side = clip_value("short_side", "test_scale", 256)
    mean = to_container(OmegaConf.select(stored, "data.val.mean", default=None)) or IMAGENET_MEAN
    std = to_container(OmegaConf.select(stored, "data.val.std", default=None)) or IMAGENET_STD
    clip, frames = decode_clip(cfg.video, num_frames=clip_value("num_frames", "num_frames"),
                               sampling_rate=clip_value("sampling_rate", "sampling_rate"), short_side=short_side,
                               crop_size=clip_value("crop_size", "test_crop_size") or short_side, mean=mean, std=std)
    queries = to_container(cfg.queries)
    result = attention_figure(model, clip, frames, block=block, queries=queries, num_queries=cfg.num_queries,
                              selection=cfg.query_selection, top_k=cfg.top_k, heatmap=cfg.heatmap, arrows=cfg.arrows,
                              panel_size=cfg.panel_size, device=cfg.device)
    mapping = result.capture.mapping
    classes = state.get("class_names") or []
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


@hydra.main(version_base="1.3", config_path="../configs", config_name="visualize")
def main(cfg: DictConfig) -> None:
    try:
        visualize(cfg)
    except ValueError as e:  # unknown block, query outside the clip, ...: one line (run_main)
        raise ConfigError(one_line(e)) from e


if __name__ == "__main__":
    run_main(main)
