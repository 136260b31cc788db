"""Data-pipeline throughput: nlnet vs pytorchvideo's Kinetics dataset, same videos, same workers.

    python tools/make_synthetic_dataset.py --root data/bench --preset bench   # 10 s 320x256, 1 s keyframes
    python -m benchmarks.data --root data/bench --clip 8x8 --workers 0 2
    python -m benchmarks.data --root data/bench --clip 32x2 --workers 2 --json bench.json

The bench preset encodes its videos as users train on them: one keyframe per second, as
``tools/prepare_kinetics.py`` writes them (x264's default of one per 250 frames makes every seek
decode from the start of the file).

Prints CPU ms per clip for decoding and augmentation (one process), then, per worker count, train
clips/s and CPU ms per clip (main process + workers) for both pipelines and test views/s for nlnet.
CPU per clip does not depend on other load on the machine; clips/s does.

Both pipelines read the same videos with the same number of DataLoader workers and produce the
same output: float32 (3, T, crop, crop) clips (nlnet's workers return uint8, normalised here by the
trainer's batch prologue on the CPU, in the main process; on a GPU that step runs on the device) of T frames at stride tau, short side random in
``scale``, random crop, flip, ImageNet normalisation. pytorchvideo's side is its documented recipe
(``Kinetics`` + ``make_clip_sampler("random", T * tau / fps)`` + decoder ``pyav``, audio off), with
its ``UniformTemporalSubsample`` / ``RandomShortSideScale`` steps written with
``torchvision.transforms.v2`` (``pytorchvideo.transforms`` does not import with current torchvision).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from nlnet.data.dataset import VideoDataset
from nlnet.data.prologue import BatchPrologue
from nlnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

from .common import cpu_seconds_with_children, pin_threads, threads_line
from .table import markdown_table


def _throughput(loader, num_items: int, prepare=lambda batch: batch["video"]) -> tuple[float, float]:
    """(items per second, CPU milliseconds per item); ``prepare`` turns a batch into the model input.

    Items per second: wall clock over ``num_items`` items after the first batch (worker start-up
    excluded). CPU per item: all CPU time of the main process and the workers (threads included)
    over every item produced, the epoch being read to its end so nothing is prefetched in vain;
    unlike wall time it does not depend on the machine's other load.
    """
    cpu = cpu_seconds_with_children()
    produced = 0
    it = iter(loader)
    produced += prepare(next(it)).shape[0]
    count, start = 0, time.perf_counter()
    while count < num_items:
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        count += prepare(b).shape[0]
    elapsed = time.perf_counter() - start
    rate = count / elapsed
    for b in it:  # finish the epoch: every prefetched item is counted
        count += prepare(b).shape[0]
    del it  # joins the workers, so their CPU time is accounted
    produced += count
    return rate, 1e3 * (cpu_seconds_with_children() - cpu) / produced


def _dataset(root: str, mode: str, num_frames: int, sampling_rate: int, **kwargs) -> VideoDataset:
    return VideoDataset(root=root, annotations=os.path.join(root, "train.csv"), mode=mode, num_frames=num_frames,
                        sampling_rate=sampling_rate, **kwargs)


def bench_train(root: str, *, num_frames: int, sampling_rate: int, workers: int, num_clips: int,
                batch_size: int = 8, **kwargs) -> tuple[float, float]:
    """nlnet train-mode (clips per second, CPU ms per clip)."""
    ds = _dataset(root, "train", num_frames, sampling_rate, **kwargs)
    sampler = torch.utils.data.RandomSampler(ds, num_samples=num_clips + batch_size)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, sampler=sampler)
    return _throughput(loader, num_clips, BatchPrologue.for_dataset(ds, device="cpu").video)


def bench_test(root: str, *, num_frames: int, sampling_rate: int, workers: int, num_views: int,
               batch_size: int = 8, **kwargs) -> tuple[float, float]:
    """nlnet test-mode (views per second, CPU ms per view), views read in order."""
    ds = _dataset(root, "test", num_frames, sampling_rate, **kwargs)
    indices = list(range(min(len(ds), num_views + batch_size)))
    loader = DataLoader(torch.utils.data.Subset(ds, indices), batch_size=batch_size, num_workers=workers)
    return _throughput(loader, num_views, BatchPrologue.for_dataset(ds, device="cpu").video)


class _PytorchvideoTransform:
    """pytorchvideo's Kinetics training recipe on its float (C, T, H, W) clips, with v2 transforms."""

    def __init__(self, num_frames: int, crop_size: int, scale: Sequence[int]) -> None:
        from torchvision.transforms import v2

        self.num_frames = num_frames
        self.spatial = v2.Compose([
            v2.Normalize([m * 255 for m in IMAGENET_MEAN], [s * 255 for s in IMAGENET_STD]),
            v2.RandomResize(scale[0], scale[1] + 1, antialias=True),  # RandomShortSideScale
            v2.RandomCrop(crop_size),
            v2.RandomHorizontalFlip(p=0.5),
        ])

    def __call__(self, sample: dict) -> dict:
        video = sample["video"]  # (C, T', H, W) float32 in [0, 255]
        index = torch.linspace(0, video.shape[1] - 1, self.num_frames).long()  # UniformTemporalSubsample
        video = video[:, index].permute(1, 0, 2, 3)  # (T, C, H, W)
        video = self.spatial(video).permute(1, 0, 2, 3).contiguous()  # (C, T, h, w)
        return {"video": video, "label": sample["label"]}


def _pytorchvideo_dataset(root: str, *, num_frames: int, sampling_rate: int, fps: float, transform):
    from pytorchvideo.data import Kinetics, make_clip_sampler

    sampler = make_clip_sampler("random", num_frames * sampling_rate / fps)
    return Kinetics(data_path=os.path.join(root, "train"), clip_sampler=sampler, transform=transform,
                    decode_audio=False, decoder="pyav")


def bench_pytorchvideo_train(root: str, *, num_frames: int, sampling_rate: int, fps: float, workers: int,
                             num_clips: int, crop_size: int, scale: Sequence[int], batch_size: int = 8) -> tuple[float, float]:
    """pytorchvideo ``Kinetics`` train-mode (clips per second, CPU ms per clip)."""
    ds = _pytorchvideo_dataset(root, num_frames=num_frames, sampling_rate=sampling_rate, fps=fps,
                               transform=_PytorchvideoTransform(num_frames, crop_size, scale))
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    return _throughput(loader, num_clips)


def split_times(root: str, *, num_frames: int, sampling_rate: int, fps: float, crop_size: int,
                scale: Sequence[int], num_clips: int) -> dict:
    """CPU milliseconds per train clip spent decoding and augmenting (one process), for both pipelines."""
    torch.manual_seed(0)
    ds = _dataset(root, "train", num_frames, sampling_rate, crop_size=crop_size, train_scale=scale, decode_threads=1)
    decode = augment = 0.0
    for i in range(num_clips):
        rng = ds.rng(i % ds.num_videos)
        params = ds.train_transform.sample(rng)
        t0 = time.process_time()
        frames = ds.decode_train_clip(ds.video_paths[i % ds.num_videos], float(rng.random()), params.short_side)
        t1 = time.process_time()
        out = ds.train_transform(frames, params)
        augment += time.process_time() - t1
        decode += t1 - t0
    ours = {"decode_ms": 1e3 * decode / num_clips, "augment_ms": 1e3 * augment / num_clips,
            "shape": tuple(out.shape)}
    transform = _PytorchvideoTransform(num_frames, crop_size, scale)
    pv_dataset = _pytorchvideo_dataset(root, num_frames=num_frames, sampling_rate=sampling_rate, fps=fps,
                                       transform=None)
    pv = iter(pv_dataset)
    decode = augment = 0.0
    for _ in range(num_clips):
        t0 = time.process_time()
        sample = next(pv, None)
        if sample is None:  # one pass over the videos is over: start another
            pv = iter(pv_dataset)
            t0 = time.process_time()
            sample = next(pv)
        t1 = time.process_time()
        out = transform(sample)["video"]
        augment += time.process_time() - t1
        decode += t1 - t0
    theirs = {"decode_ms": 1e3 * decode / num_clips, "augment_ms": 1e3 * augment / num_clips,
              "shape": tuple(out.shape)}
    return {"nlnet": ours, "pytorchvideo": theirs}


def run_benchmark(root: str, *, num_frames: int = 8, sampling_rate: int = 8, workers: Sequence[int] = (2,),
                  num_clips: int = 64, crop_size: int = 224, scale: Sequence[int] = (256, 320),
                  test_scale: int = 256, fps: float | None = None, batch_size: int = 8, repeats: int = 2) -> dict:
    """All measurements of ``python -m benchmarks.data``: split, then throughput per worker count."""
    ds = _dataset(root, "train", num_frames, sampling_rate, crop_size=crop_size, train_scale=scale)
    if fps is None:
        from nlnet.data.decoding import VideoReader

        with VideoReader(ds.video_paths[0]) as reader:
            fps = reader.info.fps
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        return _run(root, ds, fps, num_frames=num_frames, sampling_rate=sampling_rate, workers=workers,
                    num_clips=num_clips, crop_size=crop_size, scale=scale, test_scale=test_scale,
                    batch_size=batch_size, repeats=repeats)
    finally:
        torch.set_num_threads(threads)


def _run(root, ds, fps, *, num_frames, sampling_rate, workers, num_clips, crop_size, scale, test_scale,
         batch_size, repeats) -> dict:
    results = {"root": root, "videos": ds.num_videos, "clip": f"{num_frames}x{sampling_rate}", "fps": fps,
               "split": split_times(root, num_frames=num_frames, sampling_rate=sampling_rate, fps=fps,
                                    crop_size=crop_size, scale=scale, num_clips=max(8, num_clips // 4)),
               "throughput": []}
    common = dict(num_frames=num_frames, sampling_rate=sampling_rate, num_clips=num_clips, batch_size=batch_size)
    for w in workers:
        # interleaved: pytorchvideo, nlnet, pytorchvideo, nlnet (the machine's load drifts)
        pv, ours = [], []
        for _ in range(repeats):
            pv.append(bench_pytorchvideo_train(root, fps=fps, workers=w, crop_size=crop_size, scale=scale, **common))
            ours.append(bench_train(root, workers=w, crop_size=crop_size, train_scale=scale, decode_threads=1,
                                    **common))
        pv, ours = np.median(pv, axis=0), np.median(ours, axis=0)  # (clips/s, CPU ms/clip)
        test = bench_test(root, num_frames=num_frames, sampling_rate=sampling_rate, workers=w, num_views=num_clips,
                          test_scale=test_scale, decode_threads=1, batch_size=batch_size)
        row = {"workers": w,
               "pytorchvideo_train_clips_s": float(pv[0]), "nlnet_train_clips_s": float(ours[0]),
               "train_ratio": float(ours[0] / pv[0]),
               "pytorchvideo_train_cpu_ms": float(pv[1]), "nlnet_train_cpu_ms": float(ours[1]),
               "cpu_ratio": float(pv[1] / ours[1]),
               "nlnet_test_views_s": float(test[0]), "nlnet_test_cpu_ms": float(test[1])}
        results["throughput"].append(row)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dataset folder with train.csv and train/<label>/")
    parser.add_argument("--clip", default="8x8", help="TxTAU, e.g. 8x8 or 32x2")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--num-clips", type=int, default=64, help="clips timed per measurement")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions (median reported)")
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--scale", type=int, nargs=2, default=[256, 320])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (workers: 1 each, as DataLoader sets)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    threads = pin_threads(args.threads)
    num_frames, sampling_rate = (int(v) for v in args.clip.lower().split("x"))
    results = run_benchmark(args.root, num_frames=num_frames, sampling_rate=sampling_rate, workers=args.workers,
                            num_clips=args.num_clips, crop_size=args.crop_size, scale=args.scale,
                            batch_size=args.batch_size, repeats=args.repeats)
    results["machine"] = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    print(f"{results['videos']} videos at {results['fps']:.1f} fps, clip {results['clip']}")
    split_rows = [(name, f"{s['decode_ms']:.1f}", f"{s['augment_ms']:.1f}", " x ".join(map(str, s["shape"])))
                  for name, s in results["split"].items()]
    print("\n".join(markdown_table(["pipeline", "decode CPU ms/clip", "augment CPU ms/clip", "output"], split_rows,
                                   align="lrrl")))
    print()
    header = ["workers", "pytorchvideo clips/s", "nlnet clips/s", "ratio", "pytorchvideo CPU ms/clip",
              "nlnet CPU ms/clip", "CPU ratio", "nlnet test views/s", "nlnet test CPU ms/view"]
    rows = [(r["workers"], f"{r['pytorchvideo_train_clips_s']:.2f}", f"{r['nlnet_train_clips_s']:.2f}",
             f"{r['train_ratio']:.2f}x", f"{r['pytorchvideo_train_cpu_ms']:.0f}", f"{r['nlnet_train_cpu_ms']:.1f}",
             f"{r['cpu_ratio']:.2f}x", f"{r['nlnet_test_views_s']:.2f}", f"{r['nlnet_test_cpu_ms']:.0f}")
            for r in results["throughput"]]
    print("\n".join(markdown_table(header, rows, align="r" * len(header))))
    for workers in args.workers:
        print(threads_line(threads, 1 + workers) + f" (main process + {workers} workers of 1 thread)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
