"""The paper's tables from run folders: published vs. nlnet results, cost and training progress.

The paper-table command composes the rows of a table (``configs/experiment/paper``) and prints what
this module reads from each row's run folder (``runs/<row name>/<overrides>``)::

    config.yaml      the resolved config (written at every start); its ``paper`` node names the
                     table, the row and the published top-1 / top-5 (Tables 2-3)
    schedule.json    the planned iterations after the budget rule (``nlnet.engine.run_dir.write_plan``, at every start)
    checkpoints/     checkpoint_<iteration>.pt: how far training got
    results.json     the multi-view test: top1, top5 (multi-label: map) and the checkpoint tested

A row with no run folder yet is "pending"; one whose newest checkpoint is short of the plan shows
how far it got; a finished run that was not tested yet says so.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nlnet.checkpoint.files import CheckpointManager
from nlnet.engine.run_dir import PLAN_FILE

_ITERATION = re.compile(r"checkpoint_(\d+)\.pt$")


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Published:
    """A row of the paper: its table, its label there and the published Kinetics-400 val accuracy (or,
    for Charades, Table 4, the published mAP).

    Args:
        table: e.g. "2a".
        row: the row's label in the paper's table.
        top1: published top-1 (%).
        top5: published top-5 (%), None where the paper's table gives none.
        map: published mAP (%) of a multi-label row (Table 4: train/val), else None.
    """

    table: str
    row: str
    top1: float | None
    top5: float | None
    map: float | None = None

    @staticmethod
    def from_config(paper: Mapping[str, Any] | None, *, default_row: str) -> Published:
        """From a config's ``paper`` node; a run without one is labelled ``default_row``."""
        paper = paper or {}

        def number(key: str) -> float | None:
            value = paper.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        return Published(table=str(paper.get("table", "-")), row=str(paper.get("row", default_row)),
                         top1=number("top1"), top5=number("top5"), map=number("map"))


@dataclass(frozen=True)
class RunProgress:
    """What a run folder says about one row.

    Attributes:
        exists: the folder exists.
        iteration: the newest checkpoint's iteration (0: none yet).
        planned: the iterations the run plans (schedule.json), else the config's ``trainer.max_iter``.
        top1: tested top-1 (%), None before a test.
        top5: tested top-5 (%).
        tested_iteration: the iteration of the checkpoint that was tested.
        map: tested mAP (%) of a multi-label run, None before a test.
    """

    exists: bool
    iteration: int
    planned: int | None
    top1: float | None
    top5: float | None
    tested_iteration: int | None
    map: float | None = None

    @property
    def status(self) -> str:
        """pending | training | trained (not tested) | tested | tested part-way."""
        tested = self.top1 is not None or self.map is not None
        if not self.exists or (self.iteration == 0 and not tested):
            return "pending"
        finished = self.planned is not None and self.iteration >= self.planned
        if not tested:
            return "trained, not tested" if finished else "training"
        if self.planned is not None and (self.tested_iteration or 0) < self.planned:
            return "tested part-way"
        return "tested"


def read_progress(run_dir: str, *, planned: int | None = None) -> RunProgress:
    """Read a run folder (see the module docstring); ``planned`` is used when it has no schedule.json."""
    if not os.path.isdir(run_dir):
        return RunProgress(exists=False, iteration=0, planned=planned, top1=None, top5=None, tested_iteration=None)
    found = CheckpointManager(directory=os.path.join(run_dir, "checkpoints")).list()
    plan = _read_json(os.path.join(run_dir, PLAN_FILE)) or {}
    results = _read_json(os.path.join(run_dir, "results.json")) or {}
    tested = _ITERATION.search(str(results.get("checkpoint") or ""))

    def accuracy(key: str) -> float | None:
        value = results.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    return RunProgress(exists=True, iteration=found[-1][0] if found else 0,
                       planned=int(plan["max_iter"]) if "max_iter" in plan else planned,
                       top1=accuracy("top1"), top5=accuracy("top5"),
                       tested_iteration=int(tested.group(1)) if tested else None, map=accuracy("map"))


@dataclass(frozen=True)
class TableRow:
    """One printed row: the paper's figures, the run's, and the model's size and cost.

    Args:
        published: the paper's row.
        progress: what the run folder holds.
        run_dir: the run folder (printed).
        params: parameters of the model (None: not counted).
        gflops: GFLOPs of one training clip (None: not counted).
    """

    published: Published
    progress: RunProgress
    run_dir: str
    params: int | None = None
    gflops: float | None = None


def mean_row(rows: Sequence[TableRow], *, label: str = "mean") -> TableRow:
    """A row averaging the tested rows' top-1 / top-5 (e.g. the three official splits of UCF101 or
    HMDB51, which are reported as their mean); its run column says how many rows were averaged."""
    tested = [row for row in rows if row.progress.top1 is not None]

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(values) if values and len(present) == len(values) else None

    progress = RunProgress(exists=bool(tested), iteration=min((r.progress.iteration for r in tested), default=0),
                           planned=None, top1=mean([r.progress.top1 for r in tested]),
                           top5=mean([r.progress.top5 for r in tested]), tested_iteration=None)
    first = rows[0].published if rows else Published(table="-", row=label, top1=None, top5=None)
    published = Published(table=first.table, row=label, top1=None, top5=None)
    return TableRow(published=published, progress=progress, run_dir=f"mean of {len(tested)} of {len(rows)} runs")


COLUMNS = ("table", "row", "paper top-1", "paper top-5", "nlnet top-1", "nlnet top-5", "diff top-1",
           "diff top-5", "params (M)", "GFLOPs", "iterations", "status", "run")


MAP_COLUMNS = ("table", "row", "paper mAP", "nlnet mAP", "diff mAP", "params (M)", "GFLOPs", "iterations", "status",
               "run")  # a table of multi-label rows (Table 4, Charades)


def _fmt(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _diff(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours - theirs


def row_cells(row: TableRow) -> list[str]:
    """The cells of ``row`` in :data:`COLUMNS` order (``-`` where a value does not exist yet)."""
    paper, run = row.published, row.progress
    planned = "?" if run.planned is None else str(run.planned)
    return [paper.table, paper.row, _fmt(paper.top1), _fmt(paper.top5), _fmt(run.top1, 2), _fmt(run.top5, 2),
            _fmt(_diff(run.top1, paper.top1), 2, sign=True), _fmt(_diff(run.top5, paper.top5), 2, sign=True),
            _fmt(None if row.params is None else row.params / 1e6, 2), _fmt(row.gflops, 2),
            f"{run.iteration} / {planned}", run.status, row.run_dir]


def map_row_cells(row: TableRow) -> list[str]:
    """The cells of a multi-label ``row`` in :data:`MAP_COLUMNS` order."""
    paper, run = row.published, row.progress
    cells = row_cells(row)
    return [paper.table, paper.row, _fmt(paper.map), _fmt(run.map, 2), _fmt(_diff(run.map, paper.map), 2, sign=True),
            *cells[COLUMNS.index("params (M)"):]]


def table_layout(rows: Sequence[TableRow]) -> tuple[tuple[str, ...], Any]:
    """(columns, row -> cells): mAP columns when every row is a multi-label row of the paper (a published
    mAP), else top-1 / top-5."""
    if rows and all(row.published.map is not None for row in rows):
        return MAP_COLUMNS, map_row_cells
    return COLUMNS, row_cells


def to_markdown(rows: Sequence[TableRow]) -> str:
    """A Markdown table, one line per row."""
    columns, cells = table_layout(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def to_csv(rows: Sequence[TableRow]) -> str:
    """CSV with a header line (for spreadsheets)."""
    columns, cells = table_layout(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(cells(row) for row in rows)
    return out.getvalue()


def clip_cost(model: Any, *, frames: int, size: int) -> tuple[int, float]:
    """(parameters, GFLOPs) of ``model`` on one clip of ``frames`` x ``size`` x ``size`` (the training
    clip: 32 x 224 x 224 for the 32x2 rows), non-local blocks counted in their materialised form (the
    paper's cost; fvcore convention, one multiply-add = one FLOP, see nlnet.utils.flops)."""
    import torch

    from nlnet.utils.flops import model_cost

    names = model.nonlocal_names() if hasattr(model, "nonlocal_names") else []
    report = model_cost(model, torch.zeros(1, 3, frames, size, size), parts=[], nonlocal_names=names,
                        nonlocal_impl="reference" if names else None)
    return report.total_params, report.total_flops / 1e9


def model_info(model: Any, *, frames: int, size: int, nonlocal_impl: str | None = None) -> str:
    """The per-stage cost table of a ``ResNet3d`` (the model-info command) on one clip of ``frames`` x
    ``size`` x ``size``; ``nonlocal_impl`` counts the NL blocks in that form (None: as configured). The
    last line is ``total: params=<int> gflops=<float>``."""
    import torch

    from nlnet.utils.flops import format_cost, model_cost

    report = model_cost(model, torch.zeros(1, 3, frames, size, size), parts=["stem", *model.stage_names, "head"],
                        nonlocal_names=model.nonlocal_names(), nonlocal_impl=nonlocal_impl)
    counted = f"impl={nonlocal_impl}" if nonlocal_impl else "as configured"
    title = (f"ResNet3d depth={model.depth} num_classes={model.num_classes}, input 1x3x{frames}x{size}x{size}, "
             f"non-local blocks counted {counted}")
    return format_cost(report, title=title)
