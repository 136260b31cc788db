"""NonLocalBlock: Eq. 1 / Eq. 6 by brute force, auto == reference, gradients, init, pytorchvideo, errors."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn

from nlnet.models import NonLocalBlock
from nlnet.models.nonlocal_block import PAIRWISE, _concatenation_attention, _dot_product_attention



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
def pool_loop(t: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor:
    """Max over each kernel-sized window of (c, *S); windows at the far border may be partial."""
    cells = [math.ceil(s / k) for s, k in zip(t.shape[1:], kernel)]
    out = t.new_empty(t.shape[0], *cells)
    for cell in itertools.product(*(range(c) for c in cells)):
        window = tuple(slice(i * k, i * k + k) for i, k in zip(cell, kernel))
        out[(slice(None), *cell)] = t[(slice(None), *window)].flatten(1).amax(1)
    return out


def conv_loop(conv: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv at every position of (c, *S): W t_p + b."""
    out = torch.einsum("oc,c...->o...", conv.weight.flatten(1), t)
    return out + conv.bias.view(-1, *[1] * (t.dim() - 1))


def eq1_loop(block: NonLocalBlock, x: torch.Tensor) -> torch.Tensor:
    """z of Eq. 6 for an eval-mode block, from Eq. 1 with a loop over every i and every j."""
    kernel = block.pool_size if block.sub_sample else (1,) * block.dim
    pool = lambda t: pool_loop(t, kernel)  # noqa: E731
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        xb = x[b]  # (C, *S)
        if block.pairwise == "gaussian":
            queries, keys = xb, pool(xb)
            width = block.in_channels
        else:
            queries = conv_loop(block.theta, xb)
            keys = conv_loop(block.phi, pool(xb)) if block.pool_before else pool(conv_loop(block.phi, xb))
            width = block.inter_channels
        values = conv_loop(block.g, pool(xb)) if block.pool_before else pool(conv_loop(block.g, xb))
        scale = width ** -0.5 if block.scale else 1.0
        y = xb.new_zeros(block.inter_channels, *xb.shape[1:])
        for i in itertools.product(*(range(s) for s in xb.shape[1:])):
            weights, js = [], []
            for j in itertools.product(*(range(s) for s in keys.shape[1:])):
                if block.scope == "space" and j[0] != i[0]:  # keys in the query's frame only
                    continue
                if block.scope == "time" and j[1:] != i[1:]:  # keys at the query's position only
                    continue
                q, k = queries[(slice(None), *i)], keys[(slice(None), *j)]
                if block.pairwise in ("gaussian", "embedded_gaussian"):
                    f = torch.exp(scale * q @ k)  # Eq. 2, 3
                elif block.pairwise == "dot_product":
                    f = q @ k  # Eq. 4
                else:
                    f = torch.relu(block.concat_project.weight.flatten() @ torch.cat([q, k]))  # Eq. 5
                weights.append(f)
                js.append(j)
            norm = sum(weights) if block.pairwise in ("gaussian", "embedded_gaussian") else len(js)  # C(x)
            for f, j in zip(weights, js):
                y[(slice(None), *i)] += f / norm * values[(slice(None), *j)]
        residual = conv_loop(block.w_z, y)
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
    for sub_sample, pool_before, scale in [(True, False, False), (True, True, True), (False, False, True)]:
        blocks = [NonLocalBlock(4, 3, dim=dim, pairwise=pairwise, sub_sample=sub_sample, pool_size=pool_size,
                                pool_before=pool_before, scale=scale, scope=scope, impl=impl)
                  for impl in ("auto", "reference")]
        for block in blocks:
            randomize(block.double()).eval()
        expected = eq1_loop(blocks[0], x)
        for block in blocks:
            torch.testing.assert_close(block(x), expected, rtol=1e-9, atol=1e-9,
                                       msg=f"{block.impl} sub_sample={sub_sample} pool_before={pool_before}")


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
    torch.testing.assert_close(_dot_product_attention(q, k, v), expected)


def test_concatenation_attention_exact_at_ties():
    """a_i + b_j == 0 exactly: ReLU(0) = 0 and, as in the reference, no gradient through the kink."""
    a = torch.tensor([[-2.0, -1.0, 0.0, 1.0, 3.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[1.0, 0.0, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    y = _concatenation_attention(a, b, v)
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


@pytest.mark.parametrize("scope,groups", [("spacetime", 1), ("space", 4), ("time", 36)])
def test_return_attention(scope, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 6, 6)
    block = randomize(NonLocalBlock(8, scope=scope, impl="auto")).eval()
    z, attention = block(x, return_attention=True)
    n, n_keys = {"spacetime": (144, 36), "space": (36, 9), "time": (4, 4)}[scope]
    assert attention.shape == (2 * groups, n, n_keys)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2 * groups, n))  # softmax over keys j
    assert_close_scaled(z, block(x))


# --------------------------------------------------------------------------------------------
# pytorchvideo's NonLocal (official code's layout: pool before phi and g, scaled softmax)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("instantiation,pairwise", [("softmax", "embedded_gaussian"), ("dot_product", "dot_product")])
@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_matches_pytorchvideo(instantiation, pairwise, impl):
    from pytorchvideo.layers.nonlocal_net import create_nonlocal

    theirs = create_nonlocal(dim_in=8, dim_inner=4, pool_size=(1, 2, 2), instantiation=instantiation)
    ours = NonLocalBlock(8, 4, pairwise=pairwise, pool_size=(1, 2, 2), pool_before=True, scale=True, impl=impl)
    randomize(ours, seed=7)
    # pytorchvideo's "softmax" scales theta^T phi by C'^-1/2; its "dot_product" divides by N' (the
    # pooled key count) like the paper's C(x) = N; pooling is floor mode, so sizes here are even
    for mine, their in [(ours.theta, theirs.conv_theta), (ours.phi, theirs.conv_phi), (ours.g, theirs.conv_g),
                        (ours.w_z, theirs.conv_out)]:
        their.load_state_dict(mine.state_dict())
    theirs.norm.load_state_dict(ours.norm.state_dict())
    x = torch.randn(2, 8, 4, 6, 6)
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
