"""Write the built-in synthetic dataset (Kinetics layout, official CSVs, H.264 .mp4).

    python tools/make_synthetic_dataset.py --root data/synthetic          # the demo dataset (~10 s)
    python tools/make_synthetic_dataset.py --root data/bench --preset bench   # 10 s 320x256, 1 s keyframes

Does nothing if the dataset at --root is already complete with the same settings.
"""
import argparse
import time

from nlnet.data.synthetic import make_synthetic_dataset
from nlnet.utils.cli import ArgumentParser, run_main

PRESETS = {
    # the CPU demo: 6 classes x (100 train + 20 val) clips of 32 frames, 64x64, 25 fps
    "demo": dict(num_classes=6, train_per_class=100, val_per_class=20, num_frames=32, size=64, noise=4.0),
    # python -m benchmarks.data: Kinetics-like files, 10 s at 320x256, 25 fps, encoded as users train on them
    # (tools/prepare_kinetics.py: one keyframe per second)
    "bench": dict(num_classes=2, train_per_class=8, val_per_class=2, num_frames=250, size=(320, 256), noise=8.0,
                  gop_size=25),
}


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--val-per-class", type=int)
    parser.add_argument("--num-frames", type=int)
    parser.add_argument("--size", type=int, nargs="+", help="SIDE or WIDTH HEIGHT")
    parser.add_argument("--gop-size", type=int, default=None,
                        help="frames between keyframes (default: the preset's; x264's own is 250)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="write even if complete")
    args = parser.parse_args()
    options = dict(PRESETS[args.preset])
    for key in ("num_classes", "train_per_class", "val_per_class", "num_frames", "gop_size"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.size:
        options["size"] = args.size[0] if len(args.size) == 1 else tuple(args.size[:2])
    start = time.time()
    info = make_synthetic_dataset(args.root, seed=args.seed, overwrite=args.overwrite, **options)
    if info["skipped"]:
        print(f"{args.root}: already complete, nothing to do")
    else:
        videos = info["num_classes"] * (info["train_per_class"] + info["val_per_class"])
        print(f"{args.root}: wrote {videos} videos ({info['width']}x{info['height']}, {info['num_frames']} "
              f"frames) and train.csv, val.csv in {time.time() - start:.1f}s")


if __name__ == "__main__":
    run_main(main)
