"""Exported networks compute what the eager one computes (every format x every pairwise function),
fall back to the exact reference form where an exporter rejects a fast path, and say so."""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json

import pytest
import torch
from _convert_util import calibrate, fit_statistics

from nlnet.inference import TrainedModel, ViewProtocol
from nlnet.inference import export as E
from nlnet.models import NonLocalBlock, ResNet3d
from nlnet.models.nonlocal_block import PAIRWISE
from nlnet.utils.errors import ConfigError

HAS_ONNXRUNTIME = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime"))
FORMATS = [pytest.param(f, marks=pytest.mark.skipif(f == "onnx" and not HAS_ONNXRUNTIME,
                                                    reason="needs nlnet's [export] extra")) for f in E.FORMATS]
PROTOCOL = ViewProtocol(num_frames=4, sampling_rate=2, short_side=40, crop_size=32, num_clips=2, num_crops=3,
                        mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25))


def randomize(model: ResNet3d) -> ResNet3d:
    """Random BN weights and statistics, and NL convolutions far from their near-zero init (a new NL
    block is the identity; these change the output)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.normal_(1.0, 0.5), m.bias.normal_(0.0, 0.5)
                m.running_mean.normal_(0.0, 0.2), m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, NonLocalBlock):
                for conv in (m.theta, m.phi, m.g, m.w_z, m.concat_project):
                    if conv is not None:
                        conv.weight.normal_(0.0, 0.3)
    return model.eval()


def tiny_model(pairwise: str, *, seed: int = 0, **net: object) -> TrainedModel:
    """A tiny I3D ResNet-18 with one NL block in res3 whose weights and BN statistics are all random
    (a new NL block is the identity; here it changes the output)."""
    torch.manual_seed(seed)
    model = ResNet3d(depth=18, base_width=4, num_classes=3, stem_kernel=(3, 7, 7), stem_stride=(1, 2, 2),
                     pool1_kernel=(1, 3, 3), pool1_stride=(1, 2, 2), nonlocal_blocks=[[], [1], [], []],
                     nonlocal_layer=functools.partial(NonLocalBlock, pairwise=pairwise, impl="auto"), dropout=0.0,
                     **net)
    return TrainedModel(model=randomize(model), class_names=["a", "b", "c"], protocol=PROTOCOL, checkpoint="tiny.pt",
                        iteration=7)


EVERY_PAIRWISE_BLOCKS = ["res3.nonlocal0", "res3.nonlocal1", "res4.nonlocal0", "res4.nonlocal1"]  # PAIRWISE order


def every_pairwise_model() -> TrainedModel:
    """The tiny network with one NL block per pairwise function (``EVERY_PAIRWISE_BLOCKS``, in ``PAIRWISE``
    order; one export then covers all four) and the official fully-convolutional test head (the fc at
    every position of a [T', 1, 1] average pool, softmax per position, mean) on 64x64 crops.

    Weights are random as in ``tiny_model``; the BN statistics are a random clip's and the classifier is
    scaled to logits of standard deviation 1 (tests/_convert_util.py): four stacked random blocks would
    otherwise blow the logits up to thousands (dot product and concatenation are not normalised)."""
    torch.manual_seed(0)
    names = iter(PAIRWISE)
    model = ResNet3d(depth=18, base_width=4, num_classes=3, stem_kernel=(3, 7, 7), stem_stride=(1, 2, 2),
                     pool1_kernel=(1, 3, 3), pool1_stride=(1, 2, 2), nonlocal_blocks=[[], [0, 1], [0, 1], []],
                     nonlocal_layer=lambda channels: NonLocalBlock(channels, pairwise=next(names), impl="auto"),
                     dropout=0.0, head_pool_kernel=[2, 1, 1], fully_conv_test=True)
    protocol = dataclasses.replace(PROTOCOL, short_side=64, crop_size=64)
    clip = torch.randn(2, *protocol.input_shape, generator=torch.Generator().manual_seed(1))
    model = calibrate(fit_statistics(randomize(model), clip), clip)
    return TrainedModel(model=model, class_names=["a", "b", "c"], protocol=protocol, checkpoint="tiny.pt",
                        iteration=7)


def nonlocal_changes(model: ResNet3d, clip: torch.Tensor) -> dict[str, float]:
    """name -> max |output - input| of each NL block during one eager forward of ``clip``."""
    changes: dict[str, float] = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda module, args, out, name=name: changes.__setitem__(name, float((out - args[0]).abs().max())))
        for name in model.nonlocal_names()]
    with torch.no_grad():
        model(clip)
    for handle in handles:
        handle.remove()
    return changes


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_equals_eager_for_every_pairwise_function_and_the_test_head(fmt, tmp_path):
    """One export per format holds all four pairwise functions and the official test head, whose
    eval-mode output is log(mean softmax): softmax(output) is that mean."""
    trained = every_pairwise_model()
    assert [(name, trained.model.get_submodule(name).pairwise) for name in trained.model.nonlocal_names()] == \
        list(zip(EVERY_PAIRWISE_BLOCKS, PAIRWISE))
    clip = torch.randn(2, *trained.protocol.input_shape)
    changes = nonlocal_changes(trained.model, clip)  # no block is the identity of a new block
    assert changes.keys() == set(EVERY_PAIRWISE_BLOCKS) and min(changes.values()) > 1e-2, changes
    with torch.no_grad():
        assert trained.model.features(clip).shape[2:] == (2, 2, 2)  # 4 positions after the [2, 1, 1] pool
        logits = trained.model.head.fc(trained.model.head.pool(trained.model.features(clip)).movedim(1, -1))
        expected = logits.softmax(-1).flatten(1, 3).mean(1)  # (2, K): mean over positions of the softmax
    out = tmp_path / f"model{E.FORMATS[fmt].suffix}"
    report = E.export_model(trained, format=fmt, out=out, dynamic_batch=True, check=True)
    assert report.fell_back == [] and report.check_batches == [1, 3]
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4
    sidecar = json.loads(open(E.sidecar_path(out)).read())
    assert sidecar["nonlocal_blocks"] == [
        {"name": name, "pairwise": pairwise, "scope": "spacetime", "impl": "auto", "fell_back": False}
        for name, pairwise in zip(EVERY_PAIRWISE_BLOCKS, PAIRWISE)]
    assert sidecar["check"] == {"max_abs_diff": report.max_abs_diff, "batch_sizes": [1, 3]}
    with torch.no_grad():
        torch.testing.assert_close(E.load_exported(report.path, fmt)(clip).softmax(1), expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_sidecar_holds_the_input_pipeline(tmp_path):
    trained = tiny_model("dot_product")
    report = E.export_model(trained, format="exported_program", out=tmp_path / "m.pt2", batch_size=6)
    sidecar = json.loads(open(tmp_path / "m.pt2.json").read())
    assert report.sidecar == str(tmp_path / "m.pt2.json") and report.max_abs_diff is None
    assert sidecar["format"] == "exported_program" and sidecar["file"] == "m.pt2"
    assert sidecar["input"]["shape"] == [6, 3, 4, 32, 32] and sidecar["input"]["name"] == "clip"
    assert sidecar["output"]["shape"] == [6, 3]
    assert sidecar["pipeline"] == {**sidecar["pipeline"], "num_frames": 4, "sampling_rate": 2, "short_side": 40,
                                   "crop_size": 32, "num_clips": 2, "num_crops": 3, "mean": [0.45] * 3,
                                   "std": [0.25] * 3}
    assert sidecar["class_names"] == ["a", "b", "c"] and sidecar["iteration"] == 7
    # a fixed batch is fixed: the exported program refuses another one
    run = E.load_exported(tmp_path / "m.pt2", "exported_program")
    clip = torch.randn(6, *PROTOCOL.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(run(clip), trained.model(clip), atol=1e-4, rtol=0)
    with pytest.raises(Exception):
        run(torch.randn(2, *PROTOCOL.input_shape))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNXRUNTIME, reason="needs nlnet's [export] extra")
def test_a_rejected_fast_path_falls_back_to_the_exact_reference_form(tmp_path, monkeypatch):
    """Without nlnet's ONNX form of searchsorted, the exporter rejects the concatenation block's sort
    algorithm: the block is exported in its reference form, the report and the sidecar say so, and
    the output still equals the eager (fast) model's."""
    monkeypatch.setattr(E, "ONNX_TRANSLATIONS", {})
    trained = tiny_model("concatenation")
    out = tmp_path / "concat.onnx"
    report = E.export_model(trained, format="onnx", out=out, batch_size=2, check=True)
    assert report.fell_back == ["res3.nonlocal1"] and "searchsorted" in report.fallback_reason
    assert report.max_abs_diff <= 1e-4 and report.check_batches == [2]
    assert trained.model.res3.nonlocal1.impl == "auto"  # the model itself is unchanged
    sidecar = json.loads(open(E.sidecar_path(out)).read())
    assert sidecar["nonlocal_blocks"][0] | {"impl": "reference", "fell_back": True} == sidecar["nonlocal_blocks"][0]
    assert "searchsorted" in sidecar["fallback_reason"] and sidecar["input"]["shape"][0] == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(format="tflite"), "format=tflite: unknown export format; valid choices: torchscript, onnx, exported_program"),
    (dict(format="onnx", batch_size=0), "batch_size=0: must be a positive integer (or dynamic_batch=true)"),
])
def test_unsupported_requests_are_one_line(kwargs, message, tmp_path):
    with pytest.raises(ConfigError) as error:
        E.export_model(tiny_model("gaussian"), out=tmp_path / "m", **kwargs)
    assert str(error.value) == message
    assert not list(tmp_path.iterdir())


def test_missing_exporter_packages_name_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("onnx") else real(name, *a))
    with pytest.raises(ConfigError, match=r"format=onnx needs the Python packages onnx, onnxscript: "
                                          r"pip install -e '\.\[export\]' in the nlnet folder"):
        E.export_model(tiny_model("gaussian"), format="onnx", out=tmp_path / "m.onnx")
    # TorchScript needs no extra package, its check neither; a name without a file ending gets the format's
    report = E.export_model(tiny_model("gaussian"), format="torchscript", out=tmp_path / "model", check=True)
    assert report.max_abs_diff <= 1e-4 and report.path == str(tmp_path / "model.torchscript.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.torchscript.pt", "model.torchscript.pt.json"]
