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

Two implementations of the same function (``impl``):

* ``"reference"`` materialises the (N, N') pairwise matrix, and for concatenation the (2C', N, N')
  concatenated features, as the official code, PySlowFast, mmcv and pytorchvideo do.
* ``"auto"`` is exact but never materialises an (N, N', C) tensor:

  - gaussian / embedded_gaussian: ``scaled_dot_product_attention`` with an explicit ``scale``
    (fused, O(N) memory). Its fused CPU kernel needs keys and values of one width, which the
    Gaussian's keys (C channels) and values (C' < C channels) are not; padding the values to C was
    10-20% slower than the plain form on a 2-core CPU, so on CPU the Gaussian with C' != C runs
    the reference computation (the fastest exact form there; still no (N, N', C) tensor).
  - dot_product: associates the product the cheaper way for the shape, (theta^T phi) g costs
    2 N N' C' multiply-adds, theta^T (phi g^T) costs (N + N') C'^2.
  - concatenation: ReLU(a_i + b_j) with a_i = w_theta^T theta_i, b_j = w_phi^T phi_j; with b sorted
    in descending order the j where a_i + b_j > 0 form a prefix, so
    y_i = (a_i G(k_i) + BG(k_i)) / N' with prefix sums G of g_j and BG of b_j g_j
    (:func:`_concatenation_attention`): O((N + N') C' log N') time, O((N + N') C') memory.

  ``auto`` also runs the 1x1 convolutions channels-last as matrix products, those sharing an
  input stacked into one (theta, phi, g), which is the same function as the conv modules.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NonLocalBlock", "PAIRWISE", "SCOPES", "IMPLS"]

PAIRWISE = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
SCOPES = ("spacetime", "space", "time")
IMPLS = ("auto", "reference")
SOFTMAX_PAIRWISE = ("gaussian", "embedded_gaussian")

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_DEFAULT_POOL = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}  # the paper's 1x2x2 for video, 2x2 / 2 otherwise
_SHAPE_NAMES = {1: "L", 2: "H, W", 3: "T, H, W"}
_INIT_STD = 0.01  # official code: Gaussian std 0.01 for every conv of the block


def _choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"NonLocalBlock: unknown {name}={value!r}; valid choices: {', '.join(choices)}")
    return value


def _linear_last(x: Tensor, convs: Sequence[nn.Module]) -> Tensor:
    """1x1(x1) convolutions applied to a channels-last tensor, stacked: one matrix product.

    (B, *S, C_in) -> (B, *S, sum C_out); the same function as ``torch.cat([conv(x) ...], 1)`` on
    the channels-first tensor, computed as (B*N, C_in) x (C_in, sum C_out).
    """
    weight = torch.cat([conv.weight.flatten(1) for conv in convs])  # (sum C_out, C_in)
    biases = [conv.bias for conv in convs]
    bias = torch.cat(biases) if all(b is not None for b in biases) else None
    return F.linear(x, weight, bias)


def _pool_last(pool: nn.Module | None, x: Tensor) -> Tensor:
    """Max-pool a channels-last (B, *S, c) tensor over S: (B, *S', c)."""
    if pool is None:
        return x
    return pool(x.movedim(-1, 1)).movedim(1, -1)


def _softmax_attention(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """softmax_j(scale * q_i^T k_j) v_j (Eq. 2, 3) by ``scaled_dot_product_attention``.

    Shapes: q (G, N, E), k (G, N', E), v (G, N', Ev) -> (G, N, Ev). The fused kernels keep no
    (N, N') matrix for backward; ``scale`` is explicit (the default would be E^-1/2).
    """
    return F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], scale=scale)[:, 0]


def _dot_product_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """(1/N') sum_j (q_i^T k_j) v_j, associated the cheaper way (Eq. 4 with C(x) = N').

    Shapes: q (G, N, C'), k (G, N', C'), v (G, N', C') -> (G, N, C').
    """
    n, n_keys, c = q.shape[1], k.shape[1], q.shape[2]
    if 2 * n * n_keys * c <= (n + n_keys) * c * c:  # (q k^T) v: small grids, wide channels
        pairwise = torch.bmm(q, k.transpose(1, 2)) / n_keys  # (G, N, C') x (G, C', N') -> (G, N, N')
        return torch.bmm(pairwise, v)  # (G, N, N') x (G, N', C') -> (G, N, C')
    memory = torch.bmm(k.transpose(1, 2), v) / n_keys  # (G, C', N') x (G, N', C') -> (G, C', C')
    return torch.bmm(q, memory)  # (G, N, C') x (G, C', C') -> (G, N, C')


def _concatenation_attention(a: Tensor, b: Tensor, v: Tensor) -> Tensor:
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
            has the input's shape for any size; windows at odd borders are partial).
        pool_size: the max-pool kernel (= stride); default (1, 2, 2) for 3D, (2, 2) for 2D, 2 for
            1D. With ``scope="space"`` / ``"time"`` it may pool only the attended axes; for
            ``scope="time"`` the default pools nothing (the 1x2x2 kernel pools no time axis).
        pool_before: where keys and values are pooled. False (the paper's text, mmcv): pool the
            outputs of phi and g. True (official code, PySlowFast, pytorchvideo): pool the block's
            input before phi and g, a different and cheaper function.
        bn_layer: BatchNorm after ``w_z`` (Fig. 2). Without it, ``w_z`` starts at zero.
        scale: multiply the logits by d^-1/2 before the softmax, d the width of the vectors
            dotted: C' (theta, phi) for embedded_gaussian as in the official code, PySlowFast and
            pytorchvideo, C for gaussian (as mmcv). The paper's text has no scaling (default).
            dot_product and concatenation are normalised by N' and do not use it.
        scope: positions j attended by query i (Table 2d): ``"spacetime"`` (all), ``"space"``
            (same frame) or ``"time"`` (same spatial position, every frame); the latter two need
            ``dim=3``.
        impl: ``"auto"`` (exact, never materialises an (N, N', C) tensor; see the module
            docstring) or ``"reference"`` (materialises the (N, N') matrix as existing
            implementations do).

    Submodules (state-dict names): ``theta``, ``phi`` (None for gaussian), ``g``, ``w_z`` (1x1
    convolutions), ``norm`` (BatchNorm or None), ``concat_project`` (w_f as a 1x1 Conv2d of 2C'
    weights on the (2C', N, N') grid; concatenation only, else None), ``pool`` (max-pool or None).
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
        pool_before: bool = False,
        bn_layer: bool = True,
        scale: bool = False,
        scope: str = "spacetime",
        impl: str = "auto",
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
        self.pool_before = bool(pool_before)
        self.bn_layer = bool(bn_layer)
        self.scale = bool(scale)

        conv = _CONV[dim]
        c, c_inter = self.in_channels, self.inter_channels
        embedded = pairwise != "gaussian"
        self.theta = conv(c, c_inter, kernel_size=1) if embedded else None
        self.phi = conv(c, c_inter, kernel_size=1) if embedded else None
        self.g = conv(c, c_inter, kernel_size=1)
        self.w_z = conv(c_inter, c, kernel_size=1)
        self.norm = _NORM[dim](c) if bn_layer else None
        # w_f of Eq. 5 acts on the (2C', N, N') concatenation grid; no bias (theta's bias plays it)
        self.concat_project = (nn.Conv2d(2 * c_inter, 1, kernel_size=1, bias=False)
                               if pairwise == "concatenation" else None)
        pooling = self.sub_sample and any(k > 1 for k in self.pool_size)
        self.pool = _POOL[dim](self.pool_size, stride=self.pool_size, ceil_mode=True) if pooling else None
        self.reset_parameters()

    def _pool_kernel(self, pool_size: int | Sequence[int] | None) -> tuple[int, ...]:
        """The key/value max-pool kernel as a ``dim``-tuple, checked against the scope."""
        attended = {"spacetime": (True,) * self.dim, "space": (False, True, True),
                    "time": (True, False, False)}[self.scope]
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
                f"pool_size={self.pool_size}, pool_before={self.pool_before}, scale={self.scale}")

    # ----------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"NonLocalBlock(dim={self.dim}) expects input of shape "
                             f"(B, C={self.in_channels}, {_SHAPE_NAMES[self.dim]}); got {tuple(x.shape)}")

    def _logit_scale(self) -> float:
        """The factor on x_i^T x_j / theta_i^T phi_j before the softmax (``scale``)."""
        if not self.scale:
            return 1.0
        width = self.in_channels if self.pairwise == "gaussian" else self.inter_channels
        return width ** -0.5

    def _plain_is_fastest(self, x: Tensor) -> bool:
        """The Gaussian on CPU with C' != C: no fused kernel for keys and values of different widths."""
        return self.pairwise == "gaussian" and self.inter_channels != self.in_channels and not x.is_cuda

    # ---------------------------------------------------------------- impl="reference"
    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, E, *S), keys (B, E, *S'), values (B, C', *S') by the conv modules.

        E = C for gaussian (f(x_i, x_j) = exp(x_i^T x_j): the input itself), else C'.
        """
        pool = self.pool if self.pool is not None else nn.Identity()
        if self.pairwise == "gaussian":
            keys = pool(x)
            return x, keys, self.g(keys) if self.pool_before else pool(self.g(x))
        if self.pool_before:  # official code / PySlowFast / pytorchvideo: pool x, then phi and g
            pooled = pool(x)
            return self.theta(x), self.phi(pooled), self.g(pooled)
        return self.theta(x), pool(self.phi(x)), pool(self.g(x))  # the paper's Fig. 2, mmcv

    def _group(self, t: Tensor) -> Tensor:
        """(B, c, *S) -> (G, c, n): the positions attended together (scope), G = B * groups."""
        return self._group_last(t.movedim(1, -1)).transpose(1, 2)

    def _reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Eq. 1 with the (N, N') matrix materialised: y (B, C', *S) and the weights (G, N, N')."""
        queries, keys, values = self._embed(x)
        q, k, v = self._group(queries), self._group(keys), self._group(values)  # (G, E, N), (G, E, N'), (G, C', N')
        n_keys = k.shape[2]
        if self.pairwise == "concatenation":  # Eq. 5: [theta_i; phi_j] for every (i, j), as mmcv
            grid = (q.shape[0], q.shape[1], q.shape[2], n_keys)
            concat = torch.cat([q[:, :, :, None].expand(grid), k[:, :, None, :].expand(grid)], dim=1)  # (G, 2C', N, N')
            attention = F.relu(self.concat_project(concat))[:, 0] / n_keys  # (G, N, N')
        else:
            logits = torch.matmul(q.transpose(1, 2), k)  # (G, N, E) x (G, E, N') -> (G, N, N')
            if self.pairwise in SOFTMAX_PAIRWISE:  # Eq. 2, 3
                attention = torch.softmax(logits * self._logit_scale(), dim=-1)
            else:  # Eq. 4
                attention = logits / n_keys
        y = torch.matmul(attention, v.transpose(1, 2))  # (G, N, N') x (G, N', C') -> (G, N, C')
        return self._ungroup_last(y, x.shape).movedim(-1, 1), attention

    # --------------------------------------------------------------------- impl="auto"
    def _embed_last(self, x_last: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, *S, E), keys (B, *S', E), values (B, *S', C'), channels last.

        The 1x1 convs that share an input run as one matrix product (:func:`_linear_last`).
        """
        c = self.inter_channels
        if self.pairwise == "gaussian":
            keys = _pool_last(self.pool, x_last)
            if self.pool_before:
                values = _linear_last(keys, [self.g])
            else:
                values = _pool_last(self.pool, _linear_last(x_last, [self.g]))
            return x_last, keys, values
        if self.pool_before:
            key_values = _linear_last(_pool_last(self.pool, x_last), [self.phi, self.g])  # (B, *S', 2C')
            return _linear_last(x_last, [self.theta]), key_values[..., :c], key_values[..., c:]
        embedded = _linear_last(x_last, [self.theta, self.phi, self.g])  # (B, *S, 3C')
        key_values = _pool_last(self.pool, embedded[..., c:])  # (B, *S', 2C')
        return embedded[..., :c], key_values[..., :c], key_values[..., c:]

    def _group_last(self, t: Tensor) -> Tensor:
        """(B, *S, c) -> (G, n, c): the positions attended together (scope), G = B * groups."""
        if self.scope == "spacetime":
            return t.reshape(t.shape[0], -1, t.shape[-1])
        b, frames, h, w, c = t.shape
        if self.scope == "space":  # one group per frame: (B*T, H*W, c)
            return t.reshape(b * frames, h * w, c)
        return t.permute(0, 2, 3, 1, 4).reshape(b * h * w, frames, c)  # time: (B*H*W, T, c)

    def _ungroup_last(self, y: Tensor, shape: torch.Size) -> Tensor:
        """(G, n, c) -> (B, *S, c), the inverse of :meth:`_group_last` on the query grid of ``shape``."""
        b, _, *grid = shape
        c = y.shape[-1]
        if self.scope in ("spacetime", "space"):
            return y.reshape(b, *grid, c)
        frames, h, w = grid
        return y.reshape(b, h, w, frames, c).permute(0, 3, 1, 2, 4)

    def _fast(self, x: Tensor) -> Tensor:
        """Eq. 1 without an (N, N', C) tensor: y (B, C', *S) (channels-last memory)."""
        queries, keys, values = self._embed_last(x.movedim(1, -1))
        q, k, v = self._group_last(queries), self._group_last(keys), self._group_last(values)  # (G, n, c)
        if self.pairwise in SOFTMAX_PAIRWISE:
            y = _softmax_attention(q, k, v, self._logit_scale())
        elif self.pairwise == "dot_product":
            y = _dot_product_attention(q, k, v)
        else:
            w_f = self.concat_project.weight.flatten()  # (2C',) = [w_theta; w_phi]
            a = torch.matmul(q, w_f[: self.inter_channels])  # (G, N)
            b = torch.matmul(k, w_f[self.inter_channels:])  # (G, N')
            y = _concatenation_attention(a, b, v)
        return self._ungroup_last(y, x.shape)  # (B, *S, C')

    def forward(self, x: Tensor, return_attention: bool = False):
        """Apply the block.

        Args:
            x: (B, C, L), (B, C, H, W) or (B, C, T, H, W) for ``dim`` 1, 2, 3.
            return_attention: also return the normalised pairwise weights f / C(x), (B, N, N')
                (``scope="space"``: (B*T, H*W, H'*W'); ``"time"``: (B*H*W, T, T')). Takes the
                reference path.

        Returns:
            z with the shape of x, or ``(z, attention)``.
        """
        self._check_input(x)
        if self.impl == "auto" and not return_attention and not self._plain_is_fastest(x):
            y_last, attention = self._fast(x), None  # (B, *S, C')
            residual = _linear_last(y_last, [self.w_z]).movedim(-1, 1)  # (B, C, *S)
        else:
            y, attention = self._reference(x)  # (B, C', *S)
            residual = self.w_z(y)
        if self.norm is not None:
            residual = self.norm(residual)
        z = x + residual  # Eq. 6
        return (z, attention) if return_attention else z
