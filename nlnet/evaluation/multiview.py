"""Multi-view evaluation (paper §4.1: 10 clips x 3 crops, softmax scores averaged per video).

Each rank predicts its share of the views; the views are gathered once, de-duplicated by
(video_index, view_index) and averaged per video, so no video is counted twice whatever the number
of ranks. Metrics: top-1, top-5, mean class accuracy, per-class accuracy and the confusion matrix.

A video with a view that failed to decode is a failed video as a whole (left out of the metrics and
listed with its reason): the dataset stops decoding a video after its first failure, so which of its
other views were decoded depends on the workers; the result must not.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from nlnet.data.prologue import BatchPrologue
from nlnet.utils import distributed as du
from nlnet.utils.io import atomic_path
from nlnet.utils.metrics import confusion_matrix, mean_class_accuracy, per_class_accuracy, topk_correct
from nlnet.utils.precision import autocast_context


@dataclass
class ViewPredictions:
    """Softmax scores of individual views. Every field has one row per view."""

    video_index: torch.Tensor  # (V,) int64
    view_index: torch.Tensor  # (V,) int64
    scores: torch.Tensor  # (V, K) float32 softmax (multi-label: sigmoid) probabilities
    labels: torch.Tensor  # (V,) int64, or (V, K) float32 multi-hot targets
    ok: torch.Tensor  # (V,) bool: False where the video failed to decode

    @staticmethod
    def cat(parts: Sequence[ViewPredictions]) -> ViewPredictions:
        return ViewPredictions(*(torch.cat([getattr(p, f) for p in parts]) for f in
                                 ("video_index", "view_index", "scores", "labels", "ok")))


@dataclass
class VideoPredictions:
    """Per-video results after aggregation; row ``i`` is video ``i`` of the dataset."""

    scores: torch.Tensor  # (num_videos, K) mean (or max) probabilities over the video's decodable views
    labels: torch.Tensor  # (num_videos,) int64 (multi-label: (num_videos, K)), -1 for a video with no view seen
    num_views: torch.Tensor  # (num_videos,) decodable views averaged
    failed: torch.Tensor  # (num_videos,) bool: every view failed to decode
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason of the videos that failed

    @property
    def evaluated(self) -> torch.Tensor:
        """(num_videos,) bool: videos with at least one decodable view."""
        return self.num_views > 0


@torch.no_grad()
def predict_views(model: nn.Module, batches: Iterable[dict[str, Any]], *, device: torch.device,
                  precision: str = "fp32", prologue: BatchPrologue | None = None,
                  probabilities: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ViewPredictions:
    """Run ``model`` (in eval mode) over batches of the dataset contract and keep each view's softmax.

    Args:
        model: the network (not DDP-wrapped: ranks may see different numbers of batches).
        batches: dicts with "video" (B, C, T, H, W), "label", "video_index", "view_index", "ok".
        device: where to compute.
        precision: fp32, bf16 or fp16 autocast.
        prologue: batch -> model input on ``device`` (default: ImageNet statistics, contiguous).
        probabilities: float logits -> probabilities (default: softmax over classes; multi-label: sigmoid).
    """
    prologue = prologue if prologue is not None else BatchPrologue(device=device)
    probabilities = probabilities or (lambda logits: logits.softmax(dim=1))
    was_training = model.training
    model.eval()
    parts = []
    for batch in batches:
        with autocast_context(device, precision):
            logits = model(prologue.video(batch))
        parts.append(ViewPredictions(
            video_index=torch.as_tensor(batch["video_index"]).long().cpu(),
            view_index=torch.as_tensor(batch["view_index"]).long().cpu(),
            scores=probabilities(logits.float()).cpu(),
            labels=_labels(batch["label"]),
            ok=torch.as_tensor(batch["ok"]).bool().cpu(),
        ))
    model.train(was_training)
    if not parts:
        return ViewPredictions(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                               torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool))
    return ViewPredictions.cat(parts)


def _labels(label: Any) -> torch.Tensor:
    """(B,) int64 class indices, or (B, K) float32 multi-hot targets, on the CPU."""
    label = torch.as_tensor(label)
    return (label.float() if label.is_floating_point() else label.long()).cpu()


def gather_views(local: ViewPredictions) -> ViewPredictions:
    """Every rank's views on every rank, each (video_index, view_index) pair kept once."""
    parts = [p for p in du.all_gather_object(local) if p.scores.numel() > 0]
    if not parts:
        return local
    views = ViewPredictions.cat(parts)
    key = views.video_index * (int(views.view_index.max()) + 1) + views.view_index
    unique_keys, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((len(unique_keys),), len(key), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(key)), reduce="amin")
    return ViewPredictions(*(getattr(views, f)[first] for f in
                             ("video_index", "view_index", "scores", "labels", "ok")))


def fail_whole_videos(views: ViewPredictions) -> ViewPredictions:
    """The views with every view of a video marked failed (``ok`` False) when one of them failed."""
    failed_videos = views.video_index[~views.ok].unique()
    ok = views.ok & ~torch.isin(views.video_index, failed_videos)
    return ViewPredictions(views.video_index, views.view_index, views.scores, views.labels, ok)


def aggregate_views(views: ViewPredictions, *, num_videos: int, num_classes: int,
                    aggregation: str = "mean") -> VideoPredictions:
    """Average the softmax scores of each video's decodable views (the paper's multi-view test), or
    take their element-wise maximum (``aggregation="max"``, the Charades test of PySlowFast and LFB).

    Args:
        views: the views (each at most once), e.g. from :func:`gather_views`.
        num_videos: number of videos in the dataset (``video_index`` < ``num_videos``).
        num_classes: K.
        aggregation: ``mean`` or ``max``.
    """
    idx = views.video_index
    good = views.ok
    num_views = torch.zeros(num_videos, dtype=torch.long).index_add_(0, idx[good], torch.ones_like(idx[good]))
    if aggregation == "max":
        rows = idx[good][:, None].expand(-1, num_classes)  # (V', K): each view's scores go to its video's row
        scores = torch.zeros(num_videos, num_classes).scatter_reduce_(0, rows, views.scores[good].float(), "amax",
                                                                      include_self=False)
    else:
        scores = torch.zeros(num_videos, num_classes).index_add_(0, idx[good], views.scores[good].float())
        scores = scores / num_views.clamp(min=1)[:, None]
    labels = torch.full((num_videos, *views.labels.shape[1:]), -1, dtype=views.labels.dtype)
    labels[idx] = views.labels
    seen = torch.zeros(num_videos, dtype=torch.bool)
    seen[idx] = True
    failed = seen & (num_views == 0)
    return VideoPredictions(scores=scores, labels=labels, num_views=num_views, failed=failed)


def compute_metrics(videos: VideoPredictions, *, class_names: Sequence[str] | None = None,
                    views_per_video: int | None = None) -> dict[str, Any]:
    """Accuracies in percent over the evaluated videos (those with a decodable view).

    Returns:
        top1, top5, mean_class_accuracy, num_videos (evaluated), views_per_video, failed_videos,
        per_class_accuracy ({class name: percent or None}) and confusion_matrix (list of rows).
    """
    mask = videos.evaluated
    scores, labels = videos.scores[mask], videos.labels[mask]
    num_classes = videos.scores.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(labels) == 0:
        hits = {1: torch.zeros(0, dtype=torch.bool), 5: torch.zeros(0, dtype=torch.bool)}
        preds = torch.zeros(0, dtype=torch.long)
    else:
        hits = topk_correct(scores, labels, (1, 5))
        preds = scores.argmax(dim=1)
    confusion = confusion_matrix(preds, labels, num_classes)
    per_class = per_class_accuracy(confusion).tolist()

    def pct(h: torch.Tensor) -> float:
        return 100.0 * h.float().mean().item() if len(h) else float("nan")

    return {
        "top1": pct(hits[1]),
        "top5": pct(hits[5]),
        "mean_class_accuracy": mean_class_accuracy(confusion),
        "num_videos": int(mask.sum()),
        "views_per_video": views_per_video,
        "failed_videos": int(videos.failed.sum()),
        "per_class_accuracy": {n: (None if math.isnan(a) else a) for n, a in zip(names, per_class)},
        "confusion_matrix": confusion.tolist(),
    }


def evaluate(model: nn.Module, batches: Iterable[dict[str, Any]], *, num_videos: int, num_classes: int,
             device: torch.device, class_names: Sequence[str] | None = None, views_per_video: int | None = None,
             precision: str = "fp32", prologue: BatchPrologue | None = None,
             probabilities: Callable[[torch.Tensor], torch.Tensor] | None = None, aggregation: str = "mean",
             metrics: Callable[..., dict[str, Any]] = compute_metrics) -> tuple[dict[str, Any], VideoPredictions]:
    """Predict this rank's views, gather them from every rank, aggregate per video and score.

    ``probabilities``, ``aggregation`` and ``metrics`` are the run's objective's
    (``nlnet.evaluation.objectives``); the defaults are the single-label test (softmax, mean, accuracies).

    Every rank gets the same (metrics, per-video predictions). A video with a failed view is failed
    (:func:`fail_whole_videos`); ``videos.failures`` names each failed video's path and reason (from
    the batches' ``failures``, whichever worker or rank decoded it).
    """
    failures: dict[str, str] = {}
    local = predict_views(model, _recording_failures(batches, failures), device=device, precision=precision,
                          prologue=prologue, probabilities=probabilities)
    if local.scores.numel() == 0:
        local.scores = torch.zeros(0, num_classes)
    views = fail_whole_videos(gather_views(local))
    videos = aggregate_views(views, num_videos=num_videos, num_classes=num_classes, aggregation=aggregation)
    for part in du.all_gather_object(failures):
        for path, reason in part.items():
            videos.failures.setdefault(path, reason)
    return metrics(videos, class_names=class_names, views_per_video=views_per_video), videos


def _recording_failures(batches: Iterable[dict[str, Any]], failures: dict[str, str]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        for path, reason in batch.get("failures", ()):
            failures.setdefault(path, reason)
        yield batch


def write_results(directory: str, metrics: dict[str, Any], videos: VideoPredictions, *,
                  class_names: Sequence[str], video_paths: Sequence[str] | None = None,
                  extra: dict[str, Any] | None = None) -> str:
    """Write ``results.json`` (metrics) and ``per_video_scores.json`` beside it, atomically.

    ``results.json`` lists the failed videos (``failed_video_paths``, ``failure_reasons``: path ->
    reason). ``per_video_scores.json`` holds, per video: path, label, prediction, number of views
    averaged, failed flag (and reason) and the averaged softmax scores. Returns the path of ``results.json``.
    """
    os.makedirs(directory, exist_ok=True)
    results = dict(metrics)
    results["class_names"] = list(class_names)
    results["failed_video_paths"] = sorted(videos.failures)
    results["failure_reasons"] = dict(sorted(videos.failures.items()))
    results.update(extra or {})
    per_video = []
    for i in range(len(videos.labels)):
        path = video_paths[i] if video_paths is not None and i < len(video_paths) else None
        per_video.append({
            "video_index": i,
            "path": path,
            **_label_entries(videos.labels[i], videos.scores[i], bool(videos.num_views[i] > 0)),
            "num_views": int(videos.num_views[i]),
            "failed": bool(videos.failed[i]),
            **({"reason": videos.failures.get(path) if path is not None else None} if videos.failed[i] else {}),
            "scores": [round(float(s), 6) for s in videos.scores[i]],
        })
    results_path = os.path.join(directory, "results.json")
    _atomic_json(results, results_path)
    _atomic_json({"class_names": list(class_names), "videos": per_video},
                 os.path.join(directory, "per_video_scores.json"))
    return results_path


def _label_entries(label: torch.Tensor, scores: torch.Tensor, seen: bool) -> dict[str, Any]:
    """A single-label video's ``label`` and ``prediction`` (arg-max), or a multi-label one's ``labels``
    (its classes) and no prediction (the scores are the per-class probabilities)."""
    if label.dim():
        return {"labels": [int(k) for k in label.nonzero().flatten()]}
    return {"label": int(label), "prediction": int(scores.argmax()) if seen else None}


def _atomic_json(obj: Any, path: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=True)
