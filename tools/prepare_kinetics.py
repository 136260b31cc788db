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

from nlnet.data.commands import add_prepare_arguments, prepare_options, run_prepare_kinetics
from nlnet.utils.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", nargs="+", required=True, help="official Kinetics CSV files")
    parser.add_argument("--raw", required=True, help="folder of raw downloads")
    parser.add_argument("--out", required=True, help="output dataset folder")
    add_prepare_arguments(parser)
    args = parser.parse_args()
    options = prepare_options(parser, args)
    sys.exit(run_prepare_kinetics(args.csv, args.raw, args.out, options))


if __name__ == "__main__":
    run_main(main)
