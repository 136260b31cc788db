"""One way to build a network: from a config node (:func:`build_model`) or by name with keyword
arguments (:func:`c2d_r50`, :func:`nl_i3d_r101`, ...), as torchvision's ``r3d_18`` and pytorchvideo's
hub functions do.

The named networks are the paper's (Table 1: C2D and I3D ResNets on 32x2 clips; Table 2c: the 5-block
non-local placement) and equal the networks ``configs/model/<name>.yaml`` builds; they only build
(weights come from ``nlnet.checkpoint``).

    model = nlnet.models.nl_i3d_r50(num_classes=400, pairwise="dot_product")
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from nlnet.models.nonlocal_block import NonLocalBlock
from nlnet.models.resnet3d import DEPTHS, ResNet3d
from nlnet.utils.instantiate import instantiate_node

__all__ = ["build_model", "MODELS", "c2d_r50", "i3d_r50", "nl_c2d_r50", "nl_i3d_r50", "c2d_r101", "i3d_r101",
           "nl_c2d_r101", "nl_i3d_r101"]

# Per-stage bases of the first conv's temporal kernel, repeated over each stage's blocks (Table 1:
# I3D inflates every other block to 3x1x1; the official pattern res2 [3,3,3], res3 [3,1,3,1], ...).
_I3D_BASIS = ((3,), (3, 1), (3, 1), (1, 3))
# Table 2c's 5 non-local blocks: every other block of res3 and res4 (R101: the official res4 places).
_NL_FIVE = {50: ((), (1, 3), (1, 3, 5), ()), 101: ((), (1, 3), (6, 13, 20), ())}
# The block's options in configs/model/c2d_r50.yaml (``model.nonlocal``).
NONLOCAL_DEFAULTS: dict[str, Any] = dict(pairwise="embedded_gaussian", sub_sample=True, pool_ceil_mode=False,
                                         pool_before=True, scale=True, scale_gaussian=False, scope="spacetime",
                                         impl="auto")


def build_model(net: Mapping[str, Any], *, key: str = "model.net") -> nn.Module:
    """The network a ``model.net`` node describes (a ``_target_`` node of plain dicts, as a checkpoint
    stores it); errors name ``key``.

    Args:
        net: the node (``_target_``: ``nlnet.models.ResNet3d`` and its keyword arguments).
        key: where the node sits in the config.
    """
    return instantiate_node(net, key=key)


def _i3d_kernels(depth: int) -> list[list[int]]:
    """Per stage res2..res5, the inflated first-conv temporal kernel of each block."""
    return [[basis[i % len(basis)] for i in range(n)] for basis, n in zip(_I3D_BASIS, DEPTHS[depth][1])]


def _resnet(*, depth: int, inflated: bool, nonlocal_blocks: Sequence[Sequence[int]] | None,
            pairwise: str, nonlocal_options: Mapping[str, Any] | None, **kwargs: Any) -> ResNet3d:
    """A ResNet3d on 32x2 clips; I3D adds the 5x7x7 stem and inflated blocks (Table 1)."""
    arch: dict[str, Any] = dict(depth=depth)
    if inflated:
        arch.update(stem_kernel=(5, 7, 7), temporal_kernels=_i3d_kernels(depth))
    if nonlocal_blocks is not None:
        options = {**NONLOCAL_DEFAULTS, "pairwise": pairwise, **(nonlocal_options or {})}
        arch.update(nonlocal_blocks=nonlocal_blocks, nonlocal_layer=functools.partial(NonLocalBlock, **options))
    return ResNet3d(**{**arch, **kwargs})


def _named(depth: int, *, inflated: bool, nonlocal_: bool, doc: str) -> Any:
    def build(*, num_classes: int = 400, pairwise: str = "embedded_gaussian",
              nonlocal_options: Mapping[str, Any] | None = None, **kwargs: Any) -> ResNet3d:
        if not nonlocal_ and (pairwise != "embedded_gaussian" or nonlocal_options):
            raise TypeError(f"{name}() has no non-local blocks; use nl_{name}() to set pairwise/nonlocal_options")
        return _resnet(depth=depth, inflated=inflated, nonlocal_blocks=_NL_FIVE[depth] if nonlocal_ else None,
                       pairwise=pairwise, nonlocal_options=nonlocal_options, num_classes=num_classes, **kwargs)

    name = f"{'nl_' if nonlocal_ else ''}{'i3d' if inflated else 'c2d'}_r{depth}"
    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"""{doc}

    Args:
        num_classes: classifier outputs (Kinetics-400: 400).
        pairwise: the non-local blocks' pairwise function (Table 2a): embedded_gaussian, gaussian,
            dot_product or concatenation (non-local networks only).
        nonlocal_options: further ``NonLocalBlock`` arguments (non-local networks only).
        **kwargs: further ``ResNet3d`` arguments (dropout, frozen_bn, nonlocal_blocks, ...).
    """
    return build


c2d_r50 = _named(50, inflated=False, nonlocal_=False, doc="C2D ResNet-50 (Table 1), 32x2 clips.")
i3d_r50 = _named(50, inflated=True, nonlocal_=False, doc="I3D ResNet-50 (Table 1), 32x2 clips.")
nl_c2d_r50 = _named(50, inflated=False, nonlocal_=True, doc="C2D ResNet-50 with 5 non-local blocks (Table 2c).")
nl_i3d_r50 = _named(50, inflated=True, nonlocal_=True, doc="I3D ResNet-50 with 5 non-local blocks (Table 2c).")
c2d_r101 = _named(101, inflated=False, nonlocal_=False, doc="C2D ResNet-101, 32x2 clips.")
i3d_r101 = _named(101, inflated=True, nonlocal_=False, doc="I3D ResNet-101 (Table 2f), 32x2 clips.")
nl_c2d_r101 = _named(101, inflated=False, nonlocal_=True, doc="C2D ResNet-101 with 5 non-local blocks (Table 2c).")
nl_i3d_r101 = _named(101, inflated=True, nonlocal_=True, doc="I3D ResNet-101 with 5 non-local blocks (Table 2f).")

MODELS = {fn.__name__: fn for fn in (c2d_r50, i3d_r50, nl_c2d_r50, nl_i3d_r50, c2d_r101, i3d_r101, nl_c2d_r101,
                                      nl_i3d_r101)}
