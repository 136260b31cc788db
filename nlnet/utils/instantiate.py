"""Build the object a stored ``_target_`` node describes, without Hydra.

A checkpoint stores its resolved config as plain dicts and lists; rebuilding its network needs only
``_target_`` (a dotted import path), keyword arguments, nested nodes and ``_partial_`` (a
``functools.partial``, e.g. ``model.nonlocal``). This small resolver does that, so that predicting,
exporting and drawing attention import no Hydra; composing configs stays ``nlnet.config``'s job.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from nlnet.utils.errors import ConfigError, UserError, one_line

__all__ = ["instantiate_node", "locate"]

# Keys of a node that steer the building, not arguments of the target (Hydra's names).
_SPECIAL = ("_target_", "_partial_", "_args_", "_convert_", "_recursive_")
# Errors a constructor raises for a bad argument: they become one line naming the config key.
_ARGUMENT_ERRORS = (UserError, ValueError, TypeError)


def locate(path: str, *, key: str = "_target_") -> Any:
    """The object a dotted path names (``nlnet.models.ResNet3d``): the longest importable module
    prefix, then attributes.

    Raises:
        ConfigError: one line naming ``key`` and the path when nothing of that name exists.
    """
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            break
        return obj
    raise ConfigError(f"{key}={path}: no such class or function")


def _build(value: Any, key: str) -> Any:
    """``value`` with every nested ``_target_`` node built (containers as plain dicts and lists)."""
    if isinstance(value, Mapping):
        if "_target_" in value:
            return instantiate_node(value, key=key)
        return {k: _build(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_build(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def instantiate_node(node: Mapping[str, Any], /, *, key: str = "", **kwargs: Any) -> Any:
    """Build what ``node`` describes: ``node["_target_"](*_args_, **arguments, **kwargs)``, nested
    nodes first; with ``_partial_: true`` a ``functools.partial`` of it instead.

    Args:
        node: a plain mapping with ``_target_`` (a checkpoint's stored config node).
        key: where the node sits in the config (``model.net``), named in errors.
        **kwargs: runtime arguments, given on top of the node's.

    Raises:
        ConfigError: one line naming the key when the target does not exist, is not callable, or
            refuses an argument (``model.net.nonlocal_layer: pairwise='x' ...``).
    """
    target_key = f"{key}._target_" if key else "_target_"
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{key or 'config'}: not a node with a _target_ to build")
    target = locate(str(node["_target_"]), key=target_key)
    if not callable(target):
        raise ConfigError(f"{target_key}={node['_target_']}: not a class or function")
    arguments = {k: _build(v, f"{key}.{k}" if key else str(k)) for k, v in node.items() if k not in _SPECIAL}
    args = [_build(v, f"{key}._args_[{i}]") for i, v in enumerate(node.get("_args_") or [])]
    arguments.update(kwargs)
    if node.get("_partial_"):
        return functools.partial(target, *args, **arguments)
    try:
        return target(*args, **arguments)
    except _ARGUMENT_ERRORS as exc:
        raise ConfigError(f"{key or node['_target_']}: {one_line(exc)}") from exc
