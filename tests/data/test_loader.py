"""The resumable distributed sampler and the endless loader: positions, failures carried from workers,
worker threads and shutdown."""
import logging
import multiprocessing
import os

import pytest
from torch.utils.data import Dataset

from nlnet.data.loader import EndlessLoader, ResumableDistributedSampler, ShardSampler, collate
from nlnet.utils.errors import ConfigError, DataError
from nlnet.utils.logger import get_logger


class Items(Dataset):
    def __init__(self, n):
        self.n = n
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"index": i}


def test_ranks_together_see_the_single_process_batches():
    size, batch, world = 23, 3, 2
    single = list(ResumableDistributedSampler(size=size, batch_size=batch * world, seed=5))
    ranks = [list(ResumableDistributedSampler(size=size, batch_size=batch, num_replicas=world, rank=r, seed=5))
             for r in range(world)]
    assert len(single) == len(ranks[0]) * world == 18  # truncated to whole batches on every rank
    for b in range(len(single) // (batch * world)):
        union = sorted(ranks[0][b * batch:(b + 1) * batch] + ranks[1][b * batch:(b + 1) * batch])
        assert union == sorted(single[b * batch * world:(b + 1) * batch * world])
    assert not set(ranks[0]) & set(ranks[1])


def test_sampler_epochs_differ_and_start_batch_skips():
    s = ResumableDistributedSampler(size=20, batch_size=4, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    assert list(s) != e0
    s.set_epoch(0, start_batch=2)
    assert list(s) == e0[8:] and len(s) == 12
    with pytest.raises(ValueError, match="fewer than one batch"):
        ResumableDistributedSampler(size=3, batch_size=2, num_replicas=2)


def test_endless_loader_resumes_at_the_same_batch():
    data = Items(10)
    loader = EndlessLoader(dataset=data, batch_size=3, seed=1)
    seen = [next(loader)["index"].tolist() for _ in range(7)]  # 3 batches per epoch: crosses 2 epochs
    assert data.epochs == [0, 1, 2]
    state = loader.state_dict()
    assert state == {"epoch": 2, "batch_in_epoch": 1}
    rest = [next(loader)["index"].tolist() for _ in range(4)]
    resumed = EndlessLoader(dataset=Items(10), batch_size=3, seed=1)
    resumed.load_state_dict(state)
    assert [next(resumed)["index"].tolist() for _ in range(4)] == rest
    assert sorted(sum(seen[:3], [])) == sorted(set(sum(seen[:3], [])))  # no repeat within an epoch


def test_shard_sampler_covers_each_index_once():
    parts = [list(ShardSampler(size=7, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(7))
    assert [len(p) for p in parts] == [3, 2, 2]


class Flaky(Dataset):
    """Items in the dataset contract; item i names ``bad<i % 3>.mp4`` as a failed video when i % 3 != 0,
    and reports the process and torch threads that made it."""

    def __init__(self, n, all_fail=False):
        self.n = n
        self.all_fail = all_fail

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import os

        import torch

        failures = [(f"bad{i % 3}.mp4", "corrupt data")] if i % 3 or self.all_fail else []
        return {"video": torch.zeros(1), "label": 0, "ok": not self.all_fail, "failures": failures,
                "pid": os.getpid(), "threads": torch.get_num_threads()}


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_failures_travel_with_batches_and_each_is_logged_once_whatever_the_workers():
    handler = Lines()
    get_logger().addHandler(handler)
    try:
        failures = {}
        loader = EndlessLoader(dataset=Flaky(12), batch_size=3, num_workers=2, seed=0, failures=failures)
        batches = [next(loader) for _ in range(12)]  # 3 epochs, new workers each epoch
        loader.close()
    finally:
        get_logger().removeHandler(handler)
    assert sum(len(b["failures"]) for b in batches) == 24 and all(len(b["video"]) == 3 for b in batches)
    assert failures == {"bad1.mp4": "corrupt data", "bad2.mp4": "corrupt data"}
    assert sorted(line.split()[2] for line in handler.lines if "cannot decode" in line) == ["bad1.mp4", "bad2.mp4"]


def test_a_batch_whose_items_found_no_decodable_video_stops_training():
    loader = EndlessLoader(dataset=Flaky(6, all_fail=True), batch_size=2, seed=0)
    with pytest.raises(DataError, match=r"every video tried for a training clip failed to decode \(last: bad\d.mp4: corrupt data\)"):
        next(loader)


def test_workers_use_the_given_threads_and_close_ends_them():
    loader = EndlessLoader(dataset=Flaky(8), batch_size=2, num_workers=2, seed=0, worker_threads=2)
    batch = next(loader)
    assert batch["threads"].tolist() == [2, 2]
    pids = set(next(loader)["pid"].tolist()) | set(batch["pid"].tolist())
    assert os.getpid() not in pids and len(pids) == 2
    loader.close()  # e.g. on an error: the workers end now, not at garbage collection
    assert not {p.pid for p in multiprocessing.active_children()} & pids
    assert next(loader)["pid"].tolist() != batch["pid"].tolist()  # the position is kept, new workers


def test_too_few_clips_for_one_batch_names_the_key():
    with pytest.raises(ConfigError, match=r"3 clips, fewer than one batch .*data.batch_size=2 x 2 processes"):
        ResumableDistributedSampler(size=3, batch_size=2, num_replicas=2)


def test_collate_joins_items_failures():
    batch = collate([{"x": 1, "failures": [("a", "r")]}, {"x": 2, "failures": []}, {"x": 3}])
    assert batch["x"].tolist() == [1, 2, 3] and batch["failures"] == [("a", "r")]


class Decoded(Dataset):
    """Items that say which decoder read them, as ``VideoDataset``'s do (half of them a CPU fallback)."""

    worker_start_method = "spawn"  # what VideoDataset(decode_device="cuda") asks for

    def __len__(self):
        return 8

    def __getitem__(self, i):
        import torch

        decoder = "cuda" if i % 2 else "cpu (data.decode_device=cuda: no CUDA device)"
        return {"video": torch.zeros(1), "label": 0, "ok": True, "failures": [], "decoder": decoder}


class LevelLines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelname, record.getMessage()))


@pytest.mark.slow  # spawned DataLoader workers: a Python process each
def test_decoders_are_counted_and_each_logged_once_by_spawned_workers():
    handler = LevelLines()
    level = get_logger().level
    get_logger().addHandler(handler)
    get_logger().setLevel(logging.INFO)
    try:
        decoders = {}
        loader = EndlessLoader(dataset=Decoded(), batch_size=2, num_workers=1, seed=0, decoders=decoders)
        assert loader.loader.multiprocessing_context.get_start_method() == "spawn"
        batches = [next(loader) for _ in range(8)]  # 2 epochs
        loader.close()
    finally:
        get_logger().removeHandler(handler)
        get_logger().setLevel(level)
    assert all(len(b["decoder"]) == 2 for b in batches)
    assert decoders == {"cuda": 8, "cpu (data.decode_device=cuda: no CUDA device)": 8}
    logged = [line for line in handler.lines if "decoded by" in line[1]]
    assert sorted(logged) == [("INFO", "data: videos decoded by cuda"),
                              ("WARNING", "data: videos decoded by cpu (data.decode_device=cuda: no CUDA device)")]
