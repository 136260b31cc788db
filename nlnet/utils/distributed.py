"""Process-group setup from torchrun's environment and the few collectives the engine needs.

A single process (no ``WORLD_SIZE`` in the environment) needs no torchrun and no process group. The
tasks of a Slurm or submitit job get torchrun's variables from their job (``nlnet.utils.cluster``).
"""
from __future__ import annotations

import atexit
import datetime
import os
import sys
from typing import Any

import torch
import torch.distributed as dist

from nlnet.utils.cluster import use_scheduler_environment
from nlnet.utils.errors import ConfigError


def init_distributed(device: str = "auto") -> torch.device:
    """Join the process group torchrun (or a Slurm/submitit job) describes (NCCL on GPU, gloo on CPU) and
    pick this rank's device.

    Args:
        device: "auto" (CUDA if available, else CPU), "cpu" or "cuda".

    Returns:
        The device this process computes on (``cuda:LOCAL_RANK`` on GPU).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device={device!r}: valid choices are auto, cpu, cuda")
    use_scheduler_environment()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"trainer.device=cuda but this machine has {torch.cuda.device_count()} CUDA devices "
                              f"(process {local_rank} needs one): use trainer.device=cpu or auto")
        torch.cuda.set_device(local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        atexit.register(_destroy)
    return torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over ranks (in place)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= get_world_size()
    return tensor


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank if ``flag`` is true on any rank (e.g. a stop request)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup() -> None:
    """The end of a run, called from a ``finally`` clause. After a success every rank waits for the
    others and the process group stays for the next run of this process (the rows of a Hydra multirun
    sweep under torchrun: a second group on torchrun's store hangs); it is destroyed at exit. While an
    error propagates, the group is destroyed at once, so the other ranks' collectives fail and they
    exit too."""
    if not is_distributed():
        return
    if sys.exc_info()[0] is None:
        dist.barrier()
    else:
        dist.destroy_process_group()


def _destroy() -> None:
    if is_distributed():
        dist.destroy_process_group()
