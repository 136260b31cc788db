"""Every experiment composes with the training tree and builds its model; test.yaml composes."""
from pathlib import Path

import pytest
import torch

from helpers import CONFIGS, compose
from nlnet.config import instantiate

EXPERIMENTS = sorted(p.stem for p in Path(CONFIGS, "experiment").glob("*.yaml"))


def test_the_paper_rows_exist():
    for name in ("nl_r50_kinetics", "c2d_r50_kinetics", "i3d_r50_kinetics", "nl_i3d_r50_kinetics",
                 "nl_r50_kinetics_8x8", "c2d_r50_kinetics_8x8", "i3d_r50_kinetics_8x8", "nl_i3d_r50_kinetics_8x8",
                 "demo"):
        assert name in EXPERIMENTS


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment):
    cfg = compose("train", [f"experiment={experiment}", "run_dir=/tmp/unused"])
    assert cfg.name == experiment
    for group in ("optim", "schedule"):
        assert "_target_" in cfg[group]
    with torch.device("meta"):  # shapes and structure only: no memory, no init cost
        model = instantiate(cfg.model.net)
    assert model.num_classes == cfg.model.net.num_classes
    nl = [list(s) for s in cfg.model.net.nonlocal_blocks]
    assert len(model.nonlocal_names()) == sum(len(s) for s in nl)
    if experiment.startswith("nl_"):  # 5 blocks; R101 where the official code puts them (docs/models.md)
        assert nl == ([[], [1, 3], [6, 13, 20], []] if "r101" in experiment else [[], [1, 3], [1, 3, 5], []])
        assert cfg.model["nonlocal"].pairwise == "embedded_gaussian" and cfg.model["nonlocal"].scale


def test_main_model_matches_the_paper_recipe():
    cfg = compose("train", ["experiment=nl_r50_kinetics", "run_dir=/tmp/unused"])
    assert cfg.model.net.depth == 50 and cfg.model.net.num_classes == 400 and cfg.model.net.dropout == 0.5
    assert (cfg.optim.lr, cfg.optim.reference_batch_size, cfg.optim.weight_decay) == (0.01, 64, 1e-4)
    assert cfg.optim.optimizer.momentum == 0.9
    assert list(cfg.schedule.milestones) == [150000, 300000] and cfg.trainer.max_iter == 400000
    assert cfg.trainer.precise_bn_iters == 200


def test_overrides_reach_the_model():
    cfg = compose("train", ["experiment=nl_r50_kinetics", "model.nonlocal.pairwise=dot_product",
                            "model.net.nonlocal_blocks=[[],[],[4],[]]", "run_dir=/tmp/unused"])
    with torch.device("meta"):
        model = instantiate(cfg.model.net)
    assert len(model.nonlocal_names()) == 1
    assert model.stage("res4").nonlocal_names


def test_test_config_composes_with_a_checkpoint():
    cfg = compose("test", ["checkpoint=/some/ckpt.pt", "data.root=/x", "run_dir=/tmp/unused"])
    assert cfg.checkpoint == "/some/ckpt.pt" and cfg.output_dir is None
