"""tools/paper_table.py on a synthetic sweep: a table of three tiny demo rows with made-up published
numbers, trained with one `tools/train.py -m` command, then one row left part-way and one not run."""
import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers import PYTHON, ROOT, tiny_overrides, tool_env
from nlnet.config import instantiate
from nlnet.paper.tables import COLUMNS, clip_cost

pytestmark = pytest.mark.slow  # sweeps run tools/train.py -m and torchrun in subprocesses

TABLE = """# @package _global_
name: paper/tablex
hydra:
  sweep:
    dir: runs/${name}
    subdir: ${hydra.job.override_dirname}
  sweeper:
    params:
      +experiment/paper@_global_: >-
        tablex/done,
        tablex/partway,
        tablex/pending
"""
ROWS = {
    "done": ("/experiment/paper/tiny_base", "done row", 50.0, 90.0, 2),
    "partway": ("/experiment/paper/tablex/done", "part-way row", 40.0, None, 3),
    "pending": ("/experiment/paper/tablex/done", "pending row", 60.0, 95.0, 2),
}


@pytest.fixture(scope="module")
def table_x(tiny_videos, tmp_path_factory) -> str:
    """A config folder with table "x" (three tiny demo rows); returns its hydra.searchpath override."""
    tmp = tmp_path_factory.mktemp("table_x")
    conf = tmp / "conf" / "experiment" / "paper"
    (conf / "tablex").mkdir(parents=True)
    (conf / "tablex.yaml").write_text(TABLE)
    tiny = [o for o in tiny_overrides(tiny_videos) if o.split("=")[0] not in ("experiment", "data.root")]
    base = {"defaults": ["/experiment/demo"], **OmegaConf.to_container(OmegaConf.from_dotlist(tiny))}
    (conf / "tiny_base.yaml").write_text("# @package _global_\n" + OmegaConf.to_yaml(OmegaConf.create(base)))
    for name, (parent, label, top1, top5, max_iter) in ROWS.items():
        row = {"defaults": [parent], "name": f"paper/tablex/{name}", "trainer": {"max_iter": max_iter},
               "paper": {"table": "x", "row": label, "top1": top1, "top5": top5}}
        if name == "pending":  # another model: 4x wider
            row["model"] = {"net": {"base_width": 16}}
        (conf / "tablex" / f"{name}.yaml").write_text("# @package _global_\n" + OmegaConf.to_yaml(row))
    return f"hydra.searchpath=[file://{tmp / 'conf'}]"


@pytest.fixture(scope="module")
def sweep(tiny_videos, table_x, tmp_path_factory):
    """A finished sweep of table "x" in <tmp>/runs/paper/tablex; returns (tmp, searchpath override)."""
    tmp, searchpath = tmp_path_factory.mktemp("paper_table"), table_x
    done = subprocess.run([PYTHON, str(ROOT / "tools" / "train.py"), "-m", "experiment=paper/tablex", searchpath,
                           f"data.root={tiny_videos}"], cwd=tmp, env=tool_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = tmp / "runs" / "paper" / "tablex"
    for name in ROWS:  # each sweep job ran in the folder its single-row command uses
        assert (runs / name / "results.json").is_file(), name
    # interrupt "partway" after its checkpoint at iteration 2 of 3; "pending" never ran
    (runs / "partway" / "checkpoints" / "checkpoint_0000003.pt").unlink()
    (runs / "partway" / "results.json").unlink()
    shutil.rmtree(runs / "pending")
    return tmp, searchpath


def paper_table(cwd, *args):
    done = subprocess.run([PYTHON, str(ROOT / "tools" / "paper_table.py"), *args], cwd=cwd, env=tool_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_table_shows_a_tested_a_part_way_and_a_pending_row(sweep):
    tmp, searchpath = sweep
    text = paper_table(tmp, "runs/paper/tablex", "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(COLUMNS) and [r["row"] for r in rows] == ["done row", "part-way row", "pending row"]
    done, partway, pending = rows
    results = json.loads((tmp / "runs" / "paper" / "tablex" / "done" / "results.json").read_text())
    assert (done["paper top-1"], done["paper top-5"]) == ("50.0", "90.0")
    assert (done["nlnet top-1"], done["nlnet top-5"]) == (f"{results['top1']:.2f}", f"{results['top5']:.2f}")
    assert done["diff top-1"] == f"{results['top1'] - 50.0:+.2f}"
    assert done["diff top-5"] == f"{results['top5'] - 90.0:+.2f}"
    assert (done["iterations"], done["status"]) == ("2 / 2", "tested")
    assert (partway["iterations"], partway["status"], partway["nlnet top-1"]) == ("2 / 3", "training", "-")
    assert partway["paper top-5"] == "-" and partway["diff top-5"] == "-"
    assert (pending["iterations"], pending["status"], pending["paper top-1"]) == ("0 / 2", "pending", "60.0")
    assert pending["nlnet top-1"] == "-" and pending["run"] == os.path.join("runs", "paper", "tablex", "pending")
    # the tiny demo models' size and cost, counted from each row's config
    cfg = OmegaConf.load(tmp / "runs" / "paper" / "tablex" / "done" / "config.yaml")
    params, gflops = clip_cost(instantiate(cfg.model.net), frames=cfg.data.num_frames, size=cfg.data.train.crop_size)
    assert params > 0 and done["params (M)"] == f"{params / 1e6:.2f}" and done["GFLOPs"] == f"{gflops:.2f}"
    assert partway["params (M)"] == done["params (M)"] and float(pending["params (M)"]) > 10 * params / 1e6

    # the same table by name (rows composed from the configs) and from the run folders themselves
    by_name = list(csv.DictReader(io.StringIO(paper_table(tmp, "x", searchpath, "--csv", "--no-cost"))))
    for row in rows:
        row.update({"params (M)": "-", "GFLOPs": "-"})
    assert by_name == rows
    runs = [str(tmp / "runs" / "paper" / "tablex" / name) for name in ("done", "partway")]
    by_folder = list(csv.DictReader(io.StringIO(paper_table(tmp, *runs, "--csv", "--no-cost"))))
    assert [r["row"] for r in by_folder] == ["done row", "part-way row"] and by_folder[0]["status"] == "tested"


def test_markdown_is_the_default(sweep):
    tmp, _ = sweep
    lines = paper_table(tmp, "runs/paper/tablex", "--no-cost").splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |" and len(lines) == 5
    assert lines[4].startswith("| x | pending row | 60.0 | 95.0 | - | - | - | - | - | - | 0 / 2 | pending |")


def test_a_table_sweep_under_torchrun_runs_every_row(tiny_videos, table_x, tmp_path):
    # every rank runs the sweep's jobs in one process, one after the other, in one process group
    torchrun = os.path.join(os.path.dirname(PYTHON), "torchrun")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "tools" / "train.py"), "-m",
                           "experiment=paper/tablex", table_x, f"data.root={tiny_videos}",
                           "trainer.progress_bar=false"],
                          cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ROWS:
        run = tmp_path / "runs" / "paper" / "tablex" / name
        assert "processes: 2" in (run / "log.txt").read_text() and (run / "results.json").is_file(), name
