"""Both annotation formats, both Kinetics layouts, label maps, missing files."""
import json
import logging

import numpy as np
import pytest

from nlnet.data import read_annotations, read_label_map
from nlnet.data.synthetic import write_video

HEADER = "label,youtube_id,time_start,time_end,split\n"


def tiny(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.zeros((2, 16, 16, 3), np.uint8), fps=10)


def test_kinetics_csv_nested_and_flat_layouts(tmp_path, caplog):
    tiny(tmp_path / "train" / "playing drums" / "aaa_000001_000011.mp4")
    tiny(tmp_path / "train" / "abseiling" / "bbb_000020_000030.webm")
    tiny(tmp_path / "train" / "air_drumming" / "ccc_000005_000015.mkv")  # spaces written as _
    tiny(tmp_path / "val" / "ddd_000000_000010.mp4")  # flat split folder
    csv = tmp_path / "train.csv"
    csv.write_text(
        HEADER
        + "playing drums,aaa,1,11,train\nabseiling,bbb,20,30,train\nair drumming,ccc,5,15,train\n"
        + "abseiling,ddd,0,10,val\nplaying drums,zzz,3,13,train\nabseiling,yyy,3,13,train\n"
    )
    with caplog.at_level(logging.WARNING):
        table = read_annotations(csv, tmp_path)
    assert table.classes == ["abseiling", "air drumming", "playing drums"]  # sorted unique labels
    got = {p.split("/")[-1]: label for p, label in ((r.path, r.label) for r in table.records)}
    assert got == {"aaa_000001_000011.mp4": 2, "bbb_000020_000030.webm": 0,
                   "ccc_000005_000015.mkv": 1, "ddd_000000_000010.mp4": 0}
    assert len(table.missing) == 2
    warnings = [r for r in caplog.records if "missing" in r.getMessage()]
    assert len(warnings) == 1 and "2 of 6" in warnings[0].getMessage()  # reported once


def test_label_map_fixes_indices(tmp_path):
    tiny(tmp_path / "train" / "b" / "x_000000_000010.mp4")
    (tmp_path / "t.csv").write_text(HEADER + "b,x,0,10,train\n")
    (tmp_path / "map.txt").write_text("a\nb\nc\n")
    table = read_annotations(tmp_path / "t.csv", tmp_path, label_map=tmp_path / "map.txt")
    assert table.classes == ["a", "b", "c"] and table.records[0].label == 1
    (tmp_path / "map.json").write_text(json.dumps({"c": 0, "a": 1}))
    assert read_label_map(tmp_path / "map.json") == ["c", "a"]
    with pytest.raises(ValueError, match="not in the label map"):
        read_annotations(tmp_path / "t.csv", tmp_path, label_map=tmp_path / "map.json")


def test_plain_list(tmp_path):
    tiny(tmp_path / "videos" / "one clip.mp4")
    tiny(tmp_path / "videos" / "two.mp4")
    (tmp_path / "list.txt").write_text("videos/one clip.mp4 2\nvideos/two.mp4 0\nvideos/gone.mp4 1\n")
    table = read_annotations(tmp_path / "list.txt", tmp_path)
    assert [r.label for r in table.records] == [2, 0]
    assert table.records[0].path.endswith("one clip.mp4")
    assert table.classes == ["0", "1", "2"] and len(table.missing) == 1
    (tmp_path / "names.txt").write_text("x\ny\nz\n")
    named = read_annotations(tmp_path / "list.txt", tmp_path, label_map=tmp_path / "names.txt")
    assert named.classes == ["x", "y", "z"]
    (tmp_path / "bad.txt").write_text("videos/two.mp4\n")
    with pytest.raises(ValueError, match="relative/path label_index"):
        read_annotations(tmp_path / "bad.txt", tmp_path)
