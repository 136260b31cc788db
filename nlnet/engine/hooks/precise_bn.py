"""Precise BN: BatchNorm statistics recomputed over many training batches before a checkpoint or an
evaluation."""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

from nlnet.data.prologue import BatchPrologue
from nlnet.engine.trainer import HookBase
from nlnet.utils import distributed as du
from nlnet.utils.logger import get_logger
from nlnet.utils.precision import autocast_context


@torch.no_grad()
def update_bn_stats(model: nn.Module, batches: Iterable[dict[str, Any]], *, num_iters: int, device: torch.device,
                    precision: str = "fp32", prologue: BatchPrologue | None = None) -> int:
    """Precise BN: recompute every BatchNorm's running mean/var as the average over ``num_iters``
    training batches of the batch statistics (official recipe: 200 iterations before testing),
    averaged over ranks. Frozen BatchNorms (those ``model.train()`` leaves in eval mode, e.g.
    ``ResNet3d(frozen_bn=...)``) keep their statistics. Returns the number of batches used.

    Not ``fvcore.nn.precise_bn.update_bn_stats``: the pinned fvcore pools every batch into one
    population variance, which differs from this mean of per-batch variances when batches differ."""
    was_training = model.training
    model.train()
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training]
    if not bns or num_iters <= 0:
        model.train(was_training)
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches seen
    used = 0
    prologue = prologue or BatchPrologue(device=device)
    for batch in itertools.islice(batches, num_iters):
        video = prologue.video(batch)
        with autocast_context(device, precision):
            model(video)
        used += 1
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        assert bn.running_mean is not None and bn.running_var is not None  # track_running_stats, as selected
        du.all_reduce_mean(bn.running_mean)
        du.all_reduce_mean(bn.running_var)
    model.train(was_training)
    return used


class PreciseBN(HookBase):
    """Recompute BN statistics before checkpoints and evaluations (and at the end of training).

    Args:
        batches: ``iteration -> iterable of training batches``; called afresh each time, so the
            batches depend only on the iteration (a resumed run recomputes the same statistics).
        num_iters: batches to average over (official: 200).
        periods: iteration periods at which to run (e.g. the checkpoint and eval periods).
    """

    def __init__(self, *, batches: Callable[[int], Iterable[dict[str, Any]]], num_iters: int = 200,
                 periods: Sequence[int] = ()) -> None:
        self.batches = batches
        self.num_iters = num_iters
        self.periods = [p for p in periods if p and p > 0]
        self.last_iter = -1

    def _run(self) -> None:
        t = self.trainer
        if self.last_iter == t.iter:
            return
        start = time.perf_counter()
        used = update_bn_stats(t.model, self.batches(t.iter), num_iters=self.num_iters, device=t.device,
                               precision=t.precision, prologue=t.prologue)
        self.last_iter = t.iter
        if used:
            get_logger().info(f"precise BN: statistics over {used} batches in {time.perf_counter() - start:.1f}s")

    def after_step(self) -> None:
        t = self.trainer
        if t.stop_reason is None and (t.iter == t.max_iter or any(t.iter % p == 0 for p in self.periods)):
            self._run()
