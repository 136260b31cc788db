"""Draw what a checkpoint's non-local blocks attend to (the paper's Figures 1 and 3).

    python tools/visualize_attention.py checkpoint=runs/demo/checkpoints/best.pt video=clip.mp4
    python tools/visualize_attention.py checkpoint=... video=... block=res4.nonlocal5 \\
        'queries=[[4,56,80]]' top_k=8 out=attn.png gif=attn.gif mp4=attn.mp4

Rebuilds the model from the config stored in the checkpoint (no ImageNet inflation), decodes the
video's middle clip with a centre crop as multi-view testing does, reads the block's attention
(``NonLocalBlock.attention`` on its captured input) and writes a PNG grid (one row per query, one
panel per feature time step), optionally a GIF/MP4 (``nlnet.viz.visualize.visualize``). See
``configs/visualize.yaml`` for every option and ``docs/visualization.md`` for what the figure shows.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from nlnet.utils.cli import one_line_errors, run_main


@hydra.main(version_base="1.3", config_path="../configs", config_name="visualize")
@one_line_errors()
def main(cfg: DictConfig) -> None:
    from nlnet.viz.visualize import visualize  # torch: after Hydra has parsed the command line

    visualize(cfg)


if __name__ == "__main__":
    run_main(main)
