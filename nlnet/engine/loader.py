"""Data loading for iteration-based training: a resumable distributed sampler and an endless loader.

The training position (epoch, batches consumed in it) is part of every checkpoint, so a resumed run
sees exactly the clips the uninterrupted run would have seen (the dataset's randomness is a pure
function of seed, epoch and index).
"""
from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableDistributedSampler(Sampler[int]):
    """Shuffled indices, seeded per epoch, split across ranks like ``DistributedSampler``, that can
    start part-way through an epoch.

    Every rank draws the same permutation of ``seed + epoch``, truncates it to a multiple of
    ``num_replicas * batch_size`` (whole batches on every rank) and takes every ``num_replicas``-th
    index from ``rank``. Batch ``b`` of rank ``r`` therefore holds positions
    ``b*batch*R + r, ... `` so that R ranks with batch B see the same clips as one process with batch R*B.

    Args:
        size: the dataset's length.
        batch_size: per-process batch size (the epoch is truncated to whole batches).
        num_replicas: number of ranks.
        rank: this rank.
        shuffle: shuffle per epoch (else dataset order).
        seed: shuffling seed, the same on every rank.
    """

    def __init__(self, *, size: int, batch_size: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0) -> None:
        if size < num_replicas * batch_size:
            raise ValueError(
                f"the training set has {size} clips, fewer than one batch on every rank "
                f"(data.batch_size={batch_size} x {num_replicas} processes)"
            )
        self.size = size
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.num_replicas * self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip the first ``start_batch`` batches of it."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        order = order[: self.batches_per_epoch * self.num_replicas * self.batch_size]
        return order[self.rank :: self.num_replicas][self.start_batch * self.batch_size :]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


class ShardSampler(Sampler[int]):
    """Every ``num_replicas``-th index from ``rank``, no padding: each sample is seen by exactly one rank
    (for evaluation; ranks may get one sample more or less than others)."""

    def __init__(self, *, size: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.size = size
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


def _ignore_interrupts() -> None:
    # DataLoader workers leave SIGINT/SIGTERM to the main process, which finishes the iteration,
    # writes a checkpoint and then shuts the workers down (Ctrl-C reaches the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _worker_init(worker_id: int) -> None:
    _ignore_interrupts()


def _worker_generator(seed: int) -> torch.Generator:
    # DataLoader draws its workers' base seed from this generator, never from the global one, so
    # creating a loader does not change the model's random stream (dropout) and resuming stays exact.
    return torch.Generator().manual_seed(seed)


class EndlessLoader:
    """Batches forever, epoch after epoch, with a position that can be saved and restored.

    Args:
        dataset: a map-style dataset; ``set_epoch(epoch)`` is called on it when it has one.
        batch_size: per-process batch size.
        num_workers: DataLoader workers.
        num_replicas: number of ranks.
        rank: this rank.
        seed: shuffling seed (the same on every rank).
        collate_fn: optional DataLoader collate function.
        pin_memory: pin host memory (for CUDA).
    """

    def __init__(self, *, dataset: Dataset, batch_size: int, num_workers: int = 0, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False) -> None:
        self.dataset = dataset
        self.seed = seed
        self.sampler = ResumableDistributedSampler(size=len(dataset), batch_size=batch_size,
                                                   num_replicas=num_replicas, rank=rank, seed=seed)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
                                 collate_fn=collate_fn, pin_memory=pin_memory, drop_last=True,
                                 persistent_workers=False, generator=_worker_generator(seed),
                                 worker_init_fn=_worker_init if num_workers > 0 else None)
        self.epoch = 0
        self.batch_in_epoch = 0
        self._iterator: Iterator[Any] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self._iterator = None

    def _start_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        assert self.loader.generator is not None
        self.loader.generator.manual_seed(self.seed * 100003 + self.epoch * 1009 + self.batch_in_epoch)
        self._iterator = iter(self.loader)

    def __next__(self) -> Any:
        while True:
            if self._iterator is None:
                self._start_epoch()
            assert self._iterator is not None
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator = None
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            self.batch_in_epoch += 1
            return batch

    def __iter__(self) -> EndlessLoader:
        return self

    def close(self) -> None:
        self._iterator = None


def build_eval_loader(*, dataset: Dataset, batch_size: int, num_workers: int = 0, num_replicas: int = 1,
                      rank: int = 0, pin_memory: bool = False) -> DataLoader:
    """A loader over this rank's share of ``dataset`` (no sample on two ranks, no padding)."""
    sampler = ShardSampler(size=len(dataset), num_replicas=num_replicas, rank=rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=False, generator=_worker_generator(0),
                      worker_init_fn=_worker_init if num_workers > 0 else None)
