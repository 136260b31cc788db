"""VideoDataset: train determinism, test views, bad files, DataLoader workers."""
import numpy as np
import pytest
import torch

from nlnet.data import VideoDataset
from nlnet.data.transforms import normalize
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
    """Frame indices of a dataset output: uint8 (C, T, H, W)."""
    assert video.dtype == torch.uint8
    return frame_indices(video.permute(1, 2, 3, 0).numpy())


def test_train_items(root):
    ds = dataset(root)
    assert len(ds) == 3 and ds.num_views == 1 and ds.classes == ["jump", "run"]
    item = ds[1]
    assert item["video"].shape == (3, 4, 24, 24) and item["video"].dtype == torch.uint8  # normalised on the device
    normalised = normalize(item["video"], (0, 0, 0), (1, 1, 1))  # what the model gets (mean 0, std 1)
    assert normalised.dtype == torch.float32 and torch.equal(normalised, item["video"].float() / 255)
    assert "flip" not in item
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


def test_bad_videos_in_training_are_replaced_and_reported_with_the_item(root):
    ds = dataset(root, csv="bad.csv")
    items = [ds[i] for i in range(4)] + [ds[i] for i in range(4)]
    assert all(it["ok"] and it["video_index"] == 0 for it in items)  # only video 0 decodes
    bad = ["bad1_000000_000010.mp4", "bad2_000000_000010.mp4", "bad3_000000_000010.mp4"]
    assert sorted(p.split("/")[-1] for p in ds.failures) == bad
    # each item names the videos that failed while making it, with the reason: the main process reports
    # them (a DataLoader worker's own records are lost with the worker)
    assert items[0]["failures"] == [] and items[1]["failures"][0][0].endswith(bad[0])
    assert sorted({p.split("/")[-1] for it in items for p, _ in it["failures"]}) == bad
    assert all(reason for it in items for _, reason in it["failures"])
    # every video tried fails: a failed item (the training loader stops on it), not an exception in a worker
    item = dataset(root, csv="allbad.csv", max_retries=3)[0]
    assert not item["ok"] and len(item["failures"]) == 4 and item["video"].shape == (3, 4, 24, 24)


def test_bad_videos_in_testing_are_marked_failed(root):
    ds = dataset(root, csv="bad.csv", mode="test", num_clips=2, num_crops=1)
    items = [ds[i] for i in range(len(ds))]
    assert [it["ok"] for it in items] == [True, True] + [False] * 6
    assert all(it["video"].shape == (3, 4, 32, 32) for it in items)
    assert float(items[-1]["video"].abs().sum()) == 0.0 and len(ds.failures) == 3
    assert [len(it["failures"]) for it in items] == [0, 0] + [1] * 6
    assert items[2]["failures"][0][0] == ds.video_paths[1]


def test_a_failed_test_video_is_decoded_once_not_once_per_view(root, monkeypatch):
    import nlnet.data.dataset as module

    opened = []

    class CountingReader(module.VideoReader):
        def __init__(self, path, **kwargs):
            opened.append(str(path))
            super().__init__(path, **kwargs)

    monkeypatch.setattr(module, "VideoReader", CountingReader)
    ds = dataset(root, csv="bad.csv", mode="test", num_clips=3, num_crops=3)  # 9 views per video
    items = [ds[i] for i in range(len(ds))]
    assert sum(not it["ok"] for it in items) == 27
    assert sorted(opened.count(p) for p in set(opened)) == [1, 1, 1, 3]  # good video: one decode per clip


def test_damaged_files_are_failures_in_both_modes_and_the_check_finds_them(tmp_path):
    from damaged_videos import write_damaged_videos
    from nlnet.data.check import check_dataset

    paths = write_damaged_videos(tmp_path / "videos")
    (tmp_path / "list.txt").write_text("".join(f"videos/{p.name} 0\n" for p in paths.values()))
    failed = {}
    for mode in ("train", "test"):
        ds = VideoDataset(root=tmp_path, annotations=tmp_path / "list.txt", mode=mode, num_frames=4, sampling_rate=3,
                          crop_size=24, train_scale=(28, 32), test_scale=32, num_clips=3, num_crops=1,
                          max_retries=len(paths), seed=1)
        for epoch in range(2):
            ds.set_epoch(epoch)
            items = [ds[i] for i in range(len(ds))]  # never raises
            assert all(reason for it in items for _, reason in it["failures"])
        failed.update(ds.failures)
    assert str(paths["good"]) not in failed and len(failed) >= len(paths) - 2
    assert all(reason and "\n" not in reason for reason in failed.values())
    for full in (False, True):  # the check finds every file the dataset failed on, in either mode
        report = check_dataset(tmp_path / "list.txt", tmp_path, num_frames=4, sampling_rate=3, full=full,
                               progress=False)
        assert set(failed) <= set(report["unreadable"]), set(failed) - set(report["unreadable"])
        assert str(paths["good"]) not in report["unreadable"]


def test_an_empty_annotation_file_or_no_video_present_is_one_clear_error(root, tmp_path):
    from nlnet.utils.errors import DataError

    (tmp_path / "empty.csv").write_text(HEADER)
    with pytest.raises(DataError, match="empty.csv lists no videos"):
        dataset(tmp_path, csv="empty.csv")
    (tmp_path / "gone.csv").write_text(HEADER + "run,nothere,0,10,train\n")
    with pytest.raises(DataError, match="none of the 1 videos listed in .*gone.csv"):
        dataset(tmp_path, csv="gone.csv")


def test_errors_name_the_choices(root):
    with pytest.raises(ValueError, match="valid choices"):
        dataset(root, mode="val")


# ---- readers, segment sampling, the SSv2 flip label swap --------------------------------------------
@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory):
    from mini_datasets import make_ssv2
    root = tmp_path_factory.mktemp("ssv2")
    make_ssv2(root)
    return root


def ssv2_dataset(root, subset="train", **kwargs):
    from nlnet.data.readers import SSv2Reader
    from nlnet.data.sampling import SegmentSampler
    reader = SSv2Reader(root=root / "20bn-something-something-v2",
                        labels=root / "labels" / "something-something-v2-labels.json",
                        annotations=root / "labels" / f"something-something-v2-{subset}.json")
    args = dict(root=root, reader=reader, sampler=SegmentSampler(num_segments=4), num_frames=4, sampling_rate=1,
                crop_size=32, train_scale=(32, 32), test_scale=32, num_clips=1, num_crops=1, mean=(0, 0, 0),
                std=(1, 1, 1))
    return VideoDataset(**{**args, **kwargs})


def test_segment_sampling_reads_the_centre_of_each_segment(ssv2_root):
    # 16 frames at 12 fps, 4 segments of 4 frames: the centred single frame of segment i is frame 4i + 2
    item = ssv2_dataset(ssv2_root, "validation", mode="test")[0]
    indices = frame_indices(item["video"].permute(1, 0, 2, 3).numpy(), channels_last=False)
    assert indices.tolist() == [2, 6, 10, 14]
    train = ssv2_dataset(ssv2_root, flip_prob=0.0)
    for index in range(len(train)):
        got = frame_indices(train[index]["video"].permute(1, 0, 2, 3).numpy(), channels_last=False)
        assert all(4 * i <= f < 4 * i + 4 for i, f in enumerate(got))


@pytest.mark.parametrize("flip_on_device", [False, True])
def test_ssv2_flip_swaps_left_and_right(ssv2_root, flip_on_device):
    from mini_datasets import SSV2_CLASSES
    swaps = {"Pushing something from left to right": "Pushing something from right to left",
             "Pushing something from right to left": "Pushing something from left to right",
             1: 2, 2: 1}  # by name or by index, as mmaction2's flip_label_map
    flipped = ssv2_dataset(ssv2_root, flip_prob=1.0, flip_label_map=swaps, flip_on_device=flip_on_device)
    plain = ssv2_dataset(ssv2_root, flip_prob=0.0, flip_label_map=swaps)
    expected = {1: 2, 2: 1, 3: 4, 4: 3}
    for index in range(len(plain)):
        label = plain.labels[index]
        assert plain[index]["label"] == label
        assert flipped[index]["label"] == expected.get(label, label), SSV2_CLASSES[label]
    assert sorted(flipped.labels) == list(range(len(SSV2_CLASSES)))
    # the test set is never flipped: labels as read
    test = ssv2_dataset(ssv2_root, "validation", mode="test", flip_label_map=swaps)
    assert [test[i]["label"] for i in range(len(test))] == test.labels == [1, 4, 0]


def test_flip_label_map_errors(ssv2_root):
    with pytest.raises(ValueError, match="is not swapped back; give both directions"):
        ssv2_dataset(ssv2_root, flip_label_map={1: 2})
    with pytest.raises(ValueError, match="'Juggling' is not a class of this dataset"):
        ssv2_dataset(ssv2_root, flip_label_map={"Juggling": 1, 1: "Juggling"})
