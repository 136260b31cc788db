"""tools/convert_checkpoint.py end to end: convert an official-format file, then tools/test.py,
tools/visualize_attention.py and a fine-tuning load work on the converted checkpoint unchanged."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from _convert_util import randomize, source_state, write_caffe2

import nlnet.models.convert as convert
from helpers import PYTHON, ROOT, compose, tool_env
from nlnet.models.convert.caffe2 import CAFFE2_TABLE
from nlnet.resources import kinetics400_classes

pytestmark = pytest.mark.slow  # runs the tools as subprocesses

KINETICS = kinetics400_classes()[:3]  # the tiny dataset's classes get Kinetics names


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "tools" / args[0]), *args[1:]], env=tool_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def kinetics_subset(tiny_videos, tmp_path_factory) -> Path:
    """The tiny dataset's validation videos under three Kinetics-400 class names (official CSV layout)."""
    root = tmp_path_factory.mktemp("k400_subset")
    with open(Path(tiny_videos) / "val.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = {label: KINETICS[i] for i, label in enumerate(sorted({r["label"] for r in rows}))}
    out = []
    for row in rows:
        source = next((Path(tiny_videos) / "val" / row["label"]).glob(f"{row['youtube_id']}_*"))
        target = root / "val" / names[row["label"]] / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        out.append([names[row["label"]], row["youtube_id"], row["time_start"], row["time_end"], "val"])
    from nlnet.data.annotations import write_kinetics_csv
    write_kinetics_csv(root / "val.csv", out)
    return root


@pytest.fixture(scope="module")
def official_file(tmp_path_factory) -> Path:
    """A random official I3D NL 8x8 model (base width 4, 400 classes) in the release's .pkl format."""
    arch = convert.SOURCES["caffe2"].arch("i3d_nl_r50_8x8").replace(base_width=4, num_classes=400)
    model = randomize(convert.SOURCES["caffe2"].build(arch))
    path = tmp_path_factory.mktemp("official") / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl"
    write_caffe2(path, source_state(model.state_dict(), CAFFE2_TABLE))
    return path


def test_convert_then_test_visualize_and_finetune(official_file, kinetics_subset, tmp_path):
    out = tmp_path / "converted" / "i3d_nl_8x8.pt"
    proc = proc_convert = run_tool("convert_checkpoint.py", "--from", "caffe2", str(official_file), str(out),
                                   "--data-root", str(kinetics_subset))
    assert proc.returncode == 0, proc.stderr
    assert "arch i3d_nl_r50_8x8 detected from the file" in proc.stdout
    assert f"python tools/test.py checkpoint={out}" in proc.stdout

    state = torch.load(out, weights_only=True)
    assert state["class_names"] == kinetics400_classes()
    assert state["converted_from"]["arch"] == "i3d_nl_r50_8x8"
    assert state["config"]["data"]["val"]["test_scale"] == 256 and state["config"]["model"]["net"]["fully_conv_test"]

    results = tmp_path / "eval"
    proc = run_tool("test.py", f"checkpoint={out}", f"data.root={kinetics_subset}", f"output_dir={results}",
                    "data.num_workers=0", "data.val.num_clips=1", "data.val.num_crops=1", "trainer.device=cpu")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((results / "results.json").read_text())
    assert (metrics["num_videos"], metrics["views_per_video"]) == (6, 1)
    assert metrics["failed_videos"] == 0

    video = next((kinetics_subset / "val").rglob("*.mp4"))
    png = tmp_path / "attention.png"
    proc = run_tool("visualize_attention.py", f"checkpoint={out}", f"video={video}", f"out={png}", "panel_size=48")
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 0 and "block res4.nonlocal5" in proc.stdout

    # fine-tuning: the experiment written beside the checkpoint rebuilds the network with a new classifier
    # and starts it from the converted weights (model.init_checkpoint -> nlnet.models.load_finetune)
    experiment = out.parent / "experiment" / "i3d_nl_8x8.yaml"
    assert f"--config-dir={out.parent} experiment=i3d_nl_8x8" in proc_convert.stdout
    cfg = compose("train", [f"hydra.searchpath=[file://{out.parent}]", "experiment=i3d_nl_8x8",
                            f"data.root={kinetics_subset}", "model.net.num_classes=3"])
    assert experiment.read_text().startswith("# @package _global_")
    assert cfg.model.init_checkpoint == str(out) and cfg.data.num_frames == 8 and cfg.data.train.mean == [0.45] * 3
    from nlnet.config import instantiate
    from nlnet.models import load_finetune
    model = instantiate(cfg.model.net)
    report = load_finetune(model, torch.load(cfg.model.init_checkpoint, weights_only=True)["model"])
    assert set(report.skipped) == {"head.fc.weight", "head.fc.bias"} and not report.missing


def test_refusal_is_one_line(official_file, tmp_path):
    proc = run_tool("convert_checkpoint.py", "--from", "caffe2", str(official_file), str(tmp_path / "x.pt"),
                    "--arch", "c2d_nl_r50_8x8")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "conv1_w (4, 3, 5, 7, 7)" in lines[0], proc.stderr
    assert not (tmp_path / "x.pt").exists()
