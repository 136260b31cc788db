"""tools/visualize_attention.py end to end: a tiny checkpoint in the trainer's format and a tiny video."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from nlnet.config import instantiate, to_container
from nlnet.data.synthetic import write_video
from nlnet.engine.checkpoint import atomic_save
from nlnet.viz.attention import TITLE_PIXELS

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = str(ROOT / "configs")
TOOL = ROOT / "tools" / "visualize_attention.py"
CLASSES = ["up", "down", "still"]


def load_tool():
    spec = importlib.util.spec_from_file_location("visualize_attention_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose(*overrides: str):
    with hydra.initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return hydra.compose("visualize", overrides=list(overrides))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A checkpoint of the tiny model with NL blocks in res3 and res4 (as the trainer writes it:
    model state dict, resolved config, class names) and an 8-frame 48x64 video."""
    tmp = tmp_path_factory.mktemp("viz_tool")
    cfg = compose("checkpoint=x", "video=x", "+model=tiny", "model.net.num_classes=3", "model.net.base_width=8",
                  "model.net.nonlocal_blocks=[[],[0],[0],[]]", "model.nonlocal.impl=reference")
    config = {"model": to_container(cfg.model),
              "data": {"val": {"num_frames": 8, "sampling_rate": 2, "test_scale": 64, "test_crop_size": None,
                               "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}}}
    torch.manual_seed(0)
    model = instantiate(cfg.model.net)
    for name in model.nonlocal_names():  # a trained-looking block: its residual is not zero
        torch.nn.init.ones_(model.get_submodule(name).norm.weight)
    checkpoint = tmp / "checkpoints" / "checkpoint_0000002.pt"
    atomic_save({"model": model.state_dict(), "config": config, "class_names": CLASSES, "iteration": 2},
                str(checkpoint))
    frames = np.zeros((20, 48, 64, 3), np.uint8)
    for t in range(20):  # a square moving right
        frames[t, 16:32, 2 + 2 * t:18 + 2 * t] = (240, 200, 40)
    video = tmp / "clip.mp4"
    write_video(video, frames, fps=10)
    return {"tmp": tmp, "checkpoint": str(checkpoint), "video": str(video), "model": model}


def test_tool_writes_png_gif_mp4(tiny_run, capsys):
    tool = load_tool()
    tmp = tiny_run["tmp"]
    out, gif, mp4 = tmp / "out" / "a.png", tmp / "out" / "a.gif", tmp / "out" / "a.mp4"
    cfg = compose(f"checkpoint={tiny_run['checkpoint']}", f"video={tiny_run['video']}", "block=res3.nonlocal0",
                  "queries=[[3,20,30],[7,60,5]]", "top_k=3", "panel_size=64", f"out={out}", f"gif={gif}",
                  f"mp4={mp4}")
    paths = tool.visualize(cfg)
    assert paths == [str(out), str(gif), str(mp4)]
    printed = capsys.readouterr().out
    # 8 frames of 64x64 (short side 64 crop 64): res3 of the tiny model is 4x8x8, keys 4x4x4 (1x2x2 pooling)
    assert "block res3.nonlocal0 (spacetime): queries on a (4, 8, 8) grid, keys on (4, 4, 4)" in printed
    assert "strides (t, y, x) (2.0, 8.0, 8.0)" in printed
    assert "query t,y,x=(2.5,19.5,27.5) -> top keys (" in printed  # [3, 20, 30] -> the centre of its cell
    with Image.open(out) as image:
        assert image.size == (4 * 64, 2 * 64 + TITLE_PIXELS)  # T_f panels x queries rows, a title band
    with Image.open(gif) as image:
        assert image.size == (2 * 64, 64)
    assert mp4.stat().st_size > 0


def test_tool_default_block_and_queries(tiny_run):
    tool = load_tool()
    out = tiny_run["tmp"] / "default.png"
    cfg = compose(f"checkpoint={tiny_run['checkpoint']}", f"video={tiny_run['video']}", "num_queries=2",
                  "panel_size=48", f"out={out}")
    tool.visualize(cfg)
    with Image.open(out) as image:
        assert image.size == (4 * 48, 2 * 48 + TITLE_PIXELS)  # last block res4.nonlocal0: 4x4x4 queries, 2 strongest


def test_tool_errors(tiny_run, tmp_path):
    tool = load_tool()
    ckpt, video = tiny_run["checkpoint"], tiny_run["video"]
    with pytest.raises(ValueError, match=r"unknown non-local block 'res5.nonlocal2'.*res3.nonlocal0, res4.nonlocal0"):
        tool.visualize(compose(f"checkpoint={ckpt}", f"video={video}", "block=res5.nonlocal2", f"out={tmp_path}/a.png"))
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match=f"video={missing}: no such file"):
        tool.visualize(compose(f"checkpoint={ckpt}", f"video={missing}", f"out={tmp_path}/a.png"))
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*none.pt"):
        tool.visualize(compose(f"checkpoint={tmp_path}/none.pt", f"video={video}", f"out={tmp_path}/a.png"))
    with pytest.raises(ValueError, match=r"y=99 is outside the clip"):
        tool.visualize(compose(f"checkpoint={ckpt}", f"video={video}", "queries=[[0,99,3]]", f"out={tmp_path}/a.png"))
    assert not list(tmp_path.glob("*.png"))


def test_tool_entry_point(tiny_run, tmp_path, monkeypatch, capsys):
    """The command's entry point (Hydra + run_main, in-process): figures in the working directory and
    nothing else; user errors end the run with one line naming the value (exit status 2)."""
    from nlnet.utils.cli import run_main

    tool = load_tool()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_MAIN_MODULE", "__main__")  # configs are found beside the script's file

    def command(*args: str) -> None:
        monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # run_main sets it to 1; restored after the test
        monkeypatch.setattr(sys, "argv", ["visualize_attention.py", f"checkpoint={tiny_run['checkpoint']}", *args])
        run_main(tool.main)

    missing = tmp_path / "missing.mp4"
    for args, message in (
        ([f"video={missing}"], f"error: video={missing}: no such file"),
        ([f"video={tiny_run['video']}", "block=res2.nonlocal0"],
         "error: unknown non-local block 'res2.nonlocal0'; this model's blocks: res3.nonlocal0, res4.nonlocal0"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            command(*args)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert list(tmp_path.iterdir()) == []  # nothing written

    command(f"video={tiny_run['video']}", "panel_size=40", "num_queries=1")
    printed = capsys.readouterr().out
    assert "block res4.nonlocal0 (spacetime)" in printed and "wrote attention.png" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention.png"]  # no .hydra folder, no logs
