"""CPU latency per clip of the exported formats beside eager PyTorch, side by side in one run.

Each case is an nlnet model config (configs/model plus overrides, random weights: latency does not
depend on them) exported with ``nlnet.inference.export`` to TorchScript, ONNX and an ExportedProgram.
One clip (batch 1) per call, float32, no grad. Timed calls of all runtimes are interleaved round by
round, so load from other processes hits every runtime alike; the table gives each runtime's fastest
and median call and the ratio of fastest calls to eager PyTorch's.

    python -m benchmarks.export                                   # tiny demo net + NL C2D R50 8x224
    python -m benchmarks.export --rounds 10 --threads 2 --json export_bench.json
    python -m benchmarks.export --case "nl r50 concat=model=c2d_r50_8x8 model.nonlocal.pairwise=concatenation \\
        model.net.nonlocal_blocks=[[],[1,3],[1,3,5],[]]" --frames 8 --size 224
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .common import CONFIGS, cpu_name, load_average, timed
from .table import fmt, markdown_table

FIVE_NL = "model.net.nonlocal_blocks=[[],[1,3],[1,3,5],[]]"
DEFAULT_CASES = [
    "demo net (32x32)=model=tiny model.net.num_classes=6 model.net.nonlocal_blocks=[[],[1],[],[]] @8x32",
    f"NL C2D R50, 5 blocks (224)=model=c2d_r50_8x8 {FIVE_NL} @8x224",
]


def build(case: str, frames: int, size: int):
    """``"name=overrides[ @TxS]"`` -> (name, TrainedModel with a random-weight model, input T, S)."""
    from nlnet.config import compose_config, instantiate
    from nlnet.inference import TrainedModel, ViewProtocol

    name, _, overrides = case.partition("=")
    overrides, _, shape = overrides.partition(" @")
    if shape:
        frames, size = (int(v) for v in shape.split("x"))
    cfg = compose_config("model_info", overrides.split(), config_dir=CONFIGS)
    model = instantiate(cfg.model.net).eval()
    protocol = ViewProtocol(num_frames=frames, sampling_rate=1, short_side=size, crop_size=size)
    classes = [str(i) for i in range(model.num_classes)]
    return name, TrainedModel(model=model, class_names=classes, protocol=protocol, checkpoint=case)


def bench_case(case: str, args: argparse.Namespace, folder: str) -> dict:
    from nlnet.inference import export as E

    name, trained, = build(case, args.frames, args.size)
    clip = torch.randn(1, *trained.protocol.input_shape)
    runners, export_seconds, diffs = {"eager": trained.model}, {}, {}
    for kind in args.formats:
        start = time.perf_counter()
        out = os.path.join(folder, f"{len(runners)}{E.FORMATS[kind].suffix}")
        report = E.export_model(trained, format=kind, out=out, check=True)
        export_seconds[kind] = time.perf_counter() - start
        diffs[kind] = report.max_abs_diff
        runners[kind] = E.load_exported(report.path, kind, threads=args.threads)
    times: dict[str, list[float]] = {key: [] for key in runners}
    with torch.no_grad():
        for key, run in runners.items():  # warm-up (allocations, lazy initialisation)
            for _ in range(args.warmup):
                run(clip)
        for _ in range(args.rounds):
            for key, run in runners.items():
                times[key].append(timed(lambda: run(clip), "cpu")[0])
    best = {k: min(v) for k, v in times.items()}
    rows = [{"runtime": k, "best_ms": 1e3 * best[k], "median_ms": 1e3 * statistics.median(times[k]),
             "ratio_vs_eager": best[k] / best["eager"], "export_s": export_seconds.get(k),
             "max_abs_diff": diffs.get(k)} for k in runners]
    return {"case": name, "input": list(clip.shape), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", help="name=model overrides[ @TxSIZE] (repeatable)")
    parser.add_argument("--frames", type=int, default=8, help="clip frames when a case gives no @TxSIZE")
    parser.add_argument("--size", type=int, default=224, help="crop size when a case gives no @TxSIZE")
    parser.add_argument("--formats", nargs="+", default=["torchscript", "exported_program", "onnx"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of PyTorch and ONNX Runtime")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, load average {load_average():.1f}; torch {torch.__version__}, "
          f"{args.threads} threads (PyTorch and ONNX Runtime), 1 process; batch 1, float32, {args.rounds} rounds")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for case in args.case or DEFAULT_CASES:
            result = bench_case(case, args, folder)
            results.append(result)
            print(f"\n{result['case']}: input {' x '.join(map(str, result['input']))}")
            rows = [(r["runtime"], f"{r['best_ms']:.1f}", f"{r['median_ms']:.1f}", f"{r['ratio_vs_eager']:.2f}",
                     fmt(r["export_s"], 1), "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}")
                    for r in result["rows"]]
            print("\n".join(markdown_table(["runtime", "best ms", "median ms", "vs eager", "export s", "max diff"],
                                           rows, align="lrrrrr")))
    print(f"\nload average at the end: {load_average():.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "torch": torch.__version__,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
