"""Parameter and FLOP counts per module, in the convention of PySlowFast and pytorchvideo.

FLOPs are counted by fvcore's ``FlopCountAnalysis`` with the model in eval mode, one multiply-add =
one FLOP: convolutions, linear layers, matmul/bmm/einsum and (eval-mode) BatchNorm; element-wise
ops, additions and poolings are not counted. This reproduces fvcore's count of pytorchvideo's own
``c2d_r50`` / ``i3d_r50`` exactly (the published model-zoo figures were counted with an older fvcore
and are about 1% higher; see docs/models.md).

fvcore has no rule for ``aten::scaled_dot_product_attention`` (the non-local block's fast softmax
path); :data:`EXTRA_HANDLES` counts it as the two matrix products it computes, (Q Kᵀ) and (A V),
which is what the materialised (reference) form costs as well. Other fast paths are counted as the ops they run: the
dot-product block's cheaper association, the concatenation block's projections (its sort / prefix sums are not
multiply-adds). ``model_cost(..., nonlocal_impl="reference")`` counts the materialised form.
``aten::matmul`` gets a rule for every operand rank (fvcore's rejects 1-D operands).
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
import torch.nn as nn


def _shape(value: Any) -> list[int]:
    return value.type().sizes()


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """FLOPs of ``scaled_dot_product_attention(q, k, v)``: (..., N, C) x (..., N', C) and
    (..., N, N') x (..., N', Cv)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = prod(q[:-2])
    n, c = q[-2], q[-1]
    n_keys, c_v = k[-2], v[-1]
    return batch * n * n_keys * (c + c_v)


def matmul_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """FLOPs of ``matmul(a, b)`` for any ranks (1-D and broadcast batches too): output elements x K.

    (fvcore's own rule rejects 1-D operands and drops the batch of a (O, I) x (B, I, N) product.)
    """
    k = _shape(inputs[0])[-1]
    return prod(_shape(outputs[0])) * k


# matmul of any rank, and the NL block's fused softmax attention (SDPA)
EXTRA_HANDLES = {
    "aten::matmul": matmul_flop_jit,
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
}


@dataclass
class CostReport:
    """Parameters and FLOPs of a model at one input.

    Attributes:
        params: parameters per top-level part (e.g. stem, res2..res5, head) and per NL block name.
        flops: FLOPs per the same names (multiply-adds).
        total_params: all parameters.
        total_flops: all FLOPs.
        nonlocal_params: parameters of the non-local blocks together.
        nonlocal_flops: FLOPs of the non-local blocks together.
        unsupported: ops fvcore did not count, with how often they occur.
    """

    params: dict[str, int]
    flops: dict[str, int]
    total_params: int
    total_flops: int
    nonlocal_params: int
    nonlocal_flops: int
    unsupported: dict[str, int]


def _set_nonlocal_impl(model: nn.Module, names: Iterable[str], impl: str) -> nn.Module:
    """A copy of ``model`` whose NL blocks run ``impl`` (e.g. "reference": the paper's materialised form)."""
    model = copy.deepcopy(model)
    for name in names:
        block: Any = model.get_submodule(name)  # a module of any class with an ``impl`` attribute
        if not hasattr(block, "impl"):
            raise ValueError(f"non-local block {name} has no 'impl' attribute to set to {impl!r}")
        block.impl = impl
    return model


@torch.no_grad()
def model_cost(model: nn.Module, inputs: torch.Tensor, *, parts: Iterable[str],
               nonlocal_names: Iterable[str] = (), nonlocal_impl: str | None = None) -> CostReport:
    """Count parameters and FLOPs of ``model(inputs)`` per part (eval mode, fvcore convention).

    Args:
        model: the network (left unchanged; counted in eval mode).
        inputs: one input batch, e.g. (1, 3, 8, 256, 256).
        parts: names of the modules to report separately (their totals sum to the model's).
        nonlocal_names: names of the non-local blocks (their share is reported too).
        nonlocal_impl: count the NL blocks as this ``impl`` (e.g. "reference") instead of as configured.
    """
    with warnings.catch_warnings():  # fvcore imports torch.jit.script, deprecated in torch 2.14
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    nonlocal_names = list(nonlocal_names)
    if nonlocal_impl is not None and nonlocal_names:
        model = _set_nonlocal_impl(model, nonlocal_names, nonlocal_impl)
    was_training = model.training
    model.eval()
    try:
        analysis = FlopCountAnalysis(model, inputs).set_op_handle(**EXTRA_HANDLES)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        by_module = analysis.by_module()
        unsupported = dict(analysis.unsupported_ops())
        total_flops = int(analysis.total())
    finally:
        model.train(was_training)
    names = [*parts, *nonlocal_names]
    params = {name: sum(p.numel() for p in model.get_submodule(name).parameters()) for name in names}
    flops = {name: int(by_module.get(name, 0)) for name in names}
    return CostReport(params=params, flops=flops,
                      total_params=sum(p.numel() for p in model.parameters()), total_flops=total_flops,
                      nonlocal_params=sum(params[n] for n in nonlocal_names),
                      nonlocal_flops=sum(flops[n] for n in nonlocal_names), unsupported=unsupported)


def format_cost(report: CostReport, *, title: str) -> str:
    """A plain-text table of ``report``; the last line is ``total: params=<int> gflops=<float>``."""
    lines = [title, f"{'part':<18}{'params':>14}{'GFLOPs':>12}"]
    nonlocal_names = [n for n in report.params if "nonlocal" in n]
    for name in report.params:
        indent = "  " if name in nonlocal_names else ""
        lines.append(f"{indent + name:<18}{report.params[name]:>14,}{report.flops[name] / 1e9:>12.3f}")
    if nonlocal_names:
        share_p = 100 * report.nonlocal_params / max(report.total_params, 1)
        share_f = 100 * report.nonlocal_flops / max(report.total_flops, 1)
        lines.append(f"non-local blocks ({len(nonlocal_names)}): params={report.nonlocal_params:,} "
                     f"({share_p:.1f}%) gflops={report.nonlocal_flops / 1e9:.3f} ({share_f:.1f}%)")
    else:
        lines.append("non-local blocks (0): params=0 (0.0%) gflops=0.000 (0.0%)")
    lines.append(f"total: params={report.total_params} gflops={report.total_flops / 1e9:.3f}")
    return "\n".join(lines)
