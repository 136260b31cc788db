"""The one-command GPU check: CUDA-marked tests, the non-local block, train steps (MFU), pytorchvideo side
by side, the data loader against the train step, and a resumed torchrun run, each within its own time
budget; writes OUT/gpu_check.json, OUT/gpu_check.md and OUT/gpu_check.log. Run it through
scripts/gpu_check.sh (docs/benchmarks.md, "GPU", has the device command).

    python tools/gpu_check.py OUT                          # on the GPU machine (at most ~8 minutes)
    python tools/gpu_check.py --cpu-rehearsal OUT          # every part on the CPU, tiny shapes
    python tools/gpu_check.py OUT --budget train=200 --parts env,train,loader
"""
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from nlnet.bench.check import main
from nlnet.config import to_container

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def compose_plain(overrides: list[str]) -> dict:
    """The model, optimiser, schedule and training dataset that ``overrides`` configure, as plain containers."""
    if not any(o.startswith("data.root=") for o in overrides):
        overrides = [*overrides, "data.root=unused"]  # the train-step parts read no video
    with initialize_config_dir(version_base="1.3", config_dir=CONFIGS):
        cfg = compose("model_info", overrides=list(overrides))
    return {"net": to_container(cfg.model.net), "optim": to_container(cfg.optim),
            "schedule": to_container(cfg.schedule), "data_train": to_container(cfg.data.train),
            "frames": int(cfg.data.num_frames), "size": int(cfg.data.train.crop_size)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], compose=compose_plain))
