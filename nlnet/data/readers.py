"""Readers of the official annotation files: one small object per dataset format, one interface.

A reader is built from a config node (``data.train.reader``, keyword-only arguments) and has one
method, ``read() -> Annotations``: the usable ``(path, label)`` records, the class names in index
order and the listed videos that are missing (counted, logged once and skipped, never a crash).
``VideoDataset(reader=...)`` takes any of them; sampling, decoding and transforms are shared.

Formats, exactly as the datasets ship them:

- :class:`ListReader`: the Kinetics CSV or a ``relative/path label_index`` list (``read_annotations``).
- :class:`UCF101Reader`: ``ucfTrainTestlist/classInd.txt`` (``1 ApplyEyeMakeup``: 1-based index,
  name), ``trainlist0{1,2,3}.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``) and
  ``testlist0{1,2,3}.txt`` (the path only: the class is its folder); videos ``<root>/<path>``.
- :class:`HMDB51Reader`: ``testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt``, one
  ``<video>.avi <tag>`` per line (tag 1: training, 2: testing, 0: unused); videos
  ``<root>/<class>/<video>.avi``; classes in sorted order (51).
- :class:`SSv2Reader`: ``something-something-v2-labels.json`` (``{"template": "index"}``) and
  ``something-something-v2-{train,validation}.json`` (records with ``id``, ``label``, ``template``,
  ``placeholders``; the class is the template with ``[`` and ``]`` removed); videos ``<root>/<id>.webm``.
- :class:`FolderReader`: ``<root>/<split>/<class>/*.{mp4,avi,mkv,webm}`` (torchvision's ImageFolder
  convention), classes sorted by name, for data with no annotation file.

A listed video is also found under the same name with another video extension (``.mp4`` after
``nlnet.data.prepare.prepare_tree`` re-encoded it). Bad input is one line naming the file and line.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from nlnet.utils.errors import ConfigError, DataError

from .annotations import Annotations, VideoRecord, read_annotations, read_label_map

__all__ = ["Reader", "ListReader", "UCF101Reader", "HMDB51Reader", "SSv2Reader", "FolderReader",
           "FOLDER_EXTENSIONS", "SUBSETS"]

logger = logging.getLogger(__name__)

FOLDER_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")
SUBSETS = ("train", "test")
_THREE_SPLITS = (1, 2, 3)


class Reader(Protocol):
    """What ``VideoDataset`` needs of a reader: ``read()``; ``source`` (what was read, named in messages)
    is optional."""

    source: str

    def read(self) -> Annotations: ...


def _check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: valid values are {', '.join(str(c) for c in choices)}")


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} cannot be read: {' '.join(str(e).split())}") from None


def find_video(path: Path) -> Path | None:
    """``path`` if it is a file, else the same name with another video extension (a prepared copy)."""
    if path.is_file():
        return path
    for ext in FOLDER_EXTENSIONS:
        candidate = path.with_suffix(ext)
        if candidate != path and candidate.is_file():
            return candidate
    return None


class _Collector:
    """Records and missing videos of one annotation file; ``finish`` logs the missing ones once."""

    def __init__(self, source: str, root: Path) -> None:
        self.source, self.root = source, root
        self.records: list[VideoRecord] = []
        self.missing: list[str] = []
        self.first_missing = ""

    def add(self, path: Path, label: int, where: str) -> None:
        found = find_video(path)
        if found is not None:
            self.records.append(VideoRecord(str(found), label))
            return
        if not self.missing:
            self.first_missing = f"{where}: {path}"
        self.missing.append(str(path))

    def finish(self, classes: list[str]) -> Annotations:
        if not self.records and not self.missing:
            raise DataError(f"{self.source} lists no videos")
        if self.missing:
            logger.warning("%d of %d videos listed in %s are missing under %s and are skipped (first: %s)",
                           len(self.missing), len(self.missing) + len(self.records), self.source, self.root,
                           self.first_missing)
        return Annotations(self.records, classes, self.missing)


class ListReader:
    """The Kinetics CSV or a plain ``relative/path label_index`` list (see ``read_annotations``).

    Args:
        annotations: the annotation file.
        root: the folder its paths are relative to.
        label_map: optional class-name file fixing class indices.
    """

    def __init__(self, *, annotations: str | os.PathLike, root: str | os.PathLike,
                 label_map: str | os.PathLike | None = None) -> None:
        self.annotations = str(annotations)
        self.root = str(root)
        self.label_map = None if label_map is None else str(label_map)
        self.source = self.annotations

    def read(self) -> Annotations:
        return read_annotations(self.annotations, self.root, label_map=self.label_map)


class _OfficialSplits:
    """What the UCF101 and HMDB51 readers share: a folder of class folders, a folder of the official split
    files, one of the three splits and a subset (their Args). ``SPLIT_FILES``: the file(s) read, as a
    pattern of ``split`` and ``subset`` under ``annotations_dir`` (the reader's ``source``)."""

    SPLIT_FILES = ""

    def __init__(self, *, root: str | os.PathLike, annotations_dir: str | os.PathLike, split: int = 1,
                 subset: str = "train") -> None:
        _check_choice("split", split, _THREE_SPLITS)
        _check_choice("subset", subset, SUBSETS)
        self.root = Path(root)
        self.annotations_dir = Path(annotations_dir)
        self.split = split
        self.subset = subset
        self.source = str(self.annotations_dir / self.SPLIT_FILES.format(split=split, subset=subset))


class UCF101Reader(_OfficialSplits):
    """UCF101's official three splits (``UCF101TrainTestSplits-RecognitionTask.zip``).

    Args:
        root: the folder of the class folders (``UCF-101/``): ``<root>/ApplyEyeMakeup/v_...avi``.
        annotations_dir: the folder of ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``.
        split: 1, 2 or 3.
        subset: "train" (``trainlist0N.txt``) or "test" (``testlist0N.txt``).
    """

    SPLIT_FILES = "{subset}list{split:02d}.txt"

    def classes(self) -> list[str]:
        """Class names by index from ``classInd.txt`` (its 1-based indices minus one)."""
        path = self.annotations_dir / "classInd.txt"
        names: dict[int, str] = {}
        for number, line in enumerate(_read_lines(path, "UCF101 class index"), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit():
                raise DataError(f"{path}:{number}: expected '<index> <ClassName>', got {line.strip()!r}")
            names[int(parts[0]) - 1] = parts[1]
        if sorted(names) != list(range(len(names))):
            raise DataError(f"{path}: class indices must be 1..{len(names)}, each once")
        return [names[i] for i in range(len(names))]

    def read(self) -> Annotations:
        names = self.classes()
        index = {name: i for i, name in enumerate(names)}
        path = Path(self.source)
        found = _Collector(self.source, self.root)
        for number, line in enumerate(_read_lines(path, f"UCF101 {self.subset} list"), 1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}:{number}"
            if self.subset == "train":
                if len(parts) != 2 or not parts[1].isdigit():
                    raise DataError(f"{where}: expected '<Class>/<video>.avi <index>', got {line.strip()!r}")
                label = int(parts[1]) - 1
                if not 0 <= label < len(names):
                    raise DataError(f"{where}: label {parts[1]} is not in classInd.txt (1..{len(names)})")
            else:
                if len(parts) != 1 or "/" not in parts[0]:
                    raise DataError(f"{where}: expected '<Class>/<video>.avi', got {line.strip()!r}")
                folder = parts[0].split("/", 1)[0]
                if folder not in index:
                    raise DataError(f"{where}: class folder {folder!r} is not in classInd.txt")
                label = index[folder]
            found.add(self.root / parts[0], label, where)
        return found.finish(names)


class HMDB51Reader(_OfficialSplits):
    """HMDB51's official three splits (``test_train_splits.rar``: ``testTrainMulti_7030_splits/``).

    Args:
        root: the folder of the class folders: ``<root>/brush_hair/<video>.avi``.
        annotations_dir: the folder of the ``<class>_test_split{1,2,3}.txt`` files.
        split: 1, 2 or 3.
        subset: "train" (tag 1) or "test" (tag 2); tag 0 videos are in neither.
    """

    TAGS = {"train": 1, "test": 2}
    SPLIT_FILES = "*_test_split{split}.txt"

    @property
    def suffix(self) -> str:
        """The name ending of this split's files (``<class>_test_split<N>.txt``)."""
        return f"_test_split{self.split}.txt"

    def read(self) -> Annotations:
        if not self.annotations_dir.is_dir():
            raise FileNotFoundError(f"HMDB51 split folder {self.annotations_dir} does not exist")
        files = sorted(p for p in self.annotations_dir.iterdir() if p.name.endswith(self.suffix))
        if not files:
            raise DataError(f"{self.annotations_dir}: no <class>{self.suffix} file (HMDB51 split {self.split})")
        names = [p.name[:-len(self.suffix)] for p in files]
        found = _Collector(self.source, self.root)
        want = self.TAGS[self.subset]
        for label, (name, path) in enumerate(zip(names, files)):
            for number, line in enumerate(_read_lines(path, "HMDB51 split file"), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    raise DataError(f"{path}:{number}: expected '<video>.avi <tag>' with tag 0, 1 or 2, "
                                    f"got {line.strip()!r}")
                if int(parts[1]) == want:
                    found.add(self.root / name / parts[0], label, f"{path}:{number}")
        return found.finish(names)


def _json_records(path: Path) -> list[tuple[int, object]]:
    """(line, element) of each element of a JSON array file, so that errors can name the line."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        text = path.read_text()
        decoder = json.JSONDecoder()
        position = len(text) - len(text.lstrip())
        if text[position:position + 1] != "[":
            raise ValueError("expected a JSON array of records")
        position += 1
        records: list[tuple[int, Any]] = []
        while True:
            while position < len(text) and text[position] in " \t\r\n,":
                position += 1
            if position >= len(text):
                raise ValueError("unterminated array")
            if text[position] == "]":
                return records
            element, end = decoder.raw_decode(text, position)
            records.append((text.count("\n", 0, position) + 1, element))
            position = end
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path} cannot be read as JSON: {' '.join(str(e).split())}") from None


class SSv2Reader:
    """Something-Something v2 (the 20BN / Qualcomm release).

    Args:
        root: the folder of the videos (``20bn-something-something-v2/``): ``<root>/<id>.webm``.
        labels: ``something-something-v2-labels.json``, ``{"template without brackets": "index"}``.
        annotations: ``something-something-v2-train.json`` or ``-validation.json``.
    """

    def __init__(self, *, root: str | os.PathLike, labels: str | os.PathLike,
                 annotations: str | os.PathLike) -> None:
        self.root = Path(root)
        self.labels = Path(labels)
        self.annotations = Path(annotations)
        self.source = str(self.annotations)

    def classes(self) -> list[str]:
        """Class names (templates without brackets) by their index in the labels file."""
        try:
            mapping = json.loads(self.labels.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"SSv2 labels file {self.labels} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{self.labels} cannot be read as JSON: {' '.join(str(e).split())}") from None
        names: list[str | None] = [None] * len(mapping) if isinstance(mapping, dict) else []
        for name, index in (mapping.items() if isinstance(mapping, dict) else [(None, "")]):
            position = int(index) if str(index).isdigit() else -1
            if not 0 <= position < len(names) or names[position] is not None:
                raise DataError(f"{self.labels}: expected {{\"template\": \"index\"}} with indices "
                                f"0..{len(names) - 1}, each once")
            names[position] = name
        return cast("list[str]", names)  # len(names) distinct indices: every slot is filled

    def read(self) -> Annotations:
        names = self.classes()
        index = {name: i for i, name in enumerate(names)}
        found = _Collector(self.source, self.root)
        for line, record in _json_records(self.annotations):
            where = f"{self.annotations}:{line}"
            if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("template"), str):
                raise DataError(f"{where}: expected a record with 'id' and 'template' (the test set has no "
                                "labels)")
            template = record["template"].replace("[", "").replace("]", "")
            if template not in index:
                raise DataError(f"{where}: template {template!r} (video {record['id']}) is not in {self.labels}")
            found.add(self.root / f"{record['id']}.webm", index[template], where)
        return found.finish(names)


class FolderReader:
    """A folder per class: ``<root>/<split>/<class>/*.{mp4,avi,mkv,webm}`` (no annotation file).

    Args:
        root: the dataset folder.
        split: the subfolder of this split (e.g. "train", "val").
        label_map: optional class-name file fixing the class order (e.g. a model's); every class
            folder must be in it. Without it, classes are the sorted folder names.
    """

    def __init__(self, *, root: str | os.PathLike, split: str, label_map: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        self.split = str(split)
        self.label_map = None if label_map is None else str(label_map)
        self.source = str(self.root / self.split)

    def read(self) -> Annotations:
        folder = self.root / self.split
        if not folder.is_dir():
            raise FileNotFoundError(f"class folder tree {folder} does not exist (expected "
                                    f"{folder}/<class>/<video>.mp4)")
        folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise DataError(f"{folder} has no class folders (expected {folder}/<class>/<video>.mp4)")
        names = read_label_map(self.label_map) if self.label_map else [p.name for p in folders]
        index = {name: i for i, name in enumerate(names)}
        records = []
        for class_folder in folders:
            if class_folder.name not in index:
                raise DataError(f"{class_folder}: class {class_folder.name!r} is not in {self.label_map}")
            videos = sorted(p for p in class_folder.iterdir() if p.suffix.lower() in FOLDER_EXTENSIONS and p.is_file())
            if not videos:
                raise DataError(f"{class_folder}: empty class folder (no {', '.join(FOLDER_EXTENSIONS)} file)")
            records += [VideoRecord(str(p), index[class_folder.name]) for p in videos]
        return Annotations(records, list(names), [])

