"""tools/visualize_attention.py end to end (``nlnet.viz.visualize``, and the command itself): a tiny
checkpoint in the trainer's format and a tiny video."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CONFIGS, PYTHON, tool_env
from nlnet.config import compose_config, instantiate, to_container
from nlnet.data.synthetic import write_video
from nlnet.checkpoint.files import atomic_save
from nlnet.viz.visualize import visualize
from nlnet.viz.drawing import TITLE_PIXELS

ROOT = Path(__file__).resolve().parents[2]
TOOL = str(ROOT / "tools" / "visualize_attention.py")
CLASSES = ["up", "down", "still"]


def compose(*overrides: str):
    return compose_config("visualize", overrides, config_dir=CONFIGS)


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
    tmp = tiny_run["tmp"]
    out, gif, mp4 = tmp / "out" / "a.png", tmp / "out" / "a.gif", tmp / "out" / "a.mp4"
    cfg = compose(f"checkpoint={tiny_run['checkpoint']}", f"video={tiny_run['video']}", "block=res3.nonlocal0",
                  "queries=[[3,20,30],[7,60,5]]", "top_k=3", "panel_size=64", f"out={out}", f"gif={gif}",
                  f"mp4={mp4}")
    paths = visualize(cfg)
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
    out = tiny_run["tmp"] / "default.png"
    cfg = compose(f"checkpoint={tiny_run['checkpoint']}", f"video={tiny_run['video']}", "num_queries=2",
                  "panel_size=48", f"out={out}")
    visualize(cfg)
    with Image.open(out) as image:
        assert image.size == (4 * 48, 2 * 48 + TITLE_PIXELS)  # last block res4.nonlocal0: 4x4x4 queries, 2 strongest


def test_tool_errors(tiny_run, tmp_path):
    ckpt, video = tiny_run["checkpoint"], tiny_run["video"]
    with pytest.raises(ValueError, match=r"unknown non-local block 'res5.nonlocal2'.*res3.nonlocal0, res4.nonlocal0"):
        visualize(compose(f"checkpoint={ckpt}", f"video={video}", "block=res5.nonlocal2", f"out={tmp_path}/a.png"))
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match=f"video={missing}: no such file"):
        visualize(compose(f"checkpoint={ckpt}", f"video={missing}", f"out={tmp_path}/a.png"))
    with pytest.raises(FileNotFoundError, match="checkpoint: file not found: .*none.pt"):
        visualize(compose(f"checkpoint={tmp_path}/none.pt", f"video={video}", f"out={tmp_path}/a.png"))
    with pytest.raises(ValueError, match=r"y=99 is outside the clip"):
        visualize(compose(f"checkpoint={ckpt}", f"video={video}", "queries=[[0,99,3]]", f"out={tmp_path}/a.png"))
    assert not list(tmp_path.glob("*.png"))


def test_stored_config_of_an_older_version_never_inflates(tiny_run, tmp_path):
    """A checkpoint whose stored config still has model.net.pretrained (an older version) pointing to
    a 2D file that is gone, and no pool_ceil_mode / scale_gaussian keys: visualize rebuilds the
    network as it was trained (ceil pooling) from the checkpoint's weights alone."""
    state = torch.load(tiny_run["checkpoint"], weights_only=True)
    model_cfg = state["config"]["model"]
    model_cfg.pop("pretrained")
    model_cfg["net"]["pretrained"] = str(tmp_path / "gone" / "resnet18.pth")
    for node in (model_cfg["nonlocal"], model_cfg["net"]["nonlocal_layer"]):
        node.pop("pool_ceil_mode"), node.pop("scale_gaussian")
    old = tmp_path / "old.pt"
    atomic_save(state, str(old))
    out = tmp_path / "old.png"
    visualize(compose(f"checkpoint={old}", f"video={tiny_run['video']}", "num_queries=1", "panel_size=40",
                      f"out={out}", "block=res3.nonlocal0"))
    assert out.is_file()


@pytest.mark.slow
def test_tool_entry_point(tiny_run, tmp_path):
    """The command: figures in the working directory and nothing else; a user error ends the run
    with one line naming the value (exit status 2)."""
    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, TOOL, f"checkpoint={tiny_run['checkpoint']}", *args], cwd=tmp_path,
                              env=tool_env(), capture_output=True, text=True, timeout=300)

    missing = tmp_path / "missing.mp4"
    for args, message in (
        ([f"video={missing}"], f"error: video={missing}: no such file"),
        ([f"video={tiny_run['video']}", "block=res2.nonlocal0"],
         "error: unknown non-local block 'res2.nonlocal0'; this model's blocks: res3.nonlocal0, res4.nonlocal0"),
    ):
        failed = command(*args)
        assert failed.returncode == 2
        assert failed.stderr.strip().splitlines()[-1] == message
    assert list(tmp_path.iterdir()) == []  # nothing written

    done = command(f"video={tiny_run['video']}", "panel_size=40", "num_queries=1")
    assert done.returncode == 0, done.stderr
    assert "block res4.nonlocal0 (spacetime)" in done.stdout and "wrote attention.png" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attention.png"]  # no .hydra folder, no logs
