"""configs/experiment/paper/table4: the paper's Charades rows (Sec. 5.2, Table 4) compose to its recipe,
start from the 128-frame Kinetics models of Table 2g, run in their single-row folders from one sweep, and
``tools/paper_table.py 4`` prints the table (a tested row and a pending one)."""
import json
import subprocess
from pathlib import Path

import pytest
import torch

from helpers import PYTHON, ROOT, compose, tool_env
from nlnet.config import instantiate
from nlnet.paper.tables import MAP_COLUMNS, Published, RunProgress, TableRow, to_markdown

ROWS_KEY = "+experiment/paper@_global_"
# row -> (Table 2g row it starts from, published mAP train/val, trainval/test)
TABLE4 = {"table4/i3d_r101": ("i3d_r101", 35.5, 37.2), "table4/nl_i3d_r101": ("nl_i3d_r101", 37.5, 39.5)}


def test_table4_has_exactly_its_rows():
    found = sorted(str(p.relative_to(ROOT / "configs/experiment/paper").with_suffix(""))
                   for p in Path(ROOT, "configs/experiment/paper/table4").glob("*.yaml"))
    assert found == sorted(TABLE4)


@pytest.mark.parametrize("row", sorted(TABLE4))
def test_the_row_is_the_charades_recipe_of_section_5_2(row):
    kinetics_row, published, trainval = TABLE4[row]
    cfg = compose("train", [f"experiment=paper/{row}", "data.root=/data/charades"])
    kinetics = compose("train", [f"experiment=paper/table2g/{kinetics_row}", "data.root=/x"])
    assert cfg.name == f"paper/{row}"
    assert (str(cfg.paper.table), cfg.paper.map, cfg.paper.map_trainval_test) == ("4", published, trainval)
    # initialised from the 128-frame Kinetics model, BN frozen, same backbone and NL blocks, 157 sigmoids
    assert cfg.model.init_checkpoint == f"runs/paper/table2g/{kinetics_row}" and cfg.model.pretrained is None
    net = cfg.model.net
    assert net.num_classes == 157 and list(net.frozen_bn) == ["all"]
    for key in ("depth", "temporal_kernels", "nonlocal_blocks", "stem_kernel"):
        assert net[key] == kinetics.model.net[key], key
    assert net.head_pool_kernel is None and not net.fully_conv_test
    assert (cfg.data.num_frames, cfg.data.sampling_rate) == (128, 1)
    # one clip per GPU (8 GPUs), 200k iterations, lr 0.00125 / 10 every 75k
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.optim.reference_batch_size) == (1, 0.00125, 8)
    assert (cfg.trainer.max_iter, list(cfg.schedule.milestones), cfg.schedule.gamma) == (200000, [75000, 150000], 0.1)
    # jittered 224 window rescaled to 288: a 288 crop at short side [256, 320] x 288 / 224
    assert cfg.data.train.crop_size == 288
    assert list(cfg.data.train.train_scale) == [round(256 * 288 / 224), round(320 * 288 / 224)]
    # single test scale 320; LFB's 10 clips x 3 crops, max over views
    assert (cfg.data.val.test_scale, cfg.data.val.test_crop_size) == (320, 320)
    assert (cfg.data.val.num_clips, cfg.data.val.num_crops, cfg.trainer.view_aggregation) == (10, 3, "max")
    for split, csv in (("train", "Charades_v1_train.csv"), ("val", "Charades_v1_test.csv")):
        reader = cfg.data[split].reader
        assert reader._target_ == "nlnet.data.multilabel.CharadesReader"
        assert (reader.annotations, reader.classes) == (f"/data/charades/{csv}",
                                                        "/data/charades/Charades_v1_classes.txt")
    with torch.device("meta"):
        model = instantiate(net)
    assert model.num_classes == 157 and len(model.nonlocal_names()) == (5 if row.endswith("nl_i3d_r101") else 0)


def test_one_sweep_runs_table4_in_the_folders_of_its_rows():
    cfg = compose("train", ["experiment=paper/table4", "data.root=/x"], return_hydra_config=True)
    rows = [r.strip() for r in cfg.hydra.sweeper.params[ROWS_KEY].split(",")]
    assert sorted(rows) == sorted(TABLE4)
    for row in rows:
        job = compose("train", ["experiment=paper/table4", f"{ROWS_KEY}={row}", "data.root=/x"],
                      return_hydra_config=True)
        single = compose("train", [f"experiment=paper/{row}", "data.root=/x"], return_hydra_config=True)
        assert job.paper == single.paper and job.model == single.model and job.name == single.name
        assert Path(job.hydra.sweep.dir, job.hydra.sweep.subdir) == Path(single.hydra.run.dir)


def test_a_table_of_map_rows_compares_map():
    tested = RunProgress(exists=True, iteration=200000, planned=200000, top1=None, top5=None,
                         tested_iteration=200000, map=36.04)
    row = TableRow(published=Published("4", "I3D R101", None, None, map=35.5), progress=tested, run_dir="runs/x")
    lines = to_markdown([row]).splitlines()
    assert lines[0] == "| " + " | ".join(MAP_COLUMNS) + " |"
    assert lines[2] == "| 4 | I3D R101 | 35.5 | 36.04 | +0.54 | - | - | 200000 / 200000 | tested | runs/x |"


@pytest.mark.slow
def test_paper_table_prints_table4_with_its_pending_row(tmp_path):
    run = tmp_path / "runs" / "paper" / "table4" / "i3d_r101"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint_0200000.pt").write_bytes(b"")
    (run / "results.json").write_text(json.dumps({"map": 34.25, "checkpoint": str(run / "checkpoints" /
                                                                                    "checkpoint_0200000.pt")}))
    out = subprocess.run([PYTHON, str(ROOT / "tools" / "paper_table.py"), "4", "--no-cost"], cwd=tmp_path,
                         env=tool_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "| " + " | ".join(MAP_COLUMNS) + " |" and len(lines) == 4
    assert lines[2].startswith("| 4 | I3D R101 | 35.5 | 34.25 | -1.25 |") and "| tested |" in lines[2]
    assert lines[3].startswith("| 4 | NL I3D R101 | 37.5 | - | - |") and "| pending |" in lines[3]
