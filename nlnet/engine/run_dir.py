"""A run folder: who owns it (a lock against a second writer), what interrupted writes left, the
random streams a resumed run continues, and the training plan (``schedule.json``) that
``nlnet.paper.tables`` reads back.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

from nlnet.solver.schedule import ScheduleBudget
from nlnet.utils import distributed as du
from nlnet.utils.io import atomic_path, exclusive_lock, remove_stale_temporaries
from nlnet.utils.logger import get_logger, setup_logging
from nlnet.utils.seeding import seed_everything, set_rng_state

PLAN_FILE = "schedule.json"


@contextlib.contextmanager
def own_run_directory(run_dir: str) -> Iterator[None]:
    """Rank 0 locks the run directory against a second writer and removes what interrupted writes left;
    every rank sets up logging."""
    holder: contextlib.AbstractContextManager = exclusive_lock(run_dir) if du.is_main_process() else \
        contextlib.nullcontext()
    with holder as previous:
        setup_logging(run_dir, rank=du.get_rank())
        if previous:
            get_logger().warning(f"took over the lock of {run_dir} left by {previous}, which is no longer running")
        if du.is_main_process():
            stale = remove_stale_temporaries(run_dir) + remove_stale_temporaries(os.path.join(run_dir, "checkpoints"))
            for path in stale:
                get_logger().info(f"removed {path}, left by an interrupted write")
        yield


def restore_rng(rng_states: list, *, written_by: int | None, seed: int, iteration: int) -> None:
    """Continue this rank's random streams from a checkpoint's ``rng_states`` when it was written by as
    many processes; otherwise re-seed them (the data order is kept: the loader's state is its own).

    Args:
        rng_states: one state per rank, as the checkpointer stored them.
        written_by: the checkpoint's ``world_size``.
        seed: ``trainer.seed``.
        iteration: the iteration resumed at.
    """
    rank, world = du.get_rank(), du.get_world_size()
    if written_by == world and len(rng_states) == world:
        set_rng_state(rng_states[rank])
    else:
        get_logger().warning(f"checkpoint written by {written_by} processes, resuming with {world}: "
                             "random streams are re-seeded (the data order is kept)")
        seed_everything(seed + rank + 1_000_003 * iteration)


def write_plan(run_dir: str, *, budget: ScheduleBudget, recipe_max_iter: int) -> str:
    """Write ``<run_dir>/schedule.json``: the recipe's ``max_iter`` and what this run plans after the
    budget rule (unit, reference and total batch, factor, ``max_iter``). Returns its path."""
    plan = {"unit": budget.unit, "reference_batch_size": budget.reference_batch_size,
            "total_batch_size": budget.total_batch_size, "factor": budget.factor,
            "recipe_max_iter": recipe_max_iter, "max_iter": budget.iterations(recipe_max_iter)}
    path = os.path.join(run_dir, PLAN_FILE)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(plan, f, indent=1)
    return path
