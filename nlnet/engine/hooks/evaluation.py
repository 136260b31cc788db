"""Periodic evaluation during training (validation) and the final test."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nlnet.engine.trainer import HookBase
from nlnet.evaluation.objectives import metrics_summary
from nlnet.utils.logger import get_logger


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
