"""Write a miniature Charades in the official release's format (Charades_v1_classes.txt,
Charades_v1_train.csv, Charades_v1_test.csv, Charades_v1_480/<id>.mp4): every video shows several synthetic
motions one after the other, each a timed action.

    python tools/make_synthetic_charades.py --root data/synthetic_charades
    python tools/train.py experiment=demo_charades
"""
import argparse
import time

from nlnet.data.synthetic import make_synthetic_charades
from nlnet.utils.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--num-classes", type=int, default=4, help="actions (synthetic motions), 2..6")
    parser.add_argument("--train-videos", type=int, default=48)
    parser.add_argument("--test-videos", type=int, default=16)
    parser.add_argument("--actions-per-video", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.time()
    paths = make_synthetic_charades(args.root, num_classes=args.num_classes, train_videos=args.train_videos,
                                    test_videos=args.test_videos, actions_per_video=args.actions_per_video,
                                    seed=args.seed)
    print(f"{args.root}: wrote {args.train_videos + args.test_videos} videos to {paths['videos']} and "
          f"{paths['train']}, {paths['test']}, {paths['classes']} in {time.time() - start:.1f}s")


if __name__ == "__main__":
    run_main(main)
