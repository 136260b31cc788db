"""What every part of the GPU check uses to report (no torch here: the conductor stays light)."""
from __future__ import annotations

import json
import os
import time
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
