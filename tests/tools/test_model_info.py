"""tools/model_info.py and the model config group: every model config composes and builds, the
reference parameter counts, FLOPs against an independent count, and the printed report."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from helpers import compose
from nlnet.config import counted_clip, instantiate
from nlnet.paper.tables import model_info
from nlnet.models import NonLocalBlock, ResNet3d
from nlnet.utils.flops import model_cost

ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))
FIVE = "model.net.nonlocal_blocks=[[],[1,3],[1,3,5],[]]"


def compose_cfg(*overrides: str):
    return compose("model_info", list(overrides))


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_model_group_has_the_contract_files():
    assert {"c2d_r50", "i3d_r50", "c2d_r101", "i3d_r101", "tiny"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_config_builds(name):
    cfg = compose_cfg(f"model={name}", "model.net.base_width=2", FIVE if name != "tiny" else
                      "model.net.nonlocal_blocks=[[],[1],[1],[]]")
    assert set(cfg.model) == {"nonlocal", "net", "pretrained", "init_checkpoint"}
    assert cfg.model.pretrained is None and cfg.model.init_checkpoint is None
    model = instantiate(cfg.model.net)
    assert isinstance(model, ResNet3d) and len(model.nonlocal_names()) in (2, 5)
    assert model.get_submodule(model.nonlocal_names()[0]).pairwise == cfg.model["nonlocal"].pairwise


@pytest.mark.parametrize("overrides, expected", [
    (["model=c2d_r50"], "24.33"),
    (["model=i3d_r50"], "28.04"),
    (["model=i3d_r50", FIVE], "35.4"),
    (["model=i3d_r50", FIVE, "model.nonlocal.pairwise=dot_product"], "35.4"),
    (["model=i3d_r50", FIVE, "model.nonlocal.pairwise=gaussian"], "31.7"),
])
def test_reference_parameter_counts(overrides, expected):
    with torch.device("meta"):  # shapes only
        model = instantiate(compose_cfg(*overrides).model.net)
    digits = len(expected.split(".")[1])
    assert f"{params(model) / 1e6:.{digits}f}" == expected


def test_i3d_r101_pattern():
    model = instantiate(compose_cfg("model=i3d_r101", "model.net.base_width=2").model.net)
    res4 = [model.get_submodule(f"res4.block{i}").conv1.kernel_size[0] for i in range(23)]
    assert res4 == [3 if i % 2 == 0 else 1 for i in range(23)]
    assert model.stem.conv.kernel_size == (5, 7, 7)


def conv_linear_bn_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Independent count with forward hooks: conv and linear multiply-adds, eval BN 2 per element."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv3d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, nn.BatchNorm3d):
            total += 2 * output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return total


def test_flops_match_an_independent_count():
    model = instantiate(compose_cfg("model=tiny").model.net)
    x = torch.zeros(1, 3, 4, 32, 32)
    report = model_cost(model, x, parts=["stem", *model.stage_names, "head"])
    assert report.total_flops == conv_linear_bn_flops(model, x)
    assert sum(report.flops.values()) == report.total_flops
    assert sum(report.params.values()) == report.total_params == params(model)


def test_nonlocal_flops_counted_for_the_fast_path():
    cfg = compose_cfg("model=tiny", "model.net.nonlocal_blocks=[[],[1],[],[]]")
    model = instantiate(cfg.model.net)
    x = torch.zeros(1, 3, 4, 64, 64)
    report = model_cost(model, x, parts=["stem", *model.stage_names, "head"], nonlocal_names=model.nonlocal_names())
    # Embedded Gaussian through scaled_dot_product_attention. res3 of tiny (8x8 stem) at 4x64x64:
    # T=2 after pool2, 8x8; C = 32, C' = 16; keys pooled 1x2x2.
    n, n_keys, c, c_inter = 2 * 8 * 8, 2 * 4 * 4, 32, 16
    expected = (n * c * c_inter + 2 * n_keys * c * c_inter  # theta on x; phi, g on the pooled x
                + 2 * n * n_keys * c_inter  # theta^T phi and (attention) g
                + n * c_inter * c + 2 * n * c)  # w_z, eval BN
    assert report.flops["res3.nonlocal1"] == report.nonlocal_flops == expected


@pytest.mark.parametrize("pairwise", ["gaussian", "embedded_gaussian", "dot_product", "concatenation"])
def test_nonlocal_flops_as_run_and_reference(pairwise):
    shape, c = (2, 32, 2, 8, 8), 32
    b, n, n_keys, c_inter = 2, 2 * 8 * 8, 2 * 4 * 4, 16
    cost = {impl: model_cost(NonLocalBlock(c, pairwise=pairwise, impl=impl, pool_before=True), torch.zeros(shape),
                             parts=[]).total_flops for impl in ("auto", "reference")}
    width = c if pairwise == "gaussian" else c_inter  # the gaussian compares x_i with x_j directly
    embed = (n + n_keys) * c * c_inter * (pairwise != "gaussian") + n_keys * c * c_inter  # theta, phi; g
    pairwise_flops = {"concatenation": 2 * c_inter * n * n_keys}.get(pairwise, n * n_keys * width)
    reference = b * (embed + pairwise_flops + n * n_keys * c_inter + n * c_inter * c + 2 * n * c)
    assert cost["reference"] == reference
    if pairwise in ("gaussian", "embedded_gaussian"):  # fused attention (SDPA) or the plain form: the same products
        assert cost["auto"] == reference
    elif pairwise == "concatenation":  # projections a, b instead of w_f over every pair
        assert cost["auto"] == reference - b * (3 * c_inter * n * n_keys - (n + n_keys) * c_inter)
    else:  # theta (phi^T g) where cheaper: (N + N') C'^2 instead of 2 N N' C'
        assert cost["auto"] == reference - b * (2 * n * n_keys * c_inter - (n + n_keys) * c_inter ** 2)


def test_model_info_report():
    cfg = compose_cfg("model=tiny", "input.frames=4", "input.size=64", "model.net.nonlocal_blocks=[[],[1],[],[]]")
    assert counted_clip(cfg) == (4, 64)
    text = model_info(instantiate(cfg.model.net), frames=4, size=64)
    lines = text.splitlines()
    model = instantiate(cfg.model.net)
    match = re.fullmatch(r"total: params=(\d+) gflops=(\d+\.\d+)", lines[-1])
    assert match and int(match.group(1)) == params(model)
    x = torch.zeros(1, 3, 4, 64, 64)
    assert float(match.group(2)) == pytest.approx(conv_linear_bn_flops(model, x) / 1e9, abs=1e-3)
    assert any(line.startswith("res4") for line in lines) and any("res3.nonlocal1" in line for line in lines)
    assert any(line.startswith("non-local blocks (1): params=") for line in lines)
    assert "1x3x4x64x64" in lines[0]


@pytest.mark.slow
def test_model_info_script_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "model_info.py"), "model=tiny", "input.frames=4", "input.size=32",
         f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"total: params=\d+ gflops=\d+\.\d+", result.stdout.strip().splitlines()[-1])


def test_counted_clip_defaults_to_the_test_view():
    cfg = compose_cfg("model=tiny")
    assert counted_clip(cfg) == (cfg.data.num_frames, cfg.data.val.test_crop_size or cfg.data.train.crop_size)


@pytest.mark.slow
def test_model_info_errors_are_one_line(tmp_path):
    """Through nlnet.utils.cli like every tool: an unknown option or a bad model argument is one line."""
    for override, expected in (("model=no_such_model", "model"), ("model.net.depth=7", "model.net.depth")):
        result = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "model_info.py"), override, f"hydra.run.dir={tmp_path}"],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert expected in result.stderr
