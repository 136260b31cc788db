"""Scan an annotation file for missing, unreadable and too-short videos; write a report.

    python tools/check_dataset.py --root data/kinetics400 --annotations data/kinetics400/val.csv \
        --num-frames 32 --sampling-rate 2 --workers 8 --report val_check.json

Every video is opened and decoded as VideoDataset would (same caps on frame size and decoding time),
so the report lists every file the dataset would fail on; --full also decodes each stream to its
end. The report is JSON (--report x.json) with a text twin (x.txt); the summary is printed. Exit
status 1 when any listed video is missing or unreadable.
"""
import argparse
import os
import sys

from nlnet.data.commands import run_check_dataset
from nlnet.data.decoding import DECODE_TIMEOUT, MAX_FRAME_PIXELS
from nlnet.utils.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--annotations", required=True, help="Kinetics CSV or 'path label' list")
    parser.add_argument("--label-map", default=None)
    parser.add_argument("--num-frames", type=int, default=8, help="clip length T (defines too short)")
    parser.add_argument("--sampling-rate", type=int, default=8, help="clip stride tau")
    parser.add_argument("--full", action="store_true", help="also decode each stream to its end")
    parser.add_argument("--max-frame-pixels", type=int, default=MAX_FRAME_PIXELS,
                        help="the dataset's cap on width x height (data.*.max_frame_pixels)")
    parser.add_argument("--decode-timeout", type=float, default=DECODE_TIMEOUT,
                        help="the dataset's cap on seconds of decoding per read (data.*.decode_timeout)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--report", default="check_report.json", help="JSON report path (text: .txt)")
    args = parser.parse_args()
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root}: folder not found")
    for name, value, low in (("--num-frames", args.num_frames, 1), ("--sampling-rate", args.sampling_rate, 1),
                             ("--max-frame-pixels", args.max_frame_pixels, 1), ("--decode-timeout", args.decode_timeout, 0.001),
                             ("--workers", args.workers, 0)):
        parser.require(name, value, low)
    sys.exit(run_check_dataset(args.annotations, args.root, report=args.report, num_frames=args.num_frames,
                               sampling_rate=args.sampling_rate, label_map=args.label_map, full=args.full,
                               max_frame_pixels=args.max_frame_pixels, decode_timeout=args.decode_timeout,
                               num_workers=args.workers))


if __name__ == "__main__":
    run_main(main)
