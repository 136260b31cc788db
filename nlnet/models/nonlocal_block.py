"""The non-local block (Wang et al., CVPR 2018): Eq. 1 wrapped in the residual block of Eq. 6 / Fig. 2.

    y_i = 1/C(x) * sum_j f(x_i, x_j) g(x_j)        (Eq. 1)
    z_i = W_z y_i + x_i                            (Eq. 6)

with the four pairwise functions of the paper (Eq. 2-5, Table 2a):

    ==================  ============================  =================  ======
    pairwise            f(x_i, x_j)                   C(x)               paper
    ==================  ============================  =================  ======
    gaussian            exp(x_i^T x_j)                sum_j f (softmax)  Eq. 2
    embedded_gaussian   exp(theta_i^T phi_j)          sum_j f (softmax)  Eq. 3
    dot_product         theta_i^T phi_j               N'                 Eq. 4
    concatenation       ReLU(w_f^T [theta_i; phi_j])  N'                 Eq. 5
    ==================  ============================  =================  ======

N is the number of query positions i, N' the number of key positions j (after sub-sampling).

Two implementations of the same function (``impl``): ``"reference"`` materialises the (N, N')
pairwise matrix, and for concatenation the (2C', N, N') concatenated features, as the official
code, PySlowFast, mmcv and pytorchvideo do; ``"auto"`` is exact but never materialises an
(N, N', C) tensor (the kernels of :mod:`nlnet.models.nonlocal_ops`).

:meth:`NonLocalBlock.attention` returns the normalised weights f / C(x) of the reference path
together with their geometry (:class:`NonLocalAttention`); it is the one way to read them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from nlnet.models.nonlocal_ops import (
    SCOPES,
    NonLocalAttention,
    attended_axes,
    concatenation_attention,
    dot_product_attention,
    group_last,
    linear_last,
    softmax_attention,
    ungroup_last,
)

__all__ = ["NonLocalBlock", "NonLocalAttention", "PAIRWISE", "SCOPES", "IMPLS"]

PAIRWISE = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
IMPLS = ("auto", "reference")
SOFTMAX_PAIRWISE = ("gaussian", "embedded_gaussian")

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_DEFAULT_POOL = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}  # the paper's 1x2x2 for video, 2x2 / 2 otherwise
_SHAPE_NAMES = {1: "L", 2: "H, W", 3: "T, H, W"}
_INIT_STD = 0.01  # official code: Gaussian std 0.01 for every conv of the block


def _choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"NonLocalBlock: unknown {name}={value!r}; valid choices: {', '.join(choices)}")
    return value


class NonLocalBlock(nn.Module):
    """Non-local block (Eq. 1 inside the residual block of Eq. 6, Fig. 2) for 1D, 2D and 3D input.

    ``z = x + norm(w_z(y))`` with ``y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)`` over every query
    position i and every (optionally sub-sampled) key position j. A new block is the identity
    (BatchNorm gamma and beta start at zero, or ``w_z`` at zero without BatchNorm), so it can be
    inserted into a pretrained network without changing it. Convolutions start Gaussian with
    std 0.01, biases zero, as in the official code.

    Args:
        in_channels: C, channels of the input and output.
        inter_channels: C', channels of theta, phi and g (the bottleneck); default C // 2 (at least 1).
        dim: 1 for (B, C, L), 2 for (B, C, H, W), 3 for (B, C, T, H, W) input.
        pairwise: f and C(x) of Eq. 2-5: ``"gaussian"`` (no theta/phi), ``"embedded_gaussian"``,
            ``"dot_product"`` or ``"concatenation"`` (see the module docstring's table).
        sub_sample: max-pool the key and value paths (queries keep every position, so the output
            has the input's shape for any size).
        pool_size: the max-pool kernel (= stride); default (1, 2, 2) for 3D, (2, 2) for 2D, 2 for
            1D. With ``scope="space"`` / ``"time"`` it may pool only the attended axes; for
            ``scope="time"`` the default pools nothing (the 1x2x2 kernel pools no time axis).
        pool_ceil_mode: the border rule of that max-pool at odd sizes. False (default): floor,
            the last incomplete window is dropped, as every reference pools: the official code's
            Caffe2 ``MaxPool`` (lib/models/nonlocal_helper.py; caffe2/operators/
            conv_pool_op_base.h rounds down), PySlowFast (slowfast/models/nonlocal_helper.py),
            pytorchvideo (pytorchvideo/layers/nonlocal_net.py) and mmcv
            (mmcv/cnn/bricks/non_local.py), all ``MaxPool3d`` with padding 0. True: ceil, a partial
            last window (nlnet's earlier behaviour). Either way an axis shorter than its window is
            pooled whole (one key), where the references fail.
        pool_before: where keys and values are pooled. False (the paper's text, mmcv): pool the
            outputs of phi and g. True (official code, PySlowFast, pytorchvideo): pool the block's
            input before phi and g, a different and cheaper function.
        bn_layer: BatchNorm after ``w_z`` (Fig. 2). Without it, ``w_z`` starts at zero.
        scale: multiply the embedded Gaussian's theta_i^T phi_j by C'^-1/2 before the softmax, the
            official code's USE_SCALE (also PySlowFast's and pytorchvideo's "softmax" and mmcv's
            ``use_scale``). The paper's text has no scaling. The Gaussian is not affected (Eq. 2 is
            unscaled in the paper, and mmcv's ``use_scale`` leaves it unscaled too).
        scale_gaussian: multiply the Gaussian's x_i^T x_j by C^-1/2 (C = in_channels, the width of
            the vectors dotted) before the softmax; what nlnet's ``scale=True`` did to the Gaussian
            before ``scale_gaussian`` existed. dot_product and concatenation are normalised by N'
            and use neither.
        scope: positions j attended by query i (Table 2d): ``"spacetime"`` (all), ``"space"``
            (same frame) or ``"time"`` (same spatial position, every frame); the latter two need
            ``dim=3``.
        impl: ``"auto"`` (exact, never materialises an (N, N', C) tensor; see
            :mod:`nlnet.models.nonlocal_ops`) or ``"reference"`` (materialises the (N, N') matrix
            as existing implementations do).
        temporal_groups: G > 1 runs the block separately on G groups of consecutive frames,
            (B, C, T, H, W) -> (B * G, C, T / G, H, W) (the official frozen-BN models' res3,
            nonlocal_helper.py ``add_nonlocal_group``; PySlowFast ``NONLOCAL.GROUP``); needs
            ``dim=3`` and ``scope="spacetime"``. Or ``{in_channels: G}``, so that one partial gives
            each stage (distinct widths) its own; absent: 1.
        norm_eps: epsilon of the BatchNorm after ``w_z`` (official ``NONLOCAL.BN_EPSILON``: 1.0000001e-5).

    Submodules (state-dict names): ``theta``, ``phi`` (None for gaussian), ``g``, ``w_z`` (1x1
    convolutions), ``norm`` (BatchNorm or None), ``concat_project`` (w_f as a 1x1 Conv2d of 2C'
    weights on the (2C', N, N') grid; concatenation only, else None). The max-pool has no weights.
    """

    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        *,
        dim: int = 3,
        pairwise: str = "embedded_gaussian",
        sub_sample: bool = True,
        pool_size: int | Sequence[int] | None = None,
        pool_ceil_mode: bool = False,
        pool_before: bool = False,
        bn_layer: bool = True,
        scale: bool = False,
        scale_gaussian: bool = False,
        scope: str = "spacetime",
        impl: str = "auto",
        temporal_groups: int | Mapping[int, int] = 1,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if dim not in _CONV:
            raise ValueError(f"NonLocalBlock: unknown dim={dim!r}; valid choices: 1, 2, 3")
        if int(in_channels) < 1:
            raise ValueError(f"NonLocalBlock: in_channels must be >= 1, got {in_channels}")
        if inter_channels is None:
            inter_channels = max(1, in_channels // 2)
        if int(inter_channels) < 1:
            raise ValueError(f"NonLocalBlock: inter_channels must be >= 1, got {inter_channels}")
        self.in_channels = int(in_channels)
        self.inter_channels = int(inter_channels)
        self.dim = dim
        self.pairwise = _choice("pairwise", pairwise, PAIRWISE)
        self.scope = _choice("scope", scope, SCOPES)
        self.impl = _choice("impl", impl, IMPLS)
        if scope != "spacetime" and dim != 3:
            raise ValueError(f"NonLocalBlock: scope={scope!r} restricts attention to a frame or to one "
                             f"position across frames, so it needs dim=3 (B, C, T, H, W) input; got dim={dim}. "
                             "Use scope='spacetime'")
        self.sub_sample = bool(sub_sample)
        self.pool_size = self._pool_kernel(pool_size)
        self.pool_ceil_mode = bool(pool_ceil_mode)
        self.pool_before = bool(pool_before)
        self.bn_layer = bool(bn_layer)
        self.scale = bool(scale)
        self.scale_gaussian = bool(scale_gaussian)
        groups = temporal_groups.get(self.in_channels, 1) if isinstance(temporal_groups, Mapping) else temporal_groups
        if int(groups) < 1 or (int(groups) > 1 and (dim != 3 or scope != "spacetime")):
            raise ValueError(f"NonLocalBlock: temporal_groups={temporal_groups!r} must give >= 1 groups; "
                             "more than 1 needs dim=3 and scope='spacetime'")
        self.temporal_groups = int(groups)
        # the window from the query grid to the key grid: 1 per axis without sub-sampling
        self.key_pool = self.pool_size if self.sub_sample else (1,) * dim
        # factor on the softmax logits (Eq. 2, 3): (switch, width d of the vectors dotted) -> d^-1/2
        scaled = {"embedded_gaussian": (self.scale, self.inter_channels),
                  "gaussian": (self.scale_gaussian, self.in_channels)}.get(self.pairwise, (False, 1))
        self.logit_scale = scaled[1] ** -0.5 if scaled[0] else 1.0

        conv = _CONV[dim]
        c, c_inter = self.in_channels, self.inter_channels
        embedded = pairwise != "gaussian"
        self.theta = conv(c, c_inter, kernel_size=1) if embedded else None
        self.phi = conv(c, c_inter, kernel_size=1) if embedded else None
        self.g = conv(c, c_inter, kernel_size=1)
        self.w_z = conv(c_inter, c, kernel_size=1)
        self.norm = _NORM[dim](c, eps=float(norm_eps)) if bn_layer else None
        # w_f of Eq. 5 acts on the (2C', N, N') concatenation grid; no bias (theta's bias plays it)
        self.concat_project = (nn.Conv2d(2 * c_inter, 1, kernel_size=1, bias=False)
                               if pairwise == "concatenation" else None)
        self.reset_parameters()

    def _pool_kernel(self, pool_size: int | Sequence[int] | None) -> tuple[int, ...]:
        """The key/value max-pool kernel as a ``dim``-tuple, checked against the scope."""
        attended = attended_axes(self.scope, self.dim)
        if pool_size is None:
            return tuple(k if keep else 1 for k, keep in zip(_DEFAULT_POOL[self.dim], attended))
        kernel = (pool_size,) * self.dim if isinstance(pool_size, int) else tuple(int(k) for k in pool_size)
        if len(kernel) != self.dim or any(k < 1 for k in kernel):
            raise ValueError(f"NonLocalBlock: pool_size={pool_size!r} must be {self.dim} positive ints "
                             f"(one per axis of ({_SHAPE_NAMES[self.dim]})) for dim={self.dim}")
        if any(k > 1 and not keep for k, keep in zip(kernel, attended)):
            raise ValueError(f"NonLocalBlock: pool_size={kernel} pools an axis that scope={self.scope!r} does not "
                             "attend over (it would mix frames or positions); use "
                             f"{tuple(k if keep else 1 for k, keep in zip(kernel, attended))}")
        return kernel

    def reset_parameters(self) -> None:
        """Official initialisation: convs N(0, 0.01^2), biases 0; the block starts as the identity."""
        for conv in (self.theta, self.phi, self.g, self.w_z, self.concat_project):
            if conv is not None:
                nn.init.normal_(conv.weight, std=_INIT_STD)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        if self.norm is not None:
            nn.init.zeros_(self.norm.weight)  # gamma = 0: z = x at init (Fig. 2, Sec. 3.3)
            nn.init.zeros_(self.norm.bias)
        else:
            nn.init.zeros_(self.w_z.weight)

    def extra_repr(self) -> str:
        return (f"pairwise={self.pairwise!r}, scope={self.scope!r}, impl={self.impl!r}, sub_sample={self.sub_sample}, "
                f"pool_size={self.pool_size}, pool_ceil_mode={self.pool_ceil_mode}, pool_before={self.pool_before}, "
                f"scale={self.scale}, scale_gaussian={self.scale_gaussian}"
                + (f", temporal_groups={self.temporal_groups}" if self.temporal_groups > 1 else ""))

    # ----------------------------------------------------------------------------------------
    def key_grid(self, query_grid: Sequence[int]) -> tuple[int, ...]:
        """The key grid of a query grid (T, H, W): per axis floor(s / p) (ceil with
        ``pool_ceil_mode``) and at least 1, p = ``key_pool``; the query grid without sub-sampling."""
        return tuple(max(1, -(-s // p) if self.pool_ceil_mode else s // p)
                     for s, p in zip(query_grid, self.key_pool))

    def _pool(self, t: Tensor) -> Tensor:
        """Max-pool (B, c, *S) onto :meth:`key_grid`: window = stride = ``key_pool``; an axis
        shorter than its window is pooled whole."""
        if all(p == 1 for p in self.key_pool):
            return t
        window = tuple(min(p, s) for p, s in zip(self.key_pool, t.shape[2:]))
        return _MAX_POOL[self.dim](t, window, stride=self.key_pool, ceil_mode=self.pool_ceil_mode)

    def _pool_last(self, t: Tensor) -> Tensor:
        """:meth:`_pool` of a channels-last (B, *S, c) tensor: (B, *S', c)."""
        return self._pool(t.movedim(-1, 1)).movedim(1, -1)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"NonLocalBlock(dim={self.dim}) expects input of shape "
                             f"(B, C={self.in_channels}, {_SHAPE_NAMES[self.dim]}); got {tuple(x.shape)}")

    def _plain_is_fastest(self, x: Tensor) -> bool:
        """The Gaussian on CPU with C' != C: no fused kernel for keys and values of different widths."""
        return self.pairwise == "gaussian" and self.inter_channels != self.in_channels and not x.is_cuda

    # ---------------------------------------------------------------- impl="reference"
    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, E, *S), keys (B, E, *S'), values (B, C', *S') by the conv modules.

        E = C for gaussian (f(x_i, x_j) = exp(x_i^T x_j): the input itself), else C'.
        """
        if self.pairwise == "gaussian":
            keys = self._pool(x)
            return x, keys, self.g(keys) if self.pool_before else self._pool(self.g(x))
        assert self.theta is not None and self.phi is not None  # every pairwise function but the Gaussian
        if self.pool_before:  # official code / PySlowFast / pytorchvideo: pool x, then phi and g
            pooled = self._pool(x)
            return self.theta(x), self.phi(pooled), self.g(pooled)
        return self.theta(x), self._pool(self.phi(x)), self._pool(self.g(x))  # the paper's Fig. 2, mmcv

    def _group(self, t: Tensor) -> Tensor:
        """(B, c, *S) -> (G, c, n): the positions attended together (scope), G = B * groups."""
        return group_last(t.movedim(1, -1), self.scope).transpose(1, 2)

    def _weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The normalised weights f / C(x), (G, N, N'), and the values (G, N', C') (Eq. 1-5)."""
        queries, keys, values = self._embed(x)
        q, k, v = self._group(queries), self._group(keys), self._group(values)  # (G, E, N), (G, E, N'), (G, C', N')
        n_keys = k.shape[2]
        if self.pairwise == "concatenation":  # Eq. 5: [theta_i; phi_j] for every (i, j), as mmcv
            assert self.concat_project is not None
            grid = (q.shape[0], q.shape[1], q.shape[2], n_keys)
            concat = torch.cat([q[:, :, :, None].expand(grid), k[:, :, None, :].expand(grid)], dim=1)  # (G, 2C', N, N')
            attention = F.relu(self.concat_project(concat))[:, 0] / n_keys  # (G, N, N')
        else:
            logits = torch.matmul(q.transpose(1, 2), k)  # (G, N, E) x (G, E, N') -> (G, N, N')
            if self.pairwise in SOFTMAX_PAIRWISE:  # Eq. 2, 3
                attention = torch.softmax(logits * self.logit_scale, dim=-1)
            else:  # Eq. 4
                attention = logits / n_keys
        return attention, v.transpose(1, 2)

    def _reference(self, x: Tensor) -> Tensor:
        """Eq. 1 with the (N, N') matrix materialised: y (B, C', *S)."""
        attention, v = self._weights(x)
        y = torch.matmul(attention, v)  # (G, N, N') x (G, N', C') -> (G, N, C')
        return ungroup_last(y, self.scope, x.shape).movedim(-1, 1)

    # --------------------------------------------------------------------- impl="auto"
    def _embed_last(self, x_last: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, *S, E), keys (B, *S', E), values (B, *S', C'), channels last.

        The 1x1 convs that share an input run as one matrix product (:func:`linear_last`).
        """
        c = self.inter_channels
        if self.pairwise == "gaussian":
            keys = self._pool_last(x_last)
            if self.pool_before:
                values = linear_last(keys, [self.g])
            else:
                values = self._pool_last(linear_last(x_last, [self.g]))
            return x_last, keys, values
        assert self.theta is not None and self.phi is not None  # every pairwise function but the Gaussian
        if self.pool_before:
            key_values = linear_last(self._pool_last(x_last), [self.phi, self.g])  # (B, *S', 2C')
            return linear_last(x_last, [self.theta]), key_values[..., :c], key_values[..., c:]
        embedded = linear_last(x_last, [self.theta, self.phi, self.g])  # (B, *S, 3C')
        key_values = self._pool_last(embedded[..., c:])  # (B, *S', 2C')
        return embedded[..., :c], key_values[..., :c], key_values[..., c:]

    def _fast(self, x: Tensor) -> Tensor:
        """Eq. 1 without an (N, N', C) tensor: y (B, *S, C') (channels-last memory)."""
        queries, keys, values = self._embed_last(x.movedim(1, -1))
        q, k, v = (group_last(t, self.scope) for t in (queries, keys, values))  # (G, n, c)
        if self.pairwise in SOFTMAX_PAIRWISE:
            y = softmax_attention(q, k, v, self.logit_scale)
        elif self.pairwise == "dot_product":
            y = dot_product_attention(q, k, v)
        else:
            assert self.concat_project is not None  # the concatenation (Eq. 5)
            w_f = self.concat_project.weight.flatten()  # (2C',) = [w_theta; w_phi]
            a = torch.matmul(q, w_f[: self.inter_channels])  # (G, N)
            b = torch.matmul(k, w_f[self.inter_channels:])  # (G, N')
            y = concatenation_attention(a, b, v)
        return ungroup_last(y, self.scope, x.shape)  # (B, *S, C')

    # ----------------------------------------------------------------- temporal groups
    def group_frames(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B * G, C, T / G, H, W); group g holds frames g * T/G ... (g + 1) * T/G - 1."""
        b, c, t, h, w = x.shape
        g = self.temporal_groups
        if t % g:
            raise ValueError(f"NonLocalBlock: {t} frames do not split into temporal_groups={g}")
        return x.reshape(b, c, g, t // g, h, w).transpose(1, 2).reshape(b * g, c, t // g, h, w)

    def ungroup_frames(self, y: Tensor) -> Tensor:
        """The inverse of :meth:`group_frames`."""
        bg, c, tg, h, w = y.shape
        g = self.temporal_groups
        return y.reshape(bg // g, g, c, tg, h, w).transpose(1, 2).reshape(bg // g, c, g * tg, h, w)

    @torch.no_grad()
    def attention(self, x: Tensor) -> NonLocalAttention:
        """The normalised weights f(x_i, x_j) / C(x) this block computes on input ``x``, with their
        query and key grids (no gradient). Capture the block's input with a forward pre-hook to
        call it on a model's features. With temporal groups: the weights on the whole clip, each
        group's on its block of the diagonal, 0 between groups (a query never sees another group).

        Args:
            x: the block's input, as for :meth:`forward`.
        """
        self._check_input(x)
        g, b, grid = self.temporal_groups, x.shape[0], tuple(x.shape[2:])
        weights, _ = self._weights(self.group_frames(x) if g > 1 else x)  # (B * G, n, n') on a group's grid
        if g > 1:
            n, n_keys = weights.shape[1:]
            whole = weights.new_zeros(b, g * n, g * n_keys)
            for i, part in enumerate(weights.view(b, g, n, n_keys).unbind(1)):  # row-major (t, h, w): contiguous
                whole[:, i * n:(i + 1) * n, i * n_keys:(i + 1) * n_keys] = part
            weights = whole
        key_grid = self.key_grid((grid[0] // g, *grid[1:]))
        return NonLocalAttention(weights=weights, scope=self.scope, query_grid=grid,
                                 key_grid=(g * key_grid[0], *key_grid[1:]), key_pool=self.key_pool, batch_size=b)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block: (B, C, L), (B, C, H, W) or (B, C, T, H, W) for ``dim`` 1, 2, 3 -> z
        of the same shape (Eq. 6)."""
        self._check_input(x)
        if self.temporal_groups > 1:
            return self.ungroup_frames(self._residual_block(self.group_frames(x)))
        return self._residual_block(x)

    def _residual_block(self, x: Tensor) -> Tensor:
        """Eq. 6 on (a group of) the input: x + norm(w_z(y))."""
        if self.impl == "auto" and not self._plain_is_fastest(x):
            residual = linear_last(self._fast(x), [self.w_z]).movedim(-1, 1)  # (B, C, *S)
        else:
            residual = self.w_z(self._reference(x))
        if self.norm is not None:
            residual = self.norm(residual)
        return x + residual  # Eq. 6
