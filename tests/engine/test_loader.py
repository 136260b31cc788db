"""The resumable distributed sampler and the endless loader."""
import pytest
from torch.utils.data import Dataset

from nlnet.engine.loader import EndlessLoader, ResumableDistributedSampler, ShardSampler


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
