"""The non-local block: ``impl="auto"`` vs ``impl="reference"`` for every pairwise function (Eq. 2-5).

Forward + backward of one :class:`nlnet.models.NonLocalBlock` (sub-sampling on: the paper's 1x2x2
max-pool after phi and g, no logit scaling; BN gamma set to 1 as in a trained block, so gradients reach
every parameter) at the res3 / res4 inputs of an I3D R50 for 32- and 128-frame clips.

From the command line (docs/benchmarks.md, "Non-local block") each case runs in a fresh process,
which reports the median time over ``--repeats`` runs (after ``--warmup`` runs) and its peak memory:
on CPU the peak RSS of that process above its RSS once the block and input are built ("extra"), on
GPU ``torch.cuda.max_memory_allocated`` above the allocation at that point. A case whose estimated
memory exceeds ``--mem-limit-gb`` is not run; the table gives the estimate.

    python -m benchmarks.nonlocal_block                            # the four I3D R50 shapes, all pairwise
    python -m benchmarks.nonlocal_block --quick --repeats 1        # tiny shapes (smoke test)
    python -m benchmarks.nonlocal_block --shapes 2,512,4,28,28 --pairwise dot_product --json out.json

In the GPU check (part "nonlocal", :func:`run`) both impls run in one process, in fp32 and under bf16
autocast, and their agreement is measured too: on the residual branch ``z - x`` (Eq. 1 and W_z) of a
copy with PyTorch's default conv init and no BN after w_z, as tests/gpu does (BN would re-normalise a
branch whose spread over positions is small and amplify rounding many times). It is the relative error
``||a - b|| / ||b||`` of auto against reference in the same precision, and of each against the copy
computed in float64 (by the auto impl, whose exactness the CPU suite checks against the paper's loop).
A case that does not fit in memory (the concatenation reference materialises (2C', N, N')) is
recorded as ``oom``; the others go on.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from nlnet.models import NonLocalBlock
from nlnet.models.nonlocal_block import IMPLS, PAIRWISE
from nlnet.utils.io import atomic_path

from .common import (GIB, autocast, device_of, free_memory, is_out_of_memory, median, peak_memory, pin_threads,
                     relative_error, reset_peak_memory, threads_line, timed)
from .gpu_check.record import Recorder, Rows, part_deadline
from .table import markdown_table

I3D_R50_SHAPES = ["2,512,4,28,28", "2,1024,4,14,14", "2,512,16,28,28", "2,1024,16,14,14"]  # res3/res4, 32/128 frames
QUICK_SHAPES = ["2,16,4,8,8", "2,32,2,6,6"]
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
GB = 1024 ** 3


# ------------------------------------------------------------------------ the block and its timing
def make_block(channels: int, pairwise: str, device: torch.device | str, *, impl: str = "auto",
               pool_before: bool = False, dtype: torch.dtype = torch.float32) -> NonLocalBlock:
    """The benchmarked block (the paper's: 1x2x2 max-pool after phi and g, no logit scaling), BN gamma = 1."""
    torch.manual_seed(0)
    block = NonLocalBlock(channels, pairwise=pairwise, impl=impl, pool_before=pool_before)
    block = block.to(device=device, dtype=dtype).train()
    torch.nn.init.ones_(block.norm.weight)
    return block


def time_forward_backward(block: NonLocalBlock, x: torch.Tensor, precision: str, *, warmup: int,
                          repeats: int) -> dict[str, Any]:
    """Forward + backward of ``z.sum()``, ``repeats`` timed runs after ``warmup``: the times, their
    median and the peak memory (common.peak_memory) above what was held before the first run."""
    device = x.device
    x = x.detach().requires_grad_(True)

    def step() -> None:
        with autocast(device, precision):
            out = block(x)
        (out.sum() if out.dtype == x.dtype else out.float().sum()).backward()
        x.grad = None
        block.zero_grad(set_to_none=True)

    base = reset_peak_memory(device)
    for _ in range(warmup):
        step()
    times = [timed(step, device)[0] for _ in range(repeats)]
    peak = peak_memory(device)
    return {"median_s": median(times), "times_s": times, "peak_extra_bytes": peak - base, "peak_bytes": peak}


# ------------------------------------------------------------------- command line: case by process
def parse_shape(text: str) -> tuple[int, ...]:
    """'2,512,4,28,28' -> (2, 512, 4, 28, 28); a (B, C, T, H, W) input."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 5 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"--shapes takes B,C,T,H,W with positive ints, e.g. 2,512,4,28,28; got {text!r}")
    return shape


def estimate_bytes(shape: tuple[int, ...], pairwise: str, impl: str, element_size: int,
                   pool: tuple[int, int, int] = (1, 2, 2)) -> int:
    """Rough peak memory of one forward + backward (an upper-side estimate, for skipping cases).

    Both impls hold O(B C N) activations; the reference also holds about four (B, N, N') matrices
    (pairwise weights, their softmax / scaled copy and gradients) and, for concatenation, the
    (B, 2C', N, N') concatenated features about three times over (measured: 3.7 GB at res4 32 frames).
    """
    b, c, t, h, w = shape
    n = t * h * w
    n_keys = math.ceil(t / pool[0]) * math.ceil(h / pool[1]) * math.ceil(w / pool[2])
    elements = 16 * b * c * n
    if impl == "reference":
        elements += 4 * b * n * n_keys
        if pairwise == "concatenation":
            elements += 3 * b * n * n_keys * c  # 2C' = C channels: kept for backward, its gradient, a copy
    return elements * element_size


def measure(case: dict[str, Any]) -> dict[str, Any]:
    """Time and peak memory of forward + backward for one case, in this process (a worker)."""
    torch.set_num_threads(case["threads"])
    shape = tuple(case["shape"])
    dtype = DTYPES[case["dtype"]]
    block = make_block(shape[1], case["pairwise"], case["device"], impl=case["impl"], pool_before=case["pool_before"],
                       dtype=dtype)
    x = torch.randn(shape, device=case["device"], dtype=dtype)
    return time_forward_backward(block, x, "fp32", warmup=case.get("warmup", 1), repeats=case["repeats"])


def run_case(case: dict[str, Any], mem_limit_gb: float) -> dict[str, Any]:
    """One case in a fresh process, or skipped with its estimated memory.

    Processes are forked from a server that has imported torch once (multiprocessing's
    "forkserver"), one per case (``max_tasks_per_child=1``), so every case starts from the same
    clean memory state without paying for a torch import.
    """
    element_size = torch.empty((), dtype=DTYPES[case["dtype"]]).element_size()
    need = estimate_bytes(tuple(case["shape"]), case["pairwise"], case["impl"], element_size)
    result = dict(case, estimate_bytes=need)
    if need > mem_limit_gb * GB:
        return dict(result, status="skipped", reason=f"needs ~{format_bytes(need)} > --mem-limit-gb {mem_limit_gb:g}")
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["torch", "nlnet.models"])
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
            measured = pool.submit(measure, case).result()
    except Exception as error:  # a crashed or killed worker (e.g. out of memory) fails only its case
        return dict(result, status="failed", reason=f"{type(error).__name__}: {error}")
    return dict(result, status="ok", **measured)


def format_table(results: list[dict[str, Any]], device: str) -> str:
    """Markdown: one row per (shape, pairwise), auto vs reference side by side."""
    unit = "GPU max allocated" if device.startswith("cuda") else "peak RSS above setup"
    by_key = {(tuple(r["shape"]), r["pairwise"], r["impl"]): r for r in results}
    rows = []
    for shape, pairwise in dict.fromkeys((tuple(r["shape"]), r["pairwise"]) for r in results):
        auto, ref = by_key.get((shape, pairwise, "auto")), by_key.get((shape, pairwise, "reference"))

        def time_of(r: dict[str, Any] | None) -> str:
            return f"{r['median_s']:.3f}" if r and r["status"] == "ok" else cell_reason(r)

        def mem_of(r: dict[str, Any] | None) -> str:
            return f"{r['peak_extra_bytes'] / 2**20:.0f}" if r and r["status"] == "ok" else cell_reason(r)

        ok = bool(auto and ref and auto["status"] == ref["status"] == "ok")
        speed = f"{ref['median_s'] / auto['median_s']:.2f}x" if ok else "-"
        ratio = f"{ref['peak_extra_bytes'] / max(auto['peak_extra_bytes'], 1):.2f}" if ok else "-"
        rows.append((", ".join(map(str, shape)), pairwise, time_of(auto), time_of(ref), speed, mem_of(auto),
                     mem_of(ref), ratio))
    header = ["input (B, C, T, H, W)", "pairwise", "auto fwd+bwd (s)", "reference fwd+bwd (s)", "speed-up",
              "auto memory (MB)", "reference memory (MB)", "memory ratio (ref / auto)"]
    lines = markdown_table(header, rows, align="llrrrrrr")
    lines.append(f"\ntime: median forward+backward; memory: {unit}; a case not run gives its estimated need.")
    return "\n".join(lines)


def format_bytes(n: float) -> str:
    """1.3 GB, 420 MB, 36 kB."""
    for unit, size in (("GB", GB), ("MB", 2 ** 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{n / 1024:.0f} kB"


def cell_reason(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if r["status"] == "skipped":
        return f"not run (needs ~{format_bytes(r['estimate_bytes'])})"
    return f"failed: {r['reason']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nonlocal_block", description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", type=parse_shape, default=None,
                        help="inputs B,C,T,H,W (default: the four I3D R50 res3/res4 shapes)")
    parser.add_argument("--pairwise", nargs="+", choices=PAIRWISE, default=list(PAIRWISE))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (their median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--pool-before", action="store_true", help="pool the block input before phi and g")
    parser.add_argument("--mem-limit-gb", type=float, default=16.0, help="skip cases estimated to need more")
    parser.add_argument("--quick", action="store_true", help=f"tiny shapes {QUICK_SHAPES} (smoke test)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per available CPU core)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    threads = pin_threads(args.threads)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    shapes = args.shapes or [parse_shape(s) for s in (QUICK_SHAPES if args.quick else I3D_R50_SHAPES)]
    results = []
    for shape in shapes:
        for pairwise in args.pairwise:
            for impl in IMPLS:
                case = {"shape": list(shape), "pairwise": pairwise, "impl": impl, "device": args.device,
                        "dtype": args.dtype, "repeats": args.repeats, "warmup": args.warmup,
                        "pool_before": args.pool_before, "threads": threads}
                results.append(run_case(case, args.mem_limit_gb))
                r = results[-1]
                done = f"{r['median_s']:.3f} s" if r["status"] == "ok" else r["reason"]
                print(f"[nonlocal_block] {shape} {pairwise} {impl}: {done}", file=sys.stderr, flush=True)
    machine = (f"{torch.cuda.get_device_name()}" if args.device.startswith("cuda")
               else f"{os.cpu_count()}-core CPU, {torch.get_num_threads()} threads")
    print(f"non-local block, forward+backward, {args.dtype}, {machine}, torch {torch.__version__}, "
          f"median of {args.repeats} runs after {args.warmup} warm-up, sub_sample=True, "
          f"pool_before={args.pool_before}\n")
    print(threads_line(threads, 1) + " (each case in its own process, one at a time)\n")
    print(format_table(results, args.device))
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:
            json.dump({"device": args.device, "machine": machine, "torch": torch.__version__,
                       "dtype": args.dtype, "repeats": args.repeats, "threads": threads, "results": results},
                      f, indent=1)
    failed = [r for r in results if r["status"] == "failed"]
    return 1 if failed else 0


# ------------------------------------------------------------- GPU check: both impls in one process
def agreement_block(block: NonLocalBlock) -> NonLocalBlock:
    """A well-conditioned copy for agreement: default conv init, no BN after w_z (module docstring)."""
    probe = copy.deepcopy(block)
    probe.norm = None
    for conv in probe.modules():
        if isinstance(conv, torch.nn.modules.conv._ConvNd):
            conv.reset_parameters()
    return probe


def residual(block: NonLocalBlock, x: torch.Tensor, precision: str) -> torch.Tensor:
    """The residual branch ``z - x`` in float32 (forward only)."""
    with torch.no_grad(), autocast(x.device, precision):
        z = block(x)
    return (z.float() - x.float()).detach()


def output_or_none(block: NonLocalBlock, x: torch.Tensor, precision: str) -> torch.Tensor | None:
    """:func:`residual`, or None when it does not fit in memory."""
    try:
        return residual(block, x, precision)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
    free_memory(x.device)  # outside the handler: the traceback no longer holds the failed step's tensors
    return None


def float64_truth(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor | None:
    """The residual branch computed in float64 by the auto impl (None if it does not fit)."""
    exact = copy.deepcopy(block).double()
    exact.impl = "auto"
    return output_or_none(exact, x.double(), "fp32")


def measure_case(block: NonLocalBlock, x: torch.Tensor, precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """Time and memory of the block's current impl; ``status`` "oom" when it does not fit."""
    try:
        measured = time_forward_backward(block, x, precision, warmup=int(options["warmup"]),
                                         repeats=int(options["repeats"]))
        peak = measured["peak_extra_bytes"] / GIB if x.device.type == "cuda" else None
        return {"status": "ok", "ms": measured["median_s"] * 1e3, "peak_gib": peak}
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
    free_memory(x.device)
    return {"status": "oom"}


def compare(block: NonLocalBlock, probe: NonLocalBlock, x: torch.Tensor, truth: torch.Tensor | None,
            precision: str, options: dict[str, Any]) -> dict[str, Any]:
    """One row: both impls timed (``block``), their outputs (``probe``) compared with each other and
    with the float64 truth."""
    row: dict[str, Any] = {"precision": precision}
    outputs = {}
    for impl in IMPLS:
        block.impl = probe.impl = impl
        case = row[impl] = measure_case(block, x, precision, options)
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
    """GPU check part "nonlocal": every (shape, pairwise, precision) row; rows the budget leaves no
    time for are recorded as skipped."""
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
                    rows.append({**base, **compare(block, probe, x, truth, precision, options)})
            block = probe = truth = None
            free_memory(device)
    rows.check()


if __name__ == "__main__":
    sys.exit(main())
