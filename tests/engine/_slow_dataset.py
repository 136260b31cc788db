"""A VideoDataset that takes its time, so that tests can interrupt a training run part-way."""
import time

from nlnet.data import VideoDataset


class SlowVideoDataset(VideoDataset):
    def __init__(self, *, delay: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def __getitem__(self, index: int) -> dict:
        time.sleep(self.delay)
        return super().__getitem__(index)
