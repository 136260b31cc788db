"""Scan an annotation file for missing, unreadable and too-short videos; write a report.

    python tools/check_dataset.py --root data/kinetics400 --annotations data/kinetics400/val.csv \
        --num-frames 32 --sampling-rate 2 --workers 8 --report val_check.json

The report is JSON (--report x.json) with a text twin (x.txt); the summary is printed.
Exit status 1 when any listed video is missing or unreadable.
"""
import argparse
import json
import os
import sys

from nlnet.data.check import check_dataset, format_report
from nlnet.utils.io import atomic_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--annotations", required=True, help="Kinetics CSV or 'path label' list")
    parser.add_argument("--label-map", default=None)
    parser.add_argument("--num-frames", type=int, default=8, help="clip length T (defines too short)")
    parser.add_argument("--sampling-rate", type=int, default=8, help="clip stride tau")
    parser.add_argument("--full", action="store_true", help="decode every frame (slower, finds more)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--report", default="check_report.json", help="JSON report path (text: .txt)")
    args = parser.parse_args()
    report = check_dataset(args.annotations, args.root, num_frames=args.num_frames,
                           sampling_rate=args.sampling_rate, label_map=args.label_map, full=args.full,
                           num_workers=args.workers)
    text = format_report(report)
    for path, content in ((args.report, json.dumps(report, indent=2)),
                          (os.path.splitext(args.report)[0] + ".txt", text)):
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write(content)
    print("\n".join(text.splitlines()[:3]))
    print(f"report: {args.report}")
    sys.exit(1 if report["missing"] or report["unreadable"] else 0)


if __name__ == "__main__":
    main()
