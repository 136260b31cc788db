"""Benchmark the non-local block: ``impl="auto"`` vs ``impl="reference"`` for every pairwise function.

Forward + backward of one :class:`nlnet.models.NonLocalBlock` (sub-sampling on, the block's other
defaults) at the res3 / res4 shapes of an I3D R50 for 32- and 128-frame clips. Each case runs in a
fresh process, which reports the median time over ``--repeats`` runs (after ``--warmup`` runs) and its
peak memory: on CPU the peak RSS of that process above its RSS once the block and input are built
("extra"), on GPU ``torch.cuda.max_memory_allocated`` above the allocation at that point. A case whose
estimated memory exceeds ``--mem-limit-gb`` is not run; the table gives the estimate.

    python tools/bench_nonlocal.py                                 # the four I3D R50 shapes, all pairwise
    python tools/bench_nonlocal.py --quick --repeats 1             # tiny shapes (smoke test)
    python tools/bench_nonlocal.py --shapes 2,512,4,28,28 --pairwise dot_product --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from nlnet.models import NonLocalBlock
from nlnet.models.nonlocal_block import IMPLS, PAIRWISE
from nlnet.utils.cli import pin_threads, threads_line
from nlnet.utils.io import atomic_path

I3D_R50_SHAPES = ["2,512,4,28,28", "2,1024,4,14,14", "2,512,16,28,28", "2,1024,16,14,14"]  # res3/res4, 32/128 frames
QUICK_SHAPES = ["2,16,4,8,8", "2,32,2,6,6"]
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
GB = 1024 ** 3


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
    torch.manual_seed(0)
    device, dtype = torch.device(case["device"]), DTYPES[case["dtype"]]
    shape = tuple(case["shape"])
    block = NonLocalBlock(shape[1], pairwise=case["pairwise"], impl=case["impl"], pool_before=case["pool_before"])
    block = block.to(device=device, dtype=dtype).train()
    torch.nn.init.ones_(block.norm.weight)  # a trained-looking block: gradients reach every parameter
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    cuda = device.type == "cuda"

    def step() -> None:
        block(x).sum().backward()
        x.grad = None
        block.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = current_rss()
    for _ in range(case.get("warmup", 1)):
        step()
    times = []
    for _ in range(case["repeats"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else peak_rss()
    return {"median_s": statistics.median(times), "times_s": times,
            "peak_extra_bytes": peak - base, "peak_bytes": peak}


def current_rss() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """Peak resident set size of this process (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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
    lines = ["| input (B, C, T, H, W) | pairwise | auto fwd+bwd (s) | reference fwd+bwd (s) | speed-up "
             "| auto memory (MB) | reference memory (MB) | memory ratio (ref / auto) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    by_key = {(tuple(r["shape"]), r["pairwise"], r["impl"]): r for r in results}
    for shape, pairwise in dict.fromkeys((tuple(r["shape"]), r["pairwise"]) for r in results):
        auto, ref = by_key.get((shape, pairwise, "auto")), by_key.get((shape, pairwise, "reference"))

        def time_of(r):
            return f"{r['median_s']:.3f}" if r and r["status"] == "ok" else cell_reason(r)

        def mem_of(r):
            return f"{r['peak_extra_bytes'] / 2**20:.0f}" if r and r["status"] == "ok" else cell_reason(r)

        ok = bool(auto and ref and auto["status"] == ref["status"] == "ok")
        speed = f"{ref['median_s'] / auto['median_s']:.2f}x" if ok else "-"
        ratio = f"{ref['peak_extra_bytes'] / max(auto['peak_extra_bytes'], 1):.2f}" if ok else "-"
        lines.append(f"| {', '.join(map(str, shape))} | {pairwise} | {time_of(auto)} | {time_of(ref)} | {speed} "
                     f"| {mem_of(auto)} | {mem_of(ref)} | {ratio} |")
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
                print(f"[bench_nonlocal] {shape} {pairwise} {impl}: {done}", file=sys.stderr, flush=True)
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


if __name__ == "__main__":
    sys.exit(main())
