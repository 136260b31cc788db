"""Data files shipped with nlnet (package data).

``kinetics400_classes.txt``: the 400 Kinetics-400 class names, one per line, in the class-index order
of the published models (alphabetical; the official release's process_data/kinetics/classids.json and
mmaction2's Kinetics-400 label map, label_map_k400.txt, list the same order). Usable as ``data.label_map``.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["kinetics400_classes_path", "kinetics400_classes"]

_HERE = Path(__file__).resolve().parent


def kinetics400_classes_path() -> str:
    """Absolute path of the Kinetics-400 class list (a label-map file for ``data.label_map``)."""
    return str(_HERE / "kinetics400_classes.txt")


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics-400 class names by class index."""
    return [line.strip() for line in Path(kinetics400_classes_path()).read_text().splitlines() if line.strip()]
