"""Parts "videos" and "loader": can the data loader feed the GPU?

"videos" writes, beside the other parts, Kinetics-like bench videos prepared at short side 256
(10 s, 25 fps, H.264 with one keyframe per second, as ``tools/prepare_kinetics.py`` writes them) and
a small copy of the demo dataset for part "torchrun". "loader" reads the bench videos through the
experiments' training datasets (their data configs, so the decode path, scales and crops are the
trainer's) with ``EndlessLoader`` as the trainer builds it (pinned memory on CUDA), copies every
batch to the device and normalises it with the trainer's batch prologue, and compares its clips/s with the train step's:
a loader slower than the step makes training data-bound by their ratio.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from nlnet.config import instantiate
from nlnet.data.loader import EndlessLoader
from nlnet.data.prologue import BatchPrologue
from nlnet.data.synthetic import make_synthetic_dataset

from ..common import device_of, process_cpu_seconds, synchronize
from .record import Recorder, Rows, part_deadline

BENCH_LIST = "bench_train.txt"  # "relative/path label" lines: the bench videos, repeated


def bench_roots(work: str) -> tuple[Path, Path]:
    """(bench videos, demo dataset) folders inside the check's work folder."""
    return Path(work) / "bench_videos", Path(work) / "demo_videos"


def write_videos(root: str, seed: int, options: dict[str, Any]) -> list[str]:
    """One worker's share of the bench videos (a 1-class synthetic dataset); their relative paths."""
    make_synthetic_dataset(root, num_classes=1, train_per_class=options["per_process"], val_per_class=0,
                           num_frames=options["frames"], size=(options["width"], options["height"]), noise=8.0,
                           gop_size=options["gop_size"], seed=seed)
    return sorted(str(p.relative_to(Path(root).parent)) for p in Path(root, "train").rglob("*.mp4"))


def make_videos(settings: dict[str, Any], recorder: Recorder) -> None:
    """Part "videos": the bench videos (written by several processes) and the small demo dataset."""
    options = settings["videos"]
    bench, demo = bench_roots(settings["work"])
    start = time.perf_counter()
    spec = dict(options["bench"])
    processes = max(1, min(int(spec["processes"] or len(os.sched_getaffinity(0))), int(spec["count"])))
    spec["per_process"] = -(-int(spec["count"]) // processes)
    with ProcessPoolExecutor(processes) as pool:
        parts = pool.map(write_videos, [str(bench / f"part{k}") for k in range(processes)], range(processes),
                         [spec] * processes)
        paths = [p for part in parts for p in part]
    recorder.set(bench_root=str(bench), bench_videos=len(paths), bench_seconds=time.perf_counter() - start,
                 bench_size=f"{spec['width']}x{spec['height']}", bench_frames=spec["frames"],
                 gop_size=spec["gop_size"], bench_paths=paths)
    start = time.perf_counter()
    d = options["demo"]
    make_synthetic_dataset(demo, num_classes=6, train_per_class=d["train_per_class"], val_per_class=d["val_per_class"],
                           num_frames=d["frames"], size=d["size"], noise=4.0)
    recorder.set(demo_root=str(demo), demo_seconds=time.perf_counter() - start)


def default_workers() -> int:
    """DataLoader workers when none are given: every CPU core this process may use but two (the main
    process and the CUDA driver's threads keep one each)."""
    return max(1, len(os.sched_getaffinity(0)) - 2)


def write_bench_list(root: Path, paths: list[str], min_items: int, name: str = BENCH_LIST) -> Path:
    """The bench videos listed (label 0) often enough that no epoch ends inside the timed window:
    an epoch end restarts the loader's workers, which a Kinetics-sized epoch almost never does."""
    repeats = max(1, -(-min_items // max(len(paths), 1)))
    listing = root / name
    listing.write_text("".join(f"{p} 0\n" for _ in range(repeats) for p in paths))
    return listing


def loader_clips_per_s(dataset: Any, *, batch: int, workers: int, seconds: float,
                       device: torch.device) -> dict[str, Any]:
    """Clips/s of the trainer's loader in steady state, each batch copied to the device; the CPU
    seconds per clip of its processes (main and workers) and the decoders its workers used.

    Every worker builds whole batches, so batches arrive in waves of ``workers``: the first wave
    (start-up) is not timed, and the timed window ends on a whole wave once ``seconds`` have passed.
    """
    loader = EndlessLoader(dataset=dataset, batch_size=batch, num_workers=workers, seed=0,
                           pin_memory=device.type == "cuda")
    prologue = BatchPrologue.for_dataset(dataset, device=device)
    wave = max(1, workers)
    try:
        start = time.perf_counter()
        for _ in range(wave):
            next(loader)
        first = time.perf_counter() - start
        pids = [w.pid for w in getattr(loader._iterator, "_workers", [])]
        cpu0, main0 = process_cpu_seconds(pids), time.process_time()
        clips, batches, start = 0, 0, time.perf_counter()
        while batches % wave or time.perf_counter() - start < seconds:
            video = prologue.video(next(loader))  # as Trainer.run_step
            clips, batches = clips + video.shape[0], batches + 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        cpu1, main1 = process_cpu_seconds(pids), time.process_time()
    finally:
        loader.close()
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0 + main1 - main0
    return {"clips_per_s": clips / elapsed, "clips": clips, "seconds": elapsed, "first_wave_s": first,
            "cpu_s_per_clip": None if cpu is None else cpu / clips, "decoders": dict(loader.decoders),
            "clip_shape": list(video.shape[1:]), "dtype": str(video.dtype)}


def verdict(loader_clips_per_s: float, step_clips_per_s: float) -> dict[str, Any]:
    """"data-bound" when the loader delivers fewer clips/s than the step consumes, else "GPU-bound";
    the factor is the larger rate over the smaller."""
    bound = "data-bound" if loader_clips_per_s < step_clips_per_s else "GPU-bound"
    hi, lo = max(loader_clips_per_s, step_clips_per_s), min(loader_clips_per_s, step_clips_per_s)
    return {"verdict": bound, "factor": hi / lo if lo > 0 else float("inf")}


def fastest_step(train: dict[str, Any] | None, model: str, clip: str) -> dict[str, Any] | None:
    """The fastest measured train-step row of ``model`` at ``clip`` (any mode), or None."""
    rows = [r for r in (train or {}).get("rows", []) if r.get("status") == "ok" and r["model"] == model
            and r["clip"] == clip]
    return max(rows, key=lambda r: r["clips_per_s"]) if rows else None


def run(settings: dict[str, Any], recorder: Recorder) -> None:
    """Part "loader": per clip geometry, loader clips/s with the configured workers, and the verdict."""
    device, deadline, options = device_of(settings), part_deadline(settings), settings["loader"]
    videos = settings["results"]["videos"]
    listing = write_bench_list(Path(videos["bench_root"]), videos["bench_paths"], int(options["min_items"]))
    workers = int(options["workers"] if options["workers"] is not None else default_workers())
    recorder.set(workers=workers, videos=videos["bench_videos"], listing=str(listing),
                 cpus=os.cpu_count())
    rows = Rows(recorder)
    for clip in options["clips"]:
        row: dict[str, Any] = {"clip": clip["clip"], "model": clip["model"]}
        if not deadline.allows(options["seconds"] + 5):
            rows.append({**row, "status": "skipped", "reason": "part budget spent"})
            continue
        with rows.guard(row):
            step = fastest_step(settings["results"].get("train"), clip["model"], clip["clip"])
            batch = int(step["batch"]) if step else int(options["default_batch"])
            dataset = instantiate(clip["config"]["data_train"], annotations=str(listing))
            measured = loader_clips_per_s(dataset, batch=batch, workers=workers,
                                          seconds=float(options["seconds"]), device=device)
            row.update(status="ok", batch=batch, **measured)
            if step:
                row.update(step_mode=step["mode"], step_clips_per_s=step["clips_per_s"],
                           **verdict(measured["clips_per_s"], step["clips_per_s"]))
            rows.append(row)
    rows.check()
