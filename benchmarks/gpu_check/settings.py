"""What the GPU check measures, as data: one preset for a GPU, one for the CPU rehearsal.

The two presets run the same code; the rehearsal only shrinks shapes, counts and budgets. Budgets
are seconds of wall time per part, taken from the parts list (``parts.py``; ``--budget PART=SECONDS``
overrides one); ``total_budget`` caps the whole check and defaults to the sum of the parts that run
one after the other (``--total-budget``). A slower GPU measures fewer rows within a budget: the rows
it does not reach are recorded as skipped, with the reason.
"""
from __future__ import annotations

import copy
from typing import Any

from .parts import PART_NAMES, PARTS

# Train-step cases: the paper's I3D R50 and NL I3D R50 (5 blocks, Table 2c), 32x2 and 8x8 clips.
# The clip length and crop come from each experiment's data config (32x224 or 8x224).
TRAIN_MODELS = [
    {"name": "NL I3D R50", "clip": "32x2", "overrides": ["experiment=nl_i3d_r50_kinetics"]},
    {"name": "I3D R50", "clip": "32x2", "overrides": ["experiment=i3d_r50_kinetics"]},
    {"name": "NL I3D R50", "clip": "8x8", "overrides": ["experiment=nl_i3d_r50_kinetics_8x8"]},
    {"name": "I3D R50", "clip": "8x8", "overrides": ["experiment=i3d_r50_kinetics_8x8"]},
]
# Eager modes first for every model, then torch.compile (its compile time decides how many fit).
TRAIN_MODES = ["bf16", "bf16+channels_last", "fp32", "bf16+compile"]

# The data loader reads the videos the trainer would, through the experiments' data configs.
LOADER_CLIPS = [
    {"clip": "32x2", "model": "NL I3D R50", "overrides": ["experiment=nl_i3d_r50_kinetics"]},
    {"clip": "8x8", "model": "NL I3D R50", "overrides": ["experiment=nl_i3d_r50_kinetics_8x8"]},
]

GPU: dict[str, Any] = {
    "device": "cuda",
    "rehearsal": False,
    "threads": None,  # torch's default intra-op threads
    "env": {"matmul_size": 8192, "repeats": 10},
    "tests": {"per_test_timeout": 120},
    "nonlocal": {"shapes": [[2, 512, 4, 28, 28], [2, 1024, 4, 14, 14],     # res3 / res4, 32-frame clips
                            [2, 512, 16, 28, 28], [2, 1024, 16, 14, 14]],  # res3 / res4, 128-frame clips
                 "precisions": ["fp32", "bf16"], "warmup": 2, "repeats": 10},
    "train": {"models": TRAIN_MODELS, "modes": TRAIN_MODES, "model_overrides": [], "frames": None, "size": None,
              "max_batch": 32, "warmup": 3, "steps": 10, "compile_backend": "inductor", "compile_estimate_s": 70,
              "eager_estimate_s": 8, "peak_tflops": None},
    "pytorchvideo": {"overrides": ["experiment=i3d_r50_kinetics_8x8"], "frames": 8, "size": 224,
                     "pytorchvideo_kwargs": {}, "precisions": ["fp32", "bf16"], "max_batch": 32, "warmup": 2,
                     "rounds": 8},
    "videos": {"bench": {"count": 16, "width": 456, "height": 256, "frames": 250, "gop_size": 25, "processes": None},
               "demo": {"train_per_class": 16, "val_per_class": 2, "frames": 32, "size": 64}},
    "loader": {"clips": LOADER_CLIPS, "data_overrides": [], "workers": None, "seconds": 12, "min_items": 6000,
               "default_batch": 32},
    "torchrun": {"nproc_per_node": 1, "max_iter": 50,
                 "overrides": ["trainer.device=cuda", "data.num_workers=4"]},
    # The paper's 32x2 training clip (Sec. 4: 224 crops of a 256-320 short side); videos: only without part "videos"
    "decode": {"videos": {"count": 8, "width": 456, "height": 256, "frames": 250, "gop_size": 25},
               "clip": {"num_frames": 32, "sampling_rate": 2, "crop_size": 224, "train_scale": [256, 320]},
               "batch": 8, "workers": None, "seconds": 3.0, "startup_s": 4.0, "min_items": 4000, "items": 8,
               "item_rounds": 3},
}

# Tiny shapes: every part runs on a 2-core CPU in about a minute (the CUDA-marked tests skip). The
# clips keep their frame counts (32 or 8): with fewer, res5 has fewer frames than the 3x1x1 kernels,
# where torch 2.14's CPU bf16 conv3d weight gradient is wrong (inf/NaN).
_TINY_TRAIN = ["model.net.base_width=4"]
_TINY_DATA = ["data.num_frames=2", "data.sampling_rate=2", "data.train.crop_size=32", "data.train.train_scale=[32,40]"]
CPU_REHEARSAL: dict[str, Any] = {
    "device": "cpu",
    "rehearsal": True,
    "threads": 1,  # OMP_NUM_THREADS for every part: on a loaded 2-core machine more threads only spin
    "env": {"matmul_size": 256, "repeats": 3},
    "tests": {"per_test_timeout": 120},
    "nonlocal": {"shapes": [[2, 16, 4, 8, 8], [2, 32, 2, 6, 6]], "precisions": ["fp32", "bf16"],
                 "warmup": 1, "repeats": 2},
    "train": {"models": [m for m in TRAIN_MODELS if m["name"] == "NL I3D R50"], "modes": TRAIN_MODES,
              "model_overrides": _TINY_TRAIN, "frames": None, "size": 32, "max_batch": 2, "warmup": 1, "steps": 2,
              "compile_backend": "eager", "compile_estimate_s": 5, "eager_estimate_s": 1, "peak_tflops": 1.0},
    "pytorchvideo": {"overrides": ["experiment=i3d_r50_kinetics_8x8", *_TINY_TRAIN], "frames": 8, "size": 32,
                     "pytorchvideo_kwargs": {"stem_dim_out": 4}, "precisions": ["fp32", "bf16"], "max_batch": 2,
                     "warmup": 1, "rounds": 2},
    "videos": {"bench": {"count": 4, "width": 48, "height": 32, "frames": 24, "gop_size": 8, "processes": 2},
               "demo": {"train_per_class": 2, "val_per_class": 1, "frames": 16, "size": 32}},
    "loader": {"clips": LOADER_CLIPS, "data_overrides": _TINY_DATA, "workers": 2, "seconds": 1, "min_items": 400,
               "default_batch": 2},
    "torchrun": {"nproc_per_node": 1, "max_iter": 8,
                 "overrides": ["trainer.device=cpu", "model.net.base_width=4", "data.batch_size=2",
                               "data.num_workers=0", "data.num_frames=4", "data.sampling_rate=2",
                               "data.train.crop_size=32", "data.train.train_scale=[32,40]", "data.val.test_scale=32",
                               "data.val.test_crop_size=32", "data.val.num_clips=1", "trainer.precise_bn_iters=1"]},
    "decode": {"videos": {"count": 2, "width": 48, "height": 32, "frames": 24, "gop_size": 8},
               "clip": {"num_frames": 4, "sampling_rate": 2, "crop_size": 24, "train_scale": [28, 34]},
               "batch": 2, "workers": 2, "seconds": 0.5, "startup_s": 4.0, "min_items": 200, "items": 2,
               "item_rounds": 2},
}


def preset(cpu_rehearsal: bool) -> dict[str, Any]:
    """A fresh copy of the GPU or the CPU-rehearsal preset, with the parts' budgets and their total
    (the parts run one after the other; background ones beside them)."""
    settings = copy.deepcopy(CPU_REHEARSAL if cpu_rehearsal else GPU)
    settings["budgets"] = {p.name: p.rehearsal_budget_s if cpu_rehearsal else p.budget_s for p in PARTS}
    settings["total_budget"] = sum(settings["budgets"][p.name] for p in PARTS if not p.background)
    return settings


def apply_budgets(settings: dict[str, Any], items: list[str], total: float | None = None) -> dict[str, Any]:
    """Override part budgets from ``PART=SECONDS`` strings (and the total); one-line errors on bad input."""
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in PART_NAMES:
            raise ValueError(f"--budget {item!r}: expected PART=SECONDS with PART one of {', '.join(PART_NAMES)}")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"--budget {item!r}: {value!r} is not a number of seconds") from None
        if seconds <= 0:
            raise ValueError(f"--budget {item!r}: seconds must be > 0")
        settings["budgets"][name] = seconds
    if total is not None:
        if total <= 0:
            raise ValueError(f"--total-budget {total}: seconds must be > 0")
        settings["total_budget"] = total
    return settings
