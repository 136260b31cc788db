"""C2D and I3D ResNet backbones with non-local blocks (Table 1 of the paper).

One generic network, :class:`ResNet3d`, assembled in a loop from small parts: :class:`Stem`
(conv1 + pool1), residual blocks (:class:`Bottleneck`, :class:`BasicBlock`), :class:`ResStage`
(residual blocks with non-local blocks inserted after listed blocks, and an optional temporal
pool such as pool2) and :class:`Head` (global average pool, dropout, fc).

C2D and I3D differ only in data: the temporal kernel of conv1 (``stem_kernel``) and of each
residual block's first conv (``temporal_kernels``). Non-local placement is data too
(``nonlocal_blocks``: per stage, the block indices after which a block is inserted).

State-dict key names are public API (checkpoints keep loading)::

    stem.conv.weight, stem.bn.*                            conv1 and its BN
    res{2..5}.block{i}.conv{1,2,3}.weight, .bn{1,2,3}.*    residual block i of a stage (0-based)
    res{2..5}.block{i}.shortcut.conv.weight, .shortcut.bn.* projection shortcut (first block)
    res{2..5}.nonlocal{i}.*                                non-local block inserted after block i
    head.fc.weight, head.fc.bias                           classifier
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

log = logging.getLogger(__name__)

Triple = tuple[int, int, int]
NormLayer = Callable[[int], nn.Module]
NonLocalLayer = Callable[[int], nn.Module]

STAGE_NAMES = ("res2", "res3", "res4", "res5")


def _triple(value: Union[int, Sequence[int]], name: str) -> Triple:
    """``3`` -> (3, 3, 3); a length-3 sequence -> tuple; anything else is an error naming ``name``."""
    if isinstance(value, int):
        return (value, value, value)
    values = tuple(value)
    if len(values) != 3 or not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name} must be an int or a list of 3 ints (T, H, W), got {value!r}")
    return values  # type: ignore[return-value]


def _same_padding(kernel: Triple) -> Triple:
    """Padding that keeps the size for odd kernels (stride 1); 0 for an even kernel (e.g. pool 2x1x1)."""
    return tuple((k - 1) // 2 for k in kernel)  # type: ignore[return-value]


class Stem(nn.Module):
    """conv1 (e.g. 1x7x7 C2D, 5x7x7 I3D) -> BN -> ReLU -> pool1 (Table 1, rows conv1 and pool1).

    Args:
        in_channels: input channels (3 for RGB).
        out_channels: conv1 output channels (64 in ResNet-50).
        kernel: conv1 kernel (T, H, W).
        stride: conv1 stride; temporal 2 for 32x2 clips, 1 for 8x8 clips.
        pool_kernel: pool1 max-pool kernel (2x3x3 for 32x2 clips, 1x3x3 for 8x8 clips).
        pool_stride: pool1 stride ((2, 2, 2) for 32x2 clips, (1, 2, 2) for 8x8 clips).
        norm_layer: callable(channels) -> normalisation module.
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel: Triple, stride: Triple,
                 pool_kernel: Triple, pool_stride: Triple, norm_layer: NormLayer) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride,
                              padding=_same_padding(kernel), bias=False)
        self.bn = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d(pool_kernel, stride=pool_stride, padding=_same_padding(pool_kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 3, T, H, W) -> (B, 64, T/st/sp, H/4, W/4)
        return self.pool(self.relu(self.bn(self.conv(x))))


class Shortcut(nn.Module):
    """Projection shortcut: 1x1x1 conv with the block's spatial stride, then BN."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False)
        self.bn = norm_layer(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Bottleneck(nn.Module):
    """Bottleneck residual block [t x 1 x 1, w; 1 x 3 x 3, w; 1 x 1 x 1, 4w] (Table 1).

    The spatial stride sits on the 3x3 conv (as in torchvision, PySlowFast and pytorchvideo).

    Args:
        in_channels: input channels.
        width: bottleneck channels w; the block outputs ``4 * width``.
        stride: spatial stride of the 3x3 conv (2 in the first block of res3..res5).
        temporal_kernel: temporal size t of the first conv (1 for C2D; 3 in I3D's inflated blocks).
        norm_layer: callable(channels) -> normalisation module.
    """

    expansion = 4

    def __init__(self, *, in_channels: int, width: int, stride: int = 1, temporal_kernel: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm3d) -> None:
        super().__init__()
        out_channels = width * self.expansion
        t = temporal_kernel
        self.conv1 = nn.Conv3d(in_channels, width, (t, 1, 1), padding=(t // 2, 0, 0), bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = nn.Conv3d(width, width, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                               bias=False)
        self.bn2 = norm_layer(width)
        self.conv3 = nn.Conv3d(width, out_channels, 1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (Shortcut(in_channels=in_channels, out_channels=out_channels, stride=stride,
                                  norm_layer=norm_layer)
                         if stride != 1 or in_channels != out_channels else None)

    @property
    def last_bn(self) -> nn.Module:
        """The BN closing the residual branch (its gamma is zeroed by ``zero_init_residual``)."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, w, T, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, w, T, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4w, T, H/s, W/s)
        out += identity  # in place: BN's backward does not need its output
        return self.relu(out)


class BasicBlock(nn.Module):
    """Basic residual block [t x 3 x 3, w; 1 x 3 x 3, w] for ResNet-18/34 (small experiments).

    Args:
        in_channels: input channels.
        width: block channels (output = ``width``).
        stride: spatial stride of the first conv.
        temporal_kernel: temporal size t of the first conv.
        norm_layer: callable(channels) -> normalisation module.
    """

    expansion = 1

    def __init__(self, *, in_channels: int, width: int, stride: int = 1, temporal_kernel: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm3d) -> None:
        super().__init__()
        t = temporal_kernel
        self.conv1 = nn.Conv3d(in_channels, width, (t, 3, 3), stride=(1, stride, stride),
                               padding=(t // 2, 1, 1), bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = nn.Conv3d(width, width, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn2 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (Shortcut(in_channels=in_channels, out_channels=width, stride=stride,
                                  norm_layer=norm_layer)
                         if stride != 1 or in_channels != width else None)

    @property
    def last_bn(self) -> nn.Module:
        """The BN closing the residual branch (its gamma is zeroed by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResStage(nn.Module):
    """One stage (res2..res5): residual blocks, non-local blocks after listed blocks, optional pool.

    Children are registered in execution order as ``block{i}`` and ``nonlocal{i}`` (the non-local
    block placed after residual block ``i``), then ``pool`` (e.g. pool2 after res2).

    Args:
        blocks: the residual blocks, in order.
        nonlocal_layers: block index -> non-local module inserted right after that block.
        pool: module applied after the last block (e.g. max-pool 2x1x1), or None.
        use_checkpoint: recompute the stage's activations in backward (saves memory while training).
    """

    def __init__(self, *, blocks: Sequence[nn.Module], nonlocal_layers: dict[int, nn.Module] | None = None,
                 pool: nn.Module | None = None, use_checkpoint: bool = False) -> None:
        super().__init__()
        nonlocal_layers = nonlocal_layers or {}
        bad = sorted(set(nonlocal_layers) - set(range(len(blocks))))
        if bad:
            raise ValueError(f"non-local block indices {bad} out of range for a stage of {len(blocks)} "
                             f"blocks (valid: 0..{len(blocks) - 1})")
        self.nonlocal_names: list[str] = []
        for i, block in enumerate(blocks):
            self.add_module(f"block{i}", block)
            if i in nonlocal_layers:
                self.add_module(f"nonlocal{i}", nonlocal_layers[i])
                self.nonlocal_names.append(f"nonlocal{i}")
        self.pool = pool
        self.use_checkpoint = use_checkpoint

    def _run(self, x: torch.Tensor, attention: dict[str, torch.Tensor] | None) -> torch.Tensor:
        for name, layer in self.named_children():
            if attention is not None and name in self.nonlocal_names:
                x, attention[name] = layer(x, return_attention=True)
            else:
                x = layer(x)
        return x

    def forward(self, x: torch.Tensor,
                attention: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Run the stage; with ``attention`` (a dict) each NL block's weights are stored under its name."""
        if self.use_checkpoint and attention is None and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(self._run, x, None, use_reentrant=False)
        return self._run(x, attention)


class Head(nn.Module):
    """Global average pool over T x H x W, dropout, linear classifier (Table 1, last row).

    Args:
        in_channels: feature channels (2048 for ResNet-50).
        num_classes: classifier outputs.
        dropout: dropout probability before the classifier (0.5 in the paper).
    """

    def __init__(self, *, in_channels: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)  # official code: Gaussian std 0.01
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, C, T, H, W) -> (B, C); any input size
        return self.fc(self.dropout(x))


# Depth -> (residual block, blocks per stage res2..res5). ResNet-50/101 as in the paper.
DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _check_per_stage(value: Sequence, name: str, blocks: Sequence[int], depth: int) -> list[list]:
    """Validate a per-stage, per-block list against the depth's block counts."""
    lengths = list(blocks)
    if len(value) != len(lengths) or any(not isinstance(v, (list, tuple)) for v in value):
        raise ValueError(f"{name} must be a list of {len(lengths)} lists (res2..res5), one entry per "
                         f"residual block (lengths {lengths} for depth {depth}), got {value!r}")
    got = [len(v) for v in value]
    if got != lengths:
        raise ValueError(f"{name} has per-stage lengths {got}, but depth {depth} has {lengths} blocks "
                         f"in res2..res5; give one temporal kernel per residual block")
    return [list(v) for v in value]


class ResNet3d(nn.Module):
    """C2D / I3D ResNet with non-local blocks (Table 1; I3D inflation; Sec. 4 placements).

    Args:
        depth: 18, 34 (basic blocks), 50, 101 or 152 (bottlenecks).
        base_width: channels of conv1 and of res2's bottleneck (64 in the paper); stages double it.
        num_classes: classifier outputs.
        in_channels: input channels (3 for RGB).
        stem_kernel: conv1 kernel (1x7x7 for C2D, 5x7x7 for I3D).
        stem_stride: conv1 stride; (2, 2, 2) for 32x2 clips, (1, 2, 2) for 8x8 clips.
        pool1_kernel: max-pool after conv1; 2x3x3 for 32x2 clips, 1x3x3 for 8x8 clips.
        pool1_stride: its stride; (2, 2, 2) for 32x2 clips, (1, 2, 2) for 8x8 clips.
        pool2_kernel: temporal max-pool after res2 (stride = kernel); (1, 1, 1) means none.
        temporal_kernels: per stage res2..res5, per residual block, the temporal kernel of the
            block's first conv. None = all 1 (C2D). I3D: [[3,3,3], [3,1,3,1], [3,1,3,1,3,1], [1,3,1]].
        nonlocal_blocks: per stage res2..res5, the 0-based indices of the residual blocks after
            which a non-local block is inserted; e.g. 5 blocks: [[], [1, 3], [1, 3, 5], []].
        nonlocal_layer: callable(in_channels) -> module, e.g.
            ``functools.partial(NonLocalBlock, pairwise="dot_product")``; the NL options are set once
            here for every block. Required when ``nonlocal_blocks`` is not empty.
        dropout: dropout before the classifier.
        zero_init_residual: start the last BN gamma of every residual branch at zero.
        checkpoint_stages: stage names (e.g. ["res3", "res4"]) whose activations are recomputed in
            backward (activation checkpointing). Note: BN running statistics are then updated twice
            per step in those stages.
        channels_last: keep weights and activations in ``torch.channels_last_3d`` memory format.
        norm_layer: callable(channels) -> normalisation module (BatchNorm3d by default).
        pretrained: path to a 2D torchvision ResNet state dict to inflate (ImageNet init), or
            "torchvision" to fetch torchvision's ImageNet weights (needs network or a cached file).
    """

    def __init__(
        self,
        *,
        depth: int = 50,
        base_width: int = 64,
        num_classes: int = 400,
        in_channels: int = 3,
        stem_kernel: Sequence[int] = (1, 7, 7),
        stem_stride: Sequence[int] = (2, 2, 2),
        pool1_kernel: Sequence[int] = (2, 3, 3),
        pool1_stride: Sequence[int] = (2, 2, 2),
        pool2_kernel: Sequence[int] = (2, 1, 1),
        temporal_kernels: Sequence[Sequence[int]] | None = None,
        nonlocal_blocks: Sequence[Sequence[int]] = ((), (), (), ()),
        nonlocal_layer: NonLocalLayer | None = None,
        dropout: float = 0.5,
        zero_init_residual: bool = False,
        checkpoint_stages: Sequence[str] = (),
        channels_last: bool = False,
        norm_layer: NormLayer = nn.BatchNorm3d,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth={depth!r} is not supported; valid depths: {sorted(DEPTHS)}")
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        block_cls, blocks_per_stage = DEPTHS[depth]
        if temporal_kernels is None:
            temporal_kernels = [[1] * n for n in blocks_per_stage]
        temporal_kernels = _check_per_stage(temporal_kernels, "temporal_kernels", blocks_per_stage, depth)
        for stage, kernels in zip(STAGE_NAMES, temporal_kernels):
            if any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernels):
                raise ValueError(f"temporal_kernels for {stage} must be odd positive ints, got {kernels}")
        if len(nonlocal_blocks) != len(STAGE_NAMES):
            raise ValueError(f"nonlocal_blocks must be a list of {len(STAGE_NAMES)} lists of block "
                             f"indices (res2..res5), got {nonlocal_blocks!r}")
        for stage, indices, n in zip(STAGE_NAMES, nonlocal_blocks, blocks_per_stage):
            bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < n]
            if bad:
                raise ValueError(f"nonlocal_blocks for {stage} has indices {bad}; depth {depth} has "
                                 f"{n} blocks there (valid: 0..{n - 1})")
        if any(nonlocal_blocks) and nonlocal_layer is None:
            raise ValueError(f"nonlocal_blocks={[list(v) for v in nonlocal_blocks]} needs nonlocal_layer "
                             "(e.g. functools.partial(NonLocalBlock, pairwise='embedded_gaussian'))")
        bad_stages = sorted(set(checkpoint_stages) - set(STAGE_NAMES))
        if bad_stages:
            raise ValueError(f"checkpoint_stages has unknown stages {bad_stages}; valid: {list(STAGE_NAMES)}")

        self.depth = depth
        self.num_classes = num_classes
        self.channels_last = channels_last
        self.stage_names = STAGE_NAMES
        self.stem = Stem(in_channels=in_channels, out_channels=base_width,
                         kernel=_triple(stem_kernel, "stem_kernel"),
                         stride=_triple(stem_stride, "stem_stride"),
                         pool_kernel=_triple(pool1_kernel, "pool1_kernel"),
                         pool_stride=_triple(pool1_stride, "pool1_stride"), norm_layer=norm_layer)
        pool2 = _triple(pool2_kernel, "pool2_kernel")
        # Per stage: spatial stride of its first block, and the pool after it (pool2 after res2 only).
        strides = (1, 2, 2, 2)
        pools = (nn.MaxPool3d(pool2, stride=pool2) if pool2 != (1, 1, 1) else None, None, None, None)

        channels = base_width
        for s, name in enumerate(STAGE_NAMES):
            width = base_width * 2 ** s
            blocks = []
            for i, t in enumerate(temporal_kernels[s]):
                blocks.append(block_cls(in_channels=channels, width=width,
                                        stride=strides[s] if i == 0 else 1, temporal_kernel=t,
                                        norm_layer=norm_layer))
                channels = width * block_cls.expansion
            nonlocal_layers = {i: nonlocal_layer(channels) for i in sorted(set(nonlocal_blocks[s]))}
            self.add_module(name, ResStage(blocks=blocks, nonlocal_layers=nonlocal_layers, pool=pools[s],
                                           use_checkpoint=name in checkpoint_stages))
        self.feature_channels = channels
        self.head = Head(in_channels=channels, num_classes=num_classes, dropout=dropout)
        self._init_weights(zero_init_residual)

        if pretrained is not None:
            from nlnet.models.inflate import inflate_from_2d
            report = inflate_from_2d(self, pretrained)
            log.info("ResNet3d: %s", report)
        if channels_last:
            self.to(memory_format=torch.channels_last_3d)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """Kaiming init of convs, BN gamma 1 / beta 0; non-local blocks keep their own init."""
        for module in [self.stem, *(self.stage(name) for name in self.stage_names)]:
            for name, m in module.named_modules():
                if name.split(".")[0].startswith("nonlocal"):
                    continue
                if isinstance(m, nn.Conv3d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm3d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (Bottleneck, BasicBlock)):
                    nn.init.zeros_(m.last_bn.weight)

    def stage(self, name: str) -> ResStage:
        """The stage module ``name`` (res2..res5)."""
        return getattr(self, name)

    def nonlocal_names(self) -> list[str]:
        """Module names of the non-local blocks in execution order, e.g. ["res3.nonlocal1", ...]."""
        return [f"{name}.{nl}" for name in self.stage_names for nl in self.stage(name).nonlocal_names]

    def _features(self, x: torch.Tensor, attention: dict[str, torch.Tensor] | None) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"ResNet3d expects a clip (B, C, T, H, W), got shape {tuple(x.shape)}")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x = self.stem(x)
        for name in self.stage_names:
            stage_attention = None if attention is None else {}
            x = self.stage(name)(x, stage_attention)
            if attention is not None:
                attention.update({f"{name}.{k}": v for k, v in stage_attention.items()})
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """res5 feature map: (B, 3, T, H, W) -> (B, C, T', H/32, W/32)."""
        return self._features(x, None)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Clip (B, 3, T, H, W) -> logits (B, num_classes).

        With ``return_attention=True`` returns ``(logits, {nl_name: attention})`` where each NL block
        was called with ``return_attention=True`` (weights (B, N, N') for spacetime scope).
        """
        if not return_attention:
            return self.head(self._features(x, None))
        attention: dict[str, torch.Tensor] = {}
        logits = self.head(self._features(x, attention))
        return logits, attention
