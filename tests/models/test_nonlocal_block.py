"""NonLocalBlock: Eq. 1 / Eq. 6 by brute force, auto == reference, the attention accessor, pooling
border rules, the scale of the Gaussians, gradients, init, pytorchvideo, errors."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nlnet.models import NonLocalAttention, NonLocalBlock
from nlnet.models.nonlocal_block import PAIRWISE
from nlnet.models.nonlocal_ops import concatenation_attention, dot_product_attention

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: OpenMP's second thread only adds barrier waits (seconds on a loaded 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomize(block: NonLocalBlock, seed: int = 0, std: float = 0.5) -> NonLocalBlock:
    """A trained-looking block: every parameter and BN statistic random and non-zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
        if block.norm is not None:
            block.norm.running_mean.copy_(torch.randn(block.in_channels, generator=gen) * 0.1)
            block.norm.running_var.copy_(torch.rand(block.in_channels, generator=gen) + 0.5)
    return block


# --------------------------------------------------------------------------------------------
# Eq. 1 / Eq. 6 written as explicit loops over queries i and keys j
# --------------------------------------------------------------------------------------------
def pool_loop(t: torch.Tensor, kernel: tuple[int, ...], ceil: bool) -> torch.Tensor:
    """Max over each kernel-sized window of (c, *S). Floor: complete windows only; ceil: a partial
    window at the far border. An axis shorter than its window is one (partial) window either way."""
    cells = [max(1, math.ceil(s / k) if ceil else s // k) for s, k in zip(t.shape[1:], kernel)]
    out = t.new_empty(t.shape[0], *cells)
    for cell in itertools.product(*(range(c) for c in cells)):
        window = tuple(slice(i * k, i * k + k) for i, k in zip(cell, kernel))
        out[(slice(None), *cell)] = t[(slice(None), *window)].flatten(1).amax(1)
    return out


def conv_loop(conv: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv at every position of (c, *S): W t_p + b."""
    out = torch.einsum("oc,c...->o...", conv.weight.flatten(1), t)
    return out + conv.bias.view(-1, *[1] * (t.dim() - 1))


def pairwise_loop(block: NonLocalBlock, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For one clip (C, *S): f(x_i, x_j) / C(x) for every query i and key j by loops over i and j,
    (N, N') on the global grids with NaN outside i's scope, and the values g (C', *S')."""
    kernel = block.pool_size if block.sub_sample else (1,) * block.dim
    pool = lambda t: pool_loop(t, kernel, block.pool_ceil_mode)  # noqa: E731
    if block.pairwise == "gaussian":  # Eq. 2: unscaled, unless scale_gaussian (C^-1/2)
        queries, keys = xb, pool(xb)
        scale = block.in_channels ** -0.5 if block.scale_gaussian else 1.0
    else:  # Eq. 3 scaled by C'^-1/2 with scale (official USE_SCALE)
        queries = conv_loop(block.theta, xb)
        keys = conv_loop(block.phi, pool(xb)) if block.pool_before else pool(conv_loop(block.phi, xb))
        scale = block.inter_channels ** -0.5 if block.scale else 1.0
    values = conv_loop(block.g, pool(xb)) if block.pool_before else pool(conv_loop(block.g, xb))
    query_cells = list(itertools.product(*(range(s) for s in xb.shape[1:])))
    key_cells = list(itertools.product(*(range(s) for s in keys.shape[1:])))
    weights = xb.new_full((len(query_cells), len(key_cells)), float("nan"))
    for i_index, i in enumerate(query_cells):
        fs = {}
        for j_index, j in enumerate(key_cells):
            if block.scope == "space" and j[0] != i[0]:  # keys in the query's frame only
                continue
            if block.scope == "time" and j[1:] != i[1:]:  # keys at the query's position only
                continue
            q, k = queries[(slice(None), *i)], keys[(slice(None), *j)]
            if block.pairwise in ("gaussian", "embedded_gaussian"):
                fs[j_index] = torch.exp(scale * q @ k)  # Eq. 2, 3
            elif block.pairwise == "dot_product":
                fs[j_index] = q @ k  # Eq. 4
            else:
                fs[j_index] = torch.relu(block.concat_project.weight.flatten() @ torch.cat([q, k]))  # Eq. 5
        norm = sum(fs.values()) if block.pairwise in ("gaussian", "embedded_gaussian") else len(fs)  # C(x)
        for j_index, f in fs.items():
            weights[i_index, j_index] = f / norm
    return weights, values


def eq1_loop(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """z of Eq. 6 for an eval-mode block, from Eq. 1 with the loop weights of every i and j."""
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        xb = x[b]  # (C, *S)
        weights, values = pairwise_loop(block, xb)
        y = weights.nan_to_num(0.0) @ values.flatten(1).T  # (N, N') x (N', C') -> (N, C')
        residual = conv_loop(block.w_z, y.T.reshape(block.inter_channels, *xb.shape[1:]))
        if block.norm is not None:
            bn = block.norm
            shape = (-1,) + (1,) * block.dim
            residual = ((residual - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
                        * bn.weight.view(shape) + bn.bias.view(shape))
        out[b] = xb + residual  # Eq. 6
    return out


# (dim, input shape, scope, pool_size); sizes are odd so that pooling windows are partial
LOOP_CASES = [
    (1, (2, 4, 5), "spacetime", None),
    (2, (1, 4, 3, 5), "spacetime", None),
    (3, (1, 4, 2, 3, 5), "spacetime", None),
    (3, (1, 4, 3, 3, 2), "spacetime", (2, 2, 1)),
    (3, (2, 4, 2, 3, 3), "space", None),
    (3, (1, 4, 3, 2, 3), "time", None),
    (3, (1, 4, 3, 2, 2), "time", (2, 1, 1)),
]


@pytest.mark.parametrize("pairwise", PAIRWISE)
@pytest.mark.parametrize("dim,shape,scope,pool_size", LOOP_CASES)
def test_matches_eq1_loop(pairwise, dim, shape, scope, pool_size):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for sub_sample, pool_before, scale, ceil in [(True, False, False, False), (True, True, True, True),
                                                 (False, False, True, False), (True, True, True, False)]:
        blocks = [NonLocalBlock(4, 3, dim=dim, pairwise=pairwise, sub_sample=sub_sample, pool_size=pool_size,
                                pool_before=pool_before, scale=scale, scale_gaussian=scale and ceil,
                                pool_ceil_mode=ceil, scope=scope, impl=impl)
                  for impl in ("auto", "reference")]
        for block in blocks:
            randomize(block.double()).eval()
        expected = eq1_loop(blocks[0], x)
        for block in blocks:
            torch.testing.assert_close(block(x), expected, rtol=1e-9, atol=1e-9,
                                       msg=f"{block.impl} sub_sample={sub_sample} pool_before={pool_before} ceil={ceil}")


# --------------------------------------------------------------------------------------------
# impl="auto" == impl="reference": outputs and every gradient, on shapes taking each fast path
# --------------------------------------------------------------------------------------------
def run_with_grads(block: NonLocalBlock, x: torch.Tensor, grad_z: torch.Tensor) -> dict[str, torch.Tensor]:
    block.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    z = block(x)
    z.backward(grad_z)
    return {"z": z.detach(), "x.grad": x.grad, **{f"{n}.grad": p.grad for n, p in block.named_parameters()}}


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4, floor: float = 0.0,
                        name: str = "") -> None:
    """max |actual - expected| <= tol * max(max |expected|, floor): relative error on the tensor's scale."""
    err = (actual - expected).abs().max().item()
    size = expected.abs().max().item()
    assert err <= tol * max(size, floor), f"{name}: max abs error {err:.3g}, max |expected| {size:.3g}"


def assert_same_results(auto: dict, ref: dict, tol: float = 1e-4) -> None:
    """Relative error <= tol per tensor. A gradient that is zero in exact arithmetic (phi's bias under
    the softmax's shift invariance) is rounding noise in both; it is held to tol times the largest
    gradient instead."""
    largest = max(ref[k].abs().max().item() for k in ref if k != "z")
    for key in ref:
        assert auto[key] is not None, f"{key} is missing with impl=auto"
        assert_close_scaled(auto[key], ref[key], tol, floor=largest if key != "z" else 0.0, name=key)


def dot_product_takes_memory_path(n: int, n_keys: int, c: int) -> bool:
    return 2 * n * n_keys * c > (n + n_keys) * c * c


# (pairwise, input shape, inter_channels, scope); auto's fast path noted per case
FAST_CASES = [
    ("gaussian", (2, 6, 4, 6, 6), 3, "spacetime"),  # on CPU the reference computation (C' != C)
    ("gaussian", (2, 4, 4, 6, 6), 4, "space"),  # SDPA, C == C'
    ("gaussian", (2, 4, 4, 6, 5), 4, "time"),
    ("embedded_gaussian", (2, 8, 4, 6, 6), 4, "spacetime"),  # SDPA
    ("embedded_gaussian", (2, 8, 4, 6, 5), 4, "time"),
    ("dot_product", (2, 8, 4, 8, 8), 4, "spacetime"),  # theta^T (phi g^T): N = 256, C' = 4
    ("dot_product", (2, 64, 1, 2, 2), 32, "spacetime"),  # (theta^T phi) g: N = 4, C' = 32
    ("dot_product", (2, 8, 3, 6, 6), 4, "space"),
    ("concatenation", (2, 8, 4, 7, 7), 4, "spacetime"),  # sorted prefix sums
    ("concatenation", (2, 8, 4, 6, 6), 4, "time"),
]


@pytest.mark.parametrize("pool_before", [False, True])
@pytest.mark.parametrize("pairwise,shape,inter,scope", FAST_CASES)
def test_auto_equals_reference(pairwise, shape, inter, scope, pool_before):
    gen = torch.Generator().manual_seed(2)
    x, grad_z = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    results = {}
    for impl in ("auto", "reference"):
        torch.manual_seed(0)
        block = randomize(NonLocalBlock(shape[1], inter, pairwise=pairwise, scope=scope, pool_before=pool_before,
                                        scale=True, impl=impl), std=0.3)
        # eval-mode BN: an affine map, so no gradient is cancelled by the batch mean (w_z's and g's biases)
        results[impl] = run_with_grads(block.eval(), x, grad_z)
    assert_same_results(results["auto"], results["reference"])


def test_fast_cases_cover_both_dot_product_associations():
    taken = {dot_product_takes_memory_path(math.prod(s[2:]), math.prod(s[2:]) // 4, inter)
             for p, s, inter, scope in FAST_CASES if p == "dot_product" and scope == "spacetime"}
    assert taken == {True, False}


@pytest.mark.parametrize("n,n_keys,c", [(40, 10, 3), (3, 5, 16)])
def test_dot_product_attention_both_associations(n, n_keys, c):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, m, c, generator=gen, dtype=torch.float64) for m in (n, n_keys, n_keys))
    expected = torch.einsum("gic,gjc,gjd->gid", q, k, v) / n_keys
    torch.testing.assert_close(dot_product_attention(q, k, v), expected)


def test_concatenation_attention_exact_at_ties():
    """a_i + b_j == 0 exactly: ReLU(0) = 0 and, as in the reference, no gradient through the kink."""
    a = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[1.0, 0.0, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    y = concatenation_attention(a, b, v)
    relu = torch.relu(a[:, :, None] + b[:, None, :])  # (1, N, N') materialised
    expected = relu @ v / 4
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (a, b, v), grad)
    want = torch.autograd.grad(expected, (a, b, v), grad)
    for g1, g2 in zip(got, want):
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("pairwise,inter", [(p, 2) for p in PAIRWISE] + [("gaussian", 3)])  # C' = C: SDPA
def test_gradcheck_float64(pairwise, inter):
    block = randomize(NonLocalBlock(3, inter, pairwise=pairwise, scale=True), seed=5, std=0.4).double().train()
    x = torch.randn(1, 3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6), requires_grad=True)
    names = [n for n, _ in block.named_parameters()]

    def fn(x, *params):
        return torch.func.functional_call(block, dict(zip(names, params)), (x,))

    params = [p.detach().clone().requires_grad_() for p in block.parameters()]
    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6, fast_mode=True)


# --------------------------------------------------------------------------------------------
# Init, shapes, gradients reaching every parameter
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bn_layer", [True, False])
@pytest.mark.parametrize("pairwise", PAIRWISE)
def test_identity_at_init(pairwise, bn_layer):
    torch.manual_seed(0)
    for dim in (1, 2, 3):
        x = torch.randn(2, 6, *[5, 4, 3][:dim])
        for impl in ("auto", "reference"):
            block = NonLocalBlock(6, dim=dim, pairwise=pairwise, bn_layer=bn_layer, impl=impl)
            assert torch.equal(block(x), x), (dim, impl)
    convs = [block.theta, block.phi, block.g, block.concat_project] + ([block.w_z] if bn_layer else [])
    for conv in filter(None, convs):  # official init: N(0, 0.01^2) weights, zero biases
        assert 0.002 < conv.weight.std().item() < 0.03 and (conv.bias is None or not conv.bias.any())


@pytest.mark.parametrize("pairwise", PAIRWISE)
@pytest.mark.parametrize("shape,pool_size", [((1, 4, 3, 5, 7), None), ((1, 4, 5, 3, 1), (2, 2, 2)),
                                             ((2, 4, 1, 1, 1), None)])
def test_odd_sizes_keep_shape(pairwise, shape, pool_size):
    x = torch.randn(shape)
    outputs = []
    for impl in ("auto", "reference"):
        torch.manual_seed(0)
        block = randomize(NonLocalBlock(4, pairwise=pairwise, pool_size=pool_size, impl=impl)).eval()
        outputs.append(block(x))
        assert outputs[-1].shape == x.shape
    assert_close_scaled(outputs[0], outputs[1])


@pytest.mark.parametrize("pairwise", PAIRWISE)
@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_every_parameter_gets_a_gradient(pairwise, impl):
    block = NonLocalBlock(6, pairwise=pairwise, impl=impl)
    nn.init.constant_(block.norm.weight, 0.5)  # gamma != 0: the block leaves the identity
    block.eval()  # running statistics: BN passes constant shifts, so biases see a gradient too
    block(torch.randn(2, 6, 2, 4, 4)).square().sum().backward()
    # softmax_j is invariant to theta_i^T b_phi, a constant over j: phi's bias has no effect (Eq. 3)
    exempt = {"phi.bias"} if pairwise == "embedded_gaussian" else set()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name not in exempt:
            assert p.grad.abs().max() > 0, f"{name} got a zero gradient"


def test_submodules_and_state_dict_names():
    block = NonLocalBlock(8, pairwise="concatenation", dim=2)
    assert isinstance(block.theta, nn.Conv2d) and isinstance(block.norm, nn.BatchNorm2d)
    assert block.concat_project.weight.numel() == 2 * block.inter_channels == 8
    assert sorted(block.state_dict()) == sorted(
        [f"{m}.{p}" for m in ("theta", "phi", "g", "w_z") for p in ("weight", "bias")]
        + ["concat_project.weight"]
        + [f"norm.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")])
    gaussian = NonLocalBlock(5, pairwise="gaussian", dim=1, bn_layer=False)
    assert gaussian.theta is None and gaussian.phi is None and gaussian.norm is None
    assert gaussian.inter_channels == 2 and isinstance(gaussian.g, nn.Conv1d)
    assert NonLocalBlock(1).inter_channels == 1
    assert NonLocalBlock(8, scope="time").pool_size == (1, 1, 1) and NonLocalBlock(8).pool_size == (1, 2, 2)


# --------------------------------------------------------------------------------------------
# The attention accessor: the weights of Eq. 1 with their grids
# --------------------------------------------------------------------------------------------
# (input shape, pool_size, sub_sample): even and odd sizes, with and without sub-sampling
ACCESSOR_CASES = [((2, 4, 2, 4, 4), None, True), ((1, 4, 3, 5, 3), None, True), ((1, 4, 3, 5, 3), (3, 2, 3), True),
                  ((1, 4, 2, 3, 3), None, False), ((1, 4, 1, 1, 3), (2, 2, 2), True)]


@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("scope", ["spacetime", "space", "time"])
@pytest.mark.parametrize("pairwise", PAIRWISE)
def test_attention_accessor_equals_eq1_weights_and_grids(pairwise, scope, ceil):
    gen = torch.Generator().manual_seed(8)
    for shape, pool_size, sub_sample in ACCESSOR_CASES:
        attended = {"spacetime": (1, 1, 1), "space": (0, 1, 1), "time": (1, 0, 0)}[scope]
        pool = None if pool_size is None else tuple(k if a else 1 for k, a in zip(pool_size, attended))
        block = NonLocalBlock(4, 3, pairwise=pairwise, scope=scope, sub_sample=sub_sample, pool_size=pool,
                              pool_ceil_mode=ceil, pool_before=pairwise == "dot_product", scale=True)
        randomize(block.double(), seed=9, std=0.4).eval()
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        attention = block.attention(x)
        assert isinstance(attention, NonLocalAttention) and attention.scope == scope
        assert attention.batch_size == shape[0] and attention.query_grid == shape[2:]
        kernel = block.pool_size if sub_sample else (1, 1, 1)
        assert attention.key_pool == kernel
        pooled = pool_loop(x[0], kernel, ceil)  # (C, *S'): the hand-written pooling's key grid
        assert attention.key_grid == tuple(pooled.shape[1:]) == block.key_grid(shape[2:])
        t, h, w = shape[2:]
        tk, hk, wk = attention.key_grid
        groups, n, n_keys = {"spacetime": (1, t * h * w, tk * hk * wk), "space": (t, h * w, hk * wk),
                             "time": (h * w, t, tk)}[scope]
        assert attention.weights.shape == (shape[0] * groups, n, n_keys)
        assert not attention.weights.requires_grad
        for b in range(shape[0]):
            expected, _ = pairwise_loop(block, x[b])  # (N, N'), NaN outside the scope
            got = attention.global_weights(b)
            assert torch.equal(torch.isnan(got), torch.isnan(expected)), (shape, b)
            torch.testing.assert_close(got.nan_to_num(0.0), expected.nan_to_num(0.0), rtol=1e-9, atol=1e-12)
        if pairwise in ("gaussian", "embedded_gaussian"):  # softmax over each query's keys
            torch.testing.assert_close(attention.weights.sum(-1), torch.ones(attention.weights.shape[:2],
                                                                              dtype=torch.float64))


def test_attention_accessor_matches_the_pool_rounding_of_torch():
    """key_grid is the shape torch's max-pool gives with the block's kernel and rounding (where
    torch defines it), on even and odd sizes."""
    for size in range(2, 10):
        x = torch.randn(1, 4, 3, size, size + 1)
        for ceil in (False, True):
            block = NonLocalBlock(4, pool_size=(1, 2, 3), pool_ceil_mode=ceil)
            reference = F.max_pool3d(x, (1, 2, 3), stride=(1, 2, 3), ceil_mode=ceil) if size + 1 >= 3 else None
            grid = block.attention(x).key_grid
            if reference is not None:
                assert grid == tuple(reference.shape[2:]), (size, ceil)
            assert grid == (3, -(-size // 2) if ceil else size // 2, -(-(size + 1) // 3) if ceil else (size + 1) // 3)


def test_attention_rejects_inconsistent_geometry():
    with pytest.raises(ValueError, match=r"do not match scope 'space'.*expected \(6, 4, 4\)"):
        NonLocalAttention(weights=torch.zeros(2, 4, 4), scope="space", query_grid=(3, 2, 2), key_grid=(3, 2, 2),
                          key_pool=(1, 1, 1), batch_size=2)
    with pytest.raises(ValueError, match="valid scopes: spacetime, space, time"):
        NonLocalAttention(weights=torch.zeros(1, 4, 4), scope="frame", query_grid=(1, 2, 2), key_grid=(1, 2, 2),
                          key_pool=(1, 1, 1), batch_size=1)
    attention = NonLocalBlock(4).attention(torch.randn(2, 4, 2, 2, 2))
    with pytest.raises(IndexError, match="clip index 2 out of range for a batch of 2"):
        attention.global_weights(2)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, C=4, T, H, W\)"):
        NonLocalBlock(4).attention(torch.randn(2, 4, 2, 2))


# --------------------------------------------------------------------------------------------
# The pooling border rule and the scale of the Gaussians
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool_before", [False, True])
def test_floor_and_ceil_pooling_at_odd_sizes(pool_before):
    """Floor (the default, as every reference) drops the last incomplete window; ceil keeps it
    partial (the earlier behaviour); both equal the hand-written Eq. 1 with that rounding."""
    x = torch.randn(2, 4, 3, 5, 7, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    outputs = {}
    for ceil in (False, True):
        block = randomize(NonLocalBlock(4, 3, pool_ceil_mode=ceil, pool_before=pool_before, scale=True).double(),
                          seed=11).eval()
        assert block.key_grid((3, 5, 7)) == ((3, 3, 4) if ceil else (3, 2, 3))
        outputs[ceil] = block(x)
        torch.testing.assert_close(outputs[ceil], eq1_loop(block, x), rtol=1e-9, atol=1e-9)
    assert NonLocalBlock(4).pool_ceil_mode is False
    assert (outputs[False] - outputs[True]).abs().max() > 1e-3  # the rule changes the function at odd sizes


def test_ceil_mode_is_the_earlier_max_pool():
    """pool_ceil_mode=True pools exactly as nlnet's earlier nn.MaxPool3d(ceil_mode=True) module."""
    x = torch.randn(1, 4, 3, 5, 1)
    block = NonLocalBlock(4, pool_size=(1, 2, 2), pool_ceil_mode=True)
    earlier = nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2), ceil_mode=True)
    torch.testing.assert_close(block._pool(x), earlier(x))


def test_gaussian_scales():
    """scale=True scales only the embedded Gaussian (C'^-1/2, official USE_SCALE); the Gaussian
    stays exp(x_i^T x_j) (paper, mmcv) unless scale_gaussian (C^-1/2)."""
    x = torch.randn(1, 6, 2, 2, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    flat = x[0].flatten(1)  # (C, N)
    pooled = F.max_pool3d(x, (1, 2, 2), stride=(1, 2, 2))[0].flatten(1)  # (C, N')
    gaussian = NonLocalBlock(6, pairwise="gaussian", scale=True).double()
    assert gaussian.logit_scale == 1.0
    torch.testing.assert_close(gaussian.attention(x).weights[0], torch.softmax(flat.T @ pooled, dim=-1))
    scaled = NonLocalBlock(6, pairwise="gaussian", scale=True, scale_gaussian=True).double()
    torch.testing.assert_close(scaled.attention(x).weights[0], torch.softmax(flat.T @ pooled / 6 ** 0.5, dim=-1))
    embedded = randomize(NonLocalBlock(6, pairwise="embedded_gaussian", scale=True).double())
    theta, phi = conv_loop(embedded.theta, x[0]).flatten(1), conv_loop(embedded.phi, x[0])
    keys = F.max_pool3d(phi[None], (1, 2, 2), stride=(1, 2, 2))[0].flatten(1)
    torch.testing.assert_close(embedded.attention(x).weights[0], torch.softmax(theta.T @ keys / 3 ** 0.5, dim=-1))
    assert NonLocalBlock(6, pairwise="embedded_gaussian", scale=False).logit_scale == 1.0
    assert NonLocalBlock(6, pairwise="dot_product", scale=True, scale_gaussian=True).logit_scale == 1.0


# --------------------------------------------------------------------------------------------
# pytorchvideo's NonLocal (official code's layout: pool before phi and g, scaled softmax)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 8, 4, 6, 6), (2, 8, 3, 7, 5)])  # odd: floor drops the last windows
@pytest.mark.parametrize("instantiation,pairwise", [("softmax", "embedded_gaussian"), ("dot_product", "dot_product")])
@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_matches_pytorchvideo(instantiation, pairwise, impl, shape):
    from pytorchvideo.layers.nonlocal_net import create_nonlocal

    theirs = create_nonlocal(dim_in=8, dim_inner=4, pool_size=(1, 2, 2), instantiation=instantiation)
    ours = NonLocalBlock(8, 4, pairwise=pairwise, pool_size=(1, 2, 2), pool_before=True, scale=True, impl=impl)
    randomize(ours, seed=7)
    # pytorchvideo's "softmax" scales theta^T phi by C'^-1/2; its "dot_product" divides by N' (the
    # pooled key count) like the paper's C(x) = N; it pools with floor, as the block's default
    for mine, their in [(ours.theta, theirs.conv_theta), (ours.phi, theirs.conv_phi), (ours.g, theirs.conv_g),
                        (ours.w_z, theirs.conv_out)]:
        their.load_state_dict(mine.state_dict())
    theirs.norm.load_state_dict(ours.norm.state_dict())
    x = torch.randn(shape)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    z_ours, z_theirs = ours(x1), theirs(x2)
    assert_close_scaled(z_ours, z_theirs, name="z")
    grad = torch.randn_like(z_ours)
    z_ours.backward(grad)
    z_theirs.backward(grad)
    assert_close_scaled(x1.grad, x2.grad, name="x.grad")
    for mine, their in [(ours.theta, theirs.conv_theta), (ours.phi, theirs.conv_phi), (ours.g, theirs.conv_g),
                        (ours.w_z, theirs.conv_out), (ours.norm, theirs.norm)]:
        assert_close_scaled(mine.weight.grad, their.weight.grad, name="weight.grad")


# --------------------------------------------------------------------------------------------
# Errors that name the expected shape or the valid choices
# --------------------------------------------------------------------------------------------
def test_bad_input_names_expected_shape():
    block = NonLocalBlock(8)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, C=8, T, H, W\); got \(2, 8, 4, 4\)"):
        block(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C=8, T, H, W\); got \(2, 6, 2, 4, 4\)"):
        block(torch.randn(2, 6, 2, 4, 4))
    with pytest.raises(ValueError, match=r"NonLocalBlock\(dim=1\) expects input of shape \(B, C=4, L\)"):
        NonLocalBlock(4, dim=1)(torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("kwargs,message", [
    ({"pairwise": "softmax"},
     r"pairwise='softmax'; valid choices: gaussian, embedded_gaussian, dot_product, concatenation"),
    ({"scope": "frame"}, r"scope='frame'; valid choices: spacetime, space, time"),
    ({"impl": "fast"}, r"impl='fast'; valid choices: auto, reference"),
    ({"dim": 4}, r"dim=4; valid choices: 1, 2, 3"),
    ({"dim": 2, "scope": "space"}, r"needs dim=3"),
    ({"scope": "space", "pool_size": (2, 2, 2)}, r"pools an axis that scope='space' does not attend over.*\(1, 2, 2\)"),
    ({"scope": "time", "pool_size": (1, 2, 2)}, r"scope='time'.*\(1, 1, 1\)"),
    ({"pool_size": (2, 2)}, r"pool_size=\(2, 2\) must be 3 positive ints"),
])
def test_bad_options_name_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NonLocalBlock(8, **kwargs)
