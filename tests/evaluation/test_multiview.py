"""Multi-view aggregation on known scores, across ranks, and the results files."""
import json
import math

import pytest
import torch

from nlnet.utils import distributed as du
from nlnet.evaluation.multiview import (ViewPredictions, aggregate_views, compute_metrics, evaluate, fail_whole_videos,
                                     gather_views, predict_views, write_results)
from nlnet.data.loader import ShardSampler

# 4 videos x 2 views, 3 classes. Softmax scores chosen so that single views disagree with the average:
# video 0 (label 0): views favour 1 then 0 -> mean favours 0;  video 1 (label 1): both favour 2;
# video 2 (label 2): favours 2; video 3 (label 0): one view failed to decode, the other favours 0.
SCORES = {
    (0, 0): [0.30, 0.60, 0.10], (0, 1): [0.80, 0.10, 0.10],
    (1, 0): [0.20, 0.30, 0.50], (1, 1): [0.10, 0.40, 0.50],
    (2, 0): [0.10, 0.20, 0.70], (2, 1): [0.00, 0.30, 0.70],
    (3, 0): [0.90, 0.05, 0.05], (3, 1): [0.00, 0.00, 0.00],
}
LABELS = [0, 1, 2, 0]


def views_for(keys):
    keys = list(keys)
    return ViewPredictions(
        video_index=torch.tensor([v for v, _ in keys]), view_index=torch.tensor([w for _, w in keys]),
        scores=torch.tensor([SCORES[k] for k in keys]), labels=torch.tensor([LABELS[v] for v, _ in keys]),
        ok=torch.tensor([k != (3, 1) for k in keys]))


def test_aggregation_averages_decodable_views_per_video():
    videos = aggregate_views(views_for(SCORES), num_videos=4, num_classes=3)
    assert torch.allclose(videos.scores[0], torch.tensor([0.55, 0.35, 0.10]))
    assert torch.allclose(videos.scores[3], torch.tensor([0.90, 0.05, 0.05]))  # failed view left out
    assert videos.num_views.tolist() == [2, 2, 2, 1]
    metrics = compute_metrics(videos, class_names=["a", "b", "c"], views_per_video=2)
    assert metrics["top1"] == pytest.approx(75.0)  # video 1 wrong (predicts c)
    assert metrics["top5"] == pytest.approx(100.0)
    assert metrics["per_class_accuracy"] == {"a": 100.0, "b": 0.0, "c": 100.0}
    assert metrics["mean_class_accuracy"] == pytest.approx(200.0 / 3)
    assert metrics["confusion_matrix"] == [[2, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert (metrics["num_videos"], metrics["failed_videos"]) == (4, 0)


def test_video_with_every_view_failed_is_counted_as_failed():
    keys = [(0, 0), (0, 1), (3, 1)]
    videos = aggregate_views(views_for(keys), num_videos=4, num_classes=3)
    metrics = compute_metrics(videos)
    assert (metrics["num_videos"], metrics["failed_videos"]) == (1, 1)
    assert metrics["top1"] == 100.0
    assert metrics["per_class_accuracy"]["1"] is None  # class without evaluated videos


def test_uneven_split_across_ranks_counts_every_view_once(monkeypatch):
    keys = sorted(SCORES)  # 8 views over 3 ranks: 3 + 3 + 2, like ShardSampler
    parts = [views_for([keys[i] for i in ShardSampler(size=8, num_replicas=3, rank=r)]) for r in range(3)]
    # a rank that (wrongly) sends a view twice must not make it count twice either
    parts[2] = ViewPredictions.cat([parts[2], views_for([keys[0]])])
    monkeypatch.setattr(du, "all_gather_object", lambda obj: parts)
    gathered = gather_views(parts[0])
    assert len(gathered.video_index) == 8
    videos = aggregate_views(gathered, num_videos=4, num_classes=3)
    reference = aggregate_views(views_for(keys), num_videos=4, num_classes=3)
    assert torch.allclose(videos.scores, reference.scores)
    assert videos.num_views.tolist() == [2, 2, 2, 1]


def test_predict_views_uses_softmax_of_the_model_in_eval_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.9), torch.nn.Linear(2, 3))
    model.train()
    video = torch.randn(4, 2, 1, 1, 1)
    batch = {"video": video, "label": torch.tensor([0, 1, 2, 0]), "video_index": torch.tensor([0, 0, 1, 1]),
             "view_index": torch.tensor([0, 1, 0, 1]), "ok": torch.tensor([True, True, True, False])}
    views = predict_views(model, [batch], device=torch.device("cpu"))
    assert model.training  # restored
    model.eval()
    assert torch.allclose(views.scores, model(video).softmax(1), atol=1e-6)
    assert views.ok.tolist() == [True, True, True, False]


def test_predict_views_normalises_uint8_clips_with_the_prologue():
    from nlnet.data.transforms import normalize
    from nlnet.data.prologue import BatchPrologue

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 2 * 2, 3)).eval()
    video = torch.randint(256, (2, 3, 2, 2, 2), dtype=torch.uint8)
    batch = {"video": video, "label": torch.tensor([0, 1]), "video_index": torch.tensor([0, 1]),
             "view_index": torch.tensor([0, 0]), "ok": torch.tensor([True, True])}
    mean, std = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)
    views = predict_views(model, [batch], device=torch.device("cpu"),
                          prologue=BatchPrologue(device="cpu", mean=mean, std=std))
    with torch.no_grad():
        assert torch.equal(views.scores, model(normalize(video, mean, std)).softmax(1))


def test_results_files(tmp_path):
    videos = aggregate_views(views_for(SCORES), num_videos=4, num_classes=3)
    metrics = compute_metrics(videos, class_names=["a", "b", "c"], views_per_video=2)
    path = write_results(str(tmp_path), metrics, videos, class_names=["a", "b", "c"],
                         video_paths=[f"v{i}.mp4" for i in range(4)], extra={"checkpoint": "c.pt"})
    results = json.loads(open(path).read())
    for key in ("top1", "top5", "mean_class_accuracy", "num_videos", "views_per_video", "failed_videos",
                "per_class_accuracy", "confusion_matrix", "class_names", "checkpoint"):
        assert key in results, key
    assert results["top1"] == pytest.approx(75.0) and results["views_per_video"] == 2
    per_video = json.loads((tmp_path / "per_video_scores.json").read_text())
    assert per_video["class_names"] == ["a", "b", "c"]
    v1 = per_video["videos"][1]
    assert (v1["path"], v1["label"], v1["prediction"], v1["num_views"]) == ("v1.mp4", 1, 2, 2)
    assert math.isclose(sum(v1["scores"]), 1.0, abs_tol=1e-5)


def test_a_video_with_a_failed_view_fails_as_a_whole_and_is_listed_with_its_reason(tmp_path):
    # video 3 has one failed view: whether its other view was decoded first depends on the workers, so
    # the video is left out (and named) rather than averaged over the views that happened to decode
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 3))
    keys = sorted(SCORES)
    batches = [{"video": torch.randn(2, 2, 1, 1, 1), "label": torch.tensor([LABELS[v] for v, _ in pair]),
                "video_index": torch.tensor([v for v, _ in pair]), "view_index": torch.tensor([w for _, w in pair]),
                "ok": torch.tensor([k != (3, 1) for k in pair]),
                "failures": [("v3.mp4", "corrupt data at 2.00s")] if (3, 1) in pair else []}
               for pair in (keys[0:2], keys[2:4], keys[4:6], keys[6:8])]
    metrics, videos = evaluate(model, batches, num_videos=4, num_classes=3, device=torch.device("cpu"))
    assert videos.failed.tolist() == [False, False, False, True] and videos.num_views.tolist() == [2, 2, 2, 0]
    assert (metrics["num_videos"], metrics["failed_videos"]) == (3, 1)
    assert videos.failures == {"v3.mp4": "corrupt data at 2.00s"}
    path = write_results(str(tmp_path), metrics, videos, class_names=["a", "b", "c"],
                         video_paths=[f"v{i}.mp4" for i in range(4)])
    results = json.loads(open(path).read())
    assert results["failed_video_paths"] == ["v3.mp4"]
    assert results["failure_reasons"] == {"v3.mp4": "corrupt data at 2.00s"}
    per_video = json.loads((tmp_path / "per_video_scores.json").read_text())["videos"]
    assert per_video[3]["failed"] and per_video[3]["reason"] == "corrupt data at 2.00s"
    assert fail_whole_videos(views_for(keys)).ok.tolist() == [True] * 6 + [False, False]
