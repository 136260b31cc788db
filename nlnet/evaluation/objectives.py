"""What a run optimises and reports, chosen by its data: single-label (softmax, cross-entropy, top-1/top-5)
or multi-label (per-class sigmoids, binary cross-entropy, mAP; paper §5.2, Table 4).

The trainer takes the objective's ``loss`` and ``batch_metrics``, the evaluation its ``probabilities``,
view ``aggregation`` and ``metrics``; ``objective_for(dataset)`` picks one from the dataset's
``multi_label``. Nothing downstream branches on the kind of labels.

View aggregation: single-label videos average the softmax of their views (paper §4.1). Multi-label videos
take the element-wise max of the views' sigmoids by default, as PySlowFast's Charades configs
(``ENSEMBLE_METHOD: max``) and the Long-Term Feature Bank's Charades test do: an action of a long
Charades video often fills only a few of its clips, and averaging would dilute it over the others.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nlnet.evaluation.multiview import VideoPredictions, compute_metrics
from nlnet.utils.errors import ConfigError
from nlnet.utils.metrics import mean_average_precision, topk_accuracy

__all__ = ["AGGREGATIONS", "SingleLabel", "MultiLabel", "objective_for", "objective_of", "compute_multilabel_metrics",
           "metrics_summary"]

AGGREGATIONS = ("mean", "max")


def _check_aggregation(aggregation: str) -> str:
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"trainer.view_aggregation={aggregation!r}: valid choices are {', '.join(AGGREGATIONS)}")
    return aggregation


class SingleLabel:
    """One class per video: cross-entropy, softmax, top-1 / top-5 / mean class accuracy (paper §4.1).

    Args:
        aggregation: how a video's views are combined, ``mean`` (the paper's) or ``max``.
    """

    multi_label = False
    activation = "softmax"
    best_metric = "top1"
    batch_metric_names = ("top1", "top5")

    def __init__(self, *, aggregation: str = "mean") -> None:
        self.aggregation = _check_aggregation(aggregation)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def batch_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        acc = topk_accuracy(logits, labels, (1, 5))
        return {"top1": acc[1], "top5": acc[5]}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def metrics(self, videos: VideoPredictions, *, class_names: Sequence[str] | None = None,
                views_per_video: int | None = None) -> dict[str, Any]:
        return compute_metrics(videos, class_names=class_names, views_per_video=views_per_video)


class MultiLabel:
    """Several classes per video (Charades, paper §5.2): a sigmoid per class trained with binary
    cross-entropy on multi-hot targets, mAP as PySlowFast / the Long-Term Feature Bank compute it.

    Args:
        aggregation: how a video's views are combined, ``max`` (default; see the module docstring) or ``mean``.
    """

    multi_label = True
    activation = "sigmoid"
    best_metric = "map"
    batch_metric_names: tuple[str, ...] = ()  # a batch of 1-2 clips has no meaningful mAP: the loss is logged

    def __init__(self, *, aggregation: str = "max") -> None:
        self.aggregation = _check_aggregation(aggregation)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.float())

    def batch_metrics(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()

    def metrics(self, videos: VideoPredictions, *, class_names: Sequence[str] | None = None,
                views_per_video: int | None = None) -> dict[str, Any]:
        return compute_multilabel_metrics(videos, class_names=class_names, views_per_video=views_per_video)


def objective_of(multi_label: bool, *, aggregation: str | None = None) -> SingleLabel | MultiLabel:
    """The objective of single- or multi-label data, with ``aggregation`` (None: its default)."""
    kind = MultiLabel if multi_label else SingleLabel
    return kind() if aggregation is None else kind(aggregation=aggregation)


def objective_for(dataset: Any, *, aggregation: str | None = None) -> SingleLabel | MultiLabel:
    """The objective of a dataset's labels (its ``multi_label``), with ``aggregation`` (None: its default)."""
    return objective_of(bool(getattr(dataset, "multi_label", False)), aggregation=aggregation)


def compute_multilabel_metrics(videos: VideoPredictions, *, class_names: Sequence[str] | None = None,
                               views_per_video: int | None = None) -> dict[str, Any]:
    """mAP in percent over the evaluated videos (those with a decodable view).

    Returns:
        map, num_videos (evaluated), views_per_video, failed_videos, per_class_ap ({class name:
        percent, or None for a class with no positive among the videos: left out of the mean}).
    """
    mask = videos.evaluated
    num_classes = videos.scores.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    mean_ap, per_class = mean_average_precision(videos.scores[mask], videos.labels[mask])
    return {
        "map": mean_ap,
        "num_videos": int(mask.sum()),
        "views_per_video": views_per_video,
        "failed_videos": int(videos.failed.sum()),
        "per_class_ap": {n: (None if math.isnan(ap) else ap) for n, ap in zip(names, per_class)},
    }


def metrics_summary(metrics: dict[str, Any], unit: str = "") -> str:
    """``top1 X top5 Y mean class Z`` (single-label) or ``mAP X`` (multi-label), values with ``unit``."""
    if "map" in metrics:
        return f"mAP {metrics['map']:.2f}{unit}"
    return (f"top1 {metrics['top1']:.2f}{unit} top5 {metrics['top5']:.2f}{unit} "
            f"mean class {metrics['mean_class_accuracy']:.2f}{unit}")
