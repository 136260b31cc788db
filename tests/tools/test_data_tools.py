"""The data tools run end to end on generated data (their main() with a command line, in-process)."""
import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from nlnet.data.synthetic import index_frames, write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(monkeypatch, capsys):
    """``run("tool.py", *args)`` runs ``python tools/tool.py args...``; returns (exit code, stdout)."""

    def run(tool, *args):
        spec = importlib.util.spec_from_file_location(tool[:-3], REPO / "tools" / tool)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(sys, "argv", [tool, *map(str, args)])
        code = 0
        try:
            module.main()
        except SystemExit as e:
            code = e.code or 0
        return code, capsys.readouterr().out

    return run


def test_make_and_check(tmp_path, run):
    root = tmp_path / "synthetic"
    args = ["--root", root, "--num-classes", 2, "--train-per-class", 2, "--val-per-class", 1,
            "--num-frames", 12, "--size", 48]
    code, out = run("make_synthetic_dataset.py", *args)
    assert code == 0 and "wrote 6 videos" in out
    assert "already complete" in run("make_synthetic_dataset.py", *args)[1]

    with open(root / "train.csv", "a") as f:
        f.write("growing,missing0000,0,1,train\n")
    code, out = run("check_dataset.py", "--root", root, "--annotations", root / "train.csv", "--num-frames", 4,
                    "--sampling-rate", 2, "--report", tmp_path / "report.json")
    assert code == 1  # a video is missing
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] == 4 and len(report["missing"]) == 1
    assert "missing: 1" in (tmp_path / "report.txt").read_text()


def test_prepare(tmp_path, run):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_video(raw / "xyz.mp4", index_frames(30, width=64, height=48), fps=10)
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nwave,xyz,1,2,train\n")
    args = ["--csv", tmp_path / "k.csv", "--raw", raw, "--out", tmp_path / "out", "--short-side", 32]
    code, out = run("prepare_kinetics.py", *args)
    assert code == 0 and "written: 1" in out
    assert (tmp_path / "out" / "train" / "wave" / "xyz_000001_000002.mp4").is_file()
    with open(tmp_path / "out" / "k.csv") as f:
        assert [r["youtube_id"] for r in csv.DictReader(f)] == ["xyz"]
    assert "already done: 1" in run("prepare_kinetics.py", *args)[1]
