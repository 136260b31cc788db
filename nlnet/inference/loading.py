"""A trained model and its test-time input pipeline, rebuilt from an nlnet checkpoint.

A checkpoint (``nlnet.engine.checkpoint``) holds the weights, the resolved training config and the
class names. The config's ``model.net`` node rebuilds the network; its ``data.val`` node is the
multi-view test protocol the model was evaluated with (paper §4.1: clips x crops, short side, crop,
mean/std), which ``predict`` and ``export`` use by default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import torch
import torch.nn as nn

from nlnet.data.transforms import ViewProtocol
from nlnet.engine.checkpoint import load_checkpoint, load_model_state
from nlnet.engine.launch import build_model
from nlnet.engine.objectives import MultiLabel, SingleLabel, objective_of
from nlnet.engine.weights import stored_model_config
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


def _build(config: Mapping[str, Any], checkpoint: str) -> nn.Module:
    """The network of a stored config (``stored_model_config``: the one place that reads older configs)."""
    model_cfg = config.get("model")
    net = model_cfg.get("net") if isinstance(model_cfg, Mapping) else None
    if not isinstance(net, Mapping) or "_target_" not in net:
        raise ConfigError(f"checkpoint={checkpoint}: its stored config has no model.net node (a "
                          "_target_ to build the network), so it cannot be rebuilt; use a checkpoint "
                          "written by tools/train.py or nlnet's checkpoint conversion")
    try:
        return build_model(stored_model_config(model_cfg))
    except ConfigError as exc:
        raise ConfigError(f"checkpoint={checkpoint}: {exc}") from exc


def _protocol(val: Any, views: Mapping[str, Any] | None, path: str) -> ViewProtocol:
    """The stored ``data.val`` protocol (``nlnet.data.VideoDataset`` arguments) with ``views`` on top."""
    known = [f.name for f in fields(ViewProtocol)]
    unknown = sorted(set(views or {}) - set(known))
    if unknown:
        raise ConfigError(f"views.{unknown[0]}: unknown key; valid keys: {', '.join(known)}")
    val = val if isinstance(val, Mapping) else {}
    short_side = val.get("test_scale")
    stored = dict(num_frames=val.get("num_frames"), sampling_rate=val.get("sampling_rate"),
                  short_side=short_side, crop_size=val.get("test_crop_size") or short_side,
                  num_clips=val.get("num_clips"), num_crops=val.get("num_crops"), mean=val.get("mean"),
                  std=val.get("std"), decode_resize=val.get("decode_resize"))
    given = {k: v for k, v in (views or {}).items() if v is not None}
    merged = {**{k: v for k, v in stored.items() if v is not None}, **given}
    if "num_frames" not in merged or "sampling_rate" not in merged:
        raise ConfigError(f"checkpoint={path}: its stored config has no data.val test protocol; pass "
                          "views.num_frames=T views.sampling_rate=TAU (and views.short_side, views.crop_size)")
    return ViewProtocol(**merged)


def load_trained_model(checkpoint: str | os.PathLike, *, views: Mapping[str, Any] | None = None) -> TrainedModel:
    """Rebuild the network a checkpoint was trained as, load its weights, and read its test protocol.

    Args:
        checkpoint: an nlnet checkpoint (loaded with ``torch.load(weights_only=True)``).
        views: overrides of the stored test protocol (``ViewProtocol`` field names; None values
            keep the stored ones).

    Raises:
        ConfigError: one line naming the file and what is missing (no stored config, no
            ``model.net``, no ``data.val``).
        CheckpointError: a damaged file, or weights that do not fit the stored network.
        FileNotFoundError: no such file.
    """
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: file not found: {path}")
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "model" not in state:
        raise ConfigError(f"checkpoint={path}: not an nlnet checkpoint (it needs the keys 'model' and "
                          "'config', as tools/train.py writes them)")
    config = state["config"]
    model = _build(config, path)
    load_model_state(model, state, path)
    model.eval()
    protocol = _protocol((config.get("data") or {}).get("val"), views, path)
    num_classes = getattr(model, "num_classes", None)
    names = list(state.get("class_names") or [str(i) for i in range(num_classes or 0)])
    if num_classes is not None and len(names) != num_classes:
        raise ConfigError(f"checkpoint={path}: {len(names)} class names for a model with {num_classes} outputs")
    iteration = state.get("iteration")
    aggregation = (config.get("trainer") or {}).get("view_aggregation")
    return TrainedModel(model=model, class_names=names, protocol=protocol,
                        checkpoint=path, iteration=int(iteration) if iteration is not None else None,
                        objective=objective_of(bool(state.get("multi_label", False)), aggregation=aggregation))


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``) or ``auto`` (CUDA when available) as a ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device={device}: valid choices are cpu, cuda, cuda:N, auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device}: CUDA is not available on this machine; use device=cpu or device=auto")
    return torch.device(device)
