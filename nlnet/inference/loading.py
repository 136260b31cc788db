"""A trained model and its test-time input pipeline, rebuilt from an nlnet checkpoint.

A checkpoint (``nlnet.checkpoint.files``) holds the weights, the resolved training config and the
class names. ``nlnet.checkpoint.restore`` rebuilds the network from its ``model.net`` node; its
``data.val`` node is the multi-view test protocol the model was evaluated with (paper §4.1: clips x
crops, short side, crop, mean/std), which ``predict`` and ``export`` use by default.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from nlnet.checkpoint.restore import restore_checkpoint
from nlnet.data.transforms import ViewProtocol
from nlnet.evaluation.objectives import MultiLabel, SingleLabel, objective_of
from nlnet.utils.errors import ConfigError

__all__ = ["ViewProtocol", "TrainedModel", "load_trained_model"]


@dataclass
class TrainedModel:
    """A network in eval mode with what is needed to feed it and to read its output.

    Attributes:
        model: the network, on the CPU, in eval mode; ``softmax(model(x))`` are class probabilities.
        class_names: one name per output.
        protocol: the stored test protocol (``data.val``).
        checkpoint: the file it came from.
        iteration: the training iteration of the checkpoint (None if not recorded).
        objective: how outputs become probabilities and views combine: softmax and mean (single-label),
            or a sigmoid per class and the checkpoint's ``trainer.view_aggregation`` (multi-label: max).
    """

    model: nn.Module
    class_names: list[str]
    protocol: ViewProtocol
    checkpoint: str
    iteration: int | None = None
    objective: SingleLabel | MultiLabel = field(default_factory=SingleLabel)


def load_trained_model(checkpoint: str | os.PathLike, *, views: Mapping[str, Any] | None = None) -> TrainedModel:
    """Rebuild the network a checkpoint was trained as, load its weights, and read its test protocol.

    Args:
        checkpoint: an nlnet checkpoint (loaded with ``torch.load(weights_only=True)``).
        views: overrides of the stored test protocol (``ViewProtocol`` field names; None values
            keep the stored ones); the stored ``data.val`` node is read by
            :meth:`~nlnet.data.transforms.ViewProtocol.from_dataset_node`, as the test dataset reads it.

    Raises:
        ConfigError: one line naming the file and what is missing (no stored config, no
            ``model.net``, no ``data.val``).
        CheckpointError: a damaged file, or weights that do not fit the stored network.
        FileNotFoundError: no such file.
    """
    restored = restore_checkpoint(checkpoint)
    val = (restored.config.get("data") or {}).get("val")
    val = val if isinstance(val, Mapping) else {}
    if not (views or {}).get("num_frames") and val.get("num_frames") is None:
        raise ConfigError(f"checkpoint={restored.path}: its stored config has no data.val test protocol; pass "
                          "views.num_frames=T views.sampling_rate=TAU (and views.short_side, views.crop_size)")
    protocol = ViewProtocol.from_dataset_node(val, **(views or {}))
    num_classes = getattr(restored.model, "num_classes", None)
    names = restored.class_names or [str(i) for i in range(num_classes or 0)]
    aggregation = (restored.config.get("trainer") or {}).get("view_aggregation")
    return TrainedModel(model=restored.model, class_names=names, protocol=protocol, checkpoint=restored.path,
                        iteration=restored.iteration,
                        objective=objective_of(restored.multi_label, aggregation=aggregation))


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``) or ``auto`` (CUDA when available) as a ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device={device}: valid choices are cpu, cuda, cuda:N, auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: CUDA is not available on this machine; use device=cpu or device=auto")
    return torch.device(device)
