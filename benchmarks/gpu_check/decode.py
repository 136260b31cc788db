"""Part "decode": can NVDEC and device-side colour conversion feed the GPU?

On the bench videos of part "videos" (H.264 written as ``tools/prepare_kinetics.py`` writes them:
short side 256, one keyframe a second), it measures the training loader (``VideoDataset`` in train
mode through ``EndlessLoader``, each batch through the trainer's ``BatchPrologue``, as part "loader"
does) with ``data.decode_device`` cpu and cuda, ``data.color_convert`` worker and device, with 1 and
with all workers: clips/s, CPU seconds per clip (the loader's processes: main and workers), and part
"loader"'s verdict (GPU-bound or data-bound against the train step's clips/s, when part "train"
measured it); and, in one process without a loader, the CPU ms per item of ``color_convert`` worker
and device. It also says whether ``libnvcuvid`` was found, which decoder the workers actually used,
and whether NVDEC's planes equal FFmpeg's software planes on every frame of a video (H.264 decoding
is exact). Without part "videos" it writes its own videos (``settings["decode"]["videos"]``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.codec.hwaccel import HWAccel

from nlnet.data import VideoDataset
from nlnet.data.hwdecode import nvcuvid_library
from nlnet.data.yuv import frame_planes, yuv_to_rgb

from ..common import device_of
from .loader import write_videos, default_workers, fastest_step, loader_clips_per_s, verdict, write_bench_list
from .record import Recorder, Rows, part_deadline

__all__ = ["ALL", "ROWS", "compare_planes", "item_cpu_ms", "run"]

ALL = "all"  # workers: the "loader" part's default (every CPU core but two)
# (decode_device, color_convert, workers) of each measured row, the baseline first.
ROWS = [("cpu", "worker", 1), ("cuda", "worker", 1), ("cpu", "worker", ALL), ("cuda", "worker", ALL),
        ("cuda", "device", ALL), ("cpu", "device", ALL)]
STEP = ("NL I3D R50", "32x2")  # the train-step row the verdict compares with (the clip measured here)


def compare_planes(path: str | os.PathLike, device: str = "cuda") -> dict[str, Any]:
    """Every frame of ``path`` decoded by FFmpeg's software decoder and by ``device``'s hwaccel: whether
    their YUV 4:2:0 planes are identical (``nlnet.data.yuv.frame_planes``)."""
    planes = {}
    for name, hwaccel in (("software", None), (device, HWAccel(device, allow_software_fallback=False))):
        with av.open(str(path), hwaccel=hwaccel) as container:
            stream = container.streams.video[0]
            if hwaccel is not None and not stream.codec_context.is_hwaccel:
                return {"status": "skipped", "reason": f"{device} does not take codec {stream.codec_context.name}"}
            planes[name] = [(frame.format.name, *frame_planes(frame)) for frame in container.decode(stream)]
    soft, hard = planes["software"], planes[device]
    differing = sum(not (np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])) for a, b in zip(soft, hard))
    max_diff = max((int(np.abs(a[k].astype(int) - b[k].astype(int)).max()) for a, b in zip(soft, hard)
                    for k in (1, 2)), default=0)
    return {"status": "ok", "frames": [len(soft), len(hard)], "formats": [soft[0][0], hard[0][0]] if hard else [],
            "identical": len(soft) == len(hard) and differing == 0, "differing_frames": differing,
            "max_abs_diff": max_diff}


def item_cpu_ms(root: Path, listing: Path, clip: dict[str, Any], *, items: int, rounds: int) -> dict[str, Any]:
    """CPU ms per training item in this process (one thread, no loader), ``color_convert`` worker vs
    device, rounds interleaved; and the CPU ms per clip of ``yuv_to_rgb`` on the device's items."""
    torch.set_num_threads(1)
    datasets = {mode: VideoDataset(root=root, annotations=listing, mode="train", **clip, color_convert=mode)
                for mode in ("worker", "device")}
    times: dict[str, list[float]] = {"worker": [], "device": [], "yuv_to_rgb_on_cpu": []}
    for round_ in range(rounds):
        for mode, dataset in datasets.items():
            dataset.set_epoch(round_)
            start = time.process_time()
            batch = [dataset[i] for i in range(items)]
            times[mode].append(1000 * (time.process_time() - start) / items)
        y, uv = (torch.stack([item[key] for item in batch]) for key in ("video", "chroma"))
        start = time.process_time()
        yuv_to_rgb(y, uv, torch.tensor([item["yuv_format"] for item in batch]))
        times["yuv_to_rgb_on_cpu"].append(1000 * (time.process_time() - start) / items)
    best = {mode: min(values) for mode, values in times.items()}
    return {"rounds_ms": times, "best_ms": best, "device_over_worker": best["device"] / best["worker"]}


def _bench_videos(settings: dict[str, Any]) -> tuple[Path, list[str], bool]:
    """(root, paths relative to it, written here): part "videos"' bench videos, else our own."""
    videos = settings["results"].get("videos") or {}
    if videos.get("bench_paths"):
        return Path(videos["bench_root"]), list(videos["bench_paths"]), False
    root, spec = Path(settings["work"]) / "decode_videos", settings["decode"]["videos"]
    return root, write_videos(str(root / "part0"), 0, {**spec, "per_process": spec["count"]}), True


def run(settings: dict[str, Any], recorder: Recorder) -> None:
    """Part "decode": the planes comparison, the CPU per item, then every row of :data:`ROWS` that fits."""
    device, deadline, options = device_of(settings), part_deadline(settings), settings["decode"]
    start = time.perf_counter()
    root, paths, written = _bench_videos(settings)
    listing = write_bench_list(root, paths, int(options["min_items"]), name="decode_train.txt")
    step = fastest_step(settings["results"].get("train"), *STEP)
    all_workers = int(options["workers"] if options["workers"] is not None else default_workers())
    recorder.set(device=str(device), cpus=os.cpu_count(), libnvcuvid=nvcuvid_library(),
                 hwdevices=av.codec.hwaccel.hwdevices_available(), videos=len(paths), videos_written_here=written,
                 videos_seconds=time.perf_counter() - start, clip=options["clip"], batch=options["batch"],
                 step_clips_per_s=(step or {}).get("clips_per_s"), step_mode=(step or {}).get("mode"))
    try:
        recorder.set(planes=compare_planes(root / paths[0]))
    except Exception as error:  # noqa: BLE001 - no device, no libnvcuvid: PyAV raises at open
        recorder.set(planes={"status": "skipped", "reason": f"{type(error).__name__}: {error}".splitlines()[0]})
    recorder.set(item_cpu_ms=item_cpu_ms(root, listing, options["clip"], items=int(options["items"]),
                                         rounds=int(options["item_rounds"])))
    rows = Rows(recorder)
    for decode_device, color_convert, workers in ROWS:
        row: dict[str, Any] = {"decode_device": decode_device, "color_convert": color_convert,
                               "workers": all_workers if workers == ALL else workers}
        if not deadline.allows(options["seconds"] + options["startup_s"]):
            rows.append({**row, "status": "skipped", "reason": "part budget spent"})
            continue
        with rows.guard(row):
            dataset = VideoDataset(root=root, annotations=listing, mode="train", **options["clip"],
                                   decode_device=decode_device, color_convert=color_convert)
            row.update(status="ok", **loader_clips_per_s(dataset, batch=int(options["batch"]), workers=row["workers"],
                                                        seconds=float(options["seconds"]), device=device))
            if step:
                row.update(verdict(row["clips_per_s"], step["clips_per_s"]))
            rows.append(row)
    rows.check()
