"""The typed settings that travel between the composition roots (``nlnet.engine.train``,
``nlnet.engine.test``) and what they build: the roots read the config once and pass these on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class EvalSettings:
    """How a model is evaluated on a test set (validation, the final test, the test command).

    Args:
        device: where the model runs.
        precision: ``trainer.precision`` (fp32, bf16, fp16).
        channels_last: ``trainer.channels_last``.
        batch_size: clips per batch (``trainer.eval_batch_size``, else ``data.batch_size``); 1 for a
            full-frame test set, whose clips differ in size.
        num_workers: loader worker processes (``data.num_workers``).
        worker_threads: threads each worker decodes with (``data.worker_threads``).
        class_names: one name per model output.
        objective: the labels' objective (``nlnet.evaluation.objectives``): probabilities, view
            aggregation and metrics of the test.
    """

    device: torch.device
    precision: str
    channels_last: bool
    batch_size: int
    num_workers: int
    worker_threads: int
    class_names: list[str]
    objective: Any


@dataclass(frozen=True)
class LoaderSettings:
    """The training loader's share of the run (also used by precise BN's batches).

    Args:
        batch_size: clips per batch and process (``data.batch_size``).
        num_workers: loader worker processes (``data.num_workers``).
        worker_threads: threads each worker decodes with (``data.worker_threads``).
        num_replicas: processes (DDP world size).
        rank: this process.
        failures: files that failed to decode, shared so that each is logged once.
        decoders: the decoders the workers used, shared so that each is logged once.
    """

    batch_size: int
    num_workers: int
    worker_threads: int
    num_replicas: int = 1
    rank: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    decoders: dict[str, int] = field(default_factory=dict)

    def loader_kwargs(self) -> dict:
        """The keyword arguments of ``nlnet.data.loader.EndlessLoader`` these settings fill."""
        return dict(batch_size=self.batch_size, num_workers=self.num_workers, worker_threads=self.worker_threads,
                    num_replicas=self.num_replicas, rank=self.rank, failures=self.failures,
                    decoders=self.decoders)
