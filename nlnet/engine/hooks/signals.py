"""Stopping on a signal (preemption, Ctrl-C) after a checkpoint."""
from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import Any

from nlnet.engine.trainer import HookBase
from nlnet.utils import distributed as du


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
