"""The small parts :class:`~nlnet.models.ResNet3d` is assembled from (Table 1): :class:`Stem`
(conv1 + pool1), residual blocks (:class:`Bottleneck`, :class:`BasicBlock`: a
:class:`ResidualBlock` with a projection :class:`Shortcut` where needed) and :class:`Head` (average pool, dropout,
classifier; optionally tested fully convolutionally). Per-axis arguments accept any non-string sequence
(OmegaConf's ``ListConfig`` included).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

Triple = tuple[int, int, int]
NormLayer = Callable[[int], nn.Module]


def as_list(value: object, name: str) -> list:
    """Any non-string sequence (list, tuple, OmegaConf ``ListConfig``) as a list; else an error naming ``name``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list, got {value!r}")
    return list(value)


def triple(value: int | Sequence[int], name: str) -> Triple:
    """``3`` -> (3, 3, 3); a length-3 sequence -> tuple; anything else is an error naming ``name``."""
    if isinstance(value, int):
        return (value, value, value)
    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else ()
    if len(values) != 3 or not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name} must be an int or a list of 3 ints (T, H, W), got {value!r}")
    return values


def same_padding(kernel: Triple) -> Triple:
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
        pool_padding: pool1 padding; default (k - 1) // 2 per axis, (0, 1, 1) for a 1x3x3 or 2x3x3
            pool, as torchvision, PySlowFast and pytorchvideo pad it. The official Caffe2 code pools
            without padding ((0, 0, 0): 112 -> 55 rows instead of 56, res5 still 7x7 at 224).
    """

    def __init__(self, *, in_channels: int, out_channels: int, kernel: Triple, stride: Triple,
                 pool_kernel: Triple, pool_stride: Triple, norm_layer: NormLayer,
                 pool_padding: Triple | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride,
                              padding=same_padding(kernel), bias=False)
        self.bn = norm_layer(out_channels)
        self.relu = nn.ReLU(inplace=True)
        padding = same_padding(pool_kernel) if pool_padding is None else pool_padding
        self.pool = nn.MaxPool3d(pool_kernel, stride=pool_stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 3, T, H, W) -> (B, 64, T/st/sp, H/4, W/4)
        return self.pool(self.relu(self.bn(self.conv(x))))


class Shortcut(nn.Module):
    """Projection shortcut: 1x1x1 conv with the block's spatial stride, then BN."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False)
        self.bn = norm_layer(out_channels)

    @classmethod
    def where_needed(cls, *, in_channels: int, out_channels: int, stride: int,
                     norm_layer: NormLayer) -> Shortcut | None:
        """A projection where the block changes the shape (stride or channels), else None (identity)."""
        if stride == 1 and in_channels == out_channels:
            return None
        return cls(in_channels=in_channels, out_channels=out_channels, stride=stride, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ResidualBlock(nn.Module):
    """What the residual blocks share: out = ReLU(branch(x) + shortcut(x)), the shortcut a
    projection where the block changes the shape, else the identity."""

    expansion = 1  # output channels / width
    last_bn_name = ""  # the BN closing the residual branch

    def _add_shortcut(self, *, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer) -> None:
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = Shortcut.where_needed(in_channels=in_channels, out_channels=out_channels, stride=stride,
                                              norm_layer=norm_layer)

    @property
    def last_bn(self) -> nn.Module:
        """The BN closing the residual branch (its gamma is zeroed by ``zero_init_residual``)."""
        return getattr(self, self.last_bn_name)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.branch(x)
        out += identity  # in place: BN's backward does not need its output
        return self.relu(out)


class Bottleneck(ResidualBlock):
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
    last_bn_name = "bn3"

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
        self._add_shortcut(in_channels=in_channels, out_channels=out_channels, stride=stride, norm_layer=norm_layer)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, w, T, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, w, T, H/s, W/s)
        return self.bn3(self.conv3(out))  # (B, 4w, T, H/s, W/s)


class BasicBlock(ResidualBlock):
    """Basic residual block [t x 3 x 3, w; 1 x 3 x 3, w] for ResNet-18/34 (small experiments).

    Args:
        in_channels: input channels.
        width: block channels (output = ``width``).
        stride: spatial stride of the first conv.
        temporal_kernel: temporal size t of the first conv.
        norm_layer: callable(channels) -> normalisation module.
    """

    last_bn_name = "bn2"  # output channels = width (expansion 1)

    def __init__(self, *, in_channels: int, width: int, stride: int = 1, temporal_kernel: int = 1,
                 norm_layer: NormLayer = nn.BatchNorm3d) -> None:
        super().__init__()
        t = temporal_kernel
        self.conv1 = nn.Conv3d(in_channels, width, (t, 3, 3), stride=(1, stride, stride),
                               padding=(t // 2, 1, 1), bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = nn.Conv3d(width, width, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn2 = norm_layer(width)
        self._add_shortcut(in_channels=in_channels, out_channels=width, stride=stride, norm_layer=norm_layer)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Head(nn.Module):
    """Average pool, dropout, linear classifier (Table 1, last row), with an optional
    fully-convolutional test.

    The classifier runs at every pooled position (a 1x1x1 convolution, as PySlowFast's
    ResNetBasicHead and the official test network apply ``pred``), giving per-position logits.
    Training, and testing without ``fully_conv_test``, returns their mean over positions (equal to
    the classifier on the mean pooled feature; with the global pool, one position: the logits).
    In eval mode with ``fully_conv_test`` it returns log(mean over positions of softmax(logits)),
    so that ``softmax(output)`` is exactly the averaged probabilities of the official
    fully-convolutional test (lib/models/resnet_video.py of video-nonlocal-net: ``pool5``
    [T', 7, 7] stride 1, ``pred`` as a 1x1x1 conv, softmax per position, mean; PySlowFast's
    slowfast/models/head_helper.py does the same in eval mode).

    Args:
        in_channels: feature channels (2048 for ResNet-50).
        num_classes: classifier outputs.
        dropout: dropout probability before the classifier (0.5 in the paper).
        pool_kernel: average-pool window (T, H, W) with stride 1, e.g. [4, 7, 7] (the official
            ``pool5``: a 7x7 window that covers res5 at the 224 training crop and slides over the
            8x8 map of a 256 test crop); None: global average pool (any input size, one position).
        fully_conv_test: in eval mode, average per-position softmax probabilities (see above).
    """

    def __init__(self, *, in_channels: int, num_classes: int, dropout: float = 0.5,
                 pool_kernel: Sequence[int] | None = None, fully_conv_test: bool = False) -> None:
        super().__init__()
        self.pool = (nn.AdaptiveAvgPool3d(1) if pool_kernel is None
                     else nn.AvgPool3d(triple(pool_kernel, "head_pool_kernel"), stride=1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        self.fully_conv_test = bool(fully_conv_test)
        nn.init.normal_(self.fc.weight, std=0.01)  # official code: Gaussian std 0.01
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(x).movedim(1, -1))  # (B, C, T, H, W) -> (B, t, h, w, C) pooled positions
        logits = self.fc(x).flatten(1, 3)  # (B, P, K): the classifier at each of the P positions
        if self.fully_conv_test and not self.training:
            return logits.float().softmax(dim=-1).mean(dim=1).log()  # softmax of this = mean probabilities
        return logits.mean(dim=1)
