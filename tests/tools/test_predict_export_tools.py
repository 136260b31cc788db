"""tools/predict.py and tools/export.py end to end on a trained checkpoint (subprocesses)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import PYTHON, ROOT, tool_env
from nlnet.data.decoding import VideoReader
from nlnet.data.synthetic import SYNTHETIC_CLASSES
from nlnet.checkpoint.files import atomic_save
from nlnet.inference.commands import run_export, run_predict
from nlnet.utils.errors import ConfigError
from tiny_trained import DOWN, UP, motion_video, trained_checkpoint  # noqa: F401  (fixture)


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "tools" / tool), *args], env=tool_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_predict_a_folder_with_timeline_annotation_and_json(trained_checkpoint, tmp_path):
    videos = tmp_path / "videos"
    (videos / "b").mkdir(parents=True)
    motion_video(str(videos / "up.mp4"), [UP] * 3, seed=31)
    motion_video(str(videos / "b" / "down.mp4"), [DOWN] * 3, seed=32)
    (videos / "truncated.mp4").write_bytes((videos / "up.mp4").read_bytes()[:300])
    out, preds = tmp_path / "labelled", tmp_path / "preds.json"
    proc = run_tool("predict.py", f"checkpoint={trained_checkpoint}", f"video={videos}", "window=0.32", "top_k=1",
                    f"out={out}", "out_min_size=64", f"json={preds}", "batch_size=3", "device=cpu")
    assert proc.returncode == 0, proc.stderr
    assert f"error: cannot read {videos / 'truncated.mp4'}: VideoDecodeError" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "2 of 3 videos labelled, 1 unreadable" in proc.stdout
    data = json.loads(preds.read_text())
    assert [v["path"] for v in data["videos"]] == [str(videos / "b" / "down.mp4"), str(videos / "up.mp4")]
    assert [v["top_k"][0]["class"] for v in data["videos"]] == [SYNTHETIC_CLASSES[DOWN], SYNTHETIC_CLASSES[UP]]
    assert all(len(v["timeline"]) == 3 and len(v["top_k"]) == 1 for v in data["videos"])
    assert [f["path"] for f in data["failed"]] == [str(videos / "truncated.mp4")]
    assert data["protocol"]["num_frames"] == 4 and data["window"] == data["stride"] == 0.32
    for name in ("up.mp4", "b/down.mp4"):
        with VideoReader(out / name) as reader:
            assert reader.count_frames() == 24 and (reader.info.width, reader.info.height) == (64, 64)
        assert f"annotated video: {out / name} (24 frames)" in proc.stdout


def test_predict_exits_1_when_no_video_could_be_read(trained_checkpoint, tmp_path, capsys):
    (tmp_path / "a.mp4").write_bytes(b"nothing")
    assert run_predict(checkpoint=trained_checkpoint, video=str(tmp_path / "a.mp4"), device="cpu") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot read {tmp_path / 'a.mp4'}: VideoDecodeError") and len(err.splitlines()) == 1


@pytest.mark.parametrize("args, message", [  # the tools print these on one line (nlnet.utils.cli)
    (["video=x.mp4"], "error: checkpoint is not set: pass checkpoint=VALUE on the command line"),
    (["checkpoint=x.pt", "video=x.mp4", "views.clips=2"], "error: unknown config key 'views.clips'"),
])
@pytest.mark.slow
def test_bad_command_lines_are_one_line(args, message):
    proc = run_tool("predict.py", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(message) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("command, kwargs, message", [
    (run_export, dict(format="tflite"), "format=tflite: unknown export format; valid choices: torchscript, onnx, "
                                        "exported_program"),
    (run_predict, dict(video="VIDEO", stride=1.0), "stride=1.0 needs window=SECONDS"),
    (run_predict, dict(video="VIDEO", top_k=0), "top_k=0: must be a positive integer"),
    (run_predict, dict(video="FOLDER", out="x.mp4"), "so out must be a folder (one .mp4 per video)"),
])
def test_bad_requests_fail_before_any_work(command, kwargs, message, trained_checkpoint, tmp_path):
    video = motion_video(str(tmp_path / "v.mp4"), [UP], seed=1)
    kwargs = {k: {"VIDEO": video, "FOLDER": str(tmp_path)}.get(v, v) for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        command(checkpoint=trained_checkpoint, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


@pytest.mark.slow
def test_export_checks_and_writes_the_sidecar(trained_checkpoint, tmp_path):
    out = tmp_path / "demo.pt2"
    proc = run_tool("export.py", f"checkpoint={trained_checkpoint}", "format=exported_program", f"out={out}",
                    "dynamic_batch=true", "check=true")
    assert proc.returncode == 0, proc.stderr
    assert f"exported exported_program: {out} (input batch x 3 x 4 x 32 x 32)" in proc.stdout
    assert "check: max |exported - eager| = " in proc.stdout and "within tolerance 0.0001" in proc.stdout
    sidecar = json.loads(Path(f"{out}.json").read_text())
    assert sidecar["class_names"] == torch.load(trained_checkpoint, weights_only=True)["class_names"]
    assert sidecar["check"]["max_abs_diff"] <= 1e-4


def test_export_of_a_checkpoint_without_model_config_is_refused(trained_checkpoint, tmp_path):
    state = torch.load(trained_checkpoint, weights_only=True)
    del state["config"]["model"]
    path = tmp_path / "weights_only.pt"
    atomic_save(state, str(path))  # with the payload checksum of the changed content
    with pytest.raises(ConfigError) as error:
        run_export(checkpoint=str(path), format="onnx")
    assert str(error.value) == (f"checkpoint={path}: its stored config has no model.net node (a _target_ to build "
                                "the network), so it cannot be rebuilt; use a checkpoint written by train.py "
                                "or nlnet's checkpoint conversion")
