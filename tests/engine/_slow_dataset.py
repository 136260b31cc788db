"""VideoDatasets for tests of whole runs: one that takes its time (to interrupt a run part-way), one
that fails on one rank."""
import os
import time

from nlnet.data import VideoDataset, VideoDecodeError


class SlowVideoDataset(VideoDataset):
    def __init__(self, *, delay: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def __getitem__(self, index: int) -> dict:
        time.sleep(self.delay)
        return super().__getitem__(index)


class FailingOnRankDataset(VideoDataset):
    """A VideoDataset whose videos all fail to decode in the process of rank ``fail_rank`` (torchrun's RANK)."""

    def __init__(self, *, fail_rank: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail_rank = fail_rank

    def decode_train_clip(self, path: str, u: float, short_side: int):
        if int(os.environ.get("RANK", "0")) == self.fail_rank:
            raise VideoDecodeError("damaged on this rank (test)", path)
        return super().decode_train_clip(path, u, short_side)


class BrokenDataset(VideoDataset):
    """A VideoDataset with a bug: every item raises (an error that is not the user's: it keeps its traceback)."""

    def __getitem__(self, index: int) -> dict:
        raise RuntimeError("a bug in a dataset (test)")
