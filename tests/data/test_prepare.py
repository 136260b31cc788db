"""prepare_kinetics: cut + rescale raw downloads, resumable, writes the annotation CSV."""
import csv

import numpy as np

from nlnet.data import VideoDataset, VideoReader
from nlnet.data.prepare import Encoding, PrepareOptions, cut_and_rescale, find_raw_video, prepare_kinetics
from nlnet.data.synthetic import frame_indices, index_frames, write_video

HEADER = "label,youtube_id,time_start,time_end,split\n"


def test_cut_and_rescale_keeps_times_and_rotation(tmp_path):
    src = tmp_path / "raw.mp4"
    write_video(src, index_frames(40, width=64, height=48), fps=10, rotation=90)
    n = cut_and_rescale(str(src), str(tmp_path / "out.mp4"), start=1.0, end=2.5, encoding=Encoding(short_side=32))
    assert n == 15
    with VideoReader(tmp_path / "out.mp4") as reader:
        assert (reader.info.width, reader.info.height) == (42, 32)  # coded size; even numbers
        assert abs(reader.info.duration - 1.5) < 0.05
        frames, _ = reader.read(np.arange(15) / 10)
    assert frames.shape[1:3] == (42, 32)  # the display rotation travels with the file
    assert frame_indices(frames).tolist() == list(range(10, 25))
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left


def test_prepare_is_resumable_and_writes_csv(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    write_video(raw / "aaa.mp4", index_frames(30, width=48, height=64), fps=10)  # portrait
    write_video(raw / "bbb.mkv", index_frames(30, width=64, height=48), fps=10)
    (raw / "ccc.mp4").write_text("not a video")
    assert find_raw_video(raw, "bbb") == str(raw / "bbb.mkv")
    (tmp_path / "train.csv").write_text(
        HEADER + "jump,aaa,0,2,train\nrun,bbb,1,3,train\nrun,ccc,0,2,train\njump,ddd,0,1,train\n")
    summary = prepare_kinetics([tmp_path / "train.csv"], raw, out,
                               options=PrepareOptions(encoding=Encoding(short_side=32), num_workers=1, progress=False))
    assert summary["done"] == 2 and summary["skipped"] == 0
    assert summary["no_download"] == ["ddd"] and len(summary["failed"]) == 1
    with open(out / "train.csv") as f:
        assert [r["youtube_id"] for r in csv.DictReader(f)] == ["aaa", "bbb"]
    made = out / "train" / "jump" / "aaa_000000_000002.mp4"
    with VideoReader(made) as reader:
        assert (reader.info.width, reader.info.height) == (32, 42)
    mtime = made.stat().st_mtime_ns
    again = prepare_kinetics([tmp_path / "train.csv"], raw, out,
                             options=PrepareOptions(encoding=Encoding(short_side=32), num_workers=2, progress=False))
    assert again["done"] == 0 and again["skipped"] == 2 and made.stat().st_mtime_ns == mtime
    ds = VideoDataset(root=out, annotations=out / "train.csv", num_frames=4, sampling_rate=2, crop_size=32,
                      train_scale=(32, 40))
    assert ds.num_videos == 2 and ds.classes == ["jump", "run"] and ds[1]["ok"]
