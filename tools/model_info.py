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
import torch
from omegaconf import DictConfig, OmegaConf

from nlnet.config import instantiate
from nlnet.utils.flops import format_cost, model_cost


def input_size(cfg: DictConfig) -> tuple[int, int]:
    """(frames, size) of the counted clip: ``input.*``, else the data config's clip length and test
    crop (the cost of one test view, as the reference model zoos report it), else 8 x 256."""
    frames = OmegaConf.select(cfg, "input.frames", default=None)
    size = OmegaConf.select(cfg, "input.size", default=None)
    frames = frames or OmegaConf.select(cfg, "data.num_frames", default=None) or 8
    size = (size or OmegaConf.select(cfg, "data.val.test_crop_size", default=None)
            or OmegaConf.select(cfg, "data.train.crop_size", default=None) or 256)
    return int(frames), int(size)


def model_info(cfg: DictConfig) -> str:
    """The cost table of ``cfg.model.net`` at the configured input (see module docstring)."""
    model = instantiate(cfg.model.net)
    frames, size = input_size(cfg)
    impl = OmegaConf.select(cfg, "nonlocal_flops_impl", default=None)
    report = model_cost(model, torch.zeros(1, 3, frames, size, size),
                        parts=["stem", *model.stage_names, "head"],
                        nonlocal_names=model.nonlocal_names(), nonlocal_impl=impl)
    counted = f"impl={impl}" if impl else "as configured"
    title = (f"ResNet3d depth={model.depth} num_classes={model.num_classes}, input 1x3x{frames}x{size}x{size}, "
             f"non-local blocks counted {counted}")
    return format_cost(report, title=title)


@hydra.main(version_base="1.3", config_path="../configs", config_name="model_info")
def main(cfg: DictConfig) -> None:
    print(model_info(cfg))


if __name__ == "__main__":
    main()
