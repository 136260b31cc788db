"""A small iteration-based training loop; everything else (checkpoints, logging, evaluation, precise BN,
progress, signals) lives in hooks (``nlnet.engine.hooks``)."""
from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn as nn

from nlnet.data.prologue import BatchPrologue
from nlnet.evaluation.objectives import MultiLabel, SingleLabel
from nlnet.utils import distributed as du
from nlnet.utils.errors import DataError
from nlnet.utils.precision import autocast_context


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the iteration."""


class MetricStorage:
    """The latest values of per-iteration scalars, with a running window for smoothing.

    Args:
        window: how many recent values :meth:`avg` averages.
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._values: dict[str, collections.deque[float]] = {}

    def put(self, name: str, value: float) -> None:
        self._values.setdefault(name, collections.deque(maxlen=self.window)).append(float(value))

    def latest(self, name: str) -> float:
        return self._values[name][-1]

    def avg(self, name: str) -> float:
        values = self._values[name]
        return sum(values) / len(values)

    def names(self) -> list[str]:
        return list(self._values)


class HookBase:
    """Called by :class:`Trainer` around training and each iteration. ``self.trainer`` is set on
    registration. ``after_eval(metrics)`` is called by the evaluation hook after each validation,
    so hooks can react to it (best checkpoint, TensorBoard, figures). A hook with resumable state
    returns it from ``state_dict`` (stored in checkpoints under ``hooks``, by class name) and gets
    it back through ``load_state_dict``."""

    trainer: Trainer

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def after_eval(self, metrics: dict[str, Any]) -> None: ...


class Trainer:
    """Iteration-based supervised training of a video classifier (paper §4.1).

    ``self.iter`` counts completed iterations; hooks' ``after_step`` see it already incremented,
    so a checkpoint named ``k`` holds the state after ``k`` iterations.

    Args:
        model: the network (unwrapped: its ``state_dict`` goes into checkpoints).
        optimizer: the optimiser over ``model``'s parameters.
        scheduler: stepped once per iteration.
        data: endless iterator of batches ``{"video": (B, C, T, H, W) uint8, "label": (B,), ...}`` with
            ``state_dict``/``load_state_dict`` for its position (e.g. ``EndlessLoader``).
        max_iter: iterations to train (paper: 400k).
        device: where to compute.
        train_module: what the forward pass calls (e.g. DDP- and/or ``torch.compile``-wrapped
            ``model``); defaults to ``model``.
        precision: "fp32", "bf16" or "fp16" autocast (fp16 uses a ``GradScaler``).
        grad_clip_norm: clip the global gradient norm to this value (None: no clipping).
        prologue: batch -> (input, labels) on ``device`` (normalisation, layout); default: ImageNet
            statistics, contiguous layout.
        hooks: hooks, called in order.
        objective: the loss and per-batch metrics (``nlnet.evaluation.objectives``, chosen by the data):
            cross-entropy and top-1/top-5 (default), or binary cross-entropy on multi-hot targets.
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, data: Iterator[dict[str, Any]], max_iter: int,
                 device: torch.device, train_module: nn.Module | None = None, precision: str = "fp32",
                 grad_clip_norm: float | None = None, prologue: BatchPrologue | None = None,
                 hooks: Iterable[HookBase] = (), objective: SingleLabel | MultiLabel | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data = data
        self.max_iter = max_iter
        self.device = device
        self.train_module = train_module if train_module is not None else model
        self.precision = precision
        self.grad_clip_norm = grad_clip_norm
        self.prologue = prologue if prologue is not None else BatchPrologue(device=device)
        self.objective = objective if objective is not None else SingleLabel()
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.iter = 0
        self.start_iter = 0
        self.stop_reason: str | None = None
        self.storage = MetricStorage()
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def call_hooks(self, stage: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, stage)(*args)

    def request_stop(self, reason: str) -> None:
        """Stop after the current iteration's hooks (e.g. on SIGTERM)."""
        self.stop_reason = reason

    # ---- the loop -----------------------------------------------------------------------------------
    def train(self) -> None:
        """Run from ``self.iter`` to ``max_iter`` (or until a stop is requested)."""
        self.start_iter = self.iter
        self.train_module.train()
        self.call_hooks("before_train")
        try:
            while self.iter < self.max_iter and self.stop_reason is None:
                self.call_hooks("before_step")
                self.run_step()
                self.iter += 1
                self.call_hooks("after_step")
        finally:
            self.call_hooks("after_train")

    def run_step(self) -> None:
        """One SGD iteration: fetch, forward, the objective's loss, backward, (clip), step, schedule."""
        t0 = time.perf_counter()
        batch = next(self.data)
        video, labels = self.prologue(batch)  # (B, C, T, H, W) float, (B,) (multi-label: (B, K)) on the device
        if labels is None:
            raise DataError("a training batch has no 'label': training needs labelled videos")
        t1 = time.perf_counter()
        with autocast_context(self.device, self.precision):
            logits = self.train_module(video)  # (B, K)
        loss = self.objective.loss(logits.float(), labels)
        loss_value = loss.detach()
        if du.any_rank(not bool(torch.isfinite(loss_value)), self.device):
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value.item()}) at iteration {self.iter + 1} (lr "
                f"{self.optimizer.param_groups[0]['lr']:.3g}); stopping; the last good checkpoint is kept. "
                "Try a lower optim.lr, trainer.grad_clip_norm, or trainer.precision=fp32"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip_norm)
            self.storage.put("grad_norm", float(grad_norm))
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        batch_metrics = self.objective.batch_metrics(logits.detach().float(), labels)
        batch_size = video.shape[0] * du.get_world_size()
        self.storage.put("loss", loss_value.item())
        self.storage.put("lr", lr)
        for name, value in batch_metrics.items():
            self.storage.put(name, value)
        self.storage.put("data_time", t1 - t0)
        self.storage.put("compute_time", t2 - t1)
        self.storage.put("clips_per_s", batch_size / max(t2 - t0, 1e-9))

    # ---- resumable state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Model, optimiser, scheduler, scaler, iteration, data position and hooks' state."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iter,
            "loader": self.data.state_dict() if hasattr(self.data, "state_dict") else {},
            "hooks": {type(h).__qualname__: s for h in self.hooks if (s := h.state_dict())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iter = int(state["iteration"])
        if state.get("loader") and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state["loader"])
        hooks_state = state.get("hooks", {"Checkpointer": state.get("extra", {})})  # "extra": older checkpoints
        for hook in self.hooks:
            hook.load_state_dict(hooks_state.get(type(hook).__qualname__, {}))
