"""Multi-label videos: the Charades reader, a generic multi-label list reader and the multi-hot target of a clip.

Charades (paper §5.2, Table 4) has 157 action classes, several per video, each with a time span. The
official release holds:

- ``Charades_v1_train.csv`` / ``Charades_v1_test.csv`` with the columns ``id, subject, scene, quality,
  relevance, verified, script, objects, descriptions, actions, length``; ``actions`` lists the video's
  actions as ``c092 11.90 21.20;c147 0.00 12.60`` (class id, start and end in seconds; empty when the
  video has none) and ``length`` is the video's duration in seconds;
- ``Charades_v1_classes.txt``, one ``c000 Holding some clothes`` per line (id, then the name);
- the videos ``<id>.mp4`` (e.g. the 480p release) in one folder.

A training clip's target holds the actions whose time span overlaps the clip's (PySlowFast's
frame-level labelling, expressed in seconds); a test video's target holds all of its actions
(:func:`clip_target`). Each reader is a plain object built from YAML with one method, ``read()``,
returning :class:`~nlnet.data.annotations.Annotations` for ``VideoDataset(reader=...)``.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import torch

from nlnet.utils.errors import DataError

from .annotations import Annotations, VideoRecord, list_lines, read_label_map

__all__ = ["CharadesReader", "MultiLabelListReader", "read_charades_classes", "parse_actions", "clip_target"]

logger = logging.getLogger(__name__)

CHARADES_COLUMNS = ("id", "actions", "length")


def read_charades_classes(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(ids, names) of ``Charades_v1_classes.txt`` (``c000 Holding some clothes`` per line), in file order.

    Raises:
        DataError: the file cannot be read, a line has no name, or an id repeats (naming the file and line).
    """
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"Charades class file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Charades class file {path} cannot be read: {' '.join(str(e).split())}") from None
    ids, names = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected 'c000 Class name', got {line!r}")
        if parts[0] in ids:
            raise DataError(f"{path}:{number}: class id {parts[0]} appears twice")
        ids.append(parts[0])
        names.append(parts[1])
    if not ids:
        raise DataError(f"Charades class file {path} lists no classes")
    return ids, names


def parse_actions(text: str, *, index: dict[str, int], length: float,
                  where: str) -> tuple[tuple[int, float, float], ...]:
    """The ``(class, start_s, end_s)`` of a Charades ``actions`` cell (``c092 11.90 21.20;c147 0.00 12.60``).

    An end past ``length`` is clipped to it; a span that does not overlap the video at all is an error.

    Args:
        text: the cell (empty: no action).
        index: class id -> class index.
        length: the video's duration in seconds.
        where: ``file:line``, for messages.

    Raises:
        DataError: a malformed action, an id not in the class file, or a span outside ``[0, length]``.
    """
    spans = []
    for action in filter(None, (a.strip() for a in text.split(";"))):
        parts = action.split()
        try:
            cls, start, end = parts[0], float(parts[1]), float(parts[2])
            if len(parts) != 3:
                raise ValueError
        except (IndexError, ValueError):
            raise DataError(f"{where}: expected actions like 'c092 11.90 21.20;c147 0.00 12.60', "
                            f"got {action!r}") from None
        if cls not in index:
            raise DataError(f"{where}: action {cls} is not in the class file ({len(index)} classes, "
                            f"{min(index)}..{max(index)})")
        if start < 0 or end < start or start > length:
            raise DataError(f"{where}: action {cls} spans {start:g}-{end:g} s, outside the video's 0-{length:g} s")
        spans.append((index[cls], start, min(end, length)))
    return tuple(spans)


def _multi_label_record(path: str, labels: list[int], spans: tuple[tuple[int, float, float], ...] = ()) -> VideoRecord:
    classes = tuple(sorted(set(labels)))
    return VideoRecord(path, classes[0] if classes else -1, labels=classes, spans=spans)


def _report_missing(result: Annotations, annotations: str | os.PathLike, root: str | os.PathLike) -> Annotations:
    if not result.records and not result.missing:
        raise DataError(f"annotation file {annotations} lists no videos")
    if result.missing:
        logger.warning("%d of %d videos listed in %s are missing under %s and are skipped (first: %s)",
                       len(result.missing), len(result.missing) + len(result.records), annotations, root,
                       result.missing[0])
    return result


class CharadesReader:
    """The official Charades annotations (``Charades_v1_{train,test}.csv`` + ``Charades_v1_classes.txt``).

    Args:
        annotations: ``Charades_v1_train.csv`` or ``Charades_v1_test.csv``.
        classes: ``Charades_v1_classes.txt``; class ``i`` is its ``i``-th line, named by its text.
        root: folder of the videos, ``<root>/<id><extension>``.
        extension: the videos' file extension.
    """

    def __init__(self, *, annotations: str | os.PathLike, classes: str | os.PathLike, root: str | os.PathLike,
                 extension: str = ".mp4") -> None:
        self.annotations = annotations
        self.classes = classes
        self.root = root
        self.extension = extension
        self.source = str(annotations)  # what was read, named in messages

    def read(self) -> Annotations:
        """The present videos with all their actions (``labels``) and time spans (``spans``).

        Raises:
            FileNotFoundError: an annotation or class file does not exist.
            DataError: a column is missing, or a row is malformed (naming the file and line).
        """
        ids, names = read_charades_classes(self.classes)
        index = {cid: i for i, cid in enumerate(ids)}
        path = Path(self.annotations)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file {path} does not exist")
        records, missing = [], []
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                absent = [c for c in CHARADES_COLUMNS if c not in (reader.fieldnames or [])]
                if absent:
                    raise DataError(f"{path}: not a Charades CSV: columns {absent} are missing (expected "
                                    f"{','.join(CHARADES_COLUMNS)} among id,subject,scene,...,actions,length)")
                for line, row in enumerate(reader, 2):
                    where = f"{path}:{line}"
                    try:
                        length = float(row["length"])
                    except (TypeError, ValueError):
                        raise DataError(f"{where}: length {row['length']!r} is not a number of seconds") from None
                    spans = parse_actions(row["actions"] or "", index=index, length=length, where=where)
                    video = os.path.join(str(self.root), row["id"].strip() + self.extension)
                    if os.path.isfile(video):
                        records.append(_multi_label_record(video, [s[0] for s in spans], spans))
                    else:
                        missing.append(video)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path} cannot be read as a CSV: {' '.join(str(e).split())}") from None
        return _report_missing(Annotations(records, names, missing, multi_label=True), path, self.root)


class MultiLabelListReader:
    """A list of multi-label videos, one ``relative/path label,label,...`` per line (mmaction2's
    ``multi_class`` lists; a path may contain spaces; no time spans: every clip has all the labels).

    Args:
        annotations: the list file.
        root: the folder the paths are relative to.
        label_map: class-name file (see ``read_label_map``); without it the classes are the indices
            ``0..num_classes-1``.
        num_classes: without a label map, the number of classes (None: the largest index + 1).
    """

    def __init__(self, *, annotations: str | os.PathLike, root: str | os.PathLike,
                 label_map: str | os.PathLike | None = None, num_classes: int | None = None) -> None:
        self.annotations = annotations
        self.root = root
        self.label_map = label_map
        self.num_classes = num_classes
        self.source = str(annotations)

    def read(self) -> Annotations:
        """The present videos with their labels.

        Raises:
            FileNotFoundError: the list does not exist.
            DataError: a malformed line or a label outside the classes (naming the file and line).
        """
        path = Path(self.annotations)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file {path} does not exist")
        entries = []
        for number, line, parts in list_lines(path):
            texts = parts[1].split(",") if len(parts) == 2 else []
            if not texts or not all(text.isdigit() for text in texts):
                raise DataError(f"{path}:{number}: expected 'relative/path label,label,...', got {line!r}")
            entries.append((number, parts[0], [int(text) for text in texts]))
        if self.label_map is not None:
            names = read_label_map(self.label_map)
        else:
            largest = max((max(labels) for _, _, labels in entries), default=-1)
            names = [str(i) for i in range(self.num_classes or largest + 1)]
        records, missing = [], []
        for number, rel, labels in entries:
            if max(labels) >= len(names):
                raise DataError(f"{path}:{number}: label {max(labels)} of {rel} outside 0..{len(names) - 1}")
            full = os.path.join(str(self.root), rel)
            (records.append(_multi_label_record(full, labels)) if os.path.isfile(full) else missing.append(full))
        return _report_missing(Annotations(records, names, missing, multi_label=True), path, self.root)


def clip_target(record: VideoRecord, num_classes: int, window: tuple[float, float] | None = None) -> torch.Tensor:
    """The multi-hot (K,) float32 target of a clip of ``record``'s video.

    Args:
        record: the video (``labels``; ``spans`` where the actions are timed).
        num_classes: K.
        window: the clip's ``(start_s, end_s)``: the target holds the actions whose span overlaps it
            (a training clip); None, or a video without time spans: all of the video's actions (a test video).
    """
    target = torch.zeros(num_classes, dtype=torch.float32)
    if window is None or not record.spans:
        classes = list(record.labels)
    else:
        start, end = window
        classes = [cls for cls, s, e in record.spans if s <= end and e >= start]
    target[classes] = 1.0
    return target
