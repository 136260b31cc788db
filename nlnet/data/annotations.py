"""Reading the annotation files users have into (path, label) records.

Two formats:
- the official Kinetics CSV ``label,youtube_id,time_start,time_end,split``, with videos at
  ``<root>/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.<ext>`` or in a flat
  ``<root>/<split>/`` folder (``.mp4``, ``.mkv`` or ``.webm``; label folders may use ``_`` for
  spaces). Class names are the sorted unique labels, or those of a label map;
- a plain list, one ``relative/path label_index`` per line (the PySlowFast / mmaction2
  convention; a path may contain spaces). Class names come from a label map (or are the indices).

A label map is a text file with one class name per line (line number = index) or a JSON object
``{"name": index}``. Listed files that are missing are counted and excluded, never a crash.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from nlnet.utils.errors import DataError
from nlnet.utils.io import atomic_path

__all__ = ["VideoRecord", "Annotations", "read_annotations", "read_label_map", "read_kinetics_rows",
           "kinetics_filename", "write_kinetics_csv"]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


@dataclass(frozen=True)
class VideoRecord:
    """One usable video: its path and class index; a multi-label video also lists all its classes
    (``labels``) and, where the annotation times them, each action's ``(class, start_s, end_s)``."""

    path: str
    label: int
    labels: tuple[int, ...] = ()
    spans: tuple[tuple[int, float, float], ...] = ()


@dataclass
class Annotations:
    """The usable records of an annotation file, its class names, and what is missing; ``multi_label``:
    a video may have several classes (``VideoRecord.labels``)."""

    records: list[VideoRecord]
    classes: list[str]
    missing: list[str] = field(default_factory=list)
    multi_label: bool = False


def kinetics_filename(youtube_id: str, time_start: float, time_end: float) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>`` (no extension), the official Kinetics file stem."""
    return f"{youtube_id}_{int(time_start):06d}_{int(time_end):06d}"


def read_label_map(path: str | os.PathLike) -> list[str]:
    """Class names by index from a label map (text, one name per line; or JSON ``{name: index}``)."""
    path = Path(path)
    try:
        text = path.read_text()
        mapping = json.loads(text) if path.suffix == ".json" else None
    except FileNotFoundError:
        raise FileNotFoundError(f"label map {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"label map {path} cannot be read: {' '.join(str(e).split())}") from None
    if mapping is None:
        return [line.strip() for line in text.splitlines() if line.strip()]
    names: list[str | None] = [None] * len(mapping) if isinstance(mapping, dict) else []
    for name, index in (mapping.items() if isinstance(mapping, dict) else [(None, -1)]):
        if not isinstance(index, int) or not 0 <= index < len(names) or names[index] is not None:
            raise DataError(f"label map {path}: expected {{\"name\": index}} with indices 0..{len(names) - 1}, "
                            "each once")
        names[index] = name
    return cast("list[str]", names)  # len(names) distinct indices: every slot is filled


class _DirIndex:
    """Lists each folder once (stem -> file name) instead of stat-ing every candidate path."""

    def __init__(self) -> None:
        self._cache: dict[str, dict[str, str]] = {}

    def find(self, folder: str, stem: str) -> str | None:
        if folder not in self._cache:
            entries: dict[str, str] = {}
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        base, ext = os.path.splitext(entry.name)
                        if ext.lower() in VIDEO_EXTENSIONS:
                            entries.setdefault(base, entry.name)
            except OSError:
                pass
            self._cache[folder] = entries
        name = self._cache[folder].get(stem)
        return os.path.join(folder, name) if name else None


def _is_kinetics_csv(first_line: str) -> bool:
    header = [c.strip().lower() for c in first_line.split(",")]
    return all(c in header for c in KINETICS_COLUMNS)


def read_annotations(
    annotations: str | os.PathLike, root: str | os.PathLike, *, label_map: str | os.PathLike | None = None
) -> Annotations:
    """Read an annotation file (format detected from its first line) and find its videos under ``root``.

    Args:
        annotations: Kinetics CSV or plain list file.
        root: dataset folder the video paths are relative to.
        label_map: optional class-name file; fixes class indices (required to keep a model's
            class order when a split lacks some classes).

    Returns:
        ``Annotations`` with the present videos, the class names and the missing paths. A warning
        is logged once when files are missing.

    Raises:
        FileNotFoundError: the annotation file does not exist.
        DataError: the file cannot be read, lists no videos, or a line or label is malformed
            (the message names the file and line).
    """
    annotations = Path(annotations)
    if not annotations.is_file():
        raise FileNotFoundError(f"annotation file {annotations} does not exist")
    try:
        with open(annotations, newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file {annotations} cannot be read: {e}") from None
    names = read_label_map(label_map) if label_map is not None else None
    if _is_kinetics_csv(first):
        result = _read_kinetics_csv(annotations, Path(root), names)
    else:
        result = _read_list(annotations, Path(root), names)
    if not result.records and not result.missing:
        raise DataError(f"annotation file {annotations} lists no videos")
    if result.missing:
        total = len(result.missing) + len(result.records)
        logger.warning(
            "%d of %d videos listed in %s are missing under %s and are skipped (first: %s)",
            len(result.missing), total, annotations, root, result.missing[0],
        )
    return result


def _read_kinetics_csv(path: Path, root: Path, names: list[str] | None) -> Annotations:
    rows = read_kinetics_rows(path)
    if names is None:
        names = sorted({row["label"] for row in rows})
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({row["label"] for row in rows} - index.keys())
    if unknown:
        raise DataError(f"{path}: labels {unknown[:5]} are not in the label map ({len(names)} classes)")
    dirs = _DirIndex()
    records, missing = [], []
    for row in rows:
        label = row["label"]
        stem = row["stem"]
        split = row["split"]
        candidates = [root / split / label, root / split / label.replace(" ", "_"), root / split]
        found = None
        for folder in candidates:
            found = dirs.find(str(folder), stem)
            if found:
                break
        if found:
            records.append(VideoRecord(found, index[label]))
        else:
            missing.append(str(root / split / label / (stem + ".mp4")))
    return Annotations(records, list(names), missing)


def list_lines(path: Path) -> list[tuple[int, str, list[str]]]:
    """The non-empty lines of a ``relative/path label`` list file: (line number, line, its words split at
    the last white space, so that a path may contain spaces).

    Raises:
        DataError: the file cannot be read.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"annotation file {path} cannot be read: {e}") from None
    return [(number, line, line.strip().rsplit(maxsplit=1)) for number, line in enumerate(lines, 1) if line.strip()]


def _read_list(path: Path, root: Path, names: list[str] | None) -> Annotations:
    entries = []
    for number, line, parts in list_lines(path):
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(
                f"{path}:{number}: expected 'relative/path label_index' or a Kinetics CSV header "
                f"({','.join(KINETICS_COLUMNS)},split), got {line!r}"
            )
        entries.append((parts[0], int(parts[1])))
    if names is None:
        names = [str(i) for i in range(max((label for _, label in entries), default=-1) + 1)]
    records, missing = [], []
    for rel, label in entries:
        if not 0 <= label < len(names):
            raise DataError(f"{path}: label {label} of {rel} outside 0..{len(names) - 1}")
        full = root / rel
        (records.append(VideoRecord(str(full), label)) if full.is_file() else missing.append(str(full)))
    return Annotations(records, list(names), missing)


def read_kinetics_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of an official-format Kinetics CSV, each with its ``stem`` (``kinetics_filename``) and
    ``split`` (stripped; empty when the column is absent).

    Raises:
        DataError: a required column is missing, or a row is malformed (naming the file and line).
    """
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            absent = [c for c in KINETICS_COLUMNS if c not in columns]
            if absent:
                raise DataError(f"{path}: not a Kinetics CSV: columns {absent} are missing (expected "
                                f"{','.join(KINETICS_COLUMNS)},split; found {','.join(columns) or 'nothing'})")
            rows = []
            for line, row in enumerate(reader, 2):
                row = {(k or "").strip().lower(): v.strip() if isinstance(v, str) else "" for k, v in row.items()}
                try:
                    row["stem"] = kinetics_filename(row["youtube_id"], float(row["time_start"]), float(row["time_end"]))
                except ValueError:
                    raise DataError(f"{path}:{line}: expected label,youtube_id,time_start,time_end,split with "
                                    f"numeric times, got {','.join(row.values())!r}") from None
                if not row["youtube_id"] or not row["label"]:
                    raise DataError(f"{path}:{line}: empty label or youtube_id")
                row.setdefault("split", "")
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} cannot be read as a CSV: {' '.join(str(e).split())}") from None
    return rows


def write_kinetics_csv(path: str | os.PathLike, rows: Iterable[Sequence]) -> None:
    """Write an official-format Kinetics CSV (``label,youtube_id,time_start,time_end,split``), atomically.

    Args:
        path: the CSV file.
        rows: ``(label, youtube_id, time_start, time_end, split)`` tuples.
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*KINETICS_COLUMNS, "split"])
        writer.writerows(rows)
