"""Write the built-in synthetic dataset (Kinetics layout, official CSVs, H.264 .mp4).

    python tools/make_synthetic_dataset.py --root data/synthetic          # the demo dataset (~10 s)
    python tools/make_synthetic_dataset.py --root data/bench --preset bench   # 10 s 320x256, 1 s keyframes

Does nothing if the dataset at --root is already complete with the same settings.
"""
import argparse
import sys

from nlnet.data.commands import SYNTHETIC_PRESETS, run_make_synthetic
from nlnet.data.synthetic import SYNTHETIC_CLASSES
from nlnet.utils.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--preset", choices=sorted(SYNTHETIC_PRESETS), default="demo")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--val-per-class", type=int)
    parser.add_argument("--num-frames", type=int)
    parser.add_argument("--size", type=int, nargs="+", help="SIDE or WIDTH HEIGHT (even numbers)")
    parser.add_argument("--gop-size", type=int, default=None,
                        help="frames between keyframes (default: the preset's; x264's own is 250)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="write even if complete")
    args = parser.parse_args()
    for name, value, low, high in (("--num-classes", args.num_classes, 1, len(SYNTHETIC_CLASSES)),
                                   ("--train-per-class", args.train_per_class, 0, None),
                                   ("--val-per-class", args.val_per_class, 0, None),
                                   ("--num-frames", args.num_frames, 1, None), ("--gop-size", args.gop_size, 1, None)):
        if value is not None:
            parser.require(name, value, low, high)
    size = None if not args.size else args.size[0] if len(args.size) == 1 else tuple(args.size[:2])
    sys.exit(run_make_synthetic(args.root, preset=args.preset, seed=args.seed, gop_size=args.gop_size,
                                overwrite=args.overwrite, num_classes=args.num_classes,
                                train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                                num_frames=args.num_frames, size=size))


if __name__ == "__main__":
    run_main(main)
