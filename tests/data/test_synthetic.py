"""The synthetic demo dataset: layout, CSVs, determinism, skipping, motion-defined classes."""
import csv

import numpy as np

from nlnet.data import VideoDataset, VideoReader
from nlnet.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_dataset, render_synthetic_clip


def test_layout_csv_and_loading(tmp_path):
    args = dict(num_classes=3, train_per_class=2, val_per_class=1, num_frames=10, size=(40, 32), seed=3)
    info = make_synthetic_dataset(tmp_path, **args)
    assert not info["skipped"]
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["label"] for r in rows} == set(SYNTHETIC_CLASSES[:3])
    for r in rows:
        path = tmp_path / "train" / r["label"] / f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}.mp4"
        assert path.is_file()
    with VideoReader(path) as reader:
        assert reader.info.num_frames == 10 and (reader.info.width, reader.info.height) == (40, 32)
    ds = VideoDataset(root=tmp_path, annotations=tmp_path / "val.csv", mode="test", num_frames=4,
                      sampling_rate=2, crop_size=32, test_scale=32, num_clips=2, num_crops=1)
    assert ds.num_videos == 3 and ds.num_missing == 0 and ds[0]["ok"]
    mtime = path.stat().st_mtime_ns
    assert make_synthetic_dataset(tmp_path, **args)["skipped"]  # complete: nothing rewritten
    assert path.stat().st_mtime_ns == mtime
    assert not make_synthetic_dataset(tmp_path, **{**args, "seed": 4})["skipped"]


def test_clips_are_deterministic_and_classes_need_motion():
    def clip(label, k):
        return render_synthetic_clip(label, num_frames=12, width=48, height=48,
                                     rng=np.random.default_rng([0, label, k]), noise=0)

    np.testing.assert_array_equal(clip(0, 1), clip(0, 1))
    for label in range(len(SYNTHETIC_CLASSES)):
        frames = clip(label, 0).astype(int)
        assert np.abs(frames[-1] - frames[0]).sum() > 0  # something moves or grows
        # no class is a still image: the first and last frames differ more than adjacent ones
        assert np.abs(frames[-1] - frames[0]).sum() > np.abs(frames[1] - frames[0]).sum()
