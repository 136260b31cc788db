"""Tensor kernels of the non-local block (:mod:`nlnet.models.nonlocal_block`), on channels-last
tensors: the scope's grouping of positions (and :class:`NonLocalAttention`, the weights with their
geometry), and the exact fast forms of Eq. 1 used by ``impl="auto"``.

* gaussian / embedded_gaussian: ``scaled_dot_product_attention`` with an explicit ``scale``
  (fused, O(N) memory). Its fused CPU kernel needs keys and values of one width, which the
  Gaussian's keys (C channels) and values (C' < C channels) are not; padding the values to C was
  10-20% slower than the plain form on a 2-core CPU, so on CPU the Gaussian with C' != C runs
  the reference computation (the fastest exact form there; still no (N, N', C) tensor).
* dot_product: associates the product the cheaper way for the shape, (theta^T phi) g costs
  2 N N' C' multiply-adds, theta^T (phi g^T) costs (N + N') C'^2.
* concatenation: ReLU(a_i + b_j) with a_i = w_theta^T theta_i, b_j = w_phi^T phi_j; with b sorted
  in descending order the j where a_i + b_j > 0 form a prefix, so
  y_i = (a_i G(k_i) + BG(k_i)) / N' with prefix sums G of g_j and BG of b_j g_j
  (:func:`concatenation_attention`): O((N + N') C' log N') time, O((N + N') C') memory.

The 1x1 convolutions run channels-last as matrix products, those sharing an input stacked into one
(:func:`linear_last`), which is the same function as the conv modules.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.conv import _ConvNd

SCOPES = ("spacetime", "space", "time")


def attended_axes(scope: str, dim: int) -> tuple[bool, ...]:
    """Per axis of the grid, whether query i attends over it (Table 2d); the other axes are grouped.

    ``spacetime``: every axis. ``space`` (dim 3): H and W, one group per frame. ``time`` (dim 3):
    T, one group per spatial position.
    """
    return {"spacetime": (True,) * dim, "space": (False, True, True), "time": (True, False, False)}[scope]


def group_last(t: Tensor, scope: str) -> Tensor:
    """(B, *S, c) -> (G, n, c): the positions attended together (Table 2d), G = B * groups.

    ``spacetime``: one group of every position (G = B). ``space``: one group per frame
    (G = B*T, n = H*W). ``time``: one group per spatial position (G = B*H*W, n = T). Groups are
    batch-major: (b, t) for space, (b, h, w) for time.
    """
    if scope == "spacetime":
        return t.reshape(t.shape[0], -1, t.shape[-1])
    b, frames, h, w, c = t.shape
    if scope == "space":
        return t.reshape(b * frames, h * w, c)
    return t.permute(0, 2, 3, 1, 4).reshape(b * h * w, frames, c)


def ungroup_last(y: Tensor, scope: str, shape: Sequence[int]) -> Tensor:
    """(G, n, c) -> (B, *S, c), the inverse of :func:`group_last` on the grid of ``shape`` (B, C, *S)."""
    b, _, *grid = shape
    c = y.shape[-1]
    if scope in ("spacetime", "space"):
        return y.reshape(b, *grid, c)
    frames, h, w = grid
    return y.reshape(b, h, w, frames, c).permute(0, 3, 1, 2, 4)


@dataclass(frozen=True)
class NonLocalAttention:
    """The normalised pairwise weights f(x_i, x_j) / C(x) of one call of a block (Eq. 1), with
    their geometry. Returned by :meth:`NonLocalBlock.attention`.

    Attributes:
        weights: (G, n, n'), exactly as the block computes them for its scope: ``spacetime``
            G = B, n = T*H*W, n' = T'*H'*W'; ``space`` G = B*T (one matrix per frame), n = H*W,
            n' = H'*W'; ``time`` G = B*H*W (one per spatial position), n = T, n' = T'. Groups
            are batch-major, (b, t) or (b, h, w); positions within a group are row-major.
        scope: ``"spacetime"``, ``"space"`` or ``"time"`` (Table 2d).
        query_grid: (T, H, W) of the block's input ((H, W) or (L,) for 2D / 1D blocks).
        key_grid: (T', H', W'), the global grid of the pooled keys.
        key_pool: the max-pool window (= stride) from the query grid to the key grid, 1 per axis
            without sub-sampling: key cell c covers query cells [c*p, min((c+1)*p, size)).
        batch_size: B.
    """

    weights: Tensor
    scope: str
    query_grid: tuple[int, ...]
    key_grid: tuple[int, ...]
    key_pool: tuple[int, ...]
    batch_size: int

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope '{self.scope}'; valid scopes: {', '.join(SCOPES)}")
        attended = attended_axes(self.scope, len(self.query_grid))
        groups = math.prod(q for q, a in zip(self.query_grid, attended) if not a)
        expected = (self.batch_size * groups, math.prod(q for q, a in zip(self.query_grid, attended) if a),
                    math.prod(k for k, a in zip(self.key_grid, attended) if a))
        same_outside = all(a or k == q for q, k, a in zip(self.query_grid, self.key_grid, attended))
        if tuple(self.weights.shape) != expected or not same_outside or len(self.key_pool) != len(self.query_grid):
            raise ValueError(f"attention weights of shape {tuple(self.weights.shape)} do not match scope "
                             f"'{self.scope}' on the query grid {self.query_grid} and key grid {self.key_grid} "
                             f"for batch size {self.batch_size} (expected {expected})")

    def global_weights(self, index: int = 0) -> Tensor:
        """Clip ``index``'s weights on the global grids, (N, N') with N = prod(query_grid) and
        N' = prod(key_grid), positions row-major ((t, h, w)); NaN where key j is outside query
        i's scope. The placement uses the block's own grouping (:func:`group_last`)."""
        if not 0 <= index < self.batch_size:
            raise IndexError(f"clip index {index} out of range for a batch of {self.batch_size}")
        groups = self.weights.shape[0] // self.batch_size
        weights = self.weights[index * groups:(index + 1) * groups]  # (groups, n, n')
        n, n_keys = math.prod(self.query_grid), math.prod(self.key_grid)
        device = weights.device
        queries = group_last(torch.arange(n, device=device).view(1, *self.query_grid, 1), self.scope)[..., 0]
        keys = group_last(torch.arange(n_keys, device=device).view(1, *self.key_grid, 1), self.scope)[..., 0]
        out = weights.new_full((n, n_keys), float("nan"))
        out[queries[:, :, None], keys[:, None, :]] = weights  # (groups, n, 1) x (groups, 1, n') -> (N, N')
        return out


def linear_last(x: Tensor, convs: Sequence[_ConvNd]) -> Tensor:
    """1x1(x1) convolutions applied to a channels-last tensor, stacked: one matrix product.

    (B, *S, C_in) -> (B, *S, sum C_out); the same function as ``torch.cat([conv(x) ...], 1)`` on
    the channels-first tensor, computed as (B*N, C_in) x (C_in, sum C_out).
    """
    weight = torch.cat([conv.weight.flatten(1) for conv in convs])  # (sum C_out, C_in)
    biases = [conv.bias for conv in convs if conv.bias is not None]
    bias = torch.cat(biases) if len(biases) == len(convs) else None
    return F.linear(x, weight, bias)


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """softmax_j(scale * q_i^T k_j) v_j (Eq. 2, 3) by ``scaled_dot_product_attention``.

    Shapes: q (G, N, E), k (G, N', E), v (G, N', Ev) -> (G, N, Ev). The fused kernels keep no
    (N, N') matrix for backward; ``scale`` is explicit (the default would be E^-1/2).
    """
    return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=scale)[:, 0]


def dot_product_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """(1/N') sum_j (q_i^T k_j) v_j, associated the cheaper way (Eq. 4 with C(x) = N').

    Shapes: q (G, N, C'), k (G, N', C'), v (G, N', C') -> (G, N, C').
    """
    n, n_keys, c = q.shape[1], k.shape[1], q.shape[2]
    if 2 * n * n_keys * c <= (n + n_keys) * c * c:  # (q k^T) v: small grids, wide channels
        pairwise = torch.bmm(q, k.transpose(1, 2)) / n_keys  # (G, N, C') x (G, C', N') -> (G, N, N')
        return torch.bmm(pairwise, v)  # (G, N, N') x (G, N', C') -> (G, N, C')
    memory = torch.bmm(k.transpose(1, 2), v) / n_keys  # (G, C', N') x (G, N', C') -> (G, C', C')
    return torch.bmm(q, memory)  # (G, N, C') x (G, C', C') -> (G, N, C')


def concatenation_attention(a: Tensor, b: Tensor, v: Tensor) -> Tensor:
    """(1/N') sum_j ReLU(a_i + b_j) v_j by sorting b (Eq. 5 with C(x) = N'), exact.

    Shapes: a (G, N) = w_theta^T theta_i, b (G, N') = w_phi^T phi_j, v (G, N', C') -> (G, N, C').
    With b sorted in descending order, {j : a_i + b_j > 0} is the prefix of the first k_i keys, so
    sum_j ReLU(a_i + b_j) v_j = a_i G(k_i) + BG(k_i) with prefix sums G of v_j and BG of b_j v_j.
    Prefix sums are accumulated in float64 (a_i G and BG may nearly cancel). The sort order and
    k_i are piecewise constant, so autograd through gather and cumsum gives the exact gradient.
    """
    n_keys, c = v.shape[1], v.shape[2]
    order = torch.argsort(b.detach(), dim=1, descending=True)  # (G, N')
    b_sorted = b.gather(1, order)  # (G, N'), descending
    v_sorted = v.gather(1, order[:, :, None].expand(-1, -1, c)).double()  # (G, N', C')
    prefix = F.pad(torch.cumsum(v_sorted, dim=1), (0, 0, 1, 0))  # (G, N'+1, C'): prefix[k] = sum_{j<k}
    prefix_b = F.pad(torch.cumsum(b_sorted.double()[:, :, None] * v_sorted, dim=1), (0, 0, 1, 0))
    # k_i = #{j : b_j > -a_i} = #{j : -b_j < a_i}, with -b_sorted ascending
    count = torch.searchsorted(-b_sorted.detach(), a.detach().contiguous(), side="left")  # (G, N)
    index = count[:, :, None].expand(-1, -1, c)  # (G, N, C')
    y = a.double()[:, :, None] * prefix.gather(1, index) + prefix_b.gather(1, index)  # (G, N, C')
    return (y / n_keys).to(v.dtype)
