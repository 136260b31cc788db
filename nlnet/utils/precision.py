"""Mixed precision for the training step, evaluation and prediction (``trainer.precision``)."""
from __future__ import annotations

import contextlib

import torch


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for "bf16"/"fp16", a no-op for "fp32"."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in dtypes:
        raise ValueError(f"trainer.precision={precision!r}: valid choices are fp32, bf16, fp16")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])
