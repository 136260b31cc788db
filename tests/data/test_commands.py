"""nlnet.data.commands, what the data tools run: the synthetic dataset, the dataset check and its report,
Kinetics preparation, with their printed summaries and exit statuses (in this process)."""
import csv
import json

import pytest

from nlnet.data.commands import SYNTHETIC_PRESETS, run_check_dataset, run_make_synthetic, run_prepare_kinetics
from nlnet.data.prepare import Encoding, PrepareOptions
from nlnet.data.synthetic import index_frames, write_video


def test_make_and_check(tmp_path, capsys):
    root = tmp_path / "synthetic"
    args = dict(num_classes=2, train_per_class=2, val_per_class=1, num_frames=12, size=48)
    assert run_make_synthetic(root, **args) == 0
    assert "wrote 6 videos (48x48, 12 frames)" in capsys.readouterr().out
    assert run_make_synthetic(root, **args) == 0 and "already complete" in capsys.readouterr().out

    with open(root / "train.csv", "a") as f:
        f.write("growing,missing0000,0,1,train\n")
    code = run_check_dataset(root / "train.csv", root, num_frames=4, sampling_rate=2, progress=False,
                             report=tmp_path / "report.json")
    assert code == 1  # a video is missing
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] == 4 and len(report["missing"]) == 1
    assert "missing: 1" in (tmp_path / "report.txt").read_text()
    assert f"report: {tmp_path / 'report.json'}" in capsys.readouterr().out


def test_presets_fill_what_is_not_given(tmp_path, capsys):
    assert set(SYNTHETIC_PRESETS) == {"demo", "bench"}
    run_make_synthetic(tmp_path, preset="bench", num_classes=1, train_per_class=1, val_per_class=0, num_frames=2,
                       size=None)  # None keeps the preset's 320x256
    assert "wrote 1 videos (320x256, 2 frames)" in capsys.readouterr().out


def test_prepare(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_video(raw / "xyz.mp4", index_frames(30, width=64, height=48), fps=10)
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nwave,xyz,1,2,train\n")
    args = dict(csv_files=[tmp_path / "k.csv"], raw_dir=raw, out_dir=tmp_path / "out",
                options=PrepareOptions(encoding=Encoding(short_side=32), progress=False))
    assert run_prepare_kinetics(**args) == 0 and "written: 1" in capsys.readouterr().out
    assert (tmp_path / "out" / "train" / "wave" / "xyz_000001_000002.mp4").is_file()
    with open(tmp_path / "out" / "k.csv") as f:
        assert [r["youtube_id"] for r in csv.DictReader(f)] == ["xyz"]
    assert run_prepare_kinetics(**args) == 0 and "already done: 1" in capsys.readouterr().out


def test_prepare_options_defaults_zero_meaning_keep_and_a_bad_value_in_one_line():
    from nlnet.data.commands import add_prepare_arguments, prepare_options
    from nlnet.utils.cli import ArgumentParser
    from nlnet.utils.errors import UserError

    parser = ArgumentParser()
    add_prepare_arguments(parser)
    options = prepare_options(parser, parser.parse_args([]))
    assert options.encoding == Encoding() and options.num_workers == 1
    kept = prepare_options(parser, parser.parse_args(["--short-side", "0", "--keyframe-interval", "0", "--workers", "3"]))
    assert kept.encoding.short_side is None and kept.encoding.keyframe_interval is None and kept.num_workers == 3
    with pytest.raises(UserError, match="--crf 52: must be at least 0 and at most 51"):
        prepare_options(parser, parser.parse_args(["--crf", "52"]))
