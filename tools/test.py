"""Multi-view test of a checkpoint (10 clips x 3 crops by default; paper §4.1).

    python tools/test.py checkpoint=runs/demo/checkpoints/checkpoint_0000600.pt
    python tools/test.py checkpoint=PATH data.root=/data/kinetics400 data.val.num_clips=10
    torchrun --nproc_per_node=8 tools/test.py checkpoint=PATH

The model and data settings are those stored in the checkpoint; the keys given on the command line
replace theirs. Writes results.json (top1, top5, mean class accuracy, per-class accuracy, ...) and
per_video_scores.json in output_dir (default: the checkpoint's run directory).
"""
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from nlnet.utils.cli import exit_on_user_error, run_main
from nlnet.utils.errors import ConfigError

_OWN_KEYS = ("checkpoint", "output_dir")


@hydra.main(version_base="1.3", config_path="../configs", config_name="test")
def main(cfg) -> None:
    if not os.path.isfile(cfg.checkpoint):  # before importing torch (seconds)
        with exit_on_user_error():
            raise ConfigError(f"checkpoint: file not found: {cfg.checkpoint}")
    from nlnet.engine.checkpoint import read_checkpoint_config, rebase_paths  # torch: after the checks
    from nlnet.engine.launch import test

    with exit_on_user_error():
        stored = read_checkpoint_config(cfg.checkpoint)
        overrides = HydraConfig.get().overrides.task
        if any(o.split("=", 1)[0] == "data.root" for o in overrides):  # annotation paths move with the root
            stored = rebase_paths(stored, stored["data"]["root"], cfg.data.root)
        stored = OmegaConf.create(stored)
        for override in overrides:
            key = override.split("=", 1)[0].lstrip("+~")
            if key in _OWN_KEYS or key.startswith("hydra"):
                continue
            if "." not in key and OmegaConf.is_dict(stored.get(key)):
                raise ConfigError(f"{override}: a checkpoint's {key} cannot be swapped; override single keys "
                                  f"(e.g. {key}.<name>=VALUE)")
            OmegaConf.update(stored, key, OmegaConf.select(cfg, key), force_add=True)
        stored.checkpoint = cfg.checkpoint
        stored.output_dir = cfg.output_dir
        test(stored)


if __name__ == "__main__":
    run_main(main)
