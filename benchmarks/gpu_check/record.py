"""What every part of the GPU check uses to report (no torch here: the conductor stays light)."""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nlnet.utils.io import atomic_path


class CheckFailed(RuntimeError):
    """A part ran but what it checks did not hold; the message says what."""


class Recorder:
    """A part's results as a JSON object, rewritten atomically on every change, so a part killed at
    its budget still leaves everything it measured.

    Args:
        path: the JSON file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {}

    def set(self, **items: Any) -> None:
        self.data.update(items)
        self.save()

    def append(self, key: str, item: dict[str, Any]) -> None:
        self.data.setdefault(key, []).append(item)
        self.save()

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(json.dumps(self.data, indent=1, default=str))


class Deadline:
    """Wall-clock end of a part's budget (``time.time()`` seconds)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def remaining(self) -> float:
        return self.at - time.time()

    def allows(self, seconds: float) -> bool:
        return self.remaining() >= seconds


def part_deadline(settings: dict[str, Any]) -> Deadline:
    return Deadline(float(settings["deadline"]))


class Rows:
    """A part's rows: a row whose measurement raises is recorded as failed with the error, and the
    part goes on to the next; :meth:`check` then fails the part, naming how many rows failed.

    Args:
        recorder: where rows are appended (``"rows"``).
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.failed = 0

    @contextlib.contextmanager
    def guard(self, row: dict[str, Any]) -> Iterator[None]:
        try:
            yield
        except Exception as error:  # one bad case (e.g. a compile error) must not cost the others
            self.failed += 1
            reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            self.recorder.append("rows", {**row, "status": "failed", "reason": reason})

    def append(self, row: dict[str, Any]) -> None:
        self.recorder.append("rows", row)

    def check(self) -> None:
        if self.failed:
            raise CheckFailed(f"{self.failed} of {len(self.recorder.data.get('rows', []))} rows failed "
                              "(each row names its error)")
