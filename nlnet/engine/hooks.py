"""Hooks of the training loop: timing/logging, progress bar, precise BN, checkpoints, periodic
evaluation and signal handling (TensorBoard: ``nlnet.engine.tensorboard``). Each is small and independent and owns its resumable state
(``state_dict``/``load_state_dict``, stored in checkpoints under ``hooks``); ``launch.py`` assembles
them and passes in what they share (the TensorBoard writer).

Order matters within one iteration's ``after_step``: signals -> precise BN -> checkpoint -> eval ->
writers, so a checkpoint holds precise-BN statistics and evaluation sees them too.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import resource
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

from nlnet.engine import distributed as du
from nlnet.engine.checkpoint import CheckpointManager, atomic_save
from nlnet.engine.evaluation import autocast_context
from nlnet.engine.objectives import metrics_summary
from nlnet.engine.prologue import BatchPrologue
from nlnet.engine.trainer import HookBase
from nlnet.utils.logger import get_logger
from nlnet.utils.seeding import get_rng_state


def is_due(iteration: int, period: int, max_iter: int) -> bool:
    """Whether iteration is a multiple of period (> 0) or the last one."""
    return iteration == max_iter or (period > 0 and iteration % period == 0)


def memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA max allocated, or this process's max resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SignalHandler(HookBase):
    """On SIGTERM or SIGINT (preemption, Ctrl-C): finish the current iteration, let the checkpointer
    write a checkpoint, then stop. A second signal interrupts immediately. ``stop_signal`` is the
    signal that stopped training (SIGTERM when it came from another rank), or None.

    Args:
        signals: the signals to catch.
    """

    def __init__(self, *, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = tuple(signals)
        self.received: int | None = None
        self.stop_signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        for sig, previous in self._previous.items():  # a second signal acts as usual
            signal.signal(sig, previous)

    def before_train(self) -> None:
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def after_step(self) -> None:
        if du.any_rank(self.received is not None, self.trainer.device):
            name = signal.Signals(self.received).name if self.received else "a signal on another rank"
            self.trainer.request_stop(f"received {name}")
            self.stop_signal = int(self.received or signal.SIGTERM)

    def after_train(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


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


class EvalHook(HookBase):
    """Run ``evaluate()`` every ``period`` iterations and at the end; pass its metrics to every hook's
    ``after_eval``.

    Args:
        period: iterations between evaluations (0: never; see ``at_end``).
        evaluate: returns a metrics dict (top1, top5, mean_class_accuracy, ...), the same on every rank.
        at_end: also evaluate after the last iteration.
    """

    def __init__(self, *, period: int, evaluate: Callable[[], dict[str, Any]], at_end: bool = True) -> None:
        self.period = period
        self.evaluate = evaluate
        self.at_end = at_end

    def after_step(self) -> None:
        t = self.trainer
        if t.stop_reason is not None:
            return
        if (self.period > 0 and t.iter % self.period == 0) or (self.at_end and t.iter == t.max_iter):
            start = time.perf_counter()
            metrics = self.evaluate()
            get_logger().info(
                f"{metrics.get('tag', 'validation')} at iteration {t.iter}: {metrics_summary(metrics)} "
                f"({metrics['num_videos']} videos, {time.perf_counter() - start:.1f}s)"
            )
            t.call_hooks("after_eval", metrics)


class MetricLogger(HookBase):
    """Every ``period`` iterations, one line of smoothed metrics and the ETA in the log.

    Args:
        period: iterations between lines.
    """

    def __init__(self, *, period: int = 20) -> None:
        self.period = period
        self._start: float | None = None

    def before_train(self) -> None:
        self._start = time.perf_counter()
        t = self.trainer
        get_logger().info(f"training from iteration {t.iter} to {t.max_iter}")

    def after_step(self) -> None:
        t = self.trainer
        if not (is_due(t.iter, self.period, t.max_iter) or t.stop_reason):
            return
        s = t.storage
        done = t.iter - t.start_iter
        elapsed = time.perf_counter() - (self._start or time.perf_counter())
        eta = elapsed / max(done, 1) * (t.max_iter - t.iter)
        batch_metrics = "".join(f" {name} {s.avg(name):.1f}" for name in t.objective.batch_metric_names)
        get_logger().info(
            f"iter {t.iter}/{t.max_iter} loss {s.avg('loss'):.4f}{batch_metrics} "
            f"lr {s.latest('lr'):.4g} data {s.avg('data_time'):.3f}s compute {s.avg('compute_time'):.3f}s "
            f"{s.avg('clips_per_s'):.1f} clips/s mem {memory_mb(t.device):.0f}MiB eta {_hms(eta)}"
        )


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar(HookBase):
    """A tqdm bar with ETA over the iterations (rank 0 only); log lines are written above it
    (``tqdm.contrib.logging.logging_redirect_tqdm``)."""

    def __init__(self, *, desc: str = "train") -> None:
        self.desc = desc
        self.bar: Any = None
        self._redirect = contextlib.ExitStack()

    def before_train(self) -> None:
        if du.is_main_process():
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            t = self.trainer
            self._redirect.enter_context(logging_redirect_tqdm(loggers=[get_logger()]))
            self.bar = tqdm(total=t.max_iter, initial=t.iter, desc=self.desc, dynamic_ncols=True, leave=True)

    def after_step(self) -> None:
        if self.bar is not None:
            s = self.trainer.storage
            self.bar.set_postfix(loss=f"{s.avg('loss'):.3f}", top1=f"{s.avg('top1'):.0f}", lr=f"{s.latest('lr'):.3g}",
                                 refresh=False)
            self.bar.update(1)

    def after_train(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._redirect.close()
