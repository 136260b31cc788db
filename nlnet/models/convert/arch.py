"""A published network and its test-time input, as data (:class:`Arch`, :class:`Clip`), and the nlnet
config that rebuilds it (:func:`model_config`, :func:`data_config`).

Every source module lists its networks as :class:`Arch` values that differ only in fields; nothing
here branches on a source's name. Fields follow the vocabulary of ``nlnet.models.ResNet3d`` and
``nlnet.models.NonLocalBlock``; the source files each value comes from are cited in the source modules
and in ``docs/checkpoints.md``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nlnet.data.transforms import ViewProtocol
from nlnet.models.resnet3d import DEPTHS
from nlnet.resources import kinetics400_classes_path

__all__ = ["Clip", "Arch", "C2D", "I3D", "SLOW", "temporal_kernels", "stage_channels", "model_config", "data_config",
           "NL_FIVE", "NO_NL", "OFFICIAL_NL"]

Triple = tuple[int, int, int]

# Per-stage bases of the first conv's temporal kernel, repeated over each stage's blocks
# (PySlowFast _TEMPORAL_KERNEL_BASIS; the official code's use_temp_convs: 1 = kernel 3).
C2D = ((1,), (1,), (1,), (1,))
I3D = ((3,), (3, 1), (3, 1), (1, 3))
SLOW = ((1,), (1,), (3,), (3,))

NO_NL: tuple[tuple[int, ...], ...] = ((), (), (), ())
NL_FIVE = ((), (1, 3), (1, 3, 5), ())  # 5 blocks: every other block of res3 and res4 (R50; PySlowFast R101 too)

# The non-local block as the official code computes it (lib/models/nonlocal_helper.py): embedded
# Gaussian, theta^T phi scaled by C'^-1/2, the block's input max-pooled 1x2x2 before phi and g.
OFFICIAL_NL = {"pairwise": "embedded_gaussian", "scale": True, "pool_before": True, "sub_sample": True,
               "bn_layer": True}


@dataclass(frozen=True)
class Clip(ViewProtocol):
    """A source's input pipeline: its test views (``ViewProtocol``, on nlnet's [0, 1] RGB scale) and training crop.

    ``mean``, ``std`` are in the source's channel order (a BGR source's are reversed into nlnet's RGB
    order by :func:`data_config`) and default to the (0.45,) * 3 / (0.225,) * 3 most sources use.
    ``train_crop``, ``train_scale``: the training crop and short-side range (for fine-tuning).
    """

    mean: tuple[float, ...] = (0.45, 0.45, 0.45)
    std: tuple[float, ...] = (0.225, 0.225, 0.225)
    train_crop: int = 224
    train_scale: tuple[int, int] = (256, 320)


@dataclass(frozen=True)
class Arch:
    """A source's network in nlnet's terms.

    Attributes:
        name: the ``--arch`` name.
        clip: the source's test-time input (:class:`Clip`).
        depth: ResNet depth (50, 101).
        temporal: per-stage temporal kernel bases of each block's first conv (:data:`C2D`, :data:`I3D`,
            :data:`SLOW`); ``temporal_blocks`` (PySlowFast's NUM_BLOCK_TEMP_KERNEL) limits how many
            blocks per stage use the basis (the rest get 1).
        stem_kernel_t, stem_stride_t: conv1's temporal kernel and stride.
        pool1_kernel_t, pool1_stride_t: pool1's temporal kernel and stride (spatially 3x3, stride 2).
        pool1_padding: pool1's padding; None: nlnet's (0, 1, 1).
        pool2_t: temporal max-pool after res2 (1: none).
        nonlocal_blocks: per stage res2..res5, the residual blocks after which an NL block goes.
        nonlocal_options: ``NonLocalBlock`` arguments (pairwise, scale, pool_before, ...).
        nonlocal_groups: per stage, consecutive temporal groups the NL blocks attend within (1: all).
        head_pool_t, head_pool_hw: size of the head's fixed average-pool window (T' x hw x hw, stride 1),
            head_pool_t None for a global average pool; ``head_test`` what the head does over window positions:
            "softmax" (mean of per-position softmax), "logits" (mean of per-position logits).
        dropout: dropout before the classifier (training only).
        bn_eps: BatchNorm epsilon of the backbone; nonlocal_bn_eps that of the NL blocks' BN.
        affine: BatchNorms are fixed affine layers in the source (no statistics): frozen in nlnet.
        bgr: the source's first conv expects BGR input (folded into stem.conv.weight).
        base_width, num_classes: read from the file (64 and 400 for the published models).
        image_2d: True for a 2D ImageNet ResNet (written as a torchvision state dict, not a checkpoint).
        hint: parts of the published file name (space-separated) that tell this arch from others with
            the same weight shapes; the clip (e.g. ``8x8``) is always one.
        published: the source's published model(s) of this arch: (file name, top-1, top-5) as the
            source states them (None for the ImageNet files, which have no Kinetics accuracy).
    """

    name: str
    clip: Clip
    depth: int = 50
    temporal: tuple[tuple[int, ...], ...] = C2D
    temporal_blocks: tuple[int, ...] | None = None
    stem_kernel_t: int = 1
    stem_stride_t: int = 1
    pool1_kernel_t: int = 1
    pool1_stride_t: int = 1
    pool1_padding: Triple | None = None
    pool2_t: int = 2
    nonlocal_blocks: tuple[tuple[int, ...], ...] = NO_NL
    nonlocal_options: Mapping[str, Any] = field(default_factory=lambda: dict(OFFICIAL_NL), hash=False)
    nonlocal_groups: tuple[int, int, int, int] = (1, 1, 1, 1)
    head_pool_t: int | None = None
    head_pool_hw: int = 7
    head_test: str = "softmax"
    dropout: float = 0.5
    bn_eps: float = 1e-5
    nonlocal_bn_eps: float = 1e-5
    affine: bool = False
    bgr: bool = False
    base_width: int = 64
    num_classes: int = 400
    image_2d: bool = False
    hint: str = ""
    published: tuple[tuple[str, str | None, str | None], ...] = ()

    def replace(self, **changes: Any) -> Arch:
        """A copy with ``changes`` (e.g. the base width and class count read from a file)."""
        return dataclasses.replace(self, **changes)

    @property
    def has_nonlocal(self) -> bool:
        return any(self.nonlocal_blocks)

    @property
    def hint_tokens(self) -> tuple[str, ...]:
        return (*([] if self.image_2d else [self.clip_name]), *self.hint.split())

    @property
    def clip_name(self) -> str:
        """``"8x8"``, ``"32x2"``: T x tau (``"2D"`` for an ImageNet network)."""
        return "2D" if self.image_2d else f"{self.clip.num_frames}x{self.clip.sampling_rate}"


def temporal_kernels(arch: Arch) -> list[list[int]]:
    """Per stage res2..res5, the first conv's temporal kernel of each block."""
    blocks = DEPTHS[arch.depth][1]
    limits = arch.temporal_blocks or blocks
    return [[basis[i % len(basis)] if i < limit else 1 for i in range(n)]
            for basis, n, limit in zip(arch.temporal, blocks, limits)]


def stage_channels(arch: Arch) -> list[int]:
    """Output channels of res2..res5 (bottlenecks: 4 x base width x 2^stage)."""
    return [arch.base_width * 4 * 2 ** s for s in range(4)]


def _nonlocal_node(arch: Arch) -> dict[str, Any]:
    node = {"_target_": "nlnet.models.NonLocalBlock", "_partial_": True, "pairwise": "embedded_gaussian",
            "sub_sample": True, "pool_before": False, "scale": False, "scale_gaussian": False, "pool_ceil_mode": False,
            **dict(arch.nonlocal_options)}
    groups = {c: g for c, g in zip(stage_channels(arch), arch.nonlocal_groups) if g > 1}
    if groups:
        node["temporal_groups"] = groups  # per stage, keyed by the stage's width
    if arch.nonlocal_bn_eps != 1e-5:
        node["norm_eps"] = arch.nonlocal_bn_eps
    return node


def model_config(arch: Arch) -> dict[str, Any]:
    """The ``model`` config subtree (``model.nonlocal`` and ``model.net``) that rebuilds ``arch``."""
    nonlocal_node = _nonlocal_node(arch)
    head = [arch.head_pool_t, arch.head_pool_hw, arch.head_pool_hw] if arch.head_pool_t else None
    net: dict[str, Any] = {
        "_target_": "nlnet.models.ResNet3d",
        "depth": arch.depth,
        "base_width": arch.base_width,
        "num_classes": arch.num_classes,
        "in_channels": 3,
        "stem_kernel": [arch.stem_kernel_t, 7, 7],
        "stem_stride": [arch.stem_stride_t, 2, 2],
        "pool1_kernel": [arch.pool1_kernel_t, 3, 3],
        "pool1_stride": [arch.pool1_stride_t, 2, 2],
        "pool1_padding": list(arch.pool1_padding) if arch.pool1_padding is not None else None,
        "pool2_kernel": [arch.pool2_t, 1, 1],
        "temporal_kernels": temporal_kernels(arch),
        "nonlocal_blocks": [list(v) for v in arch.nonlocal_blocks],
        "nonlocal_layer": nonlocal_node,
        "dropout": arch.dropout,
        "head_pool_kernel": head,
        "fully_conv_test": bool(head) and arch.head_test == "softmax",
        "frozen_bn": "all" if arch.affine else [],
        "norm_layer": {"_target_": "torch.nn.BatchNorm3d", "_partial_": True, "eps": arch.bn_eps},
    }
    return {"nonlocal": nonlocal_node, "net": net}


def data_config(arch: Arch, *, kinetics_classes: bool) -> dict[str, Any]:
    """The ``data`` config keys that reproduce the source's input pipeline (every derived key explicit,
    so the result can be merged into a resolved config)."""
    clip = arch.clip
    order = slice(None, None, -1 if arch.bgr else 1)  # a BGR source's values, in nlnet's RGB order
    mean, std = list(clip.mean)[order], list(clip.std)[order]
    label_map = kinetics400_classes_path() if kinetics_classes else None

    def common() -> dict[str, Any]:  # fresh lists in each subtree
        return {"num_frames": clip.num_frames, "sampling_rate": clip.sampling_rate, "mean": list(mean),
                "std": list(std), "label_map": label_map}

    return {
        "num_frames": clip.num_frames,
        "sampling_rate": clip.sampling_rate,
        "label_map": label_map,
        "train": {**common(), "crop_size": clip.train_crop, "train_scale": list(clip.train_scale)},
        "val": {**common(), "test_scale": clip.short_side, "test_crop_size": clip.crop_size,
                "num_clips": clip.num_clips, "num_crops": clip.num_crops, "clip_placement": clip.clip_placement},
    }


def deep_merge(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``delta``'s values written over it, key by key (nested mappings merged)."""
    merged = dict(base)
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def stage_lists(value: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Per-stage lists as a hashable tuple of tuples."""
    return tuple(tuple(int(v) for v in stage) for stage in value)
