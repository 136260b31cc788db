"""predict and export on a converted published model: pytorchvideo's I3D R50 (random weights, the
published architecture at a narrow width) through tools/convert_checkpoint.py."""
from __future__ import annotations

import subprocess

import pytest
import torch

from helpers import PYTHON, ROOT, tool_env
from nlnet.inference import Predictor, load_trained_model
from nlnet.inference.export import export_model
from tiny_trained import UP, motion_video

pytestmark = pytest.mark.slow  # runs the converter as a subprocess


def test_predict_and_export_a_converted_pytorchvideo_i3d(tmp_path):
    from pytorchvideo.models.hub.resnet import i3d_r50

    torch.manual_seed(0)
    source = i3d_r50(pretrained=False, stem_dim_out=4)  # the published I3D R50 8x8 at 1/16 of its width
    src = tmp_path / "I3D_8x8_R50.pyth"  # the PySlowFast model-zoo name: the file name gives the clip
    torch.save({"model_state": source.state_dict()}, src)
    out = tmp_path / "i3d_r50_8x8.pt"
    proc = subprocess.run([PYTHON, str(ROOT / "tools" / "convert_checkpoint.py"), "--from", "pytorchvideo", str(src),
                           str(out)], env=tool_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    trained = load_trained_model(out, views={"num_clips": 2, "num_crops": 1})
    assert len(trained.class_names) == 400 and trained.protocol.num_frames == 8
    video = motion_video(str(tmp_path / "up.mp4"), [UP] * 3, seed=5)
    result, = Predictor.from_trained(trained, batch_size=2).predict([video])
    assert result.num_views == 2 and result.scores.shape == (400,)
    assert result.scores.sum() == pytest.approx(1.0, abs=1e-5)

    report = export_model(trained, format="onnx", out=tmp_path / "i3d.onnx", dynamic_batch=True, check=True)
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4 and report.check_batches == [1, 3]
