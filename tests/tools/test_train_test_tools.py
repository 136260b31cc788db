"""tools/train.py and tools/test.py: one-line errors, and testing a checkpoint with its stored config."""
import json
import subprocess
from pathlib import Path

import pytest

from helpers import PYTHON, ROOT, compose, tiny_overrides, tool_env


def run_tool(*args):
    return subprocess.run([PYTHON, str(ROOT / "tools" / args[0]), *args[1:]], env=tool_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, expected", [
    (["experiment=demo", "model.net.dpeth=50"], "unknown config key 'model.net.dpeth'"),
    (["experiment=nope"], "nl_r50_kinetics"),  # the valid experiment names are listed
])
@pytest.mark.slow
def test_config_errors_are_one_line(args, expected, tmp_path):
    proc = run_tool("train.py", *args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_missing_checkpoint_is_one_line(tmp_path):
    proc = run_tool("test.py", f"checkpoint={tmp_path}/missing.pt")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: checkpoint: file not found: {tmp_path}/missing.pt"


@pytest.mark.slow
def test_test_tool_reuses_the_stored_config_with_overrides(tiny_videos, tmp_path):
    from nlnet.checkpoint.files import CheckpointManager
    from nlnet.engine.train import train

    run_dir = tmp_path / "run"
    train(compose("train", tiny_overrides(tiny_videos, str(run_dir))))
    checkpoint = CheckpointManager(directory=str(run_dir / "checkpoints")).latest()
    # the videos moved: data.root on the command line replaces the stored one; everything else
    # (model, clip geometry, views) comes from the checkpoint
    moved = tmp_path / "moved"
    Path(tiny_videos).rename(moved)
    try:
        out = tmp_path / "eval"
        proc = run_tool("test.py", f"checkpoint={checkpoint}", f"data.root={moved}", f"output_dir={out}",
                        "data.num_workers=0")
        assert proc.returncode == 0, proc.stderr[-2000:]
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


def test_test_tool_overrides_also_set_the_stored_keys_derived_from_them():
    from nlnet.config import apply_overrides

    stored = compose("train", ["experiment=demo", "data.root=/old", "data.val.num_clips=5", "run_dir=/r"])
    from omegaconf import OmegaConf

    stored = OmegaConf.to_container(stored, resolve=True)  # what a checkpoint holds: interpolations resolved
    stored["data"]["val"]["sampling_rate"] = 3  # set apart from data.sampling_rate at training time
    overrides = ["checkpoint=/c.pt", "data.num_frames=2", "data.sampling_rate=1", "data.label_map=/new/labels.txt",
                 "data.root=/new", "data.val.num_clips=2"]
    cfg = compose("test", overrides)
    merged = apply_overrides(stored, cfg, overrides, own_keys=("checkpoint", "output_dir"))
    assert merged.data.num_frames == merged.data.train.num_frames == merged.data.val.num_frames == 2
    assert merged.data.label_map == merged.data.train.label_map == merged.data.val.label_map == "/new/labels.txt"
    assert merged.data.sampling_rate == merged.data.train.sampling_rate == 1 and merged.data.val.sampling_rate == 3
    assert merged.data.val.annotations == "/new/val.csv" and merged.data.val.num_clips == 2
    assert merged.checkpoint == "/c.pt" and merged.model.net.num_classes == 6


def test_path_values_are_quoted_for_hydra():
    from nlnet.utils.cli import quote_path_overrides

    args = ["checkpoint=runs/x/lr=0.1,max_iter=50/checkpoints/c.pt", "data.num_frames=2", "output_dir=/plain/path",
            "resume='already quoted=1'", "checkpoint=it's\\"]
    assert quote_path_overrides(args, ("checkpoint", "output_dir", "resume")) == [
        "checkpoint='runs/x/lr=0.1,max_iter=50/checkpoints/c.pt'", "data.num_frames=2", "output_dir=/plain/path",
        "resume='already quoted=1'", "checkpoint='it\\'s\\\\'"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override("checkpoint='it\\'s\\\\'").value() == "it's\\"


@pytest.mark.slow
def test_test_tool_unquoted_checkpoint_path_with_equals_and_a_clip_override(tiny_videos, tmp_path):
    from nlnet.engine.train import train

    run_dir = tmp_path / "optim.lr=0.1,trainer.max_iter=2"  # a run folder named after overrides
    train(compose("train", tiny_overrides(tiny_videos) + [f"run_dir='{run_dir}'", "trainer.test_at_end=false",
                                                          "logger=none"]))
    proc = run_tool("test.py", f"checkpoint={run_dir}/checkpoints/checkpoint_0000002.pt", "data.num_frames=2",
                    f"output_dir={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 6 videos x 2 views of 2 frames at stride 2" in (tmp_path / "eval" / "test_log.txt").read_text()
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["checkpoint"] == f"{run_dir}/checkpoints/checkpoint_0000002.pt" and results["failed_video_paths"] == []


@pytest.mark.slow
def test_the_readme_data_path_works_verbatim(tmp_path):
    # README "Data": prepare the official CSVs (train.csv, validate.csv) from raw downloads, then train
    # with nothing but data.root (sizes made tiny; the data keys are not touched)
    import numpy as np

    from nlnet.data.synthetic import render_synthetic_clip, write_video

    (tmp_path / "downloads").mkdir()
    (tmp_path / "kinetics400").mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    rows = {"train": [], "val": []}
    for label, name in enumerate(["moving up", "moving down"]):
        for k in range(5):
            vid = f"id{label}x{k}xxxxx"
            rng = np.random.default_rng([label, k])
            write_video(tmp_path / "downloads" / f"{vid}.mp4",
                        render_synthetic_clip(label, num_frames=30, width=64, height=48, rng=rng), fps=10)
            rows["train" if k < 4 else "val"].append(f"{name},{vid},0,2,{'train' if k < 4 else 'val'}\n")
    (tmp_path / "kinetics400" / "train.csv").write_text(header + "".join(rows["train"]))
    (tmp_path / "kinetics400" / "validate.csv").write_text(header + "".join(rows["val"]))
    prepare = subprocess.run([PYTHON, str(ROOT / "tools" / "prepare_kinetics.py"), "--csv", "kinetics400/train.csv",
                              "kinetics400/validate.csv", "--raw", "downloads/", "--out", "data/kinetics400",
                              "--short-side", "40", "--workers", "2"], cwd=tmp_path, env=tool_env(),
                             capture_output=True, text=True, timeout=300)
    assert prepare.returncode == 0 and "written: 10" in prepare.stdout, prepare.stdout + prepare.stderr
    assert "data/kinetics400/val.csv" in prepare.stdout
    train_cmd = [PYTHON, str(ROOT / "tools" / "train.py"), "experiment=demo", "data.root=data/kinetics400",
                 "model.net.num_classes=2", "model.net.base_width=4", "trainer.max_iter=2", "trainer.precise_bn_iters=1",
                 "trainer.progress_bar=false", "trainer.checkpoint_period=0", "hydra.run.dir=run"]
    run = subprocess.run(train_cmd, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["num_videos"] == 2 and results["failed_videos"] == 0 and results["class_names"] == [
        "moving down", "moving up"]
