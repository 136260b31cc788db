"""nlnet.paper.tables: what a run folder says about a paper row, and the printed table."""
import json
from pathlib import Path

from nlnet.engine.run_dir import write_plan
from nlnet.paper.tables import COLUMNS, Published, RunProgress, TableRow, read_progress, to_csv, to_markdown
from nlnet.solver.schedule import ScheduleBudget


def make_run(root: Path, *, checkpoints=(), results_at=None, top1=70.0, plan=None) -> str:
    (root / "checkpoints").mkdir(parents=True)
    for iteration in checkpoints:
        (root / "checkpoints" / f"checkpoint_{iteration:07d}.pt").write_bytes(b"")
    if results_at is not None:
        checkpoint = str(root / "checkpoints" / f"checkpoint_{results_at:07d}.pt")
        (root / "results.json").write_text(json.dumps({"top1": top1, "top5": 90.0, "checkpoint": checkpoint}))
    if plan is not None:
        write_plan(str(root), budget=ScheduleBudget(unit="epochs", reference_batch_size=64, total_batch_size=32),
                   recipe_max_iter=plan)
    return str(root)


def test_the_plan_written_at_start_beats_the_config(tmp_path):
    run = make_run(tmp_path / "run", checkpoints=[10, 20], plan=15)  # 15 iterations of 64 = 30 of 32
    progress = read_progress(run, planned=15)
    assert (progress.iteration, progress.planned, progress.status) == (20, 30, "training")
    assert json.loads(Path(run, "schedule.json").read_text())["max_iter"] == 30


def test_statuses(tmp_path):
    assert read_progress(str(tmp_path / "none"), planned=5).status == "pending"
    assert read_progress(make_run(tmp_path / "empty"), planned=5).status == "pending"
    assert read_progress(make_run(tmp_path / "trained", checkpoints=[5]), planned=5).status == "trained, not tested"
    early = read_progress(make_run(tmp_path / "early", checkpoints=[3], results_at=3), planned=5)
    assert (early.status, early.tested_iteration, early.top1) == ("tested part-way", 3, 70.0)
    assert read_progress(make_run(tmp_path / "done", checkpoints=[5], results_at=5), planned=5).status == "tested"


def test_published_from_a_config_node():
    assert Published.from_config({"table": "2a", "row": "dot product", "top1": 72.9, "top5": None},
                                 default_row="x") == Published("2a", "dot product", 72.9, None)
    assert Published.from_config(None, default_row="my_run") == Published("-", "my_run", None, None)


def test_markdown_and_csv_cells():
    progress = RunProgress(exists=True, iteration=400000, planned=400000, top1=73.05, top5=90.9,
                           tested_iteration=400000)
    row = TableRow(published=Published("2a", "dot product", 72.9, 90.3), progress=progress, run_dir="runs/x",
                   params=26_431_000, gflops=21.774)
    cells = ["2a", "dot product", "72.9", "90.3", "73.05", "90.90", "+0.15", "+0.60", "26.43", "21.77",
             "400000 / 400000", "tested", "runs/x"]
    assert to_markdown([row]).splitlines() == ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * 13,
                                               "| " + " | ".join(cells) + " |"]
    assert to_csv([row]).splitlines()[1] == ",".join(cells)
