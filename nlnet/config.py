"""The one bridge between Hydra/OmegaConf configs and nlnet objects.

Every other module under ``nlnet/`` takes plain constructor arguments; only this helper (and the
scripts in ``tools/``) know that configs exist. A config node is a constructor call (``_target_``).
"""
from __future__ import annotations

from typing import Any

from hydra.utils import instantiate as _instantiate
from omegaconf import DictConfig, OmegaConf


def instantiate(node: Any, /, **kwargs: Any) -> Any:
    """Build the object a config node describes; ``kwargs`` are runtime arguments (e.g. ``params``).

    Containers come back as plain ``dict``/``list`` (``_convert_="all"``).
    """
    return _instantiate(node, _convert_="all", **kwargs)


def to_container(cfg: Any) -> Any:
    """The resolved config as plain Python containers (for checkpoints and JSON)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (for logs and TensorBoard)."""
    return OmegaConf.to_yaml(OmegaConf.create(to_container(cfg)))


def from_container(data: Any) -> DictConfig:
    """A config node from plain containers (e.g. the config stored in a checkpoint)."""
    return OmegaConf.create(data)
