"""Parts "train" and "pytorchvideo": training iterations of nlnet's trainer on the paper's models.

Every step is :meth:`nlnet.engine.trainer.Trainer.run_step` as ``tools/train.py`` runs it (autocast,
GradScaler, channels_last, the experiment's SGD and schedule), fed a batch that already sits on the
device: the data loader is measured on its own (part "loader"), so these figures are what the GPU
can consume. Batches start at ``max_batch`` and halve until a step fits in memory.

Model FLOPs utilisation (MFU) = 6 x forward multiply-adds per clip x clips/s / peak FLOP/s: the
forward is counted by fvcore (nlnet.utils.flops, one multiply-add = one "FLOP" there), x2 for
FLOPs, x3 for forward + backward; the peak is the device's dense bf16 tensor-core rate
(nlnet.bench.machine), also for fp32 rows (whose convolutions use TF32 when cuDNN allows it).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn as nn

from nlnet.config import instantiate
from nlnet.data.prologue import BatchPrologue
from nlnet.solver.schedule import build_scheduler
from nlnet.engine.trainer import Trainer
from nlnet.utils.flops import model_cost

from .common import device_of, free_memory, is_out_of_memory, median, peak_memory_gib, reset_peak_memory
from .machine import dense_bf16_peak
from .record import Recorder, Rows, part_deadline

MODE_OPTIONS = ("channels_last", "compile")


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
    """A trainer of ``model`` as launch.train assembles it, with the experiment's optimiser and schedule."""
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


def count_forward_macs(model: nn.Module, frames: int, size: int, device: torch.device) -> float:
    """fvcore's forward multiply-adds of one (3, frames, size, size) clip."""
    model.to(device)
    return float(model_cost(model, torch.zeros(1, 3, frames, size, size, device=device), parts=[]).total_flops)


def build_model(config: dict[str, Any], device: torch.device) -> nn.Module:
    with torch.device(device):  # parameters initialised on the device
        return instantiate(config["net"])


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
    """Part "train": clips/s, peak memory and MFU of every (model, mode) the budget allows."""
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
                macs[key] = count_forward_macs(build_model(config, device), frames, size, device)
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


def pytorchvideo_i3d_r50(frames: int, size: int, **kwargs: Any) -> nn.Module:
    """pytorchvideo's I3D R50 (8x8 stem), its head pooling the res5 grid of this input; ``kwargs``
    go to its ``create_resnet`` (e.g. ``stem_dim_out`` for a narrow rehearsal model)."""
    from pytorchvideo.models.hub.resnet import i3d_r50

    model = i3d_r50(pretrained=False, head_pool_kernel_size=(frames // 2, size // 32, size // 32), **kwargs)
    model.num_classes = 400  # its default head, as nlnet's config
    return model


def run_pytorchvideo(settings: dict[str, Any], recorder: Recorder) -> None:
    """Part "pytorchvideo": nlnet's I3D R50 8x8 and pytorchvideo's i3d_r50 in one process, same trainer,
    batch and precision, steps interleaved round by round; ratio = pytorchvideo ms / nlnet ms."""
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
