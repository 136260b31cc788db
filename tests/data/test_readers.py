"""The dataset readers against miniature copies of each dataset in its official layout (tests/mini_datasets.py)."""
import json
import logging
import os

import pytest

from mini_datasets import (FOLDER_CLASSES, HMDB_CLASSES, SSV2_CLASSES, UCF_CLASSES, make_folder, make_hmdb51,
                           make_ssv2, make_ucf101)
from nlnet.data.decoding import VideoReader
from nlnet.data.readers import FolderReader, HMDB51Reader, ListReader, SSv2Reader, UCF101Reader
from nlnet.utils.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf101")
    return root, make_ucf101(root)


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmdb51")
    return root, make_hmdb51(root)


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssv2")
    return root, make_ssv2(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    return root, make_folder(root)


def pairs(table, base):
    return [(os.path.relpath(r.path, base), r.label) for r in table.records]


def ucf_reader(root, **kwargs):
    return UCF101Reader(**{"root": root / "UCF-101", "annotations_dir": root / "ucfTrainTestlist", **kwargs})


def hmdb_reader(root, **kwargs):
    return HMDB51Reader(**{"root": root, "annotations_dir": root / "testTrainMulti_7030_splits", **kwargs})


def ssv2_reader(root, subset="train", **kwargs):
    labels = root / "labels"
    return SSv2Reader(**{"root": root / "20bn-something-something-v2",
                         "labels": labels / "something-something-v2-labels.json",
                         "annotations": labels / f"something-something-v2-{subset}.json", **kwargs})


@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_splits(ucf, split):
    root, expected = ucf
    for subset in ("train", "test"):
        table = ucf_reader(root, split=split, subset=subset).read()
        assert table.classes == UCF_CLASSES
        assert pairs(table, root / "UCF-101") == expected[split][subset]
        assert table.missing == []
    # hand-written: split 1 tests groups 1-2, so g03 of Archery (classInd index 2) trains
    train = pairs(ucf_reader(root, split=1).read(), root / "UCF-101")
    assert ("Archery/v_Archery_g03_c01.avi", 1) in train
    assert ("Archery/v_Archery_g01_c01.avi", 1) not in train


def test_ucf101_videos_are_mpeg4_avi(ucf):
    root, _ = ucf
    path = ucf_reader(root).read().records[0].path
    with VideoReader(path) as video:
        assert (video.container.format.name, video.stream.codec_context.name) == ("avi", "mpeg4")
        assert video.info.num_frames == 8 and video.info.fps == 25


def test_hmdb51_splits(hmdb):
    root, expected = hmdb
    for split in (1, 2, 3):
        for subset in ("train", "test"):
            table = hmdb_reader(root, split=split, subset=subset).read()
            assert table.classes == HMDB_CLASSES
            assert pairs(table, root) == expected[split][subset]
    # hand-written: in split 2, video 1 of each class tests, video 3 (tag 0) is in neither subset
    test = pairs(hmdb_reader(root, split=2, subset="test").read(), root)
    assert test == [(f"{c}/April_09_{c}_u_nm_np1_ba_goo_1.avi", i) for i, c in enumerate(HMDB_CLASSES)]
    train = pairs(hmdb_reader(root, split=2).read(), root)
    assert not any(p.endswith("_3.avi") for p, _ in train + test)


def test_ssv2(ssv2):
    root, expected = ssv2
    videos = root / "20bn-something-something-v2"
    table = ssv2_reader(root).read()
    assert table.classes == SSV2_CLASSES
    assert pairs(table, videos) == expected["train"]
    assert pairs(ssv2_reader(root, "validation").read(), videos) == [("2001.webm", 1), ("2004.webm", 4),
                                                                     ("2000.webm", 0)]
    with VideoReader(table.records[0].path) as video:
        assert video.stream.codec_context.name in ("vp9", "libvpx-vp9")


def test_folder(folder):
    root, expected = folder
    for split in ("train", "val"):
        table = FolderReader(root=root, split=split).read()
        assert table.classes == FOLDER_CLASSES
        assert sorted(pairs(table, root)) == sorted(expected[split])
    label_map = root / "classes.txt"
    label_map.write_text("dog\ncat\n")
    table = FolderReader(root=root, split="val", label_map=label_map).read()
    assert table.classes == ["dog", "cat"] and pairs(table, root) == [("val/cat/d.webm", 1), ("val/dog/d.webm", 0)]


def test_list_reader_is_read_annotations(tiny_videos):
    from nlnet.data import read_annotations
    reader = ListReader(annotations=os.path.join(tiny_videos, "train.csv"), root=tiny_videos)
    assert reader.read() == read_annotations(reader.source, tiny_videos)


# ---- bad inputs: one line naming the file and line ------------------------------------------------
def copy_tree(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_missing_videos_are_counted_and_skipped(ucf, tmp_path, caplog):
    root = copy_tree(ucf[0], tmp_path / "ucf")
    lists = root / "ucfTrainTestlist" / "trainlist01.txt"
    lists.write_text(lists.read_text() + "YoYo/v_YoYo_g99_c01.avi 3\r\n")
    with caplog.at_level(logging.WARNING):
        table = ucf_reader(root).read()
    assert table.missing == [str(root / "UCF-101" / "YoYo/v_YoYo_g99_c01.avi")]
    assert len(table.records) == len(ucf[1][1]["train"])
    line = len(lists.read_text().splitlines())
    assert f"1 of {len(table.records) + 1} videos" in caplog.text and f"trainlist01.txt:{line}" in caplog.text


def test_prepared_mp4_found_for_listed_avi(ucf, tmp_path):
    root = copy_tree(ucf[0], tmp_path / "ucf")
    avi = root / "UCF-101" / "YoYo" / "v_YoYo_g03_c01.avi"
    avi.rename(avi.with_suffix(".mp4"))
    paths = [r.path for r in ucf_reader(root).read().records]
    assert str(avi.with_suffix(".mp4")) in paths and str(avi) not in paths


@pytest.mark.parametrize("subset, line, message", [
    ("train", "YoYo/v_YoYo_g07_c01.avi 4", "label 4 is not in classInd.txt (1..3)"),
    ("train", "YoYo/v_YoYo_g07_c01.avi", "expected '<Class>/<video>.avi <index>'"),
    ("test", "Juggling/v_Juggling_g01_c01.avi", "class folder 'Juggling' is not in classInd.txt"),
])
def test_ucf101_bad_lines(ucf, tmp_path, subset, line, message):
    root = copy_tree(ucf[0], tmp_path / "ucf")
    path = root / "ucfTrainTestlist" / f"{subset}list01.txt"
    number = len(path.read_text().splitlines()) + 1
    path.write_text(path.read_text() + line + "\r\n")
    with pytest.raises(DataError) as error:
        ucf_reader(root, subset=subset).read()
    assert str(error.value).startswith(f"{path}:{number}: {message}") and "\n" not in str(error.value)


def test_hmdb51_bad_tag(hmdb, tmp_path):
    root = copy_tree(hmdb[0], tmp_path / "hmdb")
    path = root / "testTrainMulti_7030_splits" / "catch_test_split1.txt"
    path.write_text(path.read_text() + "x.avi 7 \n")
    with pytest.raises(DataError, match=rf"^{path}:5: expected '<video>.avi <tag>' with tag 0, 1 or 2"):
        hmdb_reader(root).read()


def test_ssv2_template_not_in_labels(ssv2, tmp_path):
    root = copy_tree(ssv2[0], tmp_path / "ssv2")
    path = root / "labels" / "something-something-v2-validation.json"
    records = json.loads(path.read_text())
    records[2]["template"] = "Juggling [something]"
    path.write_text(json.dumps(records, indent=4))
    line = [i for i, text in enumerate(path.read_text().splitlines(), 1) if text == "    {"][2]
    with pytest.raises(DataError) as error:
        ssv2_reader(root, "validation").read()
    assert str(error.value) == (f"{path}:{line}: template 'Juggling something' (video 2000) is not in "
                                f"{root / 'labels' / 'something-something-v2-labels.json'}")


def test_empty_class_folder(folder, tmp_path):
    root = copy_tree(folder[0], tmp_path / "folder")
    (root / "train" / "emu").mkdir()
    with pytest.raises(DataError, match=rf"^{root / 'train' / 'emu'}: empty class folder"):
        FolderReader(root=root, split="train").read()


@pytest.mark.parametrize("make", [ucf_reader, hmdb_reader])
def test_split_the_dataset_does_not_have(make, tmp_path):
    with pytest.raises(ConfigError, match=r"^split=4: valid values are 1, 2, 3$"):
        make(tmp_path, split=4)
