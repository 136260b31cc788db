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
