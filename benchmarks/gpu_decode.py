"""The GPU check's "decode" part: can NVDEC and device-side colour conversion feed the GPU?

On H.264 videos written as ``tools/prepare_kinetics.py`` writes them (short side 256, one keyframe a
second), it measures the training loader (``VideoDataset`` in train mode through ``EndlessLoader``,
each batch through the trainer's ``BatchPrologue``) with ``data.decode_device`` cpu and cuda,
``data.color_convert`` worker and device, with 1 and with all workers: clips/s, CPU seconds per
clip (the loader's processes: main and workers), and the verdict of the "loader" part (GPU-bound or
data-bound against the train step's clips/s, when the "train" part measured it), and, in one process
without a loader, the CPU ms per item of ``color_convert`` worker and device. It also says
whether ``libnvcuvid`` was found, which decoder the workers actually used, and whether NVDEC's
planes equal FFmpeg's software planes on every frame of a video (H.264 decoding is exact).

    from benchmarks.gpu_decode import run_decode
    result = run_decode("/tmp/work", 60.0, cpu_rehearsal=True)   # tiny shapes on the CPU
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.codec.hwaccel import HWAccel

from nlnet.data import VideoDataset
from nlnet.data.hwdecode import nvcuvid_library
from nlnet.data.synthetic import make_synthetic_dataset
from nlnet.data.yuv import frame_planes, yuv_to_rgb
from nlnet.data.loader import EndlessLoader
from nlnet.data.prologue import BatchPrologue
from nlnet.utils.io import atomic_path

__all__ = ["SETTINGS", "compare_planes", "run_decode", "run_part"]

_ALL = "all"  # workers: every CPU but two (the main process and the system), as the "loader" part
# (decode_device, color_convert, workers) of each measured row, the baseline first.
ROWS = [("cpu", "worker", 1), ("cuda", "worker", 1), ("cpu", "worker", _ALL), ("cuda", "worker", _ALL),
        ("cuda", "device", _ALL), ("cpu", "device", _ALL)]
SETTINGS: dict[bool, dict[str, Any]] = {
    False: {"device": "cuda", "videos": {"count": 8, "width": 456, "height": 256, "frames": 250, "gop_size": 25},
            "clip": {"num_frames": 32, "sampling_rate": 2, "crop_size": 224, "train_scale": [256, 320]},
            "batch": 8, "seconds": 3.0, "startup_s": 4.0, "min_items": 4000, "item_rounds": 3, "items": 8},
    True: {"device": "cpu", "videos": {"count": 2, "width": 48, "height": 32, "frames": 24, "gop_size": 8},
           "clip": {"num_frames": 4, "sampling_rate": 2, "crop_size": 24, "train_scale": [28, 34]},
           "batch": 2, "seconds": 0.5, "startup_s": 4.0, "min_items": 200, "item_rounds": 2, "items": 2},
}


def _videos(root: Path, spec: dict[str, Any], min_items: int,
            videos: list[str] | None) -> tuple[Path, list[Path]]:
    """H.264 videos with one keyframe every ``gop_size`` frames (``videos`` when given, else written
    under ``root``), and a list under ``root`` repeating them."""
    if videos:
        paths = [Path(p).resolve() for p in videos]
    else:
        make_synthetic_dataset(root, num_classes=1, train_per_class=spec["count"], val_per_class=0,
                               num_frames=spec["frames"], size=(spec["width"], spec["height"]), noise=8.0,
                               gop_size=spec["gop_size"], seed=0)
        paths = sorted(Path(root, "train").rglob("*.mp4"))
    root.mkdir(parents=True, exist_ok=True)
    listing = root / "decode_list.txt"
    repeats = max(1, -(-min_items // len(paths)))
    listing.write_text("".join(f"{p} 0\n" for _ in range(repeats) for p in paths))
    return listing, paths


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


def _cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of processes ``pids`` (Linux ``/proc``), None where unreadable."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def measure(dataset: VideoDataset, *, batch: int, workers: int, seconds: float,
            device: torch.device) -> dict[str, Any]:
    """Steady-state clips/s and CPU seconds per clip of the trainer's loader + batch prologue.

    The first wave of batches (worker start-up) is not timed; the window ends on a whole wave.
    """
    loader = EndlessLoader(dataset=dataset, batch_size=batch, num_workers=workers, seed=0,
                           pin_memory=device.type == "cuda")
    prologue = BatchPrologue.for_dataset(dataset, device=device)
    wave = max(1, workers)
    try:
        for _ in range(wave):
            next(loader)
        iterator = loader._iterator
        pids = [w.pid for w in getattr(iterator, "_workers", [])]
        cpu0, main0, start = _cpu_seconds(pids), time.process_time(), time.perf_counter()
        clips = batches = 0
        while batches % wave or time.perf_counter() - start < seconds:
            video = prologue.video(next(loader))
            clips, batches = clips + video.shape[0], batches + 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        cpu1, main1 = _cpu_seconds(pids), time.process_time()
    finally:
        loader.close()
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0 + main1 - main0
    return {"clips_per_s": clips / elapsed, "clips": clips, "seconds": elapsed,
            "cpu_s_per_clip": None if cpu is None else cpu / clips, "decoders": dict(loader.decoders),
            "clip_shape": list(video.shape[1:])}


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


def summary_line(row: dict[str, Any]) -> str:
    """One row in words: setting, clips/s, CPU-s per clip, verdict, the decoders that ran."""
    setting = f"decode_device={row['decode_device']} color_convert={row['color_convert']} workers={row['workers']}"
    if row.get("status") != "ok":
        return f"{setting}: {row.get('status')} ({row.get('reason')})"
    cpu = row.get("cpu_s_per_clip")
    verdict = f", {row['verdict']} x{row['factor']:.2f}" if "verdict" in row else ""
    return (f"{setting}: {row['clips_per_s']:.1f} clips/s, "
            f"{'-' if cpu is None else f'{cpu:.3f}'} CPU-s/clip{verdict}; decoders {sorted(row['decoders'])}")


def _verdict(loader: float, step: float | None) -> dict[str, Any]:
    if not step:
        return {}
    bound = "data-bound" if loader < step else "GPU-bound"
    return {"step_clips_per_s": step, "verdict": bound, "factor": max(loader, step) / min(loader, step)}


def run_decode(out_dir: str | os.PathLike, budget_s: float, cpu_rehearsal: bool, *,
               step_clips_per_s: float | None = None, videos: list[str] | None = None,
               record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The decode part: bench videos under ``out_dir``, then every row of :data:`ROWS` that fits.

    Args:
        out_dir: work folder (videos, and ``gpu_decode.json`` with the result).
        budget_s: seconds for the whole part; rows that no longer fit are recorded as skipped.
        cpu_rehearsal: tiny shapes on the CPU (NVDEC rows then show the CPU fallback and its reason).
        step_clips_per_s: the train step's clips/s (the "train" part), for the GPU-/data-bound verdict.
        videos: bench videos already written (the check's "videos" part); None: write them.
        record: called with the result so far after each step (a part stopped at its budget keeps it).

    Returns:
        A JSON-able dict: machine facts, the planes comparison and one row per setting.
    """
    deadline = time.time() + budget_s
    options = SETTINGS[bool(cpu_rehearsal)]
    device = torch.device(options["device"]) if torch.cuda.is_available() or options["device"] == "cpu" \
        else torch.device("cpu")
    out = Path(out_dir)
    root = out / "decode_videos"
    start = time.perf_counter()
    listing, paths = _videos(root, options["videos"], options["min_items"], videos)
    all_workers = max(1, (os.cpu_count() or 1) - 2)
    result: dict[str, Any] = {
        "summary": [],  # one line per row, first: the check's Markdown shows the start of the JSON
        "mode": "cpu-rehearsal" if cpu_rehearsal else "gpu", "device": str(device), "cpus": os.cpu_count(),
        "libnvcuvid": nvcuvid_library(), "hwdevices": av.codec.hwaccel.hwdevices_available(),
        "videos": {**options["videos"], "count": len(paths), "seconds_to_write": time.perf_counter() - start,
                   "written_here": not videos, "codec": "h264"},
        "clip": options["clip"], "batch": options["batch"], "rows": []}
    try:
        result["planes"] = compare_planes(paths[0])
    except Exception as error:  # noqa: BLE001 - no device, no libnvcuvid: PyAV raises at open
        result["planes"] = {"status": "skipped", "reason": f"{type(error).__name__}: {error}".splitlines()[0]}
    result["item_cpu_ms"] = item_cpu_ms(root, listing, options["clip"], items=options["items"],
                                        rounds=options["item_rounds"])
    if record is not None:
        record(result)
    for decode_device, color_convert, workers in ROWS:
        workers = all_workers if workers == _ALL else workers
        row: dict[str, Any] = {"decode_device": decode_device, "color_convert": color_convert, "workers": workers}
        if time.time() + options["seconds"] + options["startup_s"] > deadline:
            row.update(status="skipped", reason="part budget spent")
        else:
            try:
                dataset = VideoDataset(root=root, annotations=listing, mode="train", **options["clip"],
                                       decode_device=decode_device, color_convert=color_convert)
                row.update(measure(dataset, batch=options["batch"], workers=workers, seconds=options["seconds"],
                                   device=device), status="ok")
                row.update(_verdict(row["clips_per_s"], step_clips_per_s))
            except Exception as error:  # noqa: BLE001 - one failing setting must not cost the others
                row.update(status="failed", reason=f"{type(error).__name__}: {error}".splitlines()[0][:300])
        result["rows"].append(row)
        result["summary"].append(summary_line(row))
        if record is not None:
            record(result)
    with atomic_path(out / "gpu_decode.json") as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1, default=str))
    return result


def run_part(settings: dict[str, Any], recorder: Any) -> None:
    """The GPU check's entry (``function(settings, recorder)``): :func:`run_decode` within the part's budget."""
    rows = [r for r in (settings.get("results", {}).get("train") or {}).get("rows", [])
            if r.get("status") == "ok" and r.get("model") == "NL I3D R50" and r.get("clip") == "32x2"]
    step = max((r["clips_per_s"] for r in rows), default=None)
    videos = (settings.get("results", {}).get("videos") or {}).get("bench_paths")
    bench = (settings.get("results", {}).get("videos") or {}).get("bench_root")
    budget = float(settings["deadline"]) - time.time() - 5.0
    run_decode(Path(settings["work"]) / "decode", budget, bool(settings["rehearsal"]), step_clips_per_s=step,
               videos=[str(Path(bench) / p) for p in videos] if videos and bench else None,
               record=lambda result: recorder.set(**result))
