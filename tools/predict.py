"""Label your own videos with a trained checkpoint: top-k classes averaged over the checkpoint's test
views, an optional timeline of per-window predictions, an annotated copy of the video and JSON.

    python tools/predict.py checkpoint=runs/demo/checkpoints/checkpoint_0000300.pt video=clip.mp4
    python tools/predict.py checkpoint=PATH video=clip.mp4 window=2 stride=1 out=labelled.mp4 json=preds.json
    python tools/predict.py checkpoint=PATH video=folder/ json=preds.json num_workers=4 device=cuda half=true

Every option: configs/predict.yaml. Exit status 0 when at least one video was labelled, 1 when every
file was unreadable (each is reported on stderr), 2 on a configuration error.
"""
import hydra
from omegaconf import DictConfig, OmegaConf

from nlnet.utils.cli import run_main


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from nlnet.inference.commands import run_tool

    run_tool("predict", OmegaConf.to_container(cfg, resolve=True), missing=sorted(OmegaConf.missing_keys(cfg)))


if __name__ == "__main__":
    run_main(main)
