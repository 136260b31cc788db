"""Where a model's weights come from, outside its constructor (as torchvision's and timm's factories
load them): ImageNet inflation on a fresh training start (:func:`load_pretrained`, config key
``model.pretrained``) or another run's weights (:func:`load_init_checkpoint`, ``model.init_checkpoint``),
and a checkpoint's own network (:func:`upgrade_model_config`, used by ``nlnet.checkpoint.restore``,
which never inflates).
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch.nn as nn

from nlnet.checkpoint.files import CheckpointManager, load_checkpoint, require_training_state
from nlnet.models.inflate import LoadReport, inflate_from_2d, load_finetune
from nlnet.utils.errors import ConfigError, one_line
from nlnet.utils.logger import get_logger


def load_pretrained(model: nn.Module, source: str) -> LoadReport:
    """Inflate ``model`` in place from the 2D ResNet ``source`` (``model.pretrained``: "torchvision"
    or a local state-dict path) and log the :class:`~nlnet.models.LoadReport`.

    Raises:
        ConfigError: one line naming ``model.pretrained``, how to pass a local file and how to train
            from scratch, when the weights cannot be read (offline, missing file, other network).
    """
    try:
        report = inflate_from_2d(model, source)
    except (OSError, RuntimeError, ValueError) as exc:
        local = f"resnet{getattr(model, 'depth', 50)}.pth"
        raise ConfigError(f"model.pretrained={source}: {one_line(exc)}; pass a local 2D ResNet state dict "
                          f"(model.pretrained=/path/{local}) or train from scratch (model.pretrained=null)") from exc
    get_logger().info(f"model.pretrained={source}: {report}")
    return report


def load_init_checkpoint(model: nn.Module, source: str, *, pretrained: str | None = None) -> LoadReport:
    """Start ``model`` from another run's weights (``model.init_checkpoint``), e.g. a 128-frame row from
    the 32-frame run of the same model (paper Sec. 4.1): every weight except a classifier of another
    shape (:func:`~nlnet.models.load_finetune`); the iteration, optimiser and schedule start afresh.

    Args:
        model: the network to fill.
        source: a run folder (its newest ``checkpoints/checkpoint_*.pt``) or a checkpoint file.
        pretrained: ``model.pretrained``; must be unset (the checkpoint replaces every weight).

    Raises:
        ConfigError: one line naming ``model.init_checkpoint`` when both are set, when ``source`` holds
            no checkpoint, or when its network differs from ``model``.
    """
    key = f"model.init_checkpoint={source}"
    if pretrained:
        raise ConfigError(f"{key} and model.pretrained={pretrained} are both set: the checkpoint replaces "
                          "every weight; set model.pretrained=null")
    if os.path.isdir(source):  # its newest intact checkpoint
        folder = os.path.join(source, "checkpoints")
        path, state, skipped = CheckpointManager(directory=folder if os.path.isdir(folder) else source).load_latest()
        for message in skipped:
            get_logger().warning(f"{key}: {message}: skipped")
        if path is None or state is None:  # (None, None) together
            raise ConfigError(f"{key}: no intact checkpoint_*.pt in {source}: train that run first, or pass a "
                              "checkpoint file or another run folder")
    elif os.path.isfile(source):
        path, state = source, require_training_state(load_checkpoint(source), source, entries=("model",),
                                                      use="model.init_checkpoint")
    else:
        raise ConfigError(f"{key}: no such run folder or checkpoint file: train that run first (a 128-frame "
                          "paper row starts from its Table 2f row), or pass model.init_checkpoint=PATH")
    try:
        report = load_finetune(model, state["model"])
    except ValueError as exc:
        raise ConfigError(f"{key}: {one_line(exc)}") from exc
    get_logger().info(f"{key}: started from {path} (iteration {state.get('iteration')}): {report}")
    return report


def upgrade_model_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a checkpoint's stored ``model`` config (plain dicts and lists) that rebuilds the network
    it was trained as.

    The one place that reads configs written by older nlnet versions:

    - ``model.net.pretrained`` (now ``model.pretrained``, loaded only at a fresh training start) is
      dropped: the weights come from the checkpoint, and the 2D file need not exist here;
    - ``model.net.channels_last`` is dropped: ``trainer.channels_last`` is the one layout knob (the
      batch prologue gives it to the model and the clips);
    - a non-local block without ``pool_ceil_mode`` pooled with ceil (``pool_ceil_mode: true``);
    - a Gaussian block without ``scale_gaussian`` was scaled by C^-1/2 when ``scale`` was true.
    """
    upgraded = copy.deepcopy(dict(model_cfg))
    net = upgraded["net"]
    for key in ("pretrained", "channels_last"):
        if key in net:
            del net[key]
    nodes: tuple[Any, ...] = (upgraded.get("nonlocal"), net.get("nonlocal_layer"))  # plain config values
    for node in nodes:
        target = str(node.get("_target_", "")) if hasattr(node, "get") else ""
        if target.startswith("nlnet.") and target.endswith(".NonLocalBlock"):
            if "pool_ceil_mode" not in node:
                node["pool_ceil_mode"] = True
            if "scale_gaussian" not in node:
                node["scale_gaussian"] = bool(node.get("scale", False)) and node.get("pairwise") == "gaussian"
    return upgraded


def stored_model_config(model_cfg: Any) -> Any:
    """:func:`upgrade_model_config` of a ``model`` config node, as a config node again (for Hydra's
    ``instantiate``; the paper-table command)."""
    from nlnet import config as C  # the one Hydra bridge, only for this config-node form
    return C.from_container(upgrade_model_config(C.to_container(model_cfg)))
