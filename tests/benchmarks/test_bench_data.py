"""The data benchmarks end to end on generated videos (their main() with a command line, in-process)."""
import json

import pytest

from benchmarks import data, decode_resize
from nlnet.data.synthetic import make_synthetic_dataset


def test_data_pipelines_side_by_side(tmp_path, capsys):
    root = tmp_path / "synthetic"
    make_synthetic_dataset(root, num_classes=2, train_per_class=2, val_per_class=1, num_frames=12, size=48,
                           gop_size=5)
    data.main(["--root", str(root), "--clip", "4x2", "--workers", "0", "--num-clips", "2", "--batch-size", "2",
               "--repeats", "1", "--crop-size", "32", "--scale", "32", "40", "--json", str(tmp_path / "bench.json")])
    out = capsys.readouterr().out
    assert "ratio" in out
    result = json.loads((tmp_path / "bench.json").read_text())
    row = result["throughput"][0]
    assert row["nlnet_train_clips_s"] > 0 and row["pytorchvideo_train_clips_s"] > 0
    assert result["split"]["nlnet"]["shape"] == result["split"]["pytorchvideo"]["shape"] == [3, 4, 32, 32]


def test_decode_resize_times_both_settings(tmp_path, capsys):
    decode_resize.main(["--out", str(tmp_path), "--sizes", "96x64", "--videos", "1", "--seconds", "1.5",
                        "--clip", "4x2", "--clips", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 96x64 |"))
    on, off, ratio = (float(v) for v in row.strip(" |").split("|")[1:])
    assert on > 0 and off > 0 and ratio == pytest.approx(off / on, abs=0.01)
