"""Re-encode a downloaded dataset's videos to H.264 for fast random access (resumable, parallel).

    python tools/prepare_dataset.py --src downloads/ssv2 --out data/ssv2 --short-side 256 --workers 16
    python tools/train.py experiment=finetune/ssv2 data.root=data/ssv2 model.init_checkpoint=...

Every video under --src (.webm, .avi, .mkv, .mov, ...) is written to the same place under --out as
<name>.mp4 (H.264, short side --short-side, a keyframe every --keyframe-interval seconds, audio
dropped); every other file (the annotation files) is copied. The readers of every format (UCF101,
HMDB51, Something-Something v2, class folders) find <name>.mp4 where the official files list
<name>.webm or <name>.avi. Helps most for SSv2's VP9 webm files and one's own large videos; UCF101 and
HMDB51 AVIs are read as they are. Kinetics from raw YouTube downloads: tools/prepare_kinetics.py.
Run it again to resume.
"""
import argparse

from nlnet.data.commands import add_prepare_arguments, prepare_options
from nlnet.data.prepare import prepare_tree
from nlnet.utils.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="the dataset folder as downloaded")
    parser.add_argument("--out", required=True, help="the prepared dataset folder (data.root)")
    add_prepare_arguments(parser)
    args = parser.parse_args()
    options = prepare_options(parser, args)
    summary = prepare_tree(args.src, args.out, options=options)
    print(f"written: {summary['done']}, already done: {summary['skipped']}, other files copied: "
          f"{summary['copied']}, failed: {len(summary['failed'])}")
    for dst, reason in list(summary["failed"].items())[:20]:
        print(f"  failed {dst}: {reason}")


if __name__ == "__main__":
    run_main(main)
