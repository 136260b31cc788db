"""tools/train.py and tools/test.py: one-line errors, and testing a checkpoint with its stored config."""
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PYTHON, ROOT, compose, tiny_overrides, tool_env


def run_tool(*args):
    return subprocess.run([PYTHON, str(ROOT / "tools" / args[0]), *args[1:]], env=tool_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, expected", [
    (["experiment=demo", "model.net.dpeth=50"], "unknown config key 'model.net.dpeth'"),
    (["experiment=nope"], "nl_r50_kinetics"),  # the valid experiment names are listed
])
def test_config_errors_are_one_line(args, expected, tmp_path):
    proc = run_tool("train.py", *args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_checkpoint_is_one_line(tmp_path):
    proc = run_tool("test.py", f"checkpoint={tmp_path}/missing.pt")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: checkpoint: file not found: {tmp_path}/missing.pt"


def test_test_tool_reuses_the_stored_config_with_overrides(tiny_videos, tmp_path, monkeypatch):
    from nlnet.engine.checkpoint import CheckpointManager
    from nlnet.engine.launch import train

    run_dir = tmp_path / "run"
    train(compose("train", tiny_overrides(tiny_videos, str(run_dir))))
    checkpoint = CheckpointManager(directory=str(run_dir / "checkpoints")).latest()
    # the videos moved: data.root on the command line replaces the stored one; everything else
    # (model, clip geometry, views) comes from the checkpoint
    moved = tmp_path / "moved"
    Path(tiny_videos).rename(moved)
    try:
        out = tmp_path / "eval"
        monkeypatch.setattr(sys, "argv", ["test.py", f"checkpoint={checkpoint}", f"data.root={moved}",
                                          f"output_dir={out}", "data.num_workers=0"])
        monkeypatch.setenv("HYDRA_FULL_ERROR", "")
        runpy.run_path(str(ROOT / "tools" / "test.py"), run_name="__main__")  # in this process: no torch import
    finally:
        moved.rename(tiny_videos)
    got = json.loads((out / "results.json").read_text())
    want = json.loads((run_dir / "results.json").read_text())
    assert got["checkpoint"] == checkpoint
    for key in ("top1", "top5", "mean_class_accuracy", "num_videos", "views_per_video", "per_class_accuracy"):
        assert got[key] == want[key], key
    videos = json.loads((out / "per_video_scores.json").read_text())["videos"]
    assert [v["scores"] for v in videos] == \
        [v["scores"] for v in json.loads((run_dir / "per_video_scores.json").read_text())["videos"]]
    assert all(v["path"].startswith(str(moved)) for v in videos)
