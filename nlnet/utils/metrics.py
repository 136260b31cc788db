"""Classification metrics shared by training (per-batch accuracy) and evaluation (per-video)."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, torch.Tensor]:
    """Per-sample hit masks: whether the label is among the ``k`` highest scores.

    Args:
        scores: (N, K) logits or probabilities.
        labels: (N,) integer class indices.
        ks: the ``k`` values; each is clipped to the number of classes.

    Returns:
        ``{k: (N,) bool}``.
    """
    maxk = min(max(ks), scores.shape[1])
    top = scores.topk(maxk, dim=1).indices  # (N, maxk)
    hits = top == labels[:, None]  # (N, maxk)
    return {k: hits[:, : min(k, maxk)].any(dim=1) for k in ks}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy in percent, ``{k: accuracy}``."""
    return {k: 100.0 * hit.float().mean().item() for k, hit in topk_correct(scores, labels, ks).items()}


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class in percent; NaN for a class with no samples."""
    total = confusion.sum(dim=1).double()
    correct = confusion.diagonal().double()
    return torch.where(total > 0, 100.0 * correct / total.clamp(min=1), torch.full_like(total, float("nan")))


def mean_class_accuracy(confusion: torch.Tensor) -> float:
    """Mean of per-class accuracies (percent) over the classes that have samples."""
    acc = per_class_accuracy(confusion)
    present = ~acc.isnan()
    return float(acc[present].mean()) if present.any() else float("nan")


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Average precision of one class: the sum over score thresholds of (recall gain) x precision, tied
    scores forming one threshold (scikit-learn's ``average_precision_score``, which PySlowFast's Charades
    mAP uses). NaN when the class has no positive.

    Args:
        scores: (N,) scores of the class.
        targets: (N,) 1 where the class is present, else 0.
    """
    order = torch.argsort(scores.double(), descending=True, stable=True)
    ranked, hits = scores.double()[order], targets.double()[order]
    if not len(hits) or hits.sum() == 0:
        return float("nan")
    last = torch.ones(len(ranked), dtype=torch.bool)  # the last item of each group of tied scores
    last[:-1] = ranked[1:] != ranked[:-1]
    tp = hits.cumsum(0)[last]  # true positives at each threshold
    seen = (torch.arange(len(ranked), dtype=torch.float64) + 1)[last]
    precision, recall = tp / seen, tp / tp[-1]
    gain = recall - torch.cat([recall.new_zeros(1), recall[:-1]])
    return float((gain * precision).sum())


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> tuple[float, list[float]]:
    """Charades mAP (paper §5.2, Table 4) as PySlowFast and the Long-Term Feature Bank compute it: the
    per-class average precision, classes without a positive excluded, then the mean (percent).

    Args:
        scores: (N, K) scores (e.g. per-video sigmoid probabilities).
        targets: (N, K) multi-hot targets.

    Returns:
        (mAP, per-class AP), both in percent; a class with no positive has AP NaN (and mAP is NaN when
        no class has one).
    """
    per_class = [100.0 * average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    present = [ap for ap in per_class if ap == ap]
    return (sum(present) / len(present) if present else float("nan")), per_class
