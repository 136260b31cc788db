"""Budget-aware schedules: a recipe's iteration counts kept or converted to keep epochs at another
total batch, the log line that says which, and exact resume of a converted schedule."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from helpers import compose, tiny_overrides
from nlnet.checkpoint.files import CheckpointManager, load_checkpoint
from nlnet.engine.train import train
from nlnet.solver.schedule import CosineSchedule, MultiStepSchedule, ScheduleBudget
from nlnet.utils.errors import ConfigError


def test_keeping_epochs_scales_every_iteration_count_by_reference_over_batch():
    budget = ScheduleBudget(unit="epochs", reference_batch_size=64, total_batch_size=16)
    assert budget.factor == 4.0 and budget.iterations(400_000) == 1_600_000
    step = MultiStepSchedule(milestones=[150_000, 300_000], warmup_iters=1000).scaled(budget)
    assert step.milestones == [600_000, 1_200_000] and step.warmup_iters == 4000 and step.gamma == 0.1
    cosine = CosineSchedule(max_iter=400_000, warmup_iters=1000, final_factor=0.1).scaled(budget)
    assert (cosine.max_iter, cosine.warmup_iters, cosine.final_factor) == (1_600_000, 4000, 0.1)
    # a larger batch: fewer iterations, rounded to the nearest one
    larger = ScheduleBudget(unit="epochs", reference_batch_size=64, total_batch_size=96)
    assert larger.iterations(400_000) == 266_667 and larger.iterations(150_000) == 100_000


def test_keeping_iterations_changes_nothing():
    budget = ScheduleBudget(unit="iterations", reference_batch_size=64, total_batch_size=16)
    step = MultiStepSchedule(milestones=[150_000, 300_000]).scaled(budget)
    assert budget.factor == 1.0 and budget.iterations(400_000) == 400_000 and step.milestones == [150_000, 300_000]


def test_the_log_line_states_the_recipe_and_the_choice():
    step = MultiStepSchedule(milestones=[150_000, 300_000])
    epochs = ScheduleBudget(unit="epochs", reference_batch_size=64, total_batch_size=16)
    line = epochs.describe(max_iter=400_000, schedule=step.scaled(epochs))
    assert line == ("schedule: recipe 400000 iterations of 64 clips; keeping epochs at total batch 16: "
                    "1600000 iterations (x4); lr x0.1 at [600000, 1200000], warmup 0")
    iterations = ScheduleBudget(unit="iterations", reference_batch_size=64, total_batch_size=16)
    line = iterations.describe(max_iter=400_000, schedule=step)
    assert line == ("schedule: recipe 400000 iterations of 64 clips; keeping iterations at total batch 16: "
                    "400000 iterations (0.25x the recipe's epochs; trainer.schedule_unit=epochs keeps them); "
                    "lr x0.1 at [150000, 300000], warmup 0")
    same = ScheduleBudget(unit="epochs", reference_batch_size=64, total_batch_size=64)
    assert "total batch 64 equals the recipe's: 400000 iterations" in same.describe(max_iter=400_000, schedule=step)


@pytest.mark.parametrize("unit, reference, message", [
    ("epoch", 64, "trainer.schedule_unit='epoch': valid choices are iterations, epochs"),
    ("epochs", 0, "trainer.schedule_batch_size=0: must be a positive"),
])
def test_bad_budget_settings_name_the_key(unit, reference, message):
    with pytest.raises(ConfigError, match=message):
        ScheduleBudget(unit=unit, reference_batch_size=reference, total_batch_size=8)


def test_paper_recipe_keeps_epochs_and_the_default_keeps_iterations():
    paper = compose("train", ["experiment=paper/table2a/c2d_r50", "run_dir=/tmp/unused"])
    assert paper.trainer.schedule_unit == "epochs" and paper.trainer.schedule_batch_size == 64
    finetune = compose("train", ["experiment=paper/table2g/nl_i3d_r50", "run_dir=/tmp/unused"])
    assert finetune.trainer.schedule_batch_size == 16 == finetune.optim.reference_batch_size
    assert compose("train", ["experiment=nl_r50_kinetics", "run_dir=/tmp/unused"]).trainer.schedule_unit == "iterations"


def budget_run(tiny_videos, run_dir, *extra):
    # batch 2 for a schedule given in iterations of 4 clips: keeping epochs doubles every count
    overrides = tiny_overrides(tiny_videos, run_dir) + [
        "trainer.schedule_unit=epochs", "trainer.schedule_batch_size=4", "trainer.max_iter=3",
        "schedule.warmup_iters=1", "trainer.checkpoint_period=2", "trainer.keep_last=5", *extra]
    return train(compose("train", overrides))


@pytest.mark.slow
def test_a_run_keeping_epochs_trains_the_converted_iterations_and_resumes_exactly(tiny_videos, tmp_path):
    reference = str(tmp_path / "reference")
    summary = budget_run(tiny_videos, reference)
    assert summary["iteration"] == 6  # 3 iterations of 4 clips = 6 of 2
    log = Path(reference, "log.txt").read_text()
    assert ("schedule: recipe 3 iterations of 4 clips; keeping epochs at total batch 2: 6 iterations (x2); "
            "half-cosine over 6 to x0, warmup 2") in log
    assert json.loads(Path(reference, "schedule.json").read_text()) == {
        "unit": "epochs", "reference_batch_size": 4, "total_batch_size": 2, "factor": 2.0,
        "recipe_max_iter": 3, "max_iter": 6}

    # the same run, crashed after its checkpoint at iteration 4, then resumed by the same command
    resumed = str(tmp_path / "resumed")
    shutil.copytree(reference, resumed)
    manager = CheckpointManager(directory=os.path.join(resumed, "checkpoints"))
    os.remove(manager.path(6))
    os.remove(os.path.join(resumed, "results.json"))
    assert budget_run(tiny_videos, resumed)["iteration"] == 6
    assert "resumed from" in Path(resumed, "log.txt").read_text()
    got, want = load_checkpoint(manager.path(6)), load_checkpoint(manager.path(6).replace(resumed, reference))
    for key, value in want["model"].items():
        assert torch.equal(got["model"][key], value), key
    assert got["scheduler"] == want["scheduler"]
