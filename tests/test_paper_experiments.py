"""configs/experiment/paper: every row of the paper's Tables 2a-2g and the Kinetics rows of Table 3 is an
experiment that composes, builds and is the model the row describes (Sec. 4.1, Table 1),
with the parameters and GFLOPs docs/models.md lists; one sweep per table runs exactly its rows, each in
the folder its single-row command uses."""
import functools
import re
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS, ROOT, compose
from nlnet.config import instantiate
from nlnet.paper.tables import clip_cost

TABLES = Path(CONFIGS, "experiment", "paper")
ROWS_KEY = "+experiment/paper@_global_"
NONE = [[], [], [], []]
R50 = {1: [[], [], [4], []], 5: [[], [1, 3], [1, 3, 5], []], 10: [[], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5], []]}
R101 = {1: [[], [], [21], []], 5: [[], [1, 3], [6, 13, 20], []], 10: [[], [0, 1, 2, 3], [2, 6, 9, 13, 16, 20], []]}
I3D = {50: [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]],  # official use_temp_convs, 1 -> 3x1x1
       101: [[3, 3, 3], [3, 1, 3, 1], [3 - 2 * (i % 2) for i in range(23)], [1, 3, 1]]}

# row -> (run folder under runs/paper, depth, backbone, NL placement, pairwise, scope, frames, published)
# Published: Kinetics-400 val top-1 / top-5 as the paper's Tables 2-3 give them (None: not given there).
EG, ST = "embedded_gaussian", "spacetime"
EXPECTED = {
    "table2a/c2d_r50": ("table2a/c2d_r50", 50, "c2d", NONE, None, ST, 32, ("2a", 71.8, 89.7)),
    "table2a/gaussian": ("table2a/gaussian", 50, "c2d", R50[1], "gaussian", ST, 32, ("2a", 72.5, 90.2)),
    "table2a/embedded_gaussian": ("table2a/embedded_gaussian", 50, "c2d", R50[1], EG, ST, 32, ("2a", 72.7, 90.5)),
    "table2a/dot_product": ("table2a/dot_product", 50, "c2d", R50[1], "dot_product", ST, 32, ("2a", 72.9, 90.3)),
    "table2a/concatenation": ("table2a/concatenation", 50, "c2d", R50[1], "concatenation", ST, 32,
                              ("2a", 72.8, 90.5)),
    "table2b/res2": ("table2b/res2", 50, "c2d", [[1], [], [], []], EG, ST, 32, ("2b", 72.7, None)),
    "table2b/res3": ("table2b/res3", 50, "c2d", [[], [2], [], []], EG, ST, 32, ("2b", 72.9, None)),
    "table2b/res4": ("table2a/embedded_gaussian", 50, "c2d", R50[1], EG, ST, 32, ("2b", 72.7, 90.5)),
    "table2b/res5": ("table2b/res5", 50, "c2d", [[], [], [], [1]], EG, ST, 32, ("2b", 72.3, None)),
    "table2c/r50_baseline": ("table2a/c2d_r50", 50, "c2d", NONE, None, ST, 32, ("2c", 71.8, 89.7)),
    "table2c/r50_1_block": ("table2a/embedded_gaussian", 50, "c2d", R50[1], EG, ST, 32, ("2c", 72.7, 90.5)),
    "table2c/r50_5_blocks": ("table2c/r50_5_blocks", 50, "c2d", R50[5], EG, ST, 32, ("2c", 73.8, None)),
    "table2c/r50_10_blocks": ("table2c/r50_10_blocks", 50, "c2d", R50[10], EG, ST, 32, ("2c", 74.3, None)),
    "table2c/r101_baseline": ("table2c/r101_baseline", 101, "c2d", NONE, None, ST, 32, ("2c", 73.1, None)),
    "table2c/r101_1_block": ("table2c/r101_1_block", 101, "c2d", R101[1], EG, ST, 32, ("2c", 74.3, None)),
    "table2c/r101_5_blocks": ("table2c/r101_5_blocks", 101, "c2d", R101[5], EG, ST, 32, ("2c", 75.1, None)),
    "table2c/r101_10_blocks": ("table2c/r101_10_blocks", 101, "c2d", R101[10], EG, ST, 32, ("2c", 75.1, None)),
    "table2d/space_only": ("table2d/space_only", 50, "c2d", R50[5], EG, "space", 32, ("2d", 72.9, None)),
    "table2d/time_only": ("table2d/time_only", 50, "c2d", R50[5], EG, "time", 32, ("2d", 73.1, None)),
    "table2d/spacetime": ("table2c/r50_5_blocks", 50, "c2d", R50[5], EG, ST, 32, ("2d", 73.8, None)),
    "table2e/nl_c2d_r50": ("table2c/r50_5_blocks", 50, "c2d", R50[5], EG, ST, 32, ("2e", 73.8, None)),
    "table2e/c2d_r101": ("table2c/r101_baseline", 101, "c2d", NONE, None, ST, 32, ("2e", 73.1, None)),
    "table2f/c2d_r50": ("table2a/c2d_r50", 50, "c2d", NONE, None, ST, 32, ("2f", 71.8, 89.7)),
    "table2f/i3d_r50": ("table2f/i3d_r50", 50, "i3d", NONE, None, ST, 32, ("2f", 73.3, None)),
    "table2f/nl_i3d_r50": ("table2f/nl_i3d_r50", 50, "i3d", R50[5], EG, ST, 32, ("2f", 74.9, None)),
    "table2f/c2d_r101": ("table2c/r101_baseline", 101, "c2d", NONE, None, ST, 32, ("2f", 73.1, None)),
    "table2f/i3d_r101": ("table2f/i3d_r101", 101, "i3d", NONE, None, ST, 32, ("2f", 74.4, None)),
    "table2f/nl_i3d_r101": ("table2f/nl_i3d_r101", 101, "i3d", R101[5], EG, ST, 32, ("2f", 76.0, None)),
    "table2g/c2d_r50": ("table2g/c2d_r50", 50, "c2d", NONE, None, ST, 128, ("2g", 73.8, None)),
    "table2g/i3d_r50": ("table2g/i3d_r50", 50, "i3d", NONE, None, ST, 128, ("2g", 74.9, None)),
    "table2g/nl_i3d_r50": ("table2g/nl_i3d_r50", 50, "i3d", R50[5], EG, ST, 128, ("2g", 76.5, None)),
    "table2g/c2d_r101": ("table2g/c2d_r101", 101, "c2d", NONE, None, ST, 128, ("2g", 75.3, None)),
    "table2g/i3d_r101": ("table2g/i3d_r101", 101, "i3d", NONE, None, ST, 128, ("2g", 76.4, None)),
    "table2g/nl_i3d_r101": ("table2g/nl_i3d_r101", 101, "i3d", R101[5], EG, ST, 128, ("2g", 77.7, None)),
    "table3/nl_i3d_r50": ("table2g/nl_i3d_r50", 50, "i3d", R50[5], EG, ST, 128, ("3", 76.5, None)),
    "table3/nl_i3d_r101": ("table2g/nl_i3d_r101", 101, "i3d", R101[5], EG, ST, 128, ("3", 77.7, None)),
}
# 128-frame rows start from their 32-frame model (the run folder of the same model in Table 2f)
INIT = {"c2d_r50": "table2a/c2d_r50", "i3d_r50": "table2f/i3d_r50", "nl_i3d_r50": "table2f/nl_i3d_r50",
        "c2d_r101": "table2c/r101_baseline", "i3d_r101": "table2f/i3d_r101", "nl_i3d_r101": "table2f/nl_i3d_r101"}


def docs_paper_rows() -> dict[str, tuple[int, float]]:
    """experiment -> (params, GFLOPs) from docs/models.md's table of the paper experiments."""
    text = (ROOT / "docs" / "models.md").read_text()
    section = text[text.index("<!-- paper rows begin -->"):text.index("<!-- paper rows end -->")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| paper/"):
            rows[cells[0]] = (int(cells[4]), float(cells[6]))
    return rows


def compose_with_hydra(overrides: list[str]):
    """The composed config with its ``hydra`` node (sweeper params, run and sweep folders)."""
    return compose("train", overrides, return_hydra_config=True)


def row_config(row: str, *extra: str):
    return compose("train", [f"experiment=paper/{row}", "data.root=/data/kinetics400", *extra])


@functools.cache
def single_row_config(row: str):
    """The row's own command's config (``experiment=paper/<row>``, with the ``hydra`` node), composed once
    per session: the row test reads it and the sweep test compares the sweep's job with it. Read only."""
    return compose_with_hydra([f"experiment=paper/{row}", "data.root=/x", "trainer.seed=3"])


def test_every_row_of_the_paper_has_an_experiment_and_nothing_else():
    # Table 4 (Charades) rows: tests/test_paper_table4.py
    found = sorted(str(p.relative_to(TABLES).with_suffix("")) for p in TABLES.glob("table*/*.yaml")
                   if p.parent.name != "table4")
    assert found == sorted(EXPECTED)


@pytest.mark.parametrize("row", sorted(EXPECTED))
def test_the_row_is_the_model_and_recipe_the_paper_describes(row):
    run, depth, arch, placement, pairwise, scope, frames, (table, top1, top5) = EXPECTED[row]
    cfg = single_row_config(row)
    assert cfg.name == f"paper/{run}"
    assert (str(cfg.paper.table), cfg.paper.top1, cfg.paper.top5) == (table, top1, top5) and cfg.paper.row
    net = cfg.model.net
    assert net.depth == depth and net.num_classes == 400 and net.dropout == 0.5
    assert [list(s) for s in net.nonlocal_blocks] == placement
    if arch == "c2d":
        assert list(net.stem_kernel) == [1, 7, 7] and net.temporal_kernels is None
    else:
        assert list(net.stem_kernel) == [5, 7, 7] and [list(k) for k in net.temporal_kernels] == I3D[depth]
    assert list(net.stem_stride) == [2, 2, 2] and list(net.pool1_kernel) == [2, 3, 3]  # 32x2 / 128x1 stem
    if pairwise is not None:
        assert cfg.model["nonlocal"].pairwise == pairwise
    assert cfg.model["nonlocal"].scope == scope
    assert (cfg.data.num_frames, cfg.data.sampling_rate) == ((32, 2) if frames == 32 else (128, 1))
    assert (cfg.data.train.crop_size, list(cfg.data.train.train_scale)) == (224, [256, 320])
    assert (cfg.data.val.num_clips, cfg.data.val.num_crops, cfg.data.val.test_scale) == (10, 3, 256)
    assert (cfg.trainer.max_iter, list(cfg.schedule.milestones), cfg.schedule.gamma) == (400000, [150000, 300000], 0.1)
    assert cfg.trainer.schedule_unit == "epochs" and cfg.optim.optimizer.nesterov and cfg.optim.weight_decay == 1e-4
    # the official test head: pool5 [T', 7, 7] (global at 224), softmax per position at test
    assert list(net.head_pool_kernel) == [frames // 8, 7, 7] and net.fully_conv_test
    if frames == 32:  # ImageNet-inflated, 8 GPUs x 8 clips, lr 0.01
        assert (cfg.data.batch_size, cfg.optim.lr, cfg.optim.reference_batch_size) == (8, 0.01, 64)
        assert cfg.model.pretrained == "torchvision" and cfg.model.init_checkpoint is None
        assert list(net.frozen_bn) == []
    else:  # from the 32-frame model, BN frozen, 8 GPUs x 2 clips, lr 0.0025
        assert (cfg.data.batch_size, cfg.optim.lr, cfg.optim.reference_batch_size) == (2, 0.0025, 16)
        assert cfg.model.init_checkpoint == f"runs/paper/{INIT[row.split('/')[1]]}" and cfg.model.pretrained is None
        assert cfg.trainer.schedule_batch_size == 16 and list(net.frozen_bn) == ["all"]

    with torch.device("meta"):  # structure and parameter count only
        model = instantiate(net)
    blocks = [model.get_submodule(name) for name in model.nonlocal_names()]
    assert [name for name in model.nonlocal_names()] == [
        f"res{s + 2}.nonlocal{i}" for s, stage in enumerate(placement) for i in stage]
    assert all((b.pairwise, b.scope) == (pairwise, scope) for b in blocks)
    assert all(not b.scale_gaussian for b in blocks)  # the paper's Gaussian is unscaled
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert all(p.requires_grad == (frames == 32) for m in norms for p in m.parameters())
    assert sum(p.numel() for p in model.parameters()) == docs_paper_rows()[f"paper/{row}"][0]


@pytest.mark.slow
@pytest.mark.parametrize("row", ["table2a/dot_product", "table2d/time_only"])
def test_gflops_of_a_whole_traced_model_equal_docs(row):
    cfg = row_config(row)
    params, gflops = clip_cost(instantiate(cfg.model.net), frames=32, size=224)
    assert (params, round(gflops, 2)) == docs_paper_rows()[f"paper/{row}"]


@pytest.mark.parametrize("experiment", sorted(p.stem for p in TABLES.parent.glob("*_kinetics*.yaml")))
def test_every_kinetics_experiment_starts_from_imagenet(experiment):
    assert compose("train", [f"experiment={experiment}"]).model.pretrained == "torchvision"


def test_docs_list_the_costs_the_reference_codebases_report():
    # C2D R50 and NL I3D R50 (5 blocks, embedded Gaussian): 24.33 M and 35.4 M parameters, as the reference
    # codebases report them
    rows = docs_paper_rows()
    assert rows["paper/table2a/c2d_r50"][0] == 24_327_632 and rows["paper/table2f/nl_i3d_r50"][0] == 35_401_936
    # the 128-frame clip costs 4x the 32-frame one in the backbone; non-local blocks grow faster (N x N')
    assert rows["paper/table2g/i3d_r50"][1] == pytest.approx(4 * rows["paper/table2f/i3d_r50"][1], rel=1e-3)
    assert rows["paper/table2g/nl_i3d_r50"][1] > 4 * rows["paper/table2f/nl_i3d_r50"][1]


@pytest.mark.slow
@pytest.mark.parametrize("table", sorted(p.stem for p in TABLES.glob("table*.yaml") if p.stem != "table4"))
def test_one_sweep_runs_a_table_in_the_folders_of_its_single_row_commands(table):
    cfg = compose_with_hydra([f"experiment=paper/{table}", "data.root=/x"])
    rows = [r.strip() for r in cfg.hydra.sweeper.params[ROWS_KEY].split(",")]
    assert sorted(rows) == sorted(r for r in EXPECTED if r.startswith(f"{table}/"))
    for row in rows:
        single = single_row_config(row)
        job = compose_with_hydra([f"experiment=paper/{table}", f"{ROWS_KEY}={row}", "data.root=/x", "trainer.seed=3"])
        assert job.paper == single.paper and job.model == single.model and job.name == single.name
        assert Path(job.hydra.sweep.dir, job.hydra.sweep.subdir) == Path(single.hydra.run.dir)
        assert re.fullmatch(rf"runs/paper/{EXPECTED[row][0]}/trainer.seed=3", single.hydra.run.dir)
