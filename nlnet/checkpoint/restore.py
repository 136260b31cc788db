"""The one way from a checkpoint file back to a network: the test command, predict, export and the
attention figures all rebuild their model here, with one set of error messages.

The network is rebuilt from the config stored in the checkpoint (``model.net``, read through
:func:`~nlnet.checkpoint.weights.upgrade_model_config` so that older checkpoints keep loading) and gets
the checkpoint's weights; nothing is inflated or downloaded. No Hydra: the stored config is plain
dicts and lists, built by ``nlnet.models.build_model``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from nlnet.checkpoint.files import load_checkpoint, load_model_state
from nlnet.checkpoint.weights import upgrade_model_config
from nlnet.models.builder import build_model
from nlnet.utils.errors import ConfigError

__all__ = ["Restored", "restore_checkpoint"]


@dataclass
class Restored:
    """A checkpoint's network with its weights, and what it was stored with.

    Attributes:
        model: the network, on the CPU, in eval mode.
        config: the resolved config the network was built from (plain dicts and lists).
        class_names: one name per output, or None when the checkpoint stores none.
        path: the checkpoint file.
        iteration: the training iteration of the checkpoint (None if not recorded).
        multi_label: whether it was trained on multi-label data (sigmoid outputs).
    """

    model: nn.Module
    config: dict[str, Any]
    class_names: list[str] | None
    path: str
    iteration: int | None = None
    multi_label: bool = False


def _build(config: Mapping[str, Any], path: str) -> nn.Module:
    """The network of a stored config, errors naming the checkpoint."""
    model_cfg = config.get("model")
    net = model_cfg.get("net") if isinstance(model_cfg, Mapping) else None
    if not isinstance(model_cfg, Mapping) or not isinstance(net, Mapping) or "_target_" not in net:
        raise ConfigError(f"checkpoint={path}: its stored config has no model.net node (a "
                          "_target_ to build the network), so it cannot be rebuilt; use a checkpoint "
                          "written by train.py or nlnet's checkpoint conversion")
    try:
        return build_model(upgrade_model_config(model_cfg)["net"])
    except ConfigError as exc:
        raise ConfigError(f"checkpoint={path}: {exc}") from exc


def restore_checkpoint(checkpoint: str | os.PathLike, *, config: Mapping[str, Any] | None = None) -> Restored:
    """Rebuild the network a checkpoint was trained as and load its weights.

    Args:
        checkpoint: an nlnet checkpoint (loaded with ``torch.load(weights_only=True)``).
        config: the config to build from instead of the stored one (the test command: the stored
            config with the command line's overrides; plain dicts and lists).

    Raises:
        FileNotFoundError: no such file.
        ConfigError: one line naming the file and what is missing (not an nlnet checkpoint, no
            ``model.net``, class names that do not fit the outputs).
        CheckpointError: a damaged file, or weights that do not fit the stored network.
    """
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint: file not found: {path}")
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "model" not in state:
        raise ConfigError(f"checkpoint={path}: not an nlnet checkpoint (it needs the keys 'model' and "
                          "'config', as train.py writes them)")
    config = dict(config if config is not None else state["config"])
    model = _build(config, path)
    load_model_state(model, state, path)
    model.eval()
    names = state.get("class_names")
    num_classes = getattr(model, "num_classes", None)
    if names and num_classes is not None and len(names) != num_classes:
        raise ConfigError(f"checkpoint={path}: {len(names)} class names for a model with {num_classes} outputs")
    iteration = state.get("iteration")
    return Restored(model=model, config=config, class_names=list(names) if names else None, path=path,
                    iteration=int(iteration) if iteration is not None else None,
                    multi_label=bool(state.get("multi_label", False)))
