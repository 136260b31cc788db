"""Progress of the training loop: a log line of smoothed metrics with the ETA, a progress bar, and the
small helpers other hooks share (when a periodic hook is due, peak memory)."""
from __future__ import annotations

import contextlib
import resource
import time
from typing import Any

import torch

from nlnet.engine.trainer import HookBase
from nlnet.utils import distributed as du
from nlnet.utils.logger import get_logger


def is_due(iteration: int, period: int, max_iter: int) -> bool:
    """Whether iteration is a multiple of period (> 0) or the last one."""
    return iteration == max_iter or (period > 0 and iteration % period == 0)


def memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA max allocated, or this process's max resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
