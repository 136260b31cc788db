"""Backbones: forward + backward throughput and peak memory of nlnet's models beside pytorchvideo's.

From the command line (docs/benchmarks.md, "Backbones"): cases are nlnet model configs
(configs/model, with overrides) plus pytorchvideo's I3D R50 (``pytorchvideo.models.hub.resnet.i3d_r50``,
i.e. ``create_resnet`` with I3D arguments), the model a user would otherwise pick. Timed iterations
of all cases are interleaved round by round, so load from other processes hits every case alike;
clips/s and ratios use each case's fastest round (the least disturbed on a shared machine), with
medians of wall and process CPU time alongside.

    python -m benchmarks.model                                    # CPU: batch 2, 8x224x224, 5 rounds
    python -m benchmarks.model --channels-last --autocast bf16 --compile --json bench.json
    python -m benchmarks.model --case "c2d=model=c2d_r50_8x8" --case "nl1=model=c2d_r50_8x8 \\
        model.net.nonlocal_blocks=[[],[],[4],[]]" --no-pytorchvideo

Peak memory: CUDA max allocated on GPU; on CPU the peak RSS of a fresh subprocess running the
case for two iterations (model, gradients and activations; about 0.3 GB of it is the Python/torch
runtime).

In the GPU check (parts "train" and "pytorchvideo"), every step is
:meth:`nlnet.engine.trainer.Trainer.run_step` as ``tools/train.py`` runs it (autocast, GradScaler,
channels_last, the experiment's SGD and schedule), fed a batch that already sits on the device: the
data loader is measured on its own (part "loader"), so these figures are what the GPU can consume.
Batches start at ``max_batch`` and halve until a step fits in memory. Model FLOPs utilisation (MFU) =
6 x forward multiply-adds per clip x clips/s / peak FLOP/s: the forward is counted by fvcore
(nlnet.utils.flops, one multiply-add = one "FLOP" there), x2 for FLOPs, x3 for forward + backward;
the peak is the device's dense bf16 tensor-core rate (benchmarks.gpu_check.machine), also for fp32
rows (whose convolutions use TF32 when cuDNN allows it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nlnet.config import instantiate
from nlnet import models
from nlnet.data.prologue import BatchPrologue
from nlnet.engine.trainer import Trainer
from nlnet.solver.schedule import build_scheduler
from nlnet.utils.flops import model_cost

from .common import (CONFIGS, autocast, device_of, free_memory, is_out_of_memory, median, peak_memory_gib, peak_rss,
                     pin_threads, reset_peak_memory, threads_line, timed)
from .gpu_check.machine import dense_bf16_peak
from .gpu_check.record import Recorder, Rows, part_deadline
from .table import fmt, markdown_table

ROOT = Path(__file__).resolve().parents[1]
FIVE_NL = "model.net.nonlocal_blocks=[[],[1,3],[1,3,5],[]]"
DEFAULT_CASES = ["nlnet i3d_r50=model=i3d_r50_8x8", f"nlnet i3d_r50 + 5 NL=model=i3d_r50_8x8 {FIVE_NL}"]
PYTORCHVIDEO = "pytorchvideo i3d_r50"
MODE_OPTIONS = ("channels_last", "compile")


# --------------------------------------------------------------------------------- shared by both
def pytorchvideo_i3d_r50(frames: int, size: int, **kwargs: Any) -> nn.Module:
    """pytorchvideo's I3D R50 (8x8 stem), its head pooling the res5 grid of this input (T/2, H/32,
    W/32: its head pools with a fixed kernel); ``kwargs`` go to its ``create_resnet`` (e.g.
    ``stem_dim_out`` for a narrow rehearsal model)."""
    from pytorchvideo.models.hub.resnet import i3d_r50

    model = i3d_r50(pretrained=False, head_pool_kernel_size=(frames // 2, size // 32, size // 32), **kwargs)
    model.num_classes = 400  # its default head, as nlnet's config
    return model


def forward_macs(model: nn.Module, frames: int, size: int, device: torch.device | str = "cpu") -> float:
    """fvcore's forward multiply-adds of one (3, frames, size, size) clip (nlnet/utils/flops.py)."""
    model.to(device)
    return float(model_cost(model, torch.zeros(1, 3, frames, size, size, device=device), parts=[]).total_flops)


# ------------------------------------------------------------------- command line: interleaved cases
def build_case(case: str, frames: int, size: int) -> tuple[str, nn.Module]:
    """``"name=overrides"`` -> an nlnet model from configs/model; PYTORCHVIDEO -> pytorchvideo's I3D R50."""
    if case == PYTORCHVIDEO:
        return case, pytorchvideo_i3d_r50(frames, size)
    from nlnet.config import compose_config, to_container

    name, _, overrides = case.partition("=")
    cfg = compose_config("model_info", overrides.split(), config_dir=CONFIGS)
    return name, models.build_model(to_container(cfg.model.net))


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
        self.precision = {"none": "fp32", "bf16": "bf16", "fp16": "fp16"}[args.autocast]

    def _step(self) -> None:
        with autocast(self.device, self.precision):
            loss = self.forward(self.x).float().logsumexp(1).mean()
        loss.backward()
        self.model.zero_grad(set_to_none=True)

    def step(self) -> tuple[float, float]:
        """One forward+backward; returns its wall time and this process's CPU time in seconds."""
        return timed(self._step, self.device)


def peak_memory_mb(case: str, args: argparse.Namespace, argv: list[str]) -> float:
    """Peak memory of two iterations: CUDA max allocated, or a fresh subprocess's peak RSS on CPU."""
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        reset_peak_memory(args.device)
        runner = Runner(build_case(case, args.frames, args.size)[1], args)
        for _ in range(2):
            runner.step()
        return torch.cuda.max_memory_allocated() / 2**20
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-m", "benchmarks.model", "--measure-rss", case, *argv],
                         capture_output=True, text=True, check=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.threads = pin_threads(args.threads)  # the --measure-rss child gets the same count through argv
    torch.manual_seed(0)

    if args.measure_rss:  # child process of peak_memory_mb: run the case, print peak RSS in MiB
        runner = Runner(build_case(args.measure_rss, args.frames, args.size)[1], args)
        for _ in range(2):
            runner.step()
        print(peak_rss() / 2**20)
        return

    cases = (args.case or DEFAULT_CASES) + ([] if args.no_pytorchvideo else [PYTORCHVIDEO])
    runners, macs = {}, {}
    for case in cases:
        name, model = build_case(case, args.frames, args.size)
        macs[name] = forward_macs(model, args.frames, args.size)
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
        name: peak_memory_mb(case, args, argv) for name, case in zip(runners, cases)}

    # On a shared machine the fastest round is the one least disturbed by other processes: ratios
    # use it; medians are reported alongside.
    best = {name: min(t) for name, t in times.items()}
    base = next(iter(runners))
    rows = []
    for name in runners:
        rows.append(dict(case=name, clips_per_s=args.batch / best[name], best_s=best[name],
                         median_s=statistics.median(times[name]), median_cpu_s=statistics.median(cpu_times[name]),
                         gflops=macs[name] / 1e9, peak_mb=memory.get(name),
                         time_vs_first=best[name] / best[base], flops_vs_first=macs[name] / macs[base]))
    setup = (f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} "
             f"input={args.frames}x{args.size}x{args.size} rounds={args.rounds} channels_last={args.channels_last} "
             f"autocast={args.autocast} compile={args.compile} torch={torch.__version__}")
    print(setup)
    print(threads_line(args.threads, 1))
    header = ["case", "clips/s (best round)", "best s/iter", "median s/iter", "median CPU s/iter",
              "fwd GFLOPs/clip", "peak MiB", "time / first", "FLOPs / first"]
    print("\n".join(markdown_table(header, [
        (r["case"], f"{r['clips_per_s']:.3f}", f"{r['best_s']:.2f}", f"{r['median_s']:.2f}",
         f"{r['median_cpu_s']:.2f}", f"{r['gflops']:.2f}", fmt(r["peak_mb"], 0), f"{r['time_vs_first']:.3f}",
         f"{r['flops_vs_first']:.3f}") for r in rows])))
    if PYTORCHVIDEO in runners:
        for name in runners:
            if name != PYTORCHVIDEO:
                print(f"{name}: {best[PYTORCHVIDEO] / best[name]:.3f}x pytorchvideo i3d_r50 clips/s (best round), "
                      f"{statistics.median(times[PYTORCHVIDEO]) / statistics.median(times[name]):.3f}x (median), "
                      f"{statistics.median(cpu_times[PYTORCHVIDEO]) / statistics.median(cpu_times[name]):.3f}x "
                      f"(median CPU time)")
    if args.json:
        args.json.write_text(json.dumps(dict(setup=setup, rows=rows, times=times, cpu_times=cpu_times), indent=2))


# ------------------------------------------------------------- GPU check: the trainer's train step
def parse_mode(mode: str) -> tuple[str, set[str]]:
    """"bf16+channels_last" -> ("bf16", {"channels_last"}); one-line error naming the valid parts."""
    precision, *options = mode.split("+")
    if precision not in ("fp32", "bf16", "fp16") or not set(options) <= set(MODE_OPTIONS):
        raise ValueError(f"train mode {mode!r}: expected fp32|bf16|fp16 followed by +{'/+'.join(MODE_OPTIONS)}")
    return precision, set(options)


def mfu(fwd_macs_per_clip: float, clips_per_s: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: 6 x forward multiply-adds x clips/s / peak (see module docstring)."""
    return 6.0 * fwd_macs_per_clip * clips_per_s / peak_flops if peak_flops else None


class SyntheticBatches:
    """The same random uint8 batch forever, already on the device (the loader is measured elsewhere);
    the trainer's batch prologue normalises it in every step, as in training."""

    def __init__(self, *, batch: int, frames: int, size: int, num_classes: int, device: torch.device) -> None:
        self.batch = {"video": torch.randint(256, (batch, 3, frames, size, size), dtype=torch.uint8, device=device),
                      "label": torch.randint(num_classes, (batch,), device=device)}

    def __next__(self) -> dict[str, torch.Tensor]:
        return self.batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self


def make_trainer(model: nn.Module, config: dict[str, Any], *, mode: str, batch: int, frames: int, size: int,
                 device: torch.device, compile_backend: str) -> Trainer:
    """A trainer of ``model`` as nlnet.engine.train assembles it, with the experiment's optimiser and schedule."""
    precision, options = parse_mode(mode)
    prologue = BatchPrologue(device=device, channels_last="channels_last" in options)
    prologue.prepare_model(model)
    optimizer = instantiate(config["optim"], model=model, total_batch_size=batch)
    scheduler = build_scheduler(optimizer, schedule=instantiate(config["schedule"]))
    train_module = torch.compile(model, backend=compile_backend) if "compile" in options else model
    data = SyntheticBatches(batch=batch, frames=frames, size=size, num_classes=int(model.num_classes), device=device)
    return Trainer(model=model, optimizer=optimizer, scheduler=scheduler, data=data, max_iter=2 ** 62, device=device,
                   train_module=train_module, precision=precision, prologue=prologue)


def timed_step(trainer: Trainer) -> float:
    """Seconds of one iteration (run_step synchronises the device at its end)."""
    start = time.perf_counter()
    trainer.run_step()
    return time.perf_counter() - start


def fit_batch(make: Callable[[int], list[Trainer]], *, max_batch: int, warmup: int,
              device: torch.device) -> tuple[list[Trainer], int, list[int], float]:
    """Trainers at the largest batch <= ``max_batch`` (halving) whose warm-up steps fit in memory.

    Returns the warmed-up trainers, the batch, the batches that ran out of memory and the seconds
    of the first step (torch.compile's compile time for a compiled module).
    """
    batch, too_large = max_batch, []
    while batch >= 1:
        trainers: list[Trainer] = []
        try:
            trainers = make(batch)
            first = max(timed_step(t) for t in trainers)
            for _ in range(warmup - 1):
                for t in trainers:
                    t.run_step()
            return trainers, batch, too_large, first
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
        trainers = []
        free_memory(device)
        too_large.append(batch)
        batch //= 2
    raise RuntimeError(f"out of memory even at batch 1 (tried {too_large})")


def build_model(config: dict[str, Any], device: torch.device) -> nn.Module:
    with torch.device(device):  # parameters initialised on the device
        return models.build_model(config["net"])


def train_rows(options: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(model, mode) rows: every eager mode of every model first, then the compiled ones."""
    eager = [(m, mode) for m in options["models"] for mode in options["modes"] if "compile" not in mode]
    return eager + [(m, mode) for m in options["models"] for mode in options["modes"] if "compile" in mode]


def measure(config: dict[str, Any], *, mode: str, frames: int, size: int, start_batch: int,
            options: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Batch, first-step seconds, median ms/step, clips/s and peak memory of one (model, mode)."""
    def make(batch: int) -> list[Trainer]:
        return [make_trainer(build_model(config, device), config, mode=mode, batch=batch, frames=frames, size=size,
                             device=device, compile_backend=options["compile_backend"])]

    trainers, batch, too_large, first = fit_batch(make, max_batch=start_batch, warmup=options["warmup"],
                                                  device=device)
    reset_peak_memory(device)  # the steady state: weights, optimiser state, batch, activations
    seconds = median([timed_step(trainers[0]) for _ in range(options["steps"])])
    return {"batch": batch, "oom_batches": too_large, "first_step_s": first, "step_ms": seconds * 1e3,
            "clips_per_s": batch / seconds, "peak_gib": peak_memory_gib(device)}


def run_train(settings: dict[str, Any], recorder: Recorder) -> None:
    """GPU check part "train": clips/s, peak memory and MFU of every (model, mode) the budget allows."""
    device, deadline, options = device_of(settings), part_deadline(settings), settings["train"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak, source = dense_bf16_peak(name, options.get("peak_tflops"))
    recorder.set(peak_tflops=peak / 1e12 if peak else None, peak_source=source, device_name=name,
                 flop_convention="MFU = 6 x fvcore forward multiply-adds per clip x clips/s / dense bf16 peak")
    rows, macs, bf16_batch = Rows(recorder), {}, {}
    for model_options, mode in train_rows(options):
        key, config = model_options["name"] + model_options["clip"], model_options["config"]
        frames, size = int(options["frames"] or config["frames"]), int(options["size"] or config["size"])
        row: dict[str, Any] = {"model": model_options["name"], "clip": model_options["clip"], "mode": mode,
                               "input": f"{frames}x{size}x{size}"}
        need = options["compile_estimate_s"] if "compile" in mode else options["eager_estimate_s"]
        if not deadline.allows(need):
            rows.append({**row, "status": "skipped",
                         "reason": f"part budget: {deadline.remaining():.0f} s left, row needs ~{need} s"})
            continue
        with rows.guard(row):
            if key not in macs:
                macs[key] = forward_macs(build_model(config, device), frames, size, device)
            start = bf16_batch.get(key, options["max_batch"]) if "compile" in mode else options["max_batch"]
            result = measure(config, mode=mode, frames=frames, size=size, start_batch=start, options=options,
                             device=device)
            if mode == "bf16":
                bf16_batch[key] = result["batch"]
            clips = result["clips_per_s"]
            rows.append({**row, "status": "ok", **result, "fwd_gmacs_per_clip": macs[key] / 1e9,
                         "model_tflops": 6 * macs[key] * clips / 1e12, "mfu": mfu(macs[key], clips, peak)})
        free_memory(device)
    rows.check()


def run_pytorchvideo(settings: dict[str, Any], recorder: Recorder) -> None:
    """GPU check part "pytorchvideo": nlnet's I3D R50 8x8 and pytorchvideo's i3d_r50 in one process,
    same trainer, batch and precision, steps interleaved round by round; ratio = pytorchvideo ms / nlnet ms."""
    device, deadline, options = device_of(settings), part_deadline(settings), settings["pytorchvideo"]
    frames, size, config = int(options["frames"]), int(options["size"]), options["config"]
    builders = {"nlnet I3D R50": lambda: build_model(config, device),
                "pytorchvideo i3d_r50": lambda: pytorchvideo_i3d_r50(frames, size, **options["pytorchvideo_kwargs"])}
    rows = Rows(recorder)
    for precision in options["precisions"]:
        if not deadline.allows(5):
            rows.append({"precision": precision, "status": "skipped", "reason": "part budget spent"})
            continue
        with rows.guard({"precision": precision}):
            rows.append({"precision": precision, **side_by_side(builders, config, precision=precision, frames=frames,
                                                                size=size, options=options, device=device)})
        free_memory(device)
    rows.check()


def side_by_side(builders: dict[str, Callable[[], nn.Module]], config: dict[str, Any], *, precision: str,
                 frames: int, size: int, options: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Both models' trainers at a batch both fit, steps interleaved round by round."""
    def make(batch: int) -> list[Trainer]:
        return [make_trainer(build(), config, mode=precision, batch=batch, frames=frames, size=size, device=device,
                             compile_backend="inductor") for build in builders.values()]

    trainers, batch, too_large, _ = fit_batch(make, max_batch=options["max_batch"], warmup=options["warmup"],
                                              device=device)
    times: list[list[float]] = [[] for _ in trainers]
    for _ in range(options["rounds"]):
        for t, trainer in zip(times, trainers):
            t.append(timed_step(trainer))
    cases = {}
    for name, t, trainer in zip(builders, times, trainers):
        base = reset_peak_memory(device)
        trainer.run_step()
        cases[name] = {"step_ms": median(t) * 1e3, "best_ms": min(t) * 1e3, "clips_per_s": batch / median(t),
                       "step_peak_gib": peak_memory_gib(device, base)}
    nl, pv = cases.values()
    return {"status": "ok", "batch": batch, "oom_batches": too_large, "input": f"{frames}x{size}x{size}",
            "cases": cases, "ratio": pv["step_ms"] / nl["step_ms"]}


if __name__ == "__main__":
    main()
