"""What every benchmark shares: threads, timing, peak memory, precision (autocast) and errors.

One place for each measurement convention, so that the CPU scripts and the GPU check's parts time,
count memory and cast the same way.
"""
from __future__ import annotations

import contextlib
import gc
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nlnet.utils.precision import autocast_context

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
GIB = 2 ** 30
# The repository's configs (compose_config's config_dir).
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# ----------------------------------------------------------------------------------------- threads
def pin_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads (and OMP/MKL for child processes); 0: one per CPU core this
    process may run on. Returns the count.

    Benchmarks pin threads explicitly: torch's default in every process (several workers, or other
    jobs on a shared machine) oversubscribes the cores, and then timings measure contention.
    """
    count = threads or len(os.sched_getaffinity(0))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(count)
    torch.set_num_threads(count)
    return count


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def threads_line(threads: int, processes: int) -> str:
    """The line a benchmark prints about what ran: threads per process, processes, cores, load."""
    return (f"threads: {threads} torch thread(s) per process x {processes} process(es) on "
            f"{len(os.sched_getaffinity(0))} CPU core(s); load average {load_average():.1f} at the end")


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what ``platform`` says."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------------------ timing
def device_of(settings: dict[str, Any]) -> torch.device:
    return torch.device("cuda", 0) if settings["device"] == "cuda" else torch.device("cpu")


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], Any], device: torch.device | str) -> tuple[float, float]:
    """Run ``step`` once between device synchronisations; (wall seconds, this process's CPU seconds)."""
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    step()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def process_cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of the running processes ``pids`` (Linux ``/proc``); None where one
    cannot be read."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def cpu_seconds_with_children() -> float:
    """CPU time of this process and of its finished children (DataLoader workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# --------------------------------------------------------------------------------------- precision
def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """The trainer's autocast (``nlnet.utils.precision``) for "bf16"/"fp16", none for "fp32" (valid: the
    keys of PRECISIONS)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return autocast_context(torch.device(device), precision)


# ------------------------------------------------------------------------------------------ memory
def reset_peak_memory(device: torch.device | str) -> int:
    """Start a peak-memory window: CUDA's peak statistics are reset; returns the bytes held now
    (CUDA allocated, or this process's resident set on CPU, whose peak cannot be reset)."""
    device = torch.device(device)
    if device.type != "cuda":
        return current_rss()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak_memory(device: torch.device | str) -> int:
    """Peak bytes since :func:`reset_peak_memory`: CUDA max allocated, or this process's peak RSS."""
    device = torch.device(device)
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss()


def peak_memory_gib(device: torch.device | str, base: int = 0) -> float | None:
    """CUDA max allocated since :func:`reset_peak_memory` minus ``base``, in GiB (None on CPU)."""
    if torch.device(device).type != "cuda":
        return None
    return (peak_memory(device) - base) / GIB


def current_rss() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (VmHWM: unlike ru_maxrss, not inherited
    from a forked parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA (or cuDNN/cuBLAS) allocation failure, whatever exception type carries it."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def free_memory(device: torch.device | str) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference|| in float64 (NaN anywhere gives NaN)."""
    value, reference = value.detach().double(), reference.detach().double().to(value.device)
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))
