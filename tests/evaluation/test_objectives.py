"""Objectives chosen by the data: single-label keeps cross-entropy, softmax, mean over views and accuracies;
multi-label uses binary cross-entropy, sigmoids, max over views (or mean) and mAP; results.json holds the
per-class AP; the trainer takes the objective's loss."""
import json

import pytest
import torch
import torch.nn.functional as F

from nlnet.evaluation.multiview import ViewPredictions, aggregate_views, evaluate, write_results
from nlnet.evaluation.objectives import MultiLabel, SingleLabel, metrics_summary, objective_for
from nlnet.utils.errors import ConfigError
from nlnet.utils.metrics import mean_average_precision


def views(scores, video_index, labels):
    n = len(video_index)
    return ViewPredictions(torch.tensor(video_index), torch.arange(n), torch.tensor(scores), labels,
                           torch.ones(n, dtype=torch.bool))


def test_max_and_mean_aggregation():
    # video 0: an action seen in one of its two clips (0.9) and not in the other (0.1)
    v = views([[0.9, 0.2], [0.1, 0.4], [0.3, 0.3]], [0, 0, 1], torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    top = aggregate_views(v, num_videos=2, num_classes=2, aggregation="max")
    mean = aggregate_views(v, num_videos=2, num_classes=2, aggregation="mean")
    assert torch.allclose(top.scores, torch.tensor([[0.9, 0.4], [0.3, 0.3]]))
    assert torch.allclose(mean.scores, torch.tensor([[0.5, 0.3], [0.3, 0.3]]))
    assert top.labels.tolist() == [[1.0, 0.0], [0.0, 1.0]] and top.num_views.tolist() == [2, 1]


def test_max_ignores_failed_views_and_negative_scores_survive():
    v = views([[-2.0, -1.0], [5.0, 5.0]], [0, 0], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    v.ok = torch.tensor([True, False])
    assert aggregate_views(v, num_videos=1, num_classes=2, aggregation="max").scores.tolist() == [[-2.0, -1.0]]


def test_objective_is_chosen_by_the_data_and_checks_its_aggregation():
    class Data:
        multi_label = True
    multi, single = objective_for(Data()), objective_for(object())
    assert isinstance(multi, MultiLabel) and multi.aggregation == "max" and multi.activation == "sigmoid"
    assert isinstance(single, SingleLabel) and single.aggregation == "mean" and single.activation == "softmax"
    assert objective_for(Data(), aggregation="mean").aggregation == "mean"
    with pytest.raises(ConfigError, match=r"trainer.view_aggregation='median': valid choices are mean, max"):
        objective_for(Data(), aggregation="median")


def test_losses_and_probabilities():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    target = torch.tensor([[1.0, 0.0, 1.0]])
    assert MultiLabel().loss(logits, target) == pytest.approx(
        float(-(target * logits.sigmoid().log() + (1 - target) * (1 - logits.sigmoid()).log()).mean()))
    assert torch.equal(MultiLabel().probabilities(logits), logits.sigmoid())
    label = torch.tensor([2])
    assert SingleLabel().loss(logits, label) == pytest.approx(float(F.cross_entropy(logits, label)))
    assert SingleLabel().batch_metrics(logits, torch.tensor([0])) == {"top1": 100.0, "top5": 100.0}
    assert MultiLabel().batch_metrics(logits, target) == {}


def test_multi_label_evaluation_writes_map_and_per_class_ap(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 3))
    targets = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]]).float()
    batches = [{"video": torch.randn(2, 2, 1, 1, 1), "label": targets[[v, v]], "video_index": torch.tensor([v, v]),
                "view_index": torch.tensor([0, 1]), "ok": torch.tensor([True, True])} for v in range(4)]
    objective = MultiLabel()
    metrics, videos = evaluate(model, batches, num_videos=4, num_classes=3, device=torch.device("cpu"),
                               class_names=["a", "b", "c"], views_per_video=2, probabilities=objective.probabilities,
                               aggregation=objective.aggregation, metrics=objective.metrics)
    with torch.no_grad():
        per_view = model(torch.cat([b["video"] for b in batches])).sigmoid().view(4, 2, 3)  # videos, views, classes
    expected = per_view.max(dim=1).values
    assert torch.allclose(videos.scores, expected) and torch.equal(videos.labels, targets)
    mean_ap, per_class = mean_average_precision(expected, targets)
    assert metrics["map"] == pytest.approx(mean_ap) and metrics["num_videos"] == 4
    assert list(metrics["per_class_ap"].values()) == pytest.approx(per_class)
    assert metrics_summary(metrics) == f"mAP {mean_ap:.2f}"
    write_results(str(tmp_path), metrics, videos, class_names=["a", "b", "c"],
                  video_paths=[f"v{i}.mp4" for i in range(4)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["map"] == pytest.approx(mean_ap) and set(results["per_class_ap"]) == {"a", "b", "c"}
    per_video = json.loads((tmp_path / "per_video_scores.json").read_text())["videos"]
    assert [v["labels"] for v in per_video] == [[0], [1, 2], [0, 1], []]
    assert per_video[1]["scores"] == pytest.approx(expected[1].tolist(), abs=1e-6)


def test_the_trainer_trains_on_multi_hot_targets():
    from nlnet.engine.trainer import Trainer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(8, 4)
    target = (x[:, :3] > 0).float()  # learnable: class k present where feature k is positive
    batch = {"video": x.view(8, 4, 1, 1, 1), "label": target}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1)
    trainer = Trainer(model=model, optimizer=optimizer, scheduler=scheduler,
                      data=iter([batch] * 60), max_iter=60, device=torch.device("cpu"), objective=MultiLabel())
    trainer.train()
    assert trainer.storage.latest("loss") < 0.3 and "top1" not in trainer.storage.names()
    with torch.no_grad():
        final = float(F.binary_cross_entropy_with_logits(model(x.view(8, 4, 1, 1, 1)), target))
    assert trainer.storage.latest("loss") == pytest.approx(final, rel=0.1)
