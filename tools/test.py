"""Multi-view test of a checkpoint (10 clips x 3 crops by default; paper §4.1).

    python tools/test.py checkpoint=runs/demo/checkpoints/checkpoint_0000600.pt
    python tools/test.py checkpoint=PATH data.root=/data/kinetics400 data.val.num_clips=10
    torchrun --nproc_per_node=8 tools/test.py checkpoint=PATH

The model and data settings are those stored in the checkpoint; the keys given on the command line
replace theirs, and so do the stored keys derived from them (data.num_frames also sets
data.val.num_frames; data.root moves the annotation paths). A checkpoint path may contain '=' and ','
(run folders are named after overrides) without quotes. Writes results.json (top1, top5, mean class
accuracy, per-class accuracy, failed videos, ...) and per_video_scores.json in output_dir (default:
the checkpoint's run directory).
"""
import os

import hydra
from hydra.core.hydra_config import HydraConfig

from nlnet.utils.cli import one_line_errors, run_main
from nlnet.utils.errors import ConfigError

_OWN_KEYS = ("checkpoint", "output_dir")


@hydra.main(version_base="1.3", config_path="../configs", config_name="test")
@one_line_errors()
def main(cfg) -> None:
    if not os.path.isfile(cfg.checkpoint):  # before importing torch (seconds)
        raise ConfigError(f"checkpoint: file not found: {cfg.checkpoint}")
    from nlnet.config import apply_overrides
    from nlnet.checkpoint.files import read_checkpoint_config
    from nlnet.engine.test import test

    stored = read_checkpoint_config(cfg.checkpoint)
    test(apply_overrides(stored, cfg, HydraConfig.get().overrides.task, own_keys=_OWN_KEYS))


if __name__ == "__main__":
    run_main(main, path_keys=("checkpoint", "output_dir", "data.root", "data.val.annotations", "data.label_map"))
