"""Parameters and GFLOPs of a configured model, per stage, with the non-local blocks' share.

One multiply-add = one FLOP, counted by fvcore in eval mode (the PySlowFast / pytorchvideo
convention, see nlnet/utils/flops.py), for one clip of ``input.frames`` x ``input.size``^2 (default:
the data config's clip length and test crop). Runs on the training config tree (configs/train.yaml).

    python tools/model_info.py experiment=i3d_r50_kinetics_8x8        # 8x256x256 view: 37.27 GFLOPs
    python tools/model_info.py model=i3d_r50 input.frames=32 input.size=224 \\
        'model.net.nonlocal_blocks=[[],[1,3],[1,3,5],[]]' model.nonlocal.pairwise=dot_product

``nonlocal_flops_impl=reference`` counts the NL blocks in their materialised (paper) form instead of
the configured ``impl``. The last line is ``total: params=<int> gflops=<float>``.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from nlnet.utils.cli import one_line_errors, run_main


@hydra.main(version_base="1.3", config_path="../configs", config_name="model_info")
@one_line_errors()
def main(cfg: DictConfig) -> None:
    from nlnet.config import counted_clip, instantiate  # imported after the config composed: torch takes seconds
    from nlnet.paper.tables import model_info

    frames, size = counted_clip(cfg)
    print(model_info(instantiate(cfg.model.net), frames=frames, size=size,
                     nonlocal_impl=OmegaConf.select(cfg, "nonlocal_flops_impl", default=None)))


if __name__ == "__main__":
    run_main(main)
