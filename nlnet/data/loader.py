"""Data loading for iteration-based training: a resumable distributed sampler and an endless loader.

The training position (epoch, batches consumed in it) is part of every checkpoint, so a resumed run
sees exactly the clips the uninterrupted run would have seen (the dataset's randomness is a pure
function of seed, epoch and index).

Videos that fail to decode travel with the batches (``collate``), so the main process reports each
bad file once, whatever the number of workers. DataLoader workers ignore SIGINT/SIGTERM (the main
process finishes its iteration and writes a checkpoint), so the main process ends them itself: its
loaders shut their workers down on ``close()``, and at exit any worker still alive is killed.
"""
from __future__ import annotations

import atexit
import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from nlnet.utils.errors import ConfigError, DataError
from nlnet.utils.logger import get_logger


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
            raise ConfigError(
                f"the training set has {size} clips, fewer than one batch on every rank "
                f"(data.batch_size={batch_size} x {num_replicas} processes)"
            )
        self.size = size
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.set_epoch(0)
        self.shuffle = shuffle
        self.seed = seed

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
    # writes a checkpoint and then shuts the workers down (Ctrl-C reaches the whole process group;
    # a worker that died of it would make the main process raise at once).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class _WorkerInit:
    """``worker_init_fn``: ignore interrupts and use ``threads`` torch threads (workers are the
    parallelism: several threads in each of several workers oversubscribe the cores)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __call__(self, worker_id: int) -> None:
        _ignore_interrupts()
        torch.set_num_threads(self.threads)


@atexit.register  # runs before multiprocessing's own exit handler (atexit is last in, first out)
def _kill_workers_at_exit() -> None:
    # At exit, multiprocessing ends daemonic children (DataLoader workers) with SIGTERM and then joins
    # them without a timeout; workers ignore SIGTERM, so a process that ends on an error while a
    # loader is open would wait forever. Kill them instead (torch's SIGCHLD handler would report that
    # as a worker failure: it is reset first).
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
            child.join(timeout=5)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` of dataset items, their ``failures`` lists ((path, reason) of each video that
    failed to decode) joined into the batch's ``failures`` (they differ in length from item to item);
    their ``decoder`` strings (``nlnet.data.hwdecode``) become the batch's list of them."""
    failures = [tuple(f) for item in items for f in item.get("failures", ())]
    batch = default_collate([{k: v for k, v in item.items() if k != "failures"} for item in items])
    batch["failures"] = failures
    return batch


def _worker_generator(seed: int) -> torch.Generator:
    # DataLoader draws its workers' base seed from this generator, never from the global one, so
    # creating a loader does not change the model's random stream (dropout) and resuming stays exact.
    return torch.Generator().manual_seed(seed)


def shutdown(iterator: Any) -> None:
    """End a DataLoader iterator's workers now (not when the iterator happens to be garbage collected:
    a traceback can keep it alive until exit)."""
    if hasattr(iterator, "_shutdown_workers"):  # torch's multi-process iterator
        iterator._shutdown_workers()


class EndlessLoader:
    """Batches forever, epoch after epoch, with a position that can be saved and restored.

    Args:
        dataset: a map-style dataset; ``set_epoch(epoch)`` is called on it when it has one.
        batch_size: per-process batch size.
        num_workers: DataLoader workers.
        num_replicas: number of ranks.
        rank: this rank.
        seed: shuffling seed (the same on every rank).
        collate_fn: DataLoader collate function (default: :func:`collate`).
        pin_memory: pin host memory (for CUDA).
        worker_threads: torch threads per worker.
        failures: videos that failed to decode (path -> reason), shared by the loaders of one run:
            each new one is logged once. A batch with a failed item (the dataset ran out of other
            videos to try) stops training with a ``DataError``.
        decoders: the decoders that read the clips (items' ``decoder``: ``"cpu"``, ``"cuda"`` or the
            reason NVDEC was not used) -> clips, shared like ``failures``: each new one is logged once,
            a fallback from NVDEC as a warning.
    """

    def __init__(self, *, dataset: Dataset, batch_size: int, num_workers: int = 0, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, collate_fn: Callable | None = collate,
                 pin_memory: bool = False, worker_threads: int = 1, failures: dict[str, str] | None = None,
                 decoders: dict[str, int] | None = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.failures = failures if failures is not None else {}
        self.decoders = decoders if decoders is not None else {}
        self.sampler = ResumableDistributedSampler(size=_length(dataset), batch_size=batch_size,
                                                   num_replicas=num_replicas, rank=rank, seed=seed)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
                                 collate_fn=collate_fn, pin_memory=pin_memory, drop_last=True,
                                 persistent_workers=False, generator=_worker_generator(seed),
                                 worker_init_fn=_WorkerInit(worker_threads) if num_workers > 0 else None,
                                 multiprocessing_context=_start_method(dataset, num_workers))
        self.epoch = 0
        self.batch_in_epoch = 0
        self._iterator: Iterator[Any] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.close()

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
            self._report(batch)
            return batch

    def _report(self, batch: Any) -> None:
        if not isinstance(batch, dict):
            return
        for path, reason in batch.get("failures", ()):
            if path not in self.failures:
                self.failures[path] = reason
                get_logger().warning(f"cannot decode {path} ({reason}); using another video "
                                     "(check_dataset.py lists every such file)")
        report_decoders(batch, self.decoders)
        ok = batch.get("ok")
        if ok is not None and not bool(torch.as_tensor(ok).all()):
            last = " (last: {}: {})".format(*batch["failures"][-1]) if batch.get("failures") else ""
            raise DataError(f"every video tried for a training clip failed to decode{last}; check the dataset "
                            "with check_dataset.py")

    def __iter__(self) -> EndlessLoader:
        return self

    def close(self) -> None:
        """Shut the workers of the current epoch down (the position is kept: iterating again resumes)."""
        iterator, self._iterator = self._iterator, None
        shutdown(iterator)


def _length(dataset: Dataset) -> int:
    """The number of samples of a map-style dataset (``Dataset`` itself does not promise ``__len__``)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"the loader needs a map-style dataset with a length, got {type(dataset).__name__}")
    return len(dataset)


def _start_method(dataset: Dataset, num_workers: int) -> str | None:
    """The dataset's ``worker_start_method`` (e.g. ``"spawn"`` for NVDEC in the workers), if any."""
    return getattr(dataset, "worker_start_method", None) if num_workers > 0 else None


def report_decoders(batch: dict[str, Any], decoders: dict[str, int]) -> None:
    """Count the batch's clips per decoder in ``decoders``; log each decoder the first time (a CPU
    fallback from NVDEC as a warning: ``"cpu (data.decode_device=cuda: <why>)"``)."""
    for decoder in batch.get("decoder", ()):
        if decoder not in decoders:
            log = get_logger().warning if decoder.startswith("cpu (") else get_logger().info
            log(f"data: videos decoded by {decoder}")
        decoders[decoder] = decoders.get(decoder, 0) + 1


def build_eval_loader(*, dataset: Dataset, batch_size: int, num_workers: int = 0, num_replicas: int = 1,
                      rank: int = 0, pin_memory: bool = False, worker_threads: int = 1) -> DataLoader:
    """A loader over this rank's share of ``dataset`` (no sample on two ranks, no padding); batches
    carry their items' ``failures`` (:func:`collate`)."""
    sampler = ShardSampler(size=_length(dataset), num_replicas=num_replicas, rank=rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      pin_memory=pin_memory, drop_last=False, generator=_worker_generator(0),
                      worker_init_fn=_WorkerInit(worker_threads) if num_workers > 0 else None,
                      multiprocessing_context=_start_method(dataset, num_workers))
