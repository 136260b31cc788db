"""The processes of a run started by a scheduler: a Slurm job step (``srun``, or a job submitted by
``hydra/launcher=slurm``) or a job of ``hydra/launcher=local``, turned into the environment
``torch.distributed`` reads under ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Also: the signals that stop training, and what ``sinfo`` says about a partition.

Outside a scheduler, or under ``torchrun`` (WORLD_SIZE already set), nothing changes.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass

from nlnet.utils.errors import ConfigError

# Rendezvous ports derived from the job id: one per job, the same for every task and every requeue.
PORT_BASE, PORT_RANGE = 20000, 20000


@dataclass(frozen=True)
class ProcessPlace:
    """Where a process sits in its job: global rank, number of processes, rank on its node, the
    first node's host name (rank 0's, the rendezvous) and the job id."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    job_id: str

    def environment(self) -> dict[str, str]:
        """The variables ``torch.distributed.init_process_group`` (env://) reads."""
        return {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank),
                "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(job_port(self.job_id))}


def job_port(job_id: str) -> int:
    """A TCP port for the rendezvous of job ``job_id`` (``MASTER_PORT`` in the environment wins)."""
    if os.environ.get("MASTER_PORT"):
        return int(os.environ["MASTER_PORT"])
    digits = re.sub(r"\D", "", job_id) or "0"
    return PORT_BASE + int(digits) % PORT_RANGE


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``node[01-04],gpu7`` -> ``node01``), via ``scontrol``."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError) as e:
        raise ConfigError(f"cannot expand the Slurm node list {nodelist!r} with scontrol ({e})") from e
    if not out:
        raise ConfigError(f"scontrol show hostnames {nodelist!r} printed no host")
    return out[0]


def scheduler_place() -> ProcessPlace | None:
    """This process's place in a job of several processes started by Slurm or submitit; None outside
    one, under ``torchrun`` (WORLD_SIZE set) and for a job of one process.

    A submitit job (``SUBMITIT_EXECUTOR``) is described by ``submitit.JobEnvironment``; a plain Slurm
    job step (``srun``: ``SLURM_STEP_ID``; not the batch script itself) by ``SLURM_PROCID``,
    ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID`` and the first host of ``SLURM_STEP_NODELIST``.
    """
    env = os.environ
    if "WORLD_SIZE" in env:
        return None
    if env.get("SUBMITIT_EXECUTOR"):
        import submitit  # only inside a submitit job

        job = submitit.JobEnvironment()
        place = ProcessPlace(rank=job.global_rank, world_size=job.num_tasks, local_rank=job.local_rank,
                             master_addr=job.hostnames[0], job_id=job.raw_job_id)
    elif "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"]
        world_size = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS", "1"))
        place = ProcessPlace(rank=int(env["SLURM_PROCID"]), world_size=world_size,
                             local_rank=int(env.get("SLURM_LOCALID", "0")),
                             master_addr=first_host(nodelist) if world_size > 1 else "localhost",
                             job_id=env.get("SLURM_JOB_ID", "0"))
    else:
        return None
    return place if place.world_size > 1 else None


def use_scheduler_environment() -> ProcessPlace | None:
    """In a job of several processes started by Slurm or submitit, set the variables torchrun would
    have set (kept where already set, e.g. ``MASTER_PORT``); returns the place, or None (nothing set)."""
    place = scheduler_place()
    if place is not None:
        for name, value in place.environment().items():
            os.environ.setdefault(name, value)
    return place


def preemption_signal() -> int | None:
    """The signal submitit's jobs get before their time limit and on preemption (``--signal``; USR2,
    or ``SUBMITIT_PREEMPT_SIGNAL``); None outside a submitit job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG")
    return int(signal.Signals[name])


def stop_signals() -> tuple[int, ...]:
    """The signals on which training stops at the next step boundary with a checkpoint: SIGTERM and
    SIGINT, and in a submitit job its preemption signal (which then requeues the job)."""
    extra = preemption_signal()
    return (signal.SIGTERM, signal.SIGINT) + ((extra,) if extra is not None else ())


# ---- what sinfo says about the cluster (checked before submitting) ------------------------------
@dataclass(frozen=True)
class Partition:
    """A Slurm partition: its name, number of nodes and the most CPUs one of its nodes has."""

    name: str
    nodes: int
    cpus_per_node: int
    default: bool


def partitions() -> list[Partition]:
    """The partitions ``sinfo`` lists (the default one marked ``*`` by sinfo)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P|%D|%c"], capture_output=True, text=True, check=True,
                             timeout=60).stdout
    except FileNotFoundError as e:
        raise ConfigError("hydra/launcher=slurm: sinfo not found; submit from a machine of a Slurm cluster "
                          "(or start one here: bash scripts/slurm_local.sh start)") from e
    except (OSError, subprocess.SubprocessError) as e:
        stderr = getattr(e, "stderr", "") or ""
        raise ConfigError(f"hydra/launcher=slurm: sinfo failed ({stderr.strip() or e}); is Slurm running?") from e
    found: dict[str, Partition] = {}
    for line in out.splitlines():
        name, nodes, cpus = line.strip().split("|")
        default = name.endswith("*")
        name = name.rstrip("*")
        old = found.get(name)
        nodes_n, cpus_n = int(nodes), int(cpus.rstrip("+"))
        if old is not None:  # one line per node state
            nodes_n, cpus_n = old.nodes + nodes_n, max(old.cpus_per_node, cpus_n)
        found[name] = Partition(name=name, nodes=nodes_n, cpus_per_node=cpus_n, default=default)
    return list(found.values())
