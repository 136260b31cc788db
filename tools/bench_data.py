"""Data-pipeline throughput: nlnet vs pytorchvideo's Kinetics dataset, same videos, same workers.

    python tools/make_synthetic_dataset.py --root data/bench --preset bench   # 10 s 320x256 videos
    python tools/bench_data.py --root data/bench --clip 8x8 --workers 0 2
    python tools/bench_data.py --root data/bench --clip 32x2 --workers 2 --json bench.json

Prints CPU ms per clip for decoding and augmentation (one process), then, per worker count, train
clips/s and CPU ms per clip (main process + workers) for both pipelines and test views/s for nlnet.
CPU per clip does not depend on other load on the machine; clips/s does.
"""
import argparse
import json
import platform

import torch

from nlnet.bench.data_pipeline import run_benchmark
from nlnet.utils.cli import pin_threads, threads_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    args = parser.parse_args()
    threads = pin_threads(args.threads)
    num_frames, sampling_rate = (int(v) for v in args.clip.lower().split("x"))
    results = run_benchmark(args.root, num_frames=num_frames, sampling_rate=sampling_rate, workers=args.workers,
                            num_clips=args.num_clips, crop_size=args.crop_size, scale=args.scale,
                            batch_size=args.batch_size, repeats=args.repeats)
    results["machine"] = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    print(f"{results['videos']} videos at {results['fps']:.1f} fps, clip {results['clip']}")
    for name, split in results["split"].items():
        print(f"  {name:13s} CPU ms/clip: decode {split['decode_ms']:7.1f}  augment {split['augment_ms']:7.1f}"
              f"  output {split['shape']}")
    print("workers | train clips/s: pytorchvideo  nlnet  ratio | train CPU ms/clip: pytorchvideo  nlnet  ratio"
          " | test views/s  CPU ms/view")
    for r in results["throughput"]:
        print(f"{r['workers']:7d} | {r['pytorchvideo_train_clips_s']:27.2f} {r['nlnet_train_clips_s']:6.2f}"
              f" {r['train_ratio']:6.2f} | {r['pytorchvideo_train_cpu_ms']:31.0f} {r['nlnet_train_cpu_ms']:6.0f}"
              f" {r['cpu_ratio']:6.2f} | {r['nlnet_test_views_s']:12.2f} {r['nlnet_test_cpu_ms']:12.0f}")
    for workers in args.workers:
        print(threads_line(threads, 1 + workers) + f" (main process + {workers} workers of 1 thread)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
