"""The two non-local options published models need that ``nlnet.models.NonLocalBlock`` does not have.

* Attention within groups of consecutive frames: the official frozen-BN models
  (``i3d_nonlocal_32x4`` / ``128x1``) run res3's non-local blocks on 4 groups of 4 consecutive frames
  (lib/models/resnet_helper.py ``res_stage_nonlocal_group`` -> nonlocal_helper.py
  ``add_nonlocal_group``: the batch becomes B x groups); PySlowFast has the same option as
  ``NONLOCAL.GROUP`` (slowfast/models/resnet_helper.py ``ResStage.forward``).
* The epsilon of the block's BatchNorm: the official code's ``NONLOCAL.BN_EPSILON`` is 1.0000001e-5
  (lib/core/config.py); ``NonLocalBlock`` builds its BN with PyTorch's 1e-5.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from nlnet.models.nonlocal_block import NonLocalBlock
from nlnet.models.nonlocal_ops import NonLocalAttention

__all__ = ["ExtendedNonLocalBlock"]


class ExtendedNonLocalBlock(NonLocalBlock):
    """A :class:`~nlnet.models.NonLocalBlock` with temporal groups and a BN epsilon (state-dict keys
    are those of ``NonLocalBlock``).

    With ``temporal_groups`` G > 1 the block runs separately on G groups of consecutive frames:
    (B, C, T, H, W) -> (B * G, C, T / G, H, W) -> block -> back.

    Args:
        in_channels, inter_channels, **kwargs: as ``NonLocalBlock`` (3D input).
        temporal_groups: number of groups, or ``{in_channels: groups}`` so that one partial can give
            each ResNet stage its own (the stages have distinct widths; absent: 1).
        norm_eps: epsilon of the BN after ``w_z`` (when ``bn_layer``).
    """

    def __init__(self, in_channels: int, inter_channels: int | None = None, *,
                 temporal_groups: int | Mapping[int, int] = 1, norm_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(in_channels, inter_channels, **kwargs)
        groups = temporal_groups.get(in_channels, 1) if isinstance(temporal_groups, Mapping) else temporal_groups
        if int(groups) < 1 or (int(groups) > 1 and (self.dim != 3 or self.scope != "spacetime")):
            raise ValueError(f"ExtendedNonLocalBlock: temporal_groups={temporal_groups!r} must give >= 1 groups; "
                             "more than 1 needs dim=3 and scope='spacetime'")
        self.temporal_groups = int(groups)
        if self.norm is not None:
            self.norm.eps = float(norm_eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temporal_groups={self.temporal_groups}"

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B * G, C, T / G, H, W); group g holds frames g * T/G ... (g + 1) * T/G - 1."""
        b, c, t, h, w = x.shape
        g = self.temporal_groups
        if t % g:
            raise ValueError(f"ExtendedNonLocalBlock: {t} frames do not split into temporal_groups={g}")
        return x.reshape(b, c, g, t // g, h, w).transpose(1, 2).reshape(b * g, c, t // g, h, w)

    def unfold(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`fold`."""
        bg, c, tg, h, w = y.shape
        g = self.temporal_groups
        return y.reshape(bg // g, g, c, tg, h, w).transpose(1, 2).reshape(bg // g, c, g * tg, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal_groups == 1:
            return super().forward(x)
        return self.unfold(super().forward(self.fold(x)))

    def attention(self, x: torch.Tensor) -> NonLocalAttention:
        """The weights on the whole clip: (B, T*H*W, T'*H'*W'), each group's weights on its block of
        the diagonal and 0 between groups (a query never attends to another group's keys)."""
        if self.temporal_groups == 1:
            return super().attention(x)
        g, b = self.temporal_groups, x.shape[0]
        part = super().attention(self.fold(x))  # (B*G, n, n') on a group's (T/G, H, W) grid
        n, n_keys = part.weights.shape[1:]
        weights = part.weights.new_zeros(b, g * n, g * n_keys)
        for i, w in enumerate(part.weights.view(b, g, n, n_keys).unbind(1)):  # row-major (t, h, w): contiguous
            weights[:, i * n:(i + 1) * n, i * n_keys:(i + 1) * n_keys] = w
        query_grid = (x.shape[2], *part.query_grid[1:])
        key_grid = (g * part.key_grid[0], *part.key_grid[1:])
        return NonLocalAttention(weights=weights, scope="spacetime", query_grid=query_grid, key_grid=key_grid,
                                 key_pool=part.key_pool, batch_size=b)
