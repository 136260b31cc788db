"""Part "nonlocal": one NonLocalBlock, ``impl="auto"`` vs ``impl="reference"``, for the four pairwise
functions (Eq. 2-5) at the res3 / res4 inputs of an I3D R50 for 32- and 128-frame clips, in fp32 and
under bf16 autocast: forward+backward time, peak memory and agreement.

Time and memory are those of the block of the CPU table in docs/benchmarks.md (BN gamma set to 1
as in a trained block). Agreement is measured on the residual branch ``z - x`` (Eq. 1 and W_z) of a
copy with PyTorch's default conv init and no BN after w_z, as tests/gpu does: BN would re-normalise a
branch whose spread over positions is small and amplify rounding many times. It is the relative error
``||a - b|| / ||b||`` of auto against reference in the same precision, and of each against the copy
computed in float64 (by the auto impl, whose exactness the CPU suite checks against the paper's loop).
A case that does not fit in memory (the concatenation reference materialises (2C', N, N')) is
recorded as ``oom``; the others go on.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch

from nlnet.models import NonLocalBlock
from nlnet.models.nonlocal_block import IMPLS, PAIRWISE

from .common import (autocast, device_of, free_memory, is_out_of_memory, median, peak_memory_gib,
                     relative_error, reset_peak_memory, synchronize)
from .record import Recorder, Rows, part_deadline


def make_block(channels: int, pairwise: str, device: torch.device) -> NonLocalBlock:
    """The block of the CPU table in docs/benchmarks.md (the paper's: 1x2x2 max-pool after phi and g,
    no logit scaling), BN gamma = 1."""
    torch.manual_seed(0)
    block = NonLocalBlock(channels, pairwise=pairwise).to(device).train()
    torch.nn.init.ones_(block.norm.weight)
    return block


def agreement_block(block: NonLocalBlock) -> NonLocalBlock:
    """A well-conditioned copy for agreement: default conv init, no BN after w_z (module docstring)."""
    probe = copy.deepcopy(block)
    probe.norm = None
    for conv in probe.modules():
        if isinstance(conv, torch.nn.modules.conv._ConvNd):
            conv.reset_parameters()
    return probe


def residual(block: NonLocalBlock, x: torch.Tensor, device: torch.device, precision: str) -> torch.Tensor:
    """The residual branch ``z - x`` in float32 (forward only)."""
    with torch.no_grad(), autocast(device, precision):
        z = block(x)
    return (z.float() - x.float()).detach()


def time_forward_backward(block: NonLocalBlock, x: torch.Tensor, device: torch.device, precision: str, *,
                          warmup: int, repeats: int) -> tuple[float, float | None]:
    """(median seconds of forward + backward of ``z.sum()``, peak GiB above the setup)."""
    x = x.detach().requires_grad_(True)

    def step() -> None:
        with autocast(device, precision):
            out = block(x)
        out.float().sum().backward()
        x.grad = None
        block.zero_grad(set_to_none=True)

    base = reset_peak_memory(device)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return median(times), peak_memory_gib(device, base)


def float64_truth(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor | None:
    """The residual branch computed in float64 by the auto impl (None if it does not fit)."""
    exact = copy.deepcopy(block).double()
    exact.impl = "auto"
    return output_or_none(exact, x.double(), "fp32")


def output_or_none(block: NonLocalBlock, x: torch.Tensor, precision: str) -> torch.Tensor | None:
    """:func:`residual`, or None when it does not fit in memory."""
    try:
        return residual(block, x, x.device, precision)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
    free_memory(x.device)  # outside the handler: the traceback no longer holds the failed step's tensors
    return None


def measure_case(block: NonLocalBlock, x: torch.Tensor, device: torch.device, precision: str,
                 options: dict[str, Any]) -> dict[str, Any]:
    """Time and memory of the block's current impl; ``status`` "oom" when it does not fit."""
    try:
        seconds, peak = time_forward_backward(block, x, device, precision, warmup=int(options["warmup"]),
                                              repeats=int(options["repeats"]))
        return {"status": "ok", "ms": seconds * 1e3, "peak_gib": peak}
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
    free_memory(device)
    return {"status": "oom"}


def compare(block: NonLocalBlock, probe: NonLocalBlock, x: torch.Tensor, truth: torch.Tensor | None,
            device: torch.device, precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """One row: both impls timed (``block``), their outputs (``probe``) compared with each other and
    with the float64 truth."""
    row: dict[str, Any] = {"precision": precision}
    outputs = {}
    for impl in IMPLS:
        block.impl = probe.impl = impl
        case = row[impl] = measure_case(block, x, device, precision, options)
        outputs[impl] = output_or_none(probe, x, precision) if case["status"] == "ok" else None
        if outputs[impl] is not None and truth is not None:
            case["rel_err_vs_fp64"] = relative_error(outputs[impl], truth)
    if outputs["auto"] is not None and outputs["reference"] is not None:
        row["rel_err_auto_vs_reference"] = relative_error(outputs["auto"], outputs["reference"])
    if row["auto"]["status"] == row["reference"]["status"] == "ok":
        row["speedup"] = row["reference"]["ms"] / row["auto"]["ms"]
    row["status"] = row["auto"]["status"]  # "ok", or "oom" when even the fast path does not fit
    return row


def run(settings: dict[str, Any], recorder: Recorder) -> None:
    """Every (shape, pairwise, precision) row; rows the budget leaves no time for are recorded as skipped."""
    device, deadline, options = device_of(settings), part_deadline(settings), settings["nonlocal"]
    recorder.set(sdpa_backends={name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
                                for name in ("flash", "mem_efficient", "math")} if device.type == "cuda" else None)
    rows = Rows(recorder)
    for shape in options["shapes"]:
        torch.manual_seed(1)
        x = torch.randn(*shape, device=device)
        for pairwise in PAIRWISE:
            base = {"shape": shape, "pairwise": pairwise}
            if not deadline.allows(2):
                rows.append({**base, "status": "skipped", "reason": "part budget spent"})
                continue
            with rows.guard(base):
                block = make_block(shape[1], pairwise, device)
                probe = agreement_block(block)
                truth = float64_truth(probe, x)
                for precision in options["precisions"]:
                    rows.append({**base, **compare(block, probe, x, truth, device, precision, options)})
            block = probe = truth = None
            free_memory(device)
    rows.check()
