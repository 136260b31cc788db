"""Preparing Kinetics from raw downloads: cut each annotated segment, rescale, re-encode (H.264).

Input: the official CSVs and a folder of raw downloads named by YouTube id
(``<raw>/<youtube_id>.<ext>``, any container FFmpeg reads; ``<raw>/<label>/<youtube_id>.<ext>``
is found too). Output: ``<out>/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` with the
short side rescaled (256 in the paper, §4.1), timestamps kept (variable frame rate stays correct),
audio dropped, the display rotation kept as metadata, plus ``<out>/<csv name>`` listing the
segments that were produced; Kinetics' ``validate.csv`` is written as ``val.csv``, the name the data
configs read (``data.val.annotations``), so ``data.root=<out>`` is all a training run needs. Each
output is written to a temporary name and renamed, so an interrupted run is resumed by running it
again (finished outputs are skipped).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from nlnet.utils.errors import DataError

from .annotations import VIDEO_EXTENSIONS, read_kinetics_rows, write_kinetics_csv
from .decoding import VideoDecodeError, VideoReader, scaled_size
from .encode import H264Writer

__all__ = ["Encoding", "PrepareOptions", "PrepareJob", "find_raw_video", "cut_and_rescale", "prepare_kinetics",
           "output_csv_name", "prepare_tree"]

_RAW_EXTENSIONS = VIDEO_EXTENSIONS + (".mov", ".avi", ".flv", ".3gp")
# Kinetics ships train.csv, validate.csv and test.csv; the data configs read <root>/train.csv and <root>/val.csv.
_OUTPUT_CSV_NAMES = {"validate.csv": "val.csv"}


def output_csv_name(csv_file: str | os.PathLike) -> str:
    """The name of the annotation file written for an official CSV (``validate.csv`` -> ``val.csv``)."""
    name = Path(csv_file).name
    return _OUTPUT_CSV_NAMES.get(name, name)


@dataclass(frozen=True)
class Encoding:
    """How a prepared video is encoded (H.264 with libx264); what every preparation shares.

    Args:
        short_side: rescale so the shorter side is this long (None: keep the size; 256 in the paper, §4.1).
        crf: libx264 quality.
        preset: libx264 speed preset.
        keyframe_interval: seconds between keyframes (None: libx264's 250 frames). A clip then
            decodes at most this long before its window: random access stays cheap.
    """

    short_side: int | None = 256
    crf: int = 23
    preset: str = "veryfast"
    keyframe_interval: float | None = 1.0


@dataclass(frozen=True)
class PrepareJob:
    """One segment to produce."""

    src: str
    dst: str
    start: float
    end: float


def find_raw_video(raw_dir: str | os.PathLike, youtube_id: str, label: str | None = None) -> str | None:
    """The raw download of a YouTube id: ``<raw>/<id>.<ext>`` or ``<raw>/<label>/<id>.<ext>``."""
    folders = [Path(raw_dir)] + ([Path(raw_dir) / label, Path(raw_dir) / label.replace(" ", "_")] if label else [])
    for folder in folders:
        for ext in _RAW_EXTENSIONS:
            candidate = folder / f"{youtube_id}{ext}"
            if candidate.is_file():
                return str(candidate)
    return None


def _even(x: int) -> int:
    return max(2, x - x % 2)


def cut_and_rescale(
    src: str,
    dst: str,
    *,
    start: float,
    end: float,
    encoding: Encoding | None = None,
) -> int:
    """Write ``[start, end)`` seconds of ``src`` (from its first frame) to ``dst`` as H.264 .mp4.

    Args:
        src: raw video.
        dst: output path; written to a temporary name in the same folder, then renamed (parent
            folders are created).
        start: segment start in seconds.
        end: segment end in seconds.
        encoding: size, quality and keyframes of the output (None: ``Encoding()``).

    Returns:
        The number of frames written.

    Raises:
        VideoDecodeError: the source cannot be read or has no frame in the segment.
    """
    encoding = encoding or Encoding()
    with VideoReader(src) as reader, contextlib.ExitStack() as stack:
        info = reader.info
        width, height = (_even(v) for v in scaled_size(info.width, info.height, encoding.short_side))
        writer = None
        for t, frame in reader.frames_between(start, end):
            if writer is None:  # the first frame's display rotation is kept as metadata
                writer = stack.enter_context(H264Writer(
                    dst, width=width, height=height, fps=info.fps, crf=encoding.crf, preset=encoding.preset,
                    container_format="mp4",
                    gop_size=(max(1, int(round(encoding.keyframe_interval * info.fps)))
                              if encoding.keyframe_interval else None),
                    rotation=int(frame.rotation or 0)))
            writer.write(frame.reformat(width, height, "yuv420p", interpolation="AREA"), t - start)
        if writer is None:
            raise VideoDecodeError(f"no frame between {start:.2f}s and {end:.2f}s (video is {info.duration:.2f}s)", src)
        return writer.frames_written


_worker_options: dict[str, Any] = {}  # cut_and_rescale's options in this process (set by _init_worker)


def _run_job(job: PrepareJob) -> tuple[PrepareJob, str]:
    try:
        cut_and_rescale(job.src, job.dst, start=job.start, end=job.end, **_worker_options)
        return job, ""
    except Exception as e:  # one bad download must not stop the others
        return job, f"{type(e).__name__}: {e}"


def _init_worker(options: dict) -> None:
    global _worker_options
    _worker_options = options


@dataclass(frozen=True)
class PrepareOptions:
    """How a preparation runs (``prepare_kinetics``, ``prepare_tree``): the outputs' encoding, the
    processes and the progress bar.

    Args:
        encoding: size, quality and keyframes of the outputs (None: ``Encoding()``).
        num_workers: parallel processes.
        progress: show a tqdm progress bar.
    """

    encoding: Encoding | None = None
    num_workers: int = 1
    progress: bool = True

    def run(self, jobs: list[PrepareJob]) -> dict[str, str]:
        """Run ``cut_and_rescale`` on every job (in ``num_workers`` processes); returns the failures
        (``{dst: reason}``)."""
        from tqdm import tqdm

        options = dict(encoding=self.encoding)
        failed: dict[str, str] = {}
        bar = tqdm(total=len(jobs), desc="preparing videos", unit="video", disable=not self.progress)
        if self.num_workers > 1:
            with Pool(self.num_workers, initializer=_init_worker, initargs=(options,)) as pool:
                for job, error in pool.imap_unordered(_run_job, jobs):
                    bar.update()
                    if error:
                        failed[job.dst] = error
        else:
            _init_worker(options)
            for job in jobs:
                _, error = _run_job(job)
                bar.update()
                if error:
                    failed[job.dst] = error
        bar.close()
        return failed


def prepare_kinetics(
    csv_files: list[str | os.PathLike],
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    options: PrepareOptions | None = None,
) -> dict:
    """Cut and rescale every segment of the official CSVs; resumable; writes the output CSVs.

    Args:
        csv_files: official Kinetics CSVs (``label,youtube_id,time_start,time_end,split``).
        raw_dir: folder of raw downloads (see ``find_raw_video``).
        out_dir: dataset folder to produce (Kinetics layout, see ``annotations.py``).
        options: encoding, processes and progress bar (None: ``PrepareOptions()``).

    Returns:
        ``{"done", "skipped", "no_download": [ids], "failed": {dst: reason}, "csv": [paths]}``;
        every output CSV (:func:`output_csv_name`) lists the segments that exist in ``out_dir`` after
        the run.

    Raises:
        FileNotFoundError: a CSV file or ``raw_dir`` does not exist.
        DataError: a CSV is not an official Kinetics CSV or lists nothing; two CSVs map to one output.
    """
    if not Path(raw_dir).is_dir():
        raise FileNotFoundError(f"folder of raw downloads not found: {raw_dir}")
    names = [output_csv_name(c) for c in csv_files]
    if len(set(names)) < len(names):
        raise DataError(f"the CSV files {[str(c) for c in csv_files]} would write the same annotation file "
                        f"({names}); give CSVs with different names")
    tables, jobs, no_download, skipped = [], [], [], 0
    for csv_file in csv_files:
        if not Path(csv_file).is_file():
            raise FileNotFoundError(f"CSV file not found: {csv_file}")
        rows = read_kinetics_rows(csv_file)
        if not rows:
            raise DataError(f"{csv_file} lists no videos")
        tables.append((Path(csv_file), rows))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for _, rows in tables:
        for row in rows:
            dst = out_dir / row["split"] / row["label"] / f"{row['stem']}.mp4"
            row["_dst"] = str(dst)
            if dst.is_file():
                skipped += 1
                continue
            src = find_raw_video(raw_dir, row["youtube_id"], row["label"])
            if src is None:
                no_download.append(row["youtube_id"])
                continue
            jobs.append(PrepareJob(src, str(dst), float(row["time_start"]), float(row["time_end"])))
    failed = (options or PrepareOptions()).run(jobs)
    written_csv = []
    for csv_file, rows in tables:
        target = out_dir / output_csv_name(csv_file)
        write_kinetics_csv(target, ((row["label"], row["youtube_id"], row["time_start"], row["time_end"],
                                     row["split"]) for row in rows if Path(row["_dst"]).is_file()))
        written_csv.append(str(target))
    return {"done": len(jobs) - len(failed), "skipped": skipped, "no_download": no_download,
            "failed": failed, "csv": written_csv}


def prepare_tree(src_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                 options: PrepareOptions | None = None) -> dict:
    """Re-encode every video of a dataset folder to H.264 .mp4 (short side, keyframe interval), keeping
    the folder layout and copying every other file (the annotation files); resumable.

    For any format of ``nlnet.data.readers``: the readers find ``<name>.mp4`` where the official files
    list ``<name>.webm`` or ``<name>.avi``. Worth it for Something-Something v2 (VP9 with long keyframe
    intervals) and for large videos of one's own; UCF101 and HMDB51 AVIs are read as they are.

    Args:
        src_dir: the dataset as downloaded.
        out_dir: the prepared copy (``data.root`` of the training run).
        options: encoding, processes and progress bar (None: ``PrepareOptions()``).

    Returns:
        ``{"done", "skipped", "copied", "failed": {dst: reason}}``.

    Raises:
        FileNotFoundError: ``src_dir`` does not exist.
        DataError: ``out_dir`` is inside ``src_dir``.
    """
    import shutil

    src_dir, out_dir = Path(src_dir).resolve(), Path(out_dir).resolve()
    if not src_dir.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {src_dir}")
    if out_dir == src_dir or src_dir in out_dir.parents:
        raise DataError(f"output folder {out_dir} is inside the source folder {src_dir}: choose another")
    jobs, skipped, copied = [], 0, 0
    for folder, _, files in os.walk(src_dir):
        for name in sorted(files):
            src = Path(folder) / name
            rel = src.relative_to(src_dir)
            if src.suffix.lower() in _RAW_EXTENSIONS:
                dst = out_dir / rel.with_suffix(".mp4")
                if dst.is_file():
                    skipped += 1
                else:
                    jobs.append(PrepareJob(str(src), str(dst), 0.0, float("inf")))
            elif not (out_dir / rel).is_file():
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out_dir / rel)
                copied += 1
    failed = (options or PrepareOptions()).run(jobs)
    return {"done": len(jobs) - len(failed), "skipped": skipped, "copied": copied, "failed": failed}

