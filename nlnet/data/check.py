"""Scanning a dataset for videos that cannot be read or are shorter than a clip."""
from __future__ import annotations

import os
from multiprocessing import Pool
from typing import Any

from .annotations import read_annotations
from .decoding import DECODE_TIMEOUT, MAX_FRAME_PIXELS, VideoDecodeError, VideoReader

__all__ = ["check_video", "check_dataset", "format_report"]


def check_video(path: str, *, min_frames: int = 1, full: bool = False,
                max_frame_pixels: int | None = MAX_FRAME_PIXELS,
                decode_timeout: float | None = DECODE_TIMEOUT) -> tuple[str, str]:
    """Classify one video as ``"ok"``, ``"unreadable"`` or ``"too_short"``, with a reason.

    Both modes run what ``VideoDataset`` runs on a video, with the same caps: open and probe it,
    decode from the first frame to the last (every frame on the way: corrupt, truncated or oversized
    data) and read the last frame after a seek (what a clip near the end does). So every file the
    dataset would fail on is reported.

    Args:
        path: the video file.
        min_frames: fewer frames than this (at the video's rate) is too short.
        full: also decode every packet to the end of the stream (finds damage after the last frame
            the container declares).
        max_frame_pixels: the dataset's cap on frame size (``VideoDataset(max_frame_pixels=)``).
        decode_timeout: the dataset's cap on decoding time per read, in seconds.
    """
    try:
        with VideoReader(path, threads=1, max_frame_pixels=max_frame_pixels, decode_timeout=decode_timeout) as reader:
            info = reader.info
            last = max(info.duration - 1.0 / info.fps, 0.0)
            reader.read([0.0, last], short_side=None)
            reader.read([last], short_side=None)
            if full and reader.count_frames() == 0:
                return "unreadable", "no frame could be decoded"
    except VideoDecodeError as e:
        return "unreadable", e.reason
    if info.num_frames < min_frames:
        return "too_short", f"{info.num_frames} frames ({info.duration:.2f}s), a clip needs {min_frames}"
    return "ok", ""


def _check_one(args):
    path, kwargs = args
    return path, *check_video(path, **kwargs)


def check_dataset(
    annotations: str | os.PathLike | None,
    root: str | os.PathLike,
    *,
    reader: Any | None = None,
    num_frames: int = 8,
    sampling_rate: int = 8,
    label_map: str | os.PathLike | None = None,
    full: bool = False,
    max_frame_pixels: int | None = MAX_FRAME_PIXELS,
    decode_timeout: float | None = DECODE_TIMEOUT,
    num_workers: int = 0,
    progress: bool = True,
) -> dict:
    """Check every video of an annotation file.

    Args:
        annotations: Kinetics CSV or list file (unused with ``reader``).
        root: dataset folder.
        reader: a dataset reader (``nlnet.data.readers``: UCF101, HMDB51, SSv2, class folders), read
            instead of ``annotations``.
        num_frames: clip length T; with ``sampling_rate`` it defines "too short"
            (fewer than ``(T - 1) * sampling_rate + 1`` frames; such videos still work, clamped).
        sampling_rate: clip stride tau.
        label_map: class-name file, as for ``VideoDataset``.
        full: also decode every packet to the end of each stream (see ``check_video``).
        max_frame_pixels: the dataset's cap on frame size.
        decode_timeout: the dataset's cap on decoding time per read (seconds).
        num_workers: processes (0: in this process).
        progress: show a tqdm progress bar.

    Returns:
        A report: ``{"annotations", "root", "total", "ok", "missing": [paths],
        "unreadable": {path: reason}, "too_short": {path: reason}}``.

    Raises:
        DataError: the annotation file cannot be read or lists no video.
    """
    if reader is not None:
        table = reader.read()
    elif annotations is not None:
        table = read_annotations(annotations, root, label_map=label_map)
    else:
        raise ValueError("check_dataset needs an annotation file or a reader")
    annotations = getattr(reader, "source", type(reader).__name__) if reader is not None else annotations
    min_frames = (num_frames - 1) * sampling_rate + 1
    options = dict(min_frames=min_frames, full=full, max_frame_pixels=max_frame_pixels, decode_timeout=decode_timeout)
    jobs = [(r.path, options) for r in table.records]
    report: dict[str, Any] = {"annotations": str(annotations), "root": str(root), "min_frames": min_frames,
              "total": len(jobs) + len(table.missing), "ok": 0, "missing": list(table.missing),
              "unreadable": {}, "too_short": {}}
    from tqdm import tqdm

    def checked(results):
        return list(tqdm(results, total=len(jobs), desc="checking videos", unit="video", disable=not progress))

    if num_workers > 0:
        with Pool(num_workers) as pool:
            results = checked(pool.imap_unordered(_check_one, jobs, chunksize=4))
    else:
        results = checked(map(_check_one, jobs))
    for path, status, reason in sorted(results):
        if status == "ok":
            report["ok"] += 1
        else:
            report[status][path] = reason
    return report


def format_report(report: dict) -> str:
    """A human-readable text version of a ``check_dataset`` report."""
    lines = [
        f"annotations: {report['annotations']}",
        f"root: {report['root']}",
        f"videos listed: {report['total']}  ok: {report['ok']}  missing: {len(report['missing'])}  "
        f"unreadable: {len(report['unreadable'])}  too short (< {report['min_frames']} frames): "
        f"{len(report['too_short'])}",
    ]
    for title, key in (("unreadable", "unreadable"), ("too short", "too_short")):
        if report[key]:
            lines.append(f"\n{title}:")
            lines += [f"  {path}: {reason}" for path, reason in report[key].items()]
    if report["missing"]:
        lines.append("\nmissing:")
        lines += [f"  {path}" for path in report["missing"]]
    return "\n".join(lines) + "\n"
