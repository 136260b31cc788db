"""Iteration-based learning-rate schedules as multipliers of the base lr, for ``LambdaLR``, and the
budget rule that adapts a recipe's iteration counts to another total batch size.

The schedules are small callable objects with plain attributes, so ``LambdaLR.state_dict()`` stores
them as plain values and checkpoints stay loadable with ``weights_only=True``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nlnet.utils.errors import ConfigError

SCHEDULE_UNITS = ("iterations", "epochs")


class _Warmup:
    def __init__(self, warmup_iters: int, warmup_factor: float) -> None:
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor

    def warmup(self, iteration: int) -> float:
        if iteration >= self.warmup_iters:
            return 1.0
        alpha = iteration / self.warmup_iters
        return self.warmup_factor * (1 - alpha) + alpha  # linear from warmup_factor to 1


class MultiStepSchedule(_Warmup):
    """lr x ``gamma`` at each milestone (paper: x0.1 at 150k and 300k of 400k), optional linear warmup.

    Args:
        milestones: iterations at which the lr drops.
        gamma: the drop factor.
        warmup_iters: length of the linear warmup (0: none).
        warmup_factor: multiplier at iteration 0 of the warmup.
    """

    def __init__(self, *, milestones: Sequence[int] = (150_000, 300_000), gamma: float = 0.1,
                 warmup_iters: int = 0, warmup_factor: float = 0.1) -> None:
        super().__init__(warmup_iters, warmup_factor)
        if list(milestones) != sorted(milestones):
            raise ValueError(f"schedule.milestones={list(milestones)}: must be increasing")
        self.milestones = [int(m) for m in milestones]
        self.gamma = gamma

    def __call__(self, iteration: int) -> float:
        drops = sum(1 for m in self.milestones if iteration >= m)
        return self.warmup(iteration) * self.gamma**drops

    def scaled(self, budget: ScheduleBudget) -> MultiStepSchedule:
        """The same schedule with its iteration counts (milestones, warmup) converted by ``budget``."""
        return MultiStepSchedule(milestones=[budget.iterations(m) for m in self.milestones], gamma=self.gamma,
                                 warmup_iters=budget.iterations(self.warmup_iters), warmup_factor=self.warmup_factor)

    def describe(self) -> str:
        return f"lr x{self.gamma:g} at {self.milestones}, warmup {self.warmup_iters}"


class CosineSchedule(_Warmup):
    """Half-cosine decay from 1 to ``final_factor`` over ``max_iter``, optional linear warmup.

    Args:
        max_iter: total iterations.
        final_factor: multiplier at ``max_iter``.
        warmup_iters: length of the linear warmup (0: none).
        warmup_factor: multiplier at iteration 0 of the warmup.
    """

    def __init__(self, *, max_iter: int, final_factor: float = 0.0, warmup_iters: int = 0,
                 warmup_factor: float = 0.1) -> None:
        super().__init__(warmup_iters, warmup_factor)
        self.max_iter = max_iter
        self.final_factor = final_factor

    def __call__(self, iteration: int) -> float:
        progress = min(iteration / max(self.max_iter, 1), 1.0)
        cosine = self.final_factor + (1 - self.final_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.warmup(iteration) * cosine

    def scaled(self, budget: ScheduleBudget) -> CosineSchedule:
        """The same schedule with its iteration counts (max_iter, warmup) converted by ``budget``."""
        return CosineSchedule(max_iter=budget.iterations(self.max_iter), final_factor=self.final_factor,
                              warmup_iters=budget.iterations(self.warmup_iters), warmup_factor=self.warmup_factor)

    def describe(self) -> str:
        return f"half-cosine over {self.max_iter} to x{self.final_factor:g}, warmup {self.warmup_iters}"


@dataclass(frozen=True)
class ScheduleBudget:
    """How a recipe's iteration counts carry over to another total batch size.

    A recipe gives its schedule in iterations of ``reference_batch_size`` clips (the paper: 400k
    iterations of 64 clips, 8 GPUs x 8; the 128-frame fine-tuning: 16 clips, 8 GPUs x 2). With a
    total batch B (processes x data.batch_size) the lr already scales linearly with B
    (``nlnet.solver.optim``); the schedule either keeps its iteration counts ("iterations": fewer
    epochs when B is smaller) or keeps the number of epochs ("epochs": every iteration count x
    reference / B, rounded; Goyal et al.'s linear scaling rule, what epoch-based PySlowFast and
    mmaction2 schedules do).

    Args:
        unit: "iterations" or "epochs" (config key ``trainer.schedule_unit``).
        reference_batch_size: the total batch the recipe's counts are given for
            (``trainer.schedule_batch_size``).
        total_batch_size: this run's total batch.
    """

    unit: str
    reference_batch_size: int
    total_batch_size: int

    def __post_init__(self) -> None:
        if self.unit not in SCHEDULE_UNITS:
            raise ConfigError(f"trainer.schedule_unit={self.unit!r}: valid choices are {', '.join(SCHEDULE_UNITS)}")
        if self.reference_batch_size < 1:
            raise ConfigError(f"trainer.schedule_batch_size={self.reference_batch_size}: must be a positive "
                              "number of clips")

    @property
    def factor(self) -> float:
        """Multiplier of every iteration count: reference / B when keeping epochs, else 1."""
        return self.reference_batch_size / self.total_batch_size if self.unit == "epochs" else 1.0

    def iterations(self, count: int) -> int:
        """An iteration count of the recipe, converted (rounded to the nearest iteration)."""
        return int(round(count * self.factor))

    def describe(self, *, max_iter: int, schedule: MultiStepSchedule | CosineSchedule) -> str:
        """The line that starts a run's log: the recipe's schedule and what this run does with it.

        Args:
            max_iter: the recipe's ``trainer.max_iter`` (unconverted).
            schedule: the converted schedule.
        """
        recipe = f"{max_iter} iterations of {self.reference_batch_size} clips"
        if self.total_batch_size == self.reference_batch_size:
            what = f"total batch {self.total_batch_size} equals the recipe's: {max_iter} iterations"
        elif self.unit == "epochs":
            what = (f"keeping epochs at total batch {self.total_batch_size}: {self.iterations(max_iter)} "
                    f"iterations (x{self.factor:.4g})")
        else:
            epochs = self.total_batch_size / self.reference_batch_size
            what = (f"keeping iterations at total batch {self.total_batch_size}: {max_iter} iterations "
                    f"({epochs:.4g}x the recipe's epochs; trainer.schedule_unit=epochs keeps them)")
        return f"schedule: recipe {recipe}; {what}; {schedule.describe()}"


def build_scheduler(optimizer: torch.optim.Optimizer, *, schedule: MultiStepSchedule | CosineSchedule
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per iteration with ``schedule`` as the multiplier."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
