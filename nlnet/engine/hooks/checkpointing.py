"""Periodic crash-proof checkpoints of the whole training state, and ``best.pt``."""
from __future__ import annotations

import math
from typing import Any

from nlnet.checkpoint.files import CheckpointManager, atomic_save
from nlnet.engine.hooks.timing import is_due
from nlnet.engine.trainer import HookBase
from nlnet.utils import distributed as du
from nlnet.utils.logger import get_logger
from nlnet.utils.seeding import get_rng_state


class Checkpointer(HookBase):
    """Save every ``period`` iterations, at the end, and when a stop is requested; keep the best.

    Args:
        manager: where and how many checkpoints are kept.
        period: iterations between checkpoints (0: only at the end and on stop).
        extra: fixed entries stored in every checkpoint (resolved config, class names).
        best_metric: key of the evaluation metrics whose maximum selects ``best.pt``.

    Its state (resumed with the run) is the best value so far and its iteration.
    """

    def __init__(self, *, manager: CheckpointManager, period: int, extra: dict[str, Any] | None = None,
                 best_metric: str = "top1") -> None:
        self.manager = manager
        self.period = period
        self.extra = dict(extra or {})
        self.best_metric = best_metric
        self.best_value: float | None = None
        self.best_iteration: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_iteration": self.best_iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value = state.get("best_value")
        self.best_iteration = state.get("best_iteration")

    def state(self) -> dict[str, Any]:
        """The full checkpoint: the trainer's state, every rank's RNG states, the fixed extras."""
        state = self.trainer.state_dict()
        state["rng_states"] = du.all_gather_object(get_rng_state())
        state["world_size"] = du.get_world_size()
        state.update(self.extra)
        return state

    def save(self) -> None:
        t = self.trainer
        state = self.state()  # collective: every rank takes part
        if du.is_main_process():
            get_logger().info(f"saved checkpoint {self.manager.save(state, t.iter)}")
        du.barrier()

    def after_step(self) -> None:
        t = self.trainer
        if t.stop_reason is not None or is_due(t.iter, self.period, t.max_iter):
            self.save()

    def after_eval(self, metrics: dict[str, Any]) -> None:
        value = metrics.get(self.best_metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_iteration = float(value), self.trainer.iter
            state = self.state()
            if du.is_main_process():
                atomic_save(state, self.manager.best_path)
                get_logger().info(f"new best {self.best_metric}={value:.2f} at iteration {self.trainer.iter}: "
                                  f"{self.manager.best_path}")
            du.barrier()
