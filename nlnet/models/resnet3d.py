"""C2D and I3D ResNet backbones with non-local blocks (Table 1 of the paper).

One generic network, :class:`ResNet3d`, assembled in a loop from small parts
(:mod:`nlnet.models.resnet_parts`): :class:`Stem` (conv1 + pool1), residual blocks
(:class:`Bottleneck`, :class:`BasicBlock`), :class:`ResStage` (residual blocks with non-local
blocks inserted after listed blocks, and an optional temporal pool such as pool2) and
:class:`Head` (average pool, dropout, fc; optionally a fully-convolutional test).

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

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from nlnet.models.resnet_parts import (
    BasicBlock,
    Bottleneck,
    Head,
    NormLayer,
    ResidualBlock,
    Shortcut,
    Stem,
    as_list,
    triple,
)

NonLocalLayer = Callable[[int], nn.Module]

STAGE_NAMES = ("res2", "res3", "res4", "res5")
FREEZABLE = ("stem", *STAGE_NAMES)  # the parts whose BatchNorms ``frozen_bn`` can freeze


class ResStage(nn.Module):
    """One stage (res2..res5): residual blocks, non-local blocks after listed blocks, optional pool.

    Children are registered in execution order as ``block{i}`` and ``nonlocal{i}`` (the non-local
    block placed after residual block ``i``), then ``pool`` (e.g. pool2 after res2).

    Args:
        blocks: the residual blocks, in order.
        nonlocal_layers: block index -> non-local module inserted right after that block.
        pool: module applied after the last block (e.g. max-pool 2x1x1), or None.
        use_checkpoint: recompute the stage's activations in backward (saves memory while training).
        name: the stage's name in error messages (e.g. "res3").
    """

    def __init__(self, *, blocks: Sequence[nn.Module], nonlocal_layers: dict[int, nn.Module] | None = None,
                 pool: nn.Module | None = None, use_checkpoint: bool = False, name: str = "stage") -> None:
        super().__init__()
        nonlocal_layers = nonlocal_layers or {}
        bad = [i for i in nonlocal_layers if not isinstance(i, int) or not 0 <= i < len(blocks)]
        if bad:  # the one check of non-local placements
            raise ValueError(f"nonlocal_blocks for {name} has indices {bad}; {name} has {len(blocks)} blocks "
                             f"(valid: 0..{len(blocks) - 1})")
        self.nonlocal_names: list[str] = []
        for i, block in enumerate(blocks):
            self.add_module(f"block{i}", block)
            if i in nonlocal_layers:
                self.add_module(f"nonlocal{i}", nonlocal_layers[i])
                self.nonlocal_names.append(f"nonlocal{i}")
        self.pool = pool
        self.use_checkpoint = use_checkpoint

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(self._run, x, use_reentrant=False)
        return self._run(x)


# Depth -> (residual block, blocks per stage res2..res5). ResNet-50/101 as in the paper.
DEPTHS: dict[int, tuple[type[ResidualBlock], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def _per_stage(value: Sequence, name: str, what: str) -> list[list]:
    """A per-stage value (res2..res5) as 4 lists; any non-string sequences (``ListConfig`` too)."""
    stages = as_list(value, name)
    if len(stages) != len(STAGE_NAMES) or any(isinstance(v, (str, bytes)) or not isinstance(v, Sequence)
                                              for v in stages):
        raise ValueError(f"{name} must be a list of {len(STAGE_NAMES)} lists {what}, got {value!r}")
    return [list(v) for v in stages]


def _frozen_prefix(frozen_stages: str | None) -> tuple[str, ...]:
    """``frozen_stages`` ("stem", "res2".."res5" or None) as the parts from the stem to it."""
    if frozen_stages is None:
        return ()
    if frozen_stages not in FREEZABLE:
        raise ValueError(f"frozen_stages={frozen_stages!r}: valid values are null, {', '.join(FREEZABLE)} "
                         "(the last part frozen, with every part before it)")
    return FREEZABLE[:FREEZABLE.index(frozen_stages) + 1]


def _frozen_parts(frozen_bn: str | Sequence[str]) -> tuple[str, ...]:
    """``frozen_bn`` as part names (``"all"``: every part), checked."""
    names = [frozen_bn] if isinstance(frozen_bn, str) else as_list(frozen_bn, "frozen_bn")
    unknown = sorted(set(names) - {"all", *FREEZABLE})
    if unknown:
        raise ValueError(f"frozen_bn has unknown parts {unknown}; valid: all, {', '.join(FREEZABLE)}")
    return FREEZABLE if "all" in names else tuple(p for p in FREEZABLE if p in names)


class ResNet3d(nn.Module):
    """C2D / I3D ResNet with non-local blocks (Table 1; I3D inflation; Sec. 4 placements).

    Constructing it opens no file: pretrained weights are loaded afterwards
    (:func:`nlnet.models.inflate_from_2d`, a checkpoint's ``load_state_dict``). Per-stage and
    per-axis arguments accept any non-string sequence (OmegaConf's ``ListConfig`` included).

    Args:
        depth: 18, 34 (basic blocks), 50, 101 or 152 (bottlenecks).
        base_width: channels of conv1 and of res2's bottleneck (64 in the paper); stages double it.
        num_classes: classifier outputs.
        in_channels: input channels (3 for RGB).
        stem_kernel: conv1 kernel (1x7x7 for C2D, 5x7x7 for I3D).
        stem_stride: conv1 stride; (2, 2, 2) for 32x2 clips, (1, 2, 2) for 8x8 clips.
        pool1_kernel: max-pool after conv1; 2x3x3 for 32x2 clips, 1x3x3 for 8x8 clips.
        pool1_stride: its stride; (2, 2, 2) for 32x2 clips, (1, 2, 2) for 8x8 clips.
        pool1_padding: its padding; None: (k - 1) // 2 per axis (torchvision, PySlowFast,
            pytorchvideo); (0, 0, 0) as the official Caffe2 code (see :class:`Stem`).
        pool2_kernel: temporal max-pool after res2 (stride = kernel, floor); (1, 1, 1) means none.
        temporal_kernels: per stage res2..res5, per residual block, the temporal kernel of the
            block's first conv. None = all 1 (C2D). I3D: [[3,3,3], [3,1,3,1], [3,1,3,1,3,1], [1,3,1]].
        nonlocal_blocks: per stage res2..res5, the 0-based indices of the residual blocks after
            which a non-local block is inserted; e.g. 5 blocks: [[], [1, 3], [1, 3, 5], []].
        nonlocal_layer: callable(in_channels) -> module, e.g.
            ``functools.partial(NonLocalBlock, pairwise="dot_product")``; the NL options are set once
            here for every block. Required when ``nonlocal_blocks`` is not empty.
        dropout: dropout before the classifier.
        head_pool_kernel: the head's average-pool window (T, H, W), stride 1, e.g. [4, 7, 7] as
            the official ``pool5``; None: global average pool (see :class:`Head`).
        fully_conv_test: in eval mode, return log(mean over the pooled positions of the
            per-position softmax), so that softmax(output) is the official fully-convolutional
            test's averaged probabilities; train mode returns logits (see :class:`Head`).
        frozen_bn: parts among "stem", "res2".."res5" (or "all") whose BatchNorms, non-local
            blocks' included, use their running statistics in training too (they stay in eval
            mode whatever ``.train()`` is called with) and get no affine updates (their weight
            and bias have ``requires_grad=False``). The paper's 128-frame fine-tuning freezes all.
            A new non-local block in a frozen part stays the identity (its BN gamma is 0).
        frozen_stages: fine-tuning: the parts from the stem up to this one ("stem", "res2".."res5";
            None: none) are frozen: no parameter of theirs is trained (``requires_grad=False``) and
            their BatchNorms stay in eval mode, as ``frozen_bn`` (mmaction2's ``frozen_stages``).
        zero_init_residual: start the last BN gamma of every residual branch at zero.
        checkpoint_stages: stage names (e.g. ["res3", "res4"]) whose activations are recomputed in
            backward (activation checkpointing). Note: BN running statistics are then updated twice
            per step in those stages.
        norm_layer: callable(channels) -> normalisation module (BatchNorm3d by default).
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
        pool1_padding: Sequence[int] | None = None,
        pool2_kernel: Sequence[int] = (2, 1, 1),
        temporal_kernels: Sequence[Sequence[int]] | None = None,
        nonlocal_blocks: Sequence[Sequence[int]] = ((), (), (), ()),
        nonlocal_layer: NonLocalLayer | None = None,
        dropout: float = 0.5,
        head_pool_kernel: Sequence[int] | None = None,
        fully_conv_test: bool = False,
        frozen_bn: str | Sequence[str] = (),
        frozen_stages: str | None = None,
        zero_init_residual: bool = False,
        checkpoint_stages: Sequence[str] = (),
        norm_layer: NormLayer = nn.BatchNorm3d,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth={depth!r} is not supported; valid depths: {sorted(DEPTHS)}")
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        block_cls, blocks_per_stage = DEPTHS[depth]
        lengths = list(blocks_per_stage)
        if temporal_kernels is None:
            temporal_kernels = [[1] * n for n in blocks_per_stage]
        temporal_kernels = _per_stage(temporal_kernels, "temporal_kernels", f"(res2..res5), one entry per residual "
                                      f"block (lengths {lengths} for depth {depth})")
        got = [len(v) for v in temporal_kernels]
        if got != lengths:
            raise ValueError(f"temporal_kernels has per-stage lengths {got}, but depth {depth} has {lengths} blocks "
                             f"in res2..res5; give one temporal kernel per residual block")
        for stage, kernels in zip(STAGE_NAMES, temporal_kernels):
            if any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in kernels):
                raise ValueError(f"temporal_kernels for {stage} must be odd positive ints, got {kernels}")
        nonlocal_blocks = _per_stage(nonlocal_blocks, "nonlocal_blocks", "of block indices (res2..res5)")
        if any(nonlocal_blocks) and nonlocal_layer is None:
            raise ValueError(f"nonlocal_blocks={nonlocal_blocks} needs nonlocal_layer "
                             "(e.g. functools.partial(NonLocalBlock, pairwise='embedded_gaussian'))")
        checkpoint_stages = as_list(checkpoint_stages, "checkpoint_stages")
        bad_stages = sorted(set(checkpoint_stages) - set(STAGE_NAMES))
        if bad_stages:
            raise ValueError(f"checkpoint_stages has unknown stages {bad_stages}; valid: {list(STAGE_NAMES)}")

        self.depth = depth
        self.num_classes = num_classes
        self.stage_names = STAGE_NAMES
        self.frozen_stages = _frozen_prefix(frozen_stages)
        self.frozen_bn = tuple(p for p in FREEZABLE if p in _frozen_parts(frozen_bn) + self.frozen_stages)
        self.stem = Stem(in_channels=in_channels, out_channels=base_width,
                         kernel=triple(stem_kernel, "stem_kernel"), stride=triple(stem_stride, "stem_stride"),
                         pool_kernel=triple(pool1_kernel, "pool1_kernel"),
                         pool_stride=triple(pool1_stride, "pool1_stride"), norm_layer=norm_layer,
                         pool_padding=None if pool1_padding is None else triple(pool1_padding, "pool1_padding"))
        pool2 = triple(pool2_kernel, "pool2_kernel")
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
            nonlocal_layers = ({i: nonlocal_layer(channels) for i in dict.fromkeys(nonlocal_blocks[s])}
                               if nonlocal_layer is not None else {})  # (None: no blocks, checked above)
            self.add_module(name, ResStage(blocks=blocks, nonlocal_layers=nonlocal_layers, pool=pools[s],
                                           use_checkpoint=name in checkpoint_stages, name=name))
        self.feature_channels = channels
        self.head = Head(in_channels=channels, num_classes=num_classes, dropout=dropout,
                         pool_kernel=head_pool_kernel, fully_conv_test=fully_conv_test)
        self._init_weights(zero_init_residual)
        frozen = [*self.frozen_norms(), *(getattr(self, part) for part in self.frozen_stages)]
        for p in (p for module in frozen for p in module.parameters()):
            p.requires_grad_(False)
        self.train(self.training)  # frozen BNs start in eval mode

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
                if isinstance(m, ResidualBlock):
                    gamma = m.last_bn.weight
                    assert isinstance(gamma, torch.Tensor)  # the closing norm layer is affine
                    nn.init.zeros_(gamma)

    def frozen_norms(self) -> list[nn.Module]:
        """The BatchNorms of the ``frozen_bn`` parts (SyncBatchNorm after conversion too)."""
        return [m for part in self.frozen_bn for m in getattr(self, part).modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> ResNet3d:
        """``nn.Module.train``, except that frozen BatchNorms stay in eval mode."""
        super().train(mode)
        for bn in self.frozen_norms():
            bn.eval()
        return self

    def stage(self, name: str) -> ResStage:
        """The stage module ``name`` (res2..res5)."""
        return getattr(self, name)

    def nonlocal_names(self) -> list[str]:
        """Module names of the non-local blocks in execution order, e.g. ["res3.nonlocal1", ...]."""
        return [f"{name}.{nl}" for name in self.stage_names for nl in self.stage(name).nonlocal_names]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """res5 feature map: (B, 3, T, H, W) -> (B, C, T', H/32, W/32)."""
        if x.dim() != 5:
            raise ValueError(f"ResNet3d expects a clip (B, C, T, H, W), got shape {tuple(x.shape)}")
        x = self.stem(x)
        for name in self.stage_names:
            x = self.stage(name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (B, 3, T, H, W) -> logits (B, num_classes); in eval mode with ``fully_conv_test``,
        log-probabilities (see :class:`Head`). Read attention with a forward pre-hook on a block
        and :meth:`NonLocalBlock.attention`."""
        return self.head(self.features(x))


__all__ = ["ResNet3d", "ResStage", "Stem", "Shortcut", "Bottleneck", "BasicBlock", "Head", "DEPTHS", "STAGE_NAMES"]
