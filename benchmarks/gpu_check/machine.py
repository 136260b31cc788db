"""Part "env": what the check runs on, and the bf16 matrix-product rate measured there (the ceiling
that model FLOPs utilisation is also given against, beside the datasheet peak)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any

import torch

from ..common import device_of, median, timed
from .record import Recorder

PACKAGES = ("torch", "torchvision", "numpy", "av", "hydra-core", "omegaconf", "pytorchvideo", "fvcore", "iopath",
            "tensorboard", "matplotlib", "pytest")

# Dense bf16 tensor-core peaks, FLOP/s (one multiply-add = 2 FLOPs): half the "with sparsity"
# figure of NVIDIA's datasheets (H200: 1,979 TFLOPS SXM / 1,671 NVL; H100: 1,979 SXM / 1,513 PCIe;
# A100: 624 with sparsity, 312 dense). Keyed by torch.cuda.get_device_name().
DENSE_BF16_PEAK = {
    "NVIDIA H200": (989.5e12, "NVIDIA H200 datasheet, SXM: 1,979 TFLOPS BF16 with sparsity, 989.5 dense"),
    "NVIDIA H200 NVL": (835.5e12, "NVIDIA H200 datasheet, NVL: 1,671 TFLOPS BF16 with sparsity, 835.5 dense"),
    "NVIDIA H100 80GB HBM3": (989.5e12, "NVIDIA H100 datasheet, SXM: 1,979 TFLOPS BF16 with sparsity"),
    "NVIDIA H100 PCIe": (756.5e12, "NVIDIA H100 datasheet, PCIe: 1,513 TFLOPS BF16 with sparsity"),
    "NVIDIA A100-SXM4-80GB": (312e12, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense"),
    "NVIDIA A100-SXM4-40GB": (312e12, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense"),
}


def dense_bf16_peak(device_name: str, override_tflops: float | None = None) -> tuple[float | None, str]:
    """(peak FLOP/s, source) for MFU; ``override_tflops`` (e.g. a flag) wins over the table."""
    if override_tflops:
        return float(override_tflops) * 1e12, f"given: {override_tflops:g} TFLOP/s"
    peak, source = DENSE_BF16_PEAK.get(device_name, (None, f"unknown device {device_name!r}: no datasheet peak"))
    return peak, source


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def nvidia_smi() -> str | None:
    """One line per GPU: name, driver, memory, SM clock (now, max), memory clock, temperature."""
    query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def matmul_tflops(device: torch.device, n: int, repeats: int) -> float:
    """Median TFLOP/s of an (n x n) @ (n x n) bf16 product on random data (2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = [timed(lambda: a @ b, device)[0] for _ in range(repeats)]
    return 2 * n ** 3 / median(times) / 1e12


def describe(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "packages": versions(),
        "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2 ** 30, 1), multiprocessors=props.multi_processor_count,
                    cudnn=torch.backends.cudnn.version(), nvidia_smi=nvidia_smi())
    else:
        info.update(device_name=f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    return info


def run(settings: dict[str, Any], recorder: Recorder) -> None:
    """Record the machine, then the measured bf16 matrix-product rate and the datasheet peak."""
    device = device_of(settings)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: torch.cuda.is_available() is False (use --cpu-rehearsal on a CPU)")
    info = describe(device)
    recorder.set(**info)
    options = settings["env"]
    rate = matmul_tflops(device, int(options["matmul_size"]), int(options["repeats"]))
    peak, source = dense_bf16_peak(info["device_name"], settings["train"].get("peak_tflops"))
    recorder.set(matmul_bf16_tflops=round(rate, 2), matmul_size=options["matmul_size"],
                 peak_bf16_tflops=peak / 1e12 if peak else None, peak_source=source)
