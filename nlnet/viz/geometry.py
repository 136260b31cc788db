"""Where a non-local block's positions lie in the clip, and one clip's weights on the global grids.

Coordinates. The block sees a feature map of T_f x H_f x W_f query positions; with sub-sampling its
keys live on a pooled grid T_k x H_k x W_k (pool window p per axis; the block reports its grids and
window, :class:`~nlnet.models.NonLocalAttention`). A feature cell f along an axis of input size S
covers pixels [f * S / G_f, (f + 1) * S / G_f): the strides are the input/feature ratios, measured
by a forward pass, not assumed. A key cell c covers the feature cells [c * p, min((c + 1) * p, G_f));
a position is drawn at the centre of the pixels its cell covers (the centre of the cell's
footprint, an approximation of its receptive-field centre). One panel per feature time step shows
the input frame nearest to the centre of that step.

Scopes (Table 2d). With ``space`` scope a query's keys are in its own frame, with ``time`` scope at
its own spatial position across frames; the block places its per-group matrices on the global key
grid (:meth:`~nlnet.models.NonLocalAttention.global_weights`), keys outside a query's scope have no
weight (NaN, never drawn).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nlnet.models import NonLocalAttention
from nlnet.utils.errors import ConfigError

Point = tuple[int, ...]  # (t, y, x), a cell of a grid
Shape3 = tuple[int, ...]  # (T, H, W)
Coords = tuple[float, ...]  # (frame, y, x) in pixel-index coordinates of the clip


@dataclass(frozen=True)
class PixelMapping:
    """Maps the block's query/key grids onto the input clip's frames and pixels.

    Args:
        input_shape: (T, H, W) of the clip fed to the model (the frames drawn).
        query_shape: (T_f, H_f, W_f) of the block's feature map.
        key_shape: (T_k, H_k, W_k), the pooled key grid.
        key_pool: pooling window (pt, ph, pw) from query to key grid.
    """

    input_shape: Shape3
    query_shape: Shape3
    key_shape: Shape3
    key_pool: Shape3

    @property
    def strides(self) -> Coords:
        """Input frames/pixels per feature cell along (T, H, W): the stage's strides."""
        return tuple(s / g for s, g in zip(self.input_shape, self.query_shape))

    def query_to_pixel(self, point: Point) -> Coords:
        """Centre (frame, y, x) of a query cell, in pixel-index coordinates."""
        return tuple((c + 0.5) * s - 0.5 for c, s in zip(point, self.strides))

    def key_to_pixel(self, point: Point) -> Coords:
        """Centre (frame, y, x) of a pooled key cell (partial last windows accounted for)."""
        out = []
        for c, p, g, s in zip(point, self.key_pool, self.query_shape, self.strides):
            lo, hi = c * p, min((c + 1) * p, g)  # feature cells the key cell covers
            out.append((lo + hi) / 2 * s - 0.5)
        return tuple(out)

    def key_time_span(self, tk: int) -> range:
        """Feature time steps (panels) a key time index covers."""
        return range(tk * self.key_pool[0], min((tk + 1) * self.key_pool[0], self.query_shape[0]))

    def pixel_to_query(self, point: Sequence[float]) -> Point:
        """The query cell holding pixel (frame, y, x) of the input clip.

        Raises:
            ConfigError: when the point lies outside the clip.
        """
        if len(point) != 3:
            raise ConfigError(f"a query point is [t, y, x] (frame, row, column); got {list(point)}")
        cells = []
        for name, c, size, s, g in zip("tyx", point, self.input_shape, self.strides, self.query_shape):
            if not 0 <= c < size:
                raise ConfigError(
                    f"query point {list(point)}: {name}={c} is outside the clip, whose (T, H, W) is "
                    f"{tuple(self.input_shape)} (valid {name}: 0..{size - 1})"
                )
            cells.append(min(int((c + 0.5) // s), g - 1))
        return tuple(cells)

    def panel_frame(self, t: int) -> int:
        """Index of the input frame shown for feature time step ``t`` (nearest the step's centre)."""
        centre = (t + 0.5) * self.strides[0] - 0.5
        return min(max(int(math.floor(centre + 0.5)), 0), self.input_shape[0] - 1)


@dataclass(frozen=True)
class AttentionMap:
    """One clip's pairwise weights of one non-local block, on the global grids.

    Args:
        weights: (N, N'), N = T_f*H_f*W_f queries by N' = T_k*H_k*W_k keys, both row-major
            (t, y, x); NaN where the key is outside the query's scope.
        scope: spacetime, space or time.
        query_shape: (T_f, H_f, W_f).
        key_shape: (T_k, H_k, W_k).
        key_pool: the pooling window from query to key grid, (1, 1, 1) without sub-sampling.
    """

    weights: Tensor
    scope: str
    query_shape: Shape3
    key_shape: Shape3
    key_pool: Shape3

    @classmethod
    def from_attention(cls, attention: NonLocalAttention, index: int = 0) -> AttentionMap:
        """Clip ``index`` of what :meth:`NonLocalBlock.attention` returned."""
        return cls(weights=attention.global_weights(index).detach().float().cpu(), scope=attention.scope,
                   query_shape=tuple(attention.query_grid), key_shape=tuple(attention.key_grid),
                   key_pool=tuple(attention.key_pool))

    def row(self, query: Point) -> Tensor:
        """Weights of one query over the global key grid (T_k, H_k, W_k); NaN outside its scope."""
        if not all(0 <= c < g for c, g in zip(query, self.query_shape)):
            raise ValueError(f"query {tuple(query)} is outside the feature grid {self.query_shape}")
        t, y, x = query
        _, h, w = self.query_shape
        return self.weights[(t * h + y) * w + x].view(self.key_shape).clone()

    def top_keys(self, query: Point, k: int) -> list[tuple[Point, float]]:
        """The ``k`` keys with the largest weights for ``query``: [((t_k, y_k, x_k), weight)], best first."""
        if k < 1:
            raise ConfigError(f"top_k must be >= 1, got {k}")
        row = self.row(query).flatten()
        valid = torch.nonzero(~torch.isnan(row)).flatten()
        values, order = row[valid].topk(min(k, valid.numel()))
        _, hk, wk = self.key_shape
        keys: list[tuple[tuple[int, ...], float]] = []
        for value, j in zip(values.tolist(), valid[order].tolist()):
            keys.append(((j // (hk * wk), (j // wk) % hk, j % wk), value))
        return keys

    def peak_scores(self) -> Tensor:
        """Peakiness of every query's weights, (T_f, H_f, W_f): max / mean |weight| over its keys.

        Scale-free, so it ranks queries alike for softmax and for f / N' weights; 1 for a uniform row.
        """
        in_scope = ~torch.isnan(self.weights)  # (N, N')
        largest = self.weights.masked_fill(~in_scope, -math.inf).max(dim=1).values
        mean_abs = self.weights.abs().nansum(dim=1) / in_scope.sum(dim=1).clamp_min(1)
        return (largest / mean_abs.clamp_min(1e-12)).view(self.query_shape)
