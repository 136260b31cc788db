"""Where a model's weights come from, outside its constructor (as torchvision's and timm's factories
load them): ImageNet inflation on a fresh training start (:func:`load_pretrained`, config key
``model.pretrained``), and a checkpoint's own network (:func:`stored_model_config`, used by
``tools/test.py`` and ``tools/visualize_attention.py``, which never inflate).
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from nlnet import config as C
from nlnet.models.inflate import LoadReport, inflate_from_2d
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


def stored_model_config(model_cfg: Any) -> Any:
    """A copy of a checkpoint's stored ``model`` config that rebuilds the network it was trained as.

    The one place that reads configs written by older nlnet versions:

    - ``model.net.pretrained`` (now ``model.pretrained``, loaded only at a fresh training start) is
      dropped: the weights come from the checkpoint, and the 2D file need not exist here;
    - a non-local block without ``pool_ceil_mode`` pooled with ceil (``pool_ceil_mode: true``);
    - a Gaussian block without ``scale_gaussian`` was scaled by C^-1/2 when ``scale`` was true.
    """
    model_cfg = C.from_container(C.to_container(model_cfg))  # a resolved, writable copy
    net = model_cfg["net"]
    if "pretrained" in net:
        del net["pretrained"]
    for node in (model_cfg.get("nonlocal"), net.get("nonlocal_layer")):
        target = str(node.get("_target_", "")) if hasattr(node, "get") else ""
        if target.startswith("nlnet.") and target.endswith(".NonLocalBlock"):
            if "pool_ceil_mode" not in node:
                node["pool_ceil_mode"] = True
            if "scale_gaussian" not in node:
                node["scale_gaussian"] = bool(node.get("scale", False)) and node.get("pairwise") == "gaussian"
    return model_cfg
