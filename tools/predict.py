"""Label your own videos with a trained checkpoint: top-k classes averaged over the checkpoint's test
views, an optional timeline of per-window predictions, an annotated copy of the video and JSON.

    python tools/predict.py checkpoint=runs/demo/checkpoints/checkpoint_0000300.pt video=clip.mp4
    python tools/predict.py checkpoint=PATH video=clip.mp4 window=2 stride=1 out=labelled.mp4 json=preds.json
    python tools/predict.py checkpoint=PATH video=folder/ json=preds.json num_workers=4 device=cuda half=true
    python tools/predict.py checkpoint=CHARADES_PATH video=clip.mp4 threshold=0.5 window=2 json=preds.json
        # a multi-label checkpoint: per-class sigmoids, max over views; the labels at or above 0.5

Every option: configs/predict.yaml. Exit status 0 when at least one video was labelled, 1 when every
file was unreadable (each is reported on stderr), 2 on a configuration error.
"""
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from nlnet.utils.cli import one_line_errors, run_main


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
@one_line_errors()
def main(cfg: DictConfig) -> None:
    options = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # an unset ??? key: one line
    from nlnet.inference.commands import run_predict  # torch: after Hydra has parsed the command line

    sys.exit(run_predict(**options))


if __name__ == "__main__":
    run_main(main, path_keys=("checkpoint", "video", "out", "json"))
