"""The one-command GPU check: CUDA-marked tests, the non-local block, train steps (MFU), pytorchvideo side
by side, the data loader against the train step, and a resumed torchrun run, each within its own time
budget; writes OUT/gpu_check.json, OUT/gpu_check.md and OUT/gpu_check.log. Run it through
scripts/gpu_check.sh (docs/benchmarks.md, "GPU", has the device command).

    python tools/gpu_check.py OUT                          # on the GPU machine (at most ~8 minutes)
    python tools/gpu_check.py --cpu-rehearsal OUT          # every part on the CPU, tiny shapes
    python tools/gpu_check.py OUT --budget train=200 --parts env,train,loader
"""
import sys

from nlnet.bench.check import main
from nlnet.config import compose_config, to_container


def compose_plain(overrides: list[str]) -> dict:
    """The model, optimiser, schedule and training dataset that ``overrides`` configure, as plain containers."""
    if not any(o.startswith("data.root=") for o in overrides):
        overrides = [*overrides, "data.root=unused"]  # the train-step parts read no video
    cfg = compose_config("model_info", overrides)
    return {"net": to_container(cfg.model.net), "optim": to_container(cfg.optim),
            "schedule": to_container(cfg.schedule), "data_train": to_container(cfg.data.train),
            "frames": int(cfg.data.num_frames), "size": int(cfg.data.train.crop_size)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], compose=compose_plain))
