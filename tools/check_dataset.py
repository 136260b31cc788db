"""Scan an annotation file for missing, unreadable and too-short videos; write a report.

    python tools/check_dataset.py --root data/kinetics400 --annotations data/kinetics400/val.csv \
        --num-frames 32 --sampling-rate 2 --workers 8 --report val_check.json
    python tools/check_dataset.py --data ucf101 data.root=data/ucf101 data.split=2 --workers 8
    python tools/check_dataset.py --data ssv2 data.root=data/ssv2     # also hmdb51, folder, kinetics

--data NAME checks the training and the test set of configs/data/NAME.yaml (any format a reader of
nlnet.data.readers reads; KEY=VALUE overrides as for tools/train.py), with its clip length, and writes
one report per set (<report>_train.json, <report>_val.json).

Every video is opened and decoded as VideoDataset would (same caps on frame size and decoding time),
so the report lists every file the dataset would fail on; --full also decodes each stream to its
end. The report is JSON (--report x.json) with a text twin (x.txt); the summary is printed. Exit
status 1 when any listed video is missing or unreadable.
"""
import argparse
import os
import sys
from pathlib import Path

from nlnet.data.commands import run_check_dataset
from nlnet.data.decoding import DECODE_TIMEOUT, MAX_FRAME_PIXELS
from nlnet.data.readers import ListReader
from nlnet.utils.cli import ArgumentParser, run_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="dataset folder")
    parser.add_argument("--annotations", help="Kinetics CSV or 'path label' list")
    parser.add_argument("--data", help="a data config instead of --root/--annotations: ucf101, hmdb51, ssv2, "
                                       "folder, kinetics, ... (configs/data)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of --data (data.root=..., data.split=2)")
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
    if args.data is None and (args.root is None or args.annotations is None or args.overrides):
        parser.error("give --root and --annotations, or --data NAME with KEY=VALUE overrides")
    if args.data is None and not os.path.isdir(args.root):
        parser.error(f"--root {args.root}: folder not found")
    for name, value, low in (("--num-frames", args.num_frames, 1), ("--sampling-rate", args.sampling_rate, 1),
                             ("--max-frame-pixels", args.max_frame_pixels, 1), ("--decode-timeout", args.decode_timeout, 0.001),
                             ("--workers", args.workers, 0)):
        parser.require(name, value, low)
    options = dict(label_map=args.label_map, full=args.full, max_frame_pixels=args.max_frame_pixels,
                   decode_timeout=args.decode_timeout, num_workers=args.workers)
    if args.data is None:
        sets = [(args.report, ListReader(annotations=args.annotations, root=args.root, label_map=args.label_map),
                 args.root, args.num_frames, args.sampling_rate)]
    else:
        sets = data_config_sets(args.data, args.overrides, args.report)
    statuses = [run_check_dataset(None, root, reader=reader, report=report_path, num_frames=num_frames,
                                  sampling_rate=sampling_rate, **options)
                for report_path, reader, root, num_frames, sampling_rate in sets]
    sys.exit(max(statuses))


def data_config_sets(name: str, overrides: list[str], report: str) -> list[tuple]:
    """(report path, reader, root, T, tau) of the training and test sets of configs/data/NAME.yaml."""
    from nlnet.config import compose_config, instantiate, validate

    cfg = compose_config("train", [f"data={name}", *overrides], config_dir=CONFIGS)
    validate(cfg)  # data.root, data.split, ... : one line naming the key
    data = cfg.data
    sets = []
    for split in ("train", "val"):
        node = data[split]
        reader = instantiate(node.reader) if node.get("reader") else ListReader(
            annotations=node.annotations, root=node.root, label_map=node.get("label_map"))
        stem, ext = os.path.splitext(report)
        sets.append((f"{stem}_{split}{ext}", reader, str(node.root), int(node.num_frames), int(node.sampling_rate)))
    return sets


if __name__ == "__main__":
    run_main(main)
