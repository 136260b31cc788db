"""Multi-label readers (official Charades files, ``path label,label`` lists), clip targets from time spans,
and the dataset's multi-hot targets (training clip: overlapping actions; test video: all of them)."""
import csv

import pytest
import torch

from nlnet.data import VideoDataset
from nlnet.data.annotations import VideoRecord
from nlnet.data.multilabel import CharadesReader, MultiLabelListReader, clip_target, parse_actions
from nlnet.data.synthetic import CHARADES_FIELDS, make_synthetic_charades
from nlnet.utils.errors import DataError


def write_charades(root, rows, classes=("c000 Holding some clothes", "c001 Putting clothes somewhere",
                                        "c002 Taking a box")):
    (root / "Charades_v1_classes.txt").write_text("\n".join(classes) + "\n")
    with open(root / "Charades_v1_train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CHARADES_FIELDS)
        writer.writeheader()
        for vid, actions, length in rows:
            writer.writerow({"id": vid, "subject": "S", "scene": "Kitchen", "quality": 6, "relevance": 7,
                             "verified": "Yes", "script": "A person, holding clothes; walks.", "objects": "box;clothes",
                             "descriptions": "A person walks.", "actions": actions, "length": length})
    return CharadesReader(annotations=root / "Charades_v1_train.csv", classes=root / "Charades_v1_classes.txt",
                          root=root / "videos")


def test_charades_reader_reads_the_official_files(tmp_path):
    (tmp_path / "videos").mkdir()
    for vid in ("46GP8", "N11GT"):
        (tmp_path / "videos" / f"{vid}.mp4").write_bytes(b"")
    reader = write_charades(tmp_path, [("46GP8", "c002 11.90 21.20;c000 0.00 12.60", "24.83"),
                                       ("N11GT", "", "30.00"), ("ABSNT", "c001 1 2", "5")])
    table = reader.read()
    assert table.multi_label and table.classes == ["Holding some clothes", "Putting clothes somewhere", "Taking a box"]
    first, empty = table.records
    assert first.path.endswith("46GP8.mp4") and first.labels == (0, 2) and first.label == 0
    assert first.spans == ((2, 11.9, 21.2), (0, 0.0, 12.6))
    assert empty.labels == () and empty.spans == ()
    assert len(table.missing) == 1 and table.missing[0].endswith("ABSNT.mp4")


@pytest.mark.parametrize("actions, length, expected", [
    ("c157 1.0 2.0", "10", r"train.csv:2: action c157 is not in the class file \(3 classes, c000..c002\)"),
    ("c001 12.0 14.0", "10", r"train.csv:2: action c001 spans 12-14 s, outside the video's 0-10 s"),
    ("c001 -1.0 4.0", "10", r"action c001 spans -1-4 s"),
    ("c001 4.0 3.0", "10", r"action c001 spans 4-3 s"),
    ("c001 4.0", "10", r"train.csv:2: expected actions like 'c092 11.90 21.20;c147 0.00 12.60', got 'c001 4.0'"),
])
def test_bad_actions_are_one_line_naming_the_file_and_line(tmp_path, actions, length, expected):
    reader = write_charades(tmp_path, [("46GP8", actions, length)])
    with pytest.raises(DataError, match=expected) as info:
        reader.read()
    assert "\n" not in str(info.value)


def test_an_end_past_the_video_is_clipped():
    assert parse_actions("c000 2.0 10.5", index={"c000": 0}, length=10.0, where="x:2") == ((0, 2.0, 10.0),)


def test_multi_label_list_reader(tmp_path):
    (tmp_path / "a b.mp4").write_bytes(b"")
    (tmp_path / "c.mp4").write_bytes(b"")
    (tmp_path / "list.txt").write_text("a b.mp4 0,3\nc.mp4 2\nmissing.mp4 1\n")
    table = MultiLabelListReader(annotations=tmp_path / "list.txt", root=tmp_path).read()
    assert table.multi_label and table.classes == ["0", "1", "2", "3"] and len(table.missing) == 1
    assert [r.labels for r in table.records] == [(0, 3), (2,)] and table.records[0].path.endswith("a b.mp4")
    (tmp_path / "bad.txt").write_text("c.mp4 2;3\n")
    with pytest.raises(DataError, match=r"bad.txt:1: expected 'relative/path label,label,...'"):
        MultiLabelListReader(annotations=tmp_path / "bad.txt", root=tmp_path).read()
    with pytest.raises(DataError, match=r"list.txt:1: label 3 of a b.mp4 outside 0..2"):
        MultiLabelListReader(annotations=tmp_path / "list.txt", root=tmp_path, num_classes=3).read()


RECORD = VideoRecord("v.mp4", 0, labels=(0, 1, 3), spans=((0, 0.0, 2.0), (1, 3.0, 5.0), (3, 4.0, 8.0)))


@pytest.mark.parametrize("window, classes", [
    ((0.5, 1.5), [0]),        # inside one action
    ((1.5, 3.5), [0, 1]),     # across two
    ((2.2, 2.8), []),         # between actions
    ((4.5, 6.0), [1, 3]),     # two overlapping actions
    (None, [0, 1, 3]),        # a test video: all of its actions
])
def test_clip_target_from_time_spans(window, classes):
    target = clip_target(RECORD, 5, window)
    assert target.dtype == torch.float32 and target.nonzero().flatten().tolist() == classes


def test_a_video_without_spans_has_all_its_labels_in_every_clip():
    assert clip_target(VideoRecord("v.mp4", 2, labels=(2, 4)), 5, (0.0, 1.0)).tolist() == [0, 0, 1, 0, 1]


def test_dataset_targets_follow_the_clip_in_time(tmp_path):
    paths = make_synthetic_charades(tmp_path, num_classes=3, train_videos=2, test_videos=1, segment_frames=10,
                                    size=32)
    reader = CharadesReader(annotations=paths["train"], classes=paths["classes"], root=paths["videos"])
    common = dict(root=tmp_path, annotations=paths["train"], num_frames=4, sampling_rate=1, reader=reader)
    train = VideoDataset(mode="train", crop_size=32, train_scale=(32, 32), **common)
    assert train.multi_label and train.classes == ["moving up", "moving down", "moving sideways"]
    seen = set()
    for epoch in range(8):
        train.set_epoch(epoch)
        for i in range(len(train)):
            item = train[i]
            start, end = train._train_window
            expected = [c for c, s, e in train.records[i].spans if s <= end and e >= start]
            assert item["label"].nonzero().flatten().tolist() == sorted(expected)
            seen.add(len(expected))
    assert seen == {1, 2}  # clips inside one motion and across both
    test = VideoDataset(mode="test", num_clips=2, num_crops=1, test_scale=32, **common)
    item = test[0]
    labels = list(test.records[0].labels)
    assert item["label"].nonzero().flatten().tolist() == labels and len(labels) == 2
    batch = torch.utils.data.default_collate([test[0], test[1]])
    assert batch["label"].shape == (2, 3) and batch["label"].dtype == torch.float32
