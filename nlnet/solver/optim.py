"""Optimiser construction (paper §4.1): parameter groups without weight decay on BN and biases, and
the learning rate scaled linearly with the total batch (0.01 per 64 clips)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn as nn

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _named_params(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                yield module, name, p


def param_groups(model: nn.Module, *, weight_decay: float, norm_bias_weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Two groups: conv/linear weights with ``weight_decay``; norm-layer parameters and every bias
    with ``norm_bias_weight_decay`` (the official recipe: none on BN).

    Args:
        model: the network.
        weight_decay: decay of the ordinary weights (paper: 1e-4).
        norm_bias_weight_decay: decay of BN/GN/LN parameters and biases.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module, name, p in _named_params(model):
        (no_decay if isinstance(module, _NORM_TYPES) or name == "bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": norm_bias_weight_decay})
    return groups


def scaled_lr(lr: float, *, total_batch_size: int, reference_batch_size: int) -> float:
    """Linear scaling: ``lr`` is for ``reference_batch_size`` clips (paper: 0.01 for 8 GPUs x 8 = 64)."""
    return lr * total_batch_size / reference_batch_size


def build_optimizer(model: nn.Module, *, total_batch_size: int, optimizer: Callable[..., torch.optim.Optimizer],
                    lr: float = 0.01, reference_batch_size: int = 64, weight_decay: float = 1e-4,
                    norm_bias_weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimiser over :func:`param_groups` at the linearly scaled learning rate.

    Args:
        model: the network (runtime argument).
        total_batch_size: clips per iteration over all processes (runtime argument).
        optimizer: ``partial`` of a ``torch.optim`` class taking (params, lr=...), e.g. SGD with
            momentum 0.9 and Nesterov.
        lr: learning rate per ``reference_batch_size`` clips.
        reference_batch_size: the batch ``lr`` is given for.
        weight_decay: decay of conv/linear weights.
        norm_bias_weight_decay: decay of norm-layer parameters and biases.
    """
    groups = param_groups(model, weight_decay=weight_decay, norm_bias_weight_decay=norm_bias_weight_decay)
    return optimizer(groups, lr=scaled_lr(lr, total_batch_size=total_batch_size,
                                          reference_batch_size=reference_batch_size))
