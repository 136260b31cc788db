"""What the GPU check's parts share on the device: timing, memory, precision, errors."""
from __future__ import annotations

import gc
from typing import Any

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
GIB = 2 ** 30


def device_of(settings: dict[str, Any]) -> torch.device:
    return torch.device("cuda", 0) if settings["device"] == "cuda" else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """``torch.autocast`` for "bf16"/"fp16", disabled for "fp32"."""
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def reset_peak_memory(device: torch.device) -> int:
    """Start a peak-memory window; returns the bytes allocated now (0 on CPU)."""
    if device.type != "cuda":
        return 0
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak_memory_gib(device: torch.device, base: int = 0) -> float | None:
    """CUDA max allocated since :func:`reset_peak_memory` minus ``base``, in GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return (torch.cuda.max_memory_allocated(device) - base) / GIB


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA (or cuDNN/cuBLAS) allocation failure, whatever exception type carries it."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference|| in float64 (NaN anywhere gives NaN)."""
    value, reference = value.detach().double(), reference.detach().double().to(value.device)
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))
