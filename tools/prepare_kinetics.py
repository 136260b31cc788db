"""Cut and rescale raw Kinetics downloads into the layout nlnet reads (resumable, parallel).

    python tools/prepare_kinetics.py --csv kinetics400/train.csv kinetics400/validate.csv \
        --raw downloads/ --out data/kinetics400 --short-side 256 --workers 16
    python tools/train.py experiment=nl_r50_kinetics data.root=data/kinetics400

Raw downloads are found as <raw>/<youtube_id>.<ext> (or <raw>/<label>/<youtube_id>.<ext>), as
youtube-dl/yt-dlp name them with -o '%(id)s.%(ext)s'. Each [time_start, time_end] segment is
written to <out>/<split>/<label>/<id>_<start:06d>_<end:06d>.mp4 (H.264, short side --short-side,
audio dropped), and <out>/<csv name> lists the segments produced (validate.csv is written as val.csv,
the name the configs read). Run it again to resume.
"""
import argparse
import sys

from nlnet.data.commands import run_prepare_kinetics
from nlnet.data.prepare import Encoding, PrepareOptions
from nlnet.utils.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", nargs="+", required=True, help="official Kinetics CSV files")
    parser.add_argument("--raw", required=True, help="folder of raw downloads")
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--short-side", type=int, default=256, help="0 keeps the size")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality (0-51)")
    parser.add_argument("--preset", default="veryfast", help="libx264 preset")
    parser.add_argument("--keyframe-interval", type=float, default=1.0,
                        help="seconds between keyframes (cheap random access); 0: x264 default")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for name, value, low, high in (("--short-side", args.short_side, 0, None), ("--crf", args.crf, 0, 51),
                                   ("--keyframe-interval", args.keyframe_interval, 0, None),
                                   ("--workers", args.workers, 1, None)):
        parser.require(name, value, low, high)
    encoding = Encoding(short_side=args.short_side or None, crf=args.crf, preset=args.preset,
                        keyframe_interval=args.keyframe_interval or None)
    sys.exit(run_prepare_kinetics(args.csv, args.raw, args.out,
                                  PrepareOptions(encoding=encoding, num_workers=args.workers)))


if __name__ == "__main__":
    run_main(main)
