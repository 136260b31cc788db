"""End to end on a miniature Charades in the official format (generated videos, two synthetic motions per
video, each a timed action): the README's commands train and test it with mAP far above chance; the
checkpoint is multi-label; its test refuses a single-label dataset; results.json, the log and TensorBoard
hold mAP and per-class AP."""
import json

import pytest
import torch
from omegaconf import OmegaConf

from helpers import compose, tiny_overrides
from nlnet.config import apply_overrides
from nlnet.data.synthetic import make_synthetic_charades
from nlnet.checkpoint.files import CheckpointManager, load_checkpoint, read_checkpoint_config
from nlnet.engine.test import test as launch_test
from nlnet.engine.train import train
from nlnet.utils.errors import ConfigError
from nlnet.utils.metrics import mean_average_precision


def chance_map(targets: torch.Tensor, draws: int = 200) -> float:
    """The mean mAP of random scores on these targets."""
    g = torch.Generator().manual_seed(0)
    return sum(mean_average_precision(torch.rand(targets.shape, generator=g), targets)[0] for _ in range(draws)) / draws


@pytest.mark.slow
def test_miniature_charades_trains_and_tests_from_the_official_format(tmp_path, tiny_videos):
    root, run_dir = tmp_path / "charades", tmp_path / "run"
    make_synthetic_charades(root)  # what tools/make_synthetic_charades.py --root ROOT does
    assert (root / "Charades_v1_train.csv").read_text().startswith(
        "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n")
    summary = train(compose("train", ["experiment=demo_charades", f"data.root={root}", f"run_dir={run_dir}",
                                      "data.num_workers=0", "model.net.base_width=8", "trainer.num_threads=1",
                                      "trainer.progress_bar=false"]))
    results = json.loads((run_dir / "results.json").read_text())
    targets = torch.tensor([v["labels"] for v in json.loads((run_dir / "per_video_scores.json").read_text())["videos"]])
    targets = torch.zeros(len(targets), 4).scatter_(1, targets, 1.0)
    chance = chance_map(targets)
    assert summary["metrics"]["map"] == results["map"] and results["view_aggregation"] == "max"
    assert results["map"] > max(90.0, chance + 25), (results["map"], chance)
    assert set(results["per_class_ap"]) == {"moving up", "moving down", "moving sideways", "approaching"}
    assert "top1" not in results and results["num_videos"] == 16 and results["views_per_video"] == 2
    assert f"test: mAP {results['map']:.2f}%" in (run_dir / "log.txt").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(run_dir / "tensorboard")).Reload().Tags()["scalars"]
    assert "test/map" in scalars and "train/loss" in scalars and "train/top1" not in scalars
    checkpoint = CheckpointManager(directory=str(run_dir / "checkpoints")).latest()
    state = load_checkpoint(checkpoint)
    assert state["multi_label"] is True and len(state["class_names"]) == 4

    # the same checkpoint tested with mean aggregation (tools/test.py checkpoint=... trainer.view_aggregation=mean)
    args = [f"checkpoint={checkpoint}", f"output_dir={tmp_path / 'mean'}", "trainer.view_aggregation=mean"]
    launch_test(apply_overrides(read_checkpoint_config(checkpoint), compose("test", args), args,
                                own_keys=("checkpoint", "output_dir")))
    mean = json.loads((tmp_path / "mean" / "results.json").read_text())
    assert mean["view_aggregation"] == "mean" and mean["map"] > chance + 20
    assert mean["per_class_ap"] != results["per_class_ap"]  # another aggregation, other scores

    # a single-label dataset for a multi-label checkpoint: one line
    cfg = OmegaConf.create(state["config"])
    cfg.checkpoint, cfg.output_dir = checkpoint, str(tmp_path / "wrong")
    cfg.data.val.reader, cfg.data.val.annotations, cfg.data.val.root = None, f"{tiny_videos}/val.csv", tiny_videos
    with pytest.raises(ConfigError, match=r"^data.val: a single-label dataset, but checkpoint .* is multi-label"):
        launch_test(cfg)


@pytest.mark.slow
def test_a_single_label_checkpoint_refuses_a_multi_label_dataset(tmp_path, tiny_videos):
    paths = make_synthetic_charades(tmp_path / "charades", num_classes=3, train_videos=1, test_videos=2)
    run_dir = tmp_path / "run"
    train(compose("train", tiny_overrides(tiny_videos, str(run_dir)) + ["trainer.test_at_end=false"]))
    state = load_checkpoint(CheckpointManager(directory=str(run_dir / "checkpoints")).latest())
    assert state["multi_label"] is False
    cfg = OmegaConf.create(state["config"])
    cfg.checkpoint = CheckpointManager(directory=str(run_dir / "checkpoints")).latest()
    cfg.data.val.reader = {"_target_": "nlnet.data.multilabel.CharadesReader", "annotations": paths["test"],
                           "classes": paths["classes"], "root": paths["videos"]}
    with pytest.raises(ConfigError, match=r"^data.val: a multi-label dataset, but checkpoint .* is single-label"):
        launch_test(cfg)
