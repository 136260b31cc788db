"""The data tools as commands, end to end on generated data (subprocesses; what they compute is tested
in tests/data/test_commands.py)."""
import json
import subprocess

import pytest

from helpers import PYTHON, ROOT, tool_env

pytestmark = pytest.mark.slow


def run_tool(tool, *args):
    """``python tools/<tool> args...``; returns (exit status, stdout)."""
    proc = subprocess.run([PYTHON, str(ROOT / "tools" / tool), *map(str, args)], env=tool_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, proc.stdout


def test_make_check_and_bench(tmp_path):
    root = tmp_path / "synthetic"
    args = ["--root", root, "--num-classes", 2, "--train-per-class", 2, "--val-per-class", 1,
            "--num-frames", 12, "--size", 48]
    code, out = run_tool("make_synthetic_dataset.py", *args)
    assert code == 0 and "wrote 6 videos" in out
    assert "already complete" in run_tool("make_synthetic_dataset.py", *args)[1]

    with open(root / "train.csv", "a") as f:
        f.write("growing,missing0000,0,1,train\n")
    code, out = run_tool("check_dataset.py", "--root", root, "--annotations", root / "train.csv", "--num-frames", 4,
                         "--sampling-rate", 2, "--report", tmp_path / "report.json")
    assert code == 1  # a video is missing
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] == 4 and len(report["missing"]) == 1
    assert "missing: 1" in (tmp_path / "report.txt").read_text()

    code, out = run_tool("bench_data.py", "--root", root, "--clip", "4x2", "--workers", 0, "--num-clips", 2,
                         "--batch-size", 2, "--repeats", 1, "--crop-size", 32, "--scale", 32, 40,
                         "--json", tmp_path / "bench.json")
    assert code == 0 and "ratio" in out
    result = json.loads((tmp_path / "bench.json").read_text())
    row = result["throughput"][0]
    assert row["nlnet_train_clips_s"] > 0 and row["pytorchvideo_train_clips_s"] > 0
    assert result["split"]["nlnet"]["shape"] == result["split"]["pytorchvideo"]["shape"] == [3, 4, 32, 32]


def test_prepare(tmp_path):
    from nlnet.data.synthetic import index_frames, write_video

    raw = tmp_path / "raw"
    raw.mkdir()
    write_video(raw / "xyz.mp4", index_frames(30, width=64, height=48), fps=10)
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nwave,xyz,1,2,train\n")
    args = ["--csv", tmp_path / "k.csv", "--raw", raw, "--out", tmp_path / "out", "--short-side", 32]
    code, out = run_tool("prepare_kinetics.py", *args)
    assert code == 0 and "written: 1" in out
    assert (tmp_path / "out" / "train" / "wave" / "xyz_000001_000002.mp4").is_file()
    assert "already done: 1" in run_tool("prepare_kinetics.py", *args)[1]


def test_bench_decode_resize_times_both_settings(tmp_path):
    code, out = run_tool("bench_decode_resize.py", "--out", tmp_path, "--sizes", "96x64", "--videos", 1,
                         "--seconds", 1.5, "--clip", "4x2", "--clips", 2, "--repeats", 1)
    row = next(line for line in out.splitlines() if line.startswith("96x64"))
    on, off, ratio = (float(v) for v in row.split("|")[1:])
    assert code == 0 and on > 0 and off > 0 and ratio == pytest.approx(off / on, abs=0.01)
