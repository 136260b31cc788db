"""The one Markdown table writer of the benchmarks (their printed tables and the GPU check's report)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(value: Any, digits: int = 2, suffix: str = "") -> str:
    """A table cell: a float rounded to ``digits``, another value as it is, "-" for None."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] = ()) -> list[str]:
    """Lines of a Markdown table; ``align``: per column "l" or "r" (default: none given).

    A "|" inside a cell is written as "/", so a message cannot break the table.
    """
    marks = {"l": ":---", "r": "---:"}
    rule = [marks.get(a, "---") for a in align] + ["---"] * (len(header) - len(align))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    return lines + ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
