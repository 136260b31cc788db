"""Forward+backward throughput (clips/s) and peak memory of backbones, side by side in one run.

Cases are nlnet model configs (configs/model, with overrides) plus pytorchvideo's I3D R50
(`pytorchvideo.models.hub.resnet.i3d_r50`, i.e. `create_resnet` with I3D arguments), the model a
user would otherwise pick. Timed iterations of all cases are interleaved round by round, so load
from other processes hits every case alike; clips/s and ratios use each case's fastest round (the
least disturbed on a shared machine), with medians of wall and process CPU time alongside.

    python tools/bench_model.py                                   # CPU: batch 2, 8x224x224, 5 rounds
    python tools/bench_model.py --channels-last --autocast bf16 --compile --json bench.json
    python tools/bench_model.py --case "c2d=model=c2d_r50_8x8" --case "nl1=model=c2d_r50_8x8 \\
        model.net.nonlocal_blocks=[[],[],[4],[]]" --no-pytorchvideo

Peak memory: CUDA max allocated on GPU; on CPU the peak RSS of a fresh subprocess running the
case for two iterations (model, gradients and activations; about 0.3 GB of it is the Python/torch
runtime).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from nlnet.utils.cli import pin_threads, threads_line

FIVE_NL = "model.net.nonlocal_blocks=[[],[1,3],[1,3,5],[]]"
DEFAULT_CASES = ["nlnet i3d_r50=model=i3d_r50_8x8", f"nlnet i3d_r50 + 5 NL=model=i3d_r50_8x8 {FIVE_NL}"]
PYTORCHVIDEO = "pytorchvideo i3d_r50"


def build(case: str, frames: int, size: int) -> tuple[str, nn.Module]:
    """``"name=overrides"`` -> an nlnet model from configs/model; PYTORCHVIDEO -> pytorchvideo's I3D R50."""
    if case == PYTORCHVIDEO:
        from pytorchvideo.models.hub.resnet import i3d_r50
        # Its head pools with a fixed kernel: the res5 grid of this input (8x8 stem: T/2, H/32, W/32).
        return case, i3d_r50(pretrained=False, head_pool_kernel_size=(frames // 2, size // 32, size // 32))
    from nlnet.config import compose_config, instantiate

    name, _, overrides = case.partition("=")
    cfg = compose_config("model_info", overrides.split())
    return name, instantiate(cfg.model.net)


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Forward FLOPs of one clip (fvcore convention, see nlnet/utils/flops.py)."""
    from nlnet.utils.flops import model_cost
    return model_cost(model, x[:1], parts=[]).total_flops


class Runner:
    """One case ready to run: model, input, optimiser-free backward, options applied."""

    def __init__(self, model: nn.Module, args: argparse.Namespace) -> None:
        self.device = torch.device(args.device)
        self.model = model.to(self.device).train()
        self.x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=self.device)
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
            self.x = self.x.contiguous(memory_format=torch.channels_last_3d)
        self.forward = torch.compile(self.model) if args.compile else self.model
        self.dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.autocast]

    def step(self) -> tuple[float, float]:
        """One forward+backward; returns its wall time and this process's CPU time in seconds."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.forward(self.x).float().logsumexp(1).mean()
        loss.backward()
        self.model.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu_start


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it does not inherit the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(case: str, args: argparse.Namespace) -> float:
    """Peak memory of two iterations: CUDA max allocated, or a fresh subprocess's peak RSS on CPU."""
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        runner = Runner(build(case, args.frames, args.size)[1], args)
        for _ in range(2):
            runner.step()
        return torch.cuda.max_memory_allocated() / 2**20
    argv = [sys.executable, __file__, "--measure-rss", case, *sys.argv[1:]]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help="NAME=MODEL_OVERRIDES (repeatable); default: "
                        "nlnet I3D R50 8x8 with and without 5 NL blocks")
    parser.add_argument("--no-pytorchvideo", action="store_true", help="skip pytorchvideo's I3D R50")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="timed iterations per case (interleaved)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: one per available CPU core)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last_3d weights and input")
    parser.add_argument("--autocast", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--measure-rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.threads = pin_threads(args.threads)  # the --measure-rss child gets the same count through sys.argv
    torch.manual_seed(0)

    if args.measure_rss:  # child process of peak_memory_mb: run the case, print peak RSS in MiB
        runner = Runner(build(args.measure_rss, args.frames, args.size)[1], args)
        for _ in range(2):
            runner.step()
        print(peak_rss_mb())
        return

    cases = (args.case or DEFAULT_CASES) + ([] if args.no_pytorchvideo else [PYTORCHVIDEO])
    runners, flops = {}, {}
    for case in cases:
        name, model = build(case, args.frames, args.size)
        flops[name] = forward_flops(model, torch.zeros(1, 3, args.frames, args.size, args.size))
        runners[name] = Runner(model, args)
    for runner in runners.values():
        for _ in range(args.warmup):
            runner.step()
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu_times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(args.rounds):
        for name, runner in runners.items():
            wall, cpu = runner.step()
            times[name].append(wall)
            cpu_times[name].append(cpu)
            print(f"round {i}: {name} {wall:.2f} s (cpu {cpu:.2f} s)", file=sys.stderr, flush=True)
    memory = {} if args.no_memory else {
        name: peak_memory_mb(case, args) for name, case in zip(runners, cases)}

    # On a shared machine the fastest round is the one least disturbed by other processes: ratios
    # use it; medians are reported alongside.
    best = {name: min(t) for name, t in times.items()}
    base = next(iter(runners))
    rows = []
    for name in runners:
        rows.append(dict(case=name, clips_per_s=args.batch / best[name], best_s=best[name],
                         median_s=statistics.median(times[name]), median_cpu_s=statistics.median(cpu_times[name]),
                         gflops=flops[name] / 1e9, peak_mb=memory.get(name),
                         time_vs_first=best[name] / best[base], flops_vs_first=flops[name] / flops[base]))
    setup = (f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} "
             f"input={args.frames}x{args.size}x{args.size} rounds={args.rounds} channels_last={args.channels_last} "
             f"autocast={args.autocast} compile={args.compile} torch={torch.__version__}")
    print(setup)
    print(threads_line(args.threads, 1))
    print("| case | clips/s (best round) | best s/iter | median s/iter | median CPU s/iter | fwd GFLOPs/clip "
          "| peak MiB | time / first | FLOPs / first |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "-"
        print(f"| {r['case']} | {r['clips_per_s']:.3f} | {r['best_s']:.2f} | {r['median_s']:.2f} | "
              f"{r['median_cpu_s']:.2f} | {r['gflops']:.2f} | {peak} | {r['time_vs_first']:.3f} | "
              f"{r['flops_vs_first']:.3f} |")
    if PYTORCHVIDEO in runners:
        for name in runners:
            if name != PYTORCHVIDEO:
                print(f"{name}: {best[PYTORCHVIDEO] / best[name]:.3f}x pytorchvideo i3d_r50 clips/s (best round), "
                      f"{statistics.median(times[PYTORCHVIDEO]) / statistics.median(times[name]):.3f}x (median), "
                      f"{statistics.median(cpu_times[PYTORCHVIDEO]) / statistics.median(cpu_times[name]):.3f}x "
                      f"(median CPU time)")
    if args.json:
        args.json.write_text(json.dumps(dict(setup=setup, rows=rows, times=times, cpu_times=cpu_times), indent=2))


if __name__ == "__main__":
    main()
