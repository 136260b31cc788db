"""VideoDataset: train determinism, test views, bad files, DataLoader workers."""
import logging

import numpy as np
import pytest
import torch

from nlnet.data import VideoDataset
from nlnet.data.synthetic import frame_indices, index_frames, write_audio_only, write_video

HEADER = "label,youtube_id,time_start,time_end,split\n"
NUM_FRAMES = 40  # per video, at 10 fps


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    rows = []
    for i, label in enumerate(["jump", "run", "jump"]):
        folder = root / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"vid{i}_000000_000010.mp4", index_frames(NUM_FRAMES, width=48, height=32),
                    fps=10, gop_size=10)
        rows.append(f"{label},vid{i},0,10,train\n")
    (root / "train.csv").write_text(HEADER + "".join(rows))
    # a second file with bad videos next to one good one
    (root / "train" / "run" / "bad1_000000_000010.mp4").write_bytes(b"")
    (root / "train" / "run" / "bad2_000000_000010.mp4").write_text("not a video")
    write_audio_only(root / "train" / "run" / "bad3_000000_000010.mp4")
    bad_rows = [f"run,bad{i},0,10,train\n" for i in (1, 2, 3)]
    (root / "bad.csv").write_text(HEADER + rows[0] + "".join(bad_rows))
    (root / "allbad.csv").write_text(HEADER + "".join(bad_rows))
    return root


def dataset(root, csv="train.csv", **kwargs):
    args = dict(root=root, annotations=root / csv, num_frames=4, sampling_rate=3, crop_size=24,
                train_scale=(28, 32), test_scale=32, num_clips=3, num_crops=3, mean=(0, 0, 0), std=(1, 1, 1))
    return VideoDataset(**{**args, **kwargs})


def indices_of(video):
    """Frame indices of a dataset output (C, T, H, W) normalised with mean 0, std 1."""
    return frame_indices((video.permute(1, 2, 3, 0) * 255).round().numpy())


def test_train_items(root):
    ds = dataset(root)
    assert len(ds) == 3 and ds.num_views == 1 and ds.classes == ["jump", "run"]
    item = ds[1]
    assert item["video"].shape == (3, 4, 24, 24) and item["video"].dtype == torch.float32
    assert (item["label"], item["video_index"], item["view_index"], item["ok"]) == (1, 1, 0, True)
    idx = indices_of(item["video"])
    assert np.all(np.diff(idx) == 3) and 0 <= idx[0] and idx[-1] < NUM_FRAMES  # stride tau


def test_train_randomness_is_a_function_of_seed_epoch_index(root):
    a, b = dataset(root), dataset(root)
    torch.testing.assert_close(a[0]["video"], b[0]["video"])  # same seed/epoch/index, other object
    torch.testing.assert_close(a[0]["video"], a[0]["video"])
    starts = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        starts.add(int(indices_of(a[0]["video"])[0]))
    assert len(starts) > 1  # another epoch, another clip
    c = dataset(root, seed=1)
    assert not all(torch.equal(a[i]["video"], c[i]["video"]) for i in range(3))


def test_same_items_in_dataloader_workers(root):
    ds = dataset(root)
    ds.set_epoch(3)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    for i, batch in enumerate(loader):
        torch.testing.assert_close(batch["video"][0], ds[i]["video"])


def test_test_views_tags_and_end_of_video(root):
    ds = dataset(root, mode="test")
    assert ds.num_views == 9 and len(ds) == 27
    items = [ds[i] for i in range(9, 18)]  # all views of video 1
    assert [it["video_index"] for it in items] == [1] * 9
    assert [it["view_index"] for it in items] == list(range(9))
    assert all(it["video"].shape == (3, 4, 32, 32) and it["ok"] for it in items)
    clips = [indices_of(items[3 * c]["video"]) for c in range(3)]
    assert clips[0][0] == 0  # the first clip starts at the first frame
    assert clips[-1][-1] == NUM_FRAMES - 1  # the last clip ends on the last frame
    assert clips[1][0] == pytest.approx((NUM_FRAMES - 10) / 2, abs=1)  # spread uniformly
    # the three crops of a clip: left / centre / right of a 32x48 frame
    frames = ds.decode_test_clip(1, 0)  # uint8 (T, C, H, W) at short side 32
    assert frames.shape == (4, 3, 32, 48) and frames.dtype == torch.uint8


def test_bad_videos_in_training_are_replaced(root, caplog):
    ds = dataset(root, csv="bad.csv")
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(4)] + [ds[i] for i in range(4)]
    assert all(it["ok"] and it["video_index"] == 0 for it in items)  # only video 0 decodes
    assert sorted(p.split("/")[-1] for p in ds.failures) == [
        "bad1_000000_000010.mp4", "bad2_000000_000010.mp4", "bad3_000000_000010.mp4"]
    logged = [r.getMessage() for r in caplog.records if "cannot decode" in r.getMessage()]
    assert len(logged) == 3  # each bad path once
    with pytest.raises(RuntimeError, match="could not be decoded"):
        dataset(root, csv="allbad.csv", max_retries=3)[0]


def test_bad_videos_in_testing_are_marked_failed(root):
    ds = dataset(root, csv="bad.csv", mode="test", num_clips=2, num_crops=1)
    items = [ds[i] for i in range(len(ds))]
    assert [it["ok"] for it in items] == [True, True] + [False] * 6
    assert all(it["video"].shape == (3, 4, 32, 32) for it in items)
    assert float(items[-1]["video"].abs().sum()) == 0.0 and len(ds.failures) == 3


def test_errors_name_the_choices(root):
    with pytest.raises(ValueError, match="valid choices"):
        dataset(root, mode="val")
