"""Iteration-based learning-rate schedules as multipliers of the base lr, for ``LambdaLR``.

They are small callable objects with plain attributes, so ``LambdaLR.state_dict()`` stores them as
plain values and checkpoints stay loadable with ``weights_only=True``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch


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


def build_scheduler(optimizer: torch.optim.Optimizer, *, schedule: MultiStepSchedule | CosineSchedule
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per iteration with ``schedule`` as the multiplier."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
