"""What the data tools (make_synthetic_dataset, check_dataset, prepare_kinetics) do, as functions of
plain values (the tools only parse their command line). Each prints a short human summary and
returns the process exit status.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlnet.utils.io import atomic_path

from .check import check_dataset, format_report
from .prepare import Encoding, PrepareOptions, prepare_kinetics
from .synthetic import make_synthetic_dataset

__all__ = ["SYNTHETIC_PRESETS", "run_make_synthetic", "run_check_dataset", "run_prepare_kinetics",
           "add_prepare_arguments", "prepare_options"]

SYNTHETIC_PRESETS: dict[str, dict[str, Any]] = {
    # the CPU demo: 6 classes x (100 train + 20 val) clips of 32 frames, 64x64, 25 fps
    "demo": dict(num_classes=6, train_per_class=100, val_per_class=20, num_frames=32, size=64, noise=4.0),
    # python -m benchmarks.data: Kinetics-like files, 10 s at 320x256, 25 fps, encoded as users train on them
    # (prepare_kinetics: one keyframe per second)
    "bench": dict(num_classes=2, train_per_class=8, val_per_class=2, num_frames=250, size=(320, 256), noise=8.0,
                  gop_size=25),
}


def run_make_synthetic(root: str | os.PathLike, *, preset: str = "demo", seed: int = 0, gop_size: int | None = None,
                       overwrite: bool = False, **overrides: Any) -> int:
    """Write the synthetic dataset of ``preset`` at ``root`` (``overrides``: its values to change, None
    keeps the preset's); print what was written. Returns 0.

    Args:
        root: output folder.
        preset: a key of ``SYNTHETIC_PRESETS``.
        seed, overwrite: as for :func:`~nlnet.data.synthetic.make_synthetic_dataset`.
        gop_size, overrides: ``num_classes``, ``train_per_class``, ``val_per_class``, ``num_frames``, ``size``
            (None keeps the preset's).
    """
    options = {**SYNTHETIC_PRESETS[preset], **{k: v for k, v in dict(overrides, gop_size=gop_size).items()
                                               if v is not None}}
    start = time.time()
    info = make_synthetic_dataset(root, seed=seed, overwrite=overwrite, **options)
    if info["skipped"]:
        print(f"{root}: already complete, nothing to do")
    else:
        videos = info["num_classes"] * (info["train_per_class"] + info["val_per_class"])
        print(f"{root}: wrote {videos} videos ({info['width']}x{info['height']}, {info['num_frames']} "
              f"frames) and train.csv, val.csv in {time.time() - start:.1f}s")
    return 0


def run_check_dataset(annotations: str | os.PathLike, root: str | os.PathLike, *, report: str | os.PathLike,
                      **options: Any) -> int:
    """Check every video ``annotations`` lists (:func:`~nlnet.data.check.check_dataset`); write the JSON
    ``report`` and its text twin (same name, ``.txt``); print the summary.

    Returns:
        1 when a listed video is missing or unreadable, else 0.
    """
    result = check_dataset(annotations, root, **options)
    text = format_report(result)
    for path, content in ((report, json.dumps(result, indent=2)), (Path(report).with_suffix(".txt"), text)):
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write(content)
    print("\n".join(text.splitlines()[:3]))
    print(f"report: {report}")
    return 1 if result["missing"] or result["unreadable"] else 0


def run_prepare_kinetics(csv_files: Sequence[str | os.PathLike], raw_dir: str | os.PathLike,
                         out_dir: str | os.PathLike, options: PrepareOptions | None = None) -> int:
    """Cut and rescale the segments the official CSVs list (:func:`~nlnet.data.prepare.prepare_kinetics`);
    print what was written, skipped and failed. Returns 0."""
    summary = prepare_kinetics(list(csv_files), raw_dir, out_dir, options=options)
    print(f"written: {summary['done']}, already done: {summary['skipped']}, "
          f"no download: {len(summary['no_download'])}, failed: {len(summary['failed'])}")
    for dst, reason in list(summary["failed"].items())[:20]:
        print(f"  failed {dst}: {reason}")
    print("annotation files: " + ", ".join(summary["csv"]))
    if summary["failed"] or summary["no_download"]:
        print(json.dumps({"no_download": summary["no_download"][:20]}, indent=None))
    return 0


def add_prepare_arguments(parser: Any) -> None:
    """The encoding and worker options of the prepare commands (``--short-side``, ``--crf``, ``--preset``,
    ``--keyframe-interval``, ``--workers``), with :class:`Encoding`'s defaults."""
    default = Encoding()
    parser.add_argument("--short-side", type=int, default=default.short_side, help="0 keeps the size")
    parser.add_argument("--crf", type=int, default=default.crf, help="libx264 quality (0-51)")
    parser.add_argument("--preset", default=default.preset, help="libx264 preset")
    parser.add_argument("--keyframe-interval", type=float, default=default.keyframe_interval,
                        help="seconds between keyframes (cheap random access); 0: x264 default")
    parser.add_argument("--workers", type=int, default=1)


def prepare_options(parser: Any, args: Any) -> PrepareOptions:
    """:class:`PrepareOptions` from the options :func:`add_prepare_arguments` added, each checked (one line
    naming the option through ``parser.require``)."""
    for name, value, low, high in (("--short-side", args.short_side, 0, None), ("--crf", args.crf, 0, 51),
                                   ("--keyframe-interval", args.keyframe_interval, 0, None),
                                   ("--workers", args.workers, 1, None)):
        parser.require(name, value, low, high)
    encoding = Encoding(short_side=args.short_side or None, crf=args.crf, preset=args.preset,
                        keyframe_interval=args.keyframe_interval or None)
    return PrepareOptions(encoding=encoding, num_workers=args.workers)
