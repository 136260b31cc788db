"""CPU per training clip with ``decode_resize`` on (FFmpeg scales while converting to RGB) and off
(decode at native size, then ``torchvision.transforms.v2`` resize), on H.264 videos of several sizes.

    python -m benchmarks.decode_resize --out /tmp/decode_resize --sizes 320x256 854x480 1280x720

Writes ``--videos`` synthetic videos of ``--seconds`` s per size (one keyframe per second, as
``tools/prepare_kinetics.py`` writes them), then times, in this one process with one thread, the
worker's work for each clip (``VideoDataset.__getitem__``: decode + resize + crop, uint8 out) for both
settings, interleaved, on the same clips (same seeds). Prints CPU ms/clip per size and the ratio off/on.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from nlnet.data import VideoDataset
from nlnet.data.synthetic import make_synthetic_dataset

from .table import markdown_table

FPS = 25
KEYFRAME_INTERVAL_S = 1.0  # tools/prepare_kinetics.py's default


def cpu_ms_per_clip(ds: VideoDataset, clips: int) -> float:
    """CPU ms per training item (what a DataLoader worker does for one clip), epoch after epoch."""
    start = time.process_time()
    for index in range(clips):
        ds.set_epoch(index // len(ds))
        ds[index % len(ds)]
    return 1000 * (time.process_time() - start) / clips


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_resize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the generated videos")
    parser.add_argument("--sizes", nargs="+", default=["320x256", "854x480", "1280x720"], help="WxH")
    parser.add_argument("--videos", type=int, default=2, help="videos per size")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clip", default="32x2", help="TxTAU")
    parser.add_argument("--clips", type=int, default=8, help="clips timed per setting and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    num_frames, sampling_rate = (int(v) for v in args.clip.lower().split("x"))
    print(f"clip {args.clip}, short side in [256, 320], crop 224; CPU ms per clip (median of {args.repeats})")
    rows = []
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        root = Path(args.out) / size
        make_synthetic_dataset(root, num_classes=1, train_per_class=args.videos, val_per_class=0,
                               num_frames=int(args.seconds * FPS), size=(width, height), fps=FPS,
                               gop_size=round(KEYFRAME_INTERVAL_S * FPS), noise=8.0)
        sets = {on: VideoDataset(root=root, annotations=root / "train.csv", num_frames=num_frames,
                                 sampling_rate=sampling_rate, decode_resize=on) for on in (True, False)}
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for on, ds in sets.items():
                times[on].append(cpu_ms_per_clip(ds, args.clips))
        on, off = float(np.median(times[True])), float(np.median(times[False]))
        rows.append((size, f"{on:.1f}", f"{off:.1f}", f"{off / on:.2f}"))
    print("\n".join(markdown_table(["size", "decode_resize=true", "decode_resize=false", "false/true"], rows,
                                   align="lrrr")))


if __name__ == "__main__":
    main()
