"""The one-command GPU check: CUDA-marked tests, the non-local block, train steps (MFU), pytorchvideo side
by side, the data loader against the train step, and a resumed torchrun run, each within its own time
budget; writes OUT/gpu_check.json, OUT/gpu_check.md and OUT/gpu_check.log. ``scripts/gpu_check.sh``
runs it (docs/benchmarks.md, "GPU").

    python -m benchmarks.gpu_check OUT                     # on a GPU machine
    python -m benchmarks.gpu_check --cpu-rehearsal OUT     # every part on the CPU, tiny shapes
    python -m benchmarks.gpu_check OUT --budget train=200 --parts env,train,loader
"""
import sys

from nlnet.config import compose_config, to_container

from ..common import CONFIGS

from .conductor import main


def compose_plain(overrides: list[str]) -> dict:
    """The model, optimiser, schedule and training dataset that ``overrides`` configure, as plain containers."""
    if not any(o.startswith("data.root=") for o in overrides):
        overrides = [*overrides, "data.root=unused"]  # the train-step parts read no video
    cfg = compose_config("model_info", overrides, config_dir=CONFIGS)
    return {"net": to_container(cfg.model.net), "optim": to_container(cfg.optim),
            "schedule": to_container(cfg.schedule), "data_train": to_container(cfg.data.train),
            "frames": int(cfg.data.num_frames), "size": int(cfg.data.train.crop_size)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], compose=compose_plain))
