"""ResNet3d: shapes per depth and variant, NL placement, reference parameter counts, gradients,
state-dict round trip, options (checkpointing, channels_last, zero-init), argument errors."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn
import torchvision

from nlnet.models import NonLocalBlock, ResNet3d
from nlnet.models.resnet3d import DEPTHS

I3D_R50 = [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]
FIVE_BLOCKS = [[], [1, 3], [1, 3, 5], []]
CONV_8X8 = dict(stem_stride=(1, 2, 2), pool1_kernel=(1, 3, 3), pool1_stride=(1, 2, 2))


class StandInNonLocal(nn.Module):
    """A minimal module with the NonLocalBlock call signature (records its input channels)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.proj = nn.Conv3d(in_channels, in_channels, 1)

    def forward(self, x, return_attention=False):
        z = x + self.proj(x)
        if return_attention:
            n = x[0, 0].numel()
            return z, torch.full((x.shape[0], n, n), 1.0 / n)
        return z


def i3d_kernels(depth: int) -> list[list[int]]:
    """Alternating 3, 1 pattern for any depth (I3D-like)."""
    return [[3 if i % 2 == 0 else 1 for i in range(n)] for n in DEPTHS[depth][1]]


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
@pytest.mark.parametrize("variant", ["c2d_32x2", "i3d_8x8"])
def test_shapes(depth, variant):
    if variant == "c2d_32x2":
        kwargs, frames, t_out = {}, 8, 1  # conv1 /2, pool1 /2, pool2 /2
    else:
        kwargs, frames, t_out = dict(CONV_8X8, stem_kernel=(5, 7, 7), temporal_kernels=i3d_kernels(depth)), 4, 2
    model = ResNet3d(depth=depth, base_width=2, num_classes=7, **kwargs).eval()
    x = torch.randn(2, 3, frames, 40, 48)
    with torch.no_grad():
        features = model.features(x)
        logits = model(x)
    expansion = DEPTHS[depth][0].expansion
    assert features.shape == (2, 2 * 8 * expansion, t_out, 2, 2)  # 40 and 48 -> /32, rounded up
    assert model.feature_channels == features.shape[1]
    assert logits.shape == (2, 7)
    assert model.head.fc.out_features == 7 and model.num_classes == 7


def test_temporal_kernels_are_applied_per_block():
    model = ResNet3d(depth=50, base_width=2, stem_kernel=(5, 7, 7), temporal_kernels=I3D_R50)
    got = [[model.get_submodule(f"{stage}.block{i}").conv1.kernel_size[0] for i in range(len(kernels))]
           for stage, kernels in zip(model.stage_names, I3D_R50)]
    assert got == I3D_R50
    assert model.stem.conv.kernel_size == (5, 7, 7)
    for stage in model.stage_names:  # spatial stride 2 on the 3x3 conv of res3..res5's first block
        assert model.get_submodule(f"{stage}.block0").conv2.stride == ((1, 1, 1) if stage == "res2" else (1, 2, 2))


@pytest.mark.parametrize("placement", [FIVE_BLOCKS, [[], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5], []],
                                       [[], [], [4], []], [[2], [0], [], [1]]])
def test_nonlocal_blocks_exactly_where_listed(placement):
    model = ResNet3d(depth=50, base_width=2, nonlocal_blocks=placement, nonlocal_layer=StandInNonLocal)
    expected = [f"{stage}.nonlocal{i}" for stage, indices in zip(model.stage_names, placement) for i in indices]
    assert model.nonlocal_names() == expected
    assert sum(isinstance(m, StandInNonLocal) for m in model.modules()) == len(expected)
    # Each NL block sits right after its residual block and gets that block's output channels.
    for stage, indices in zip(model.stage_names, placement):
        children = [name for name, _ in model.stage(stage).named_children() if name != "pool"]
        for i in indices:
            assert children[children.index(f"block{i}") + 1] == f"nonlocal{i}"
            block_out = model.get_submodule(f"{stage}.block{i}").bn3.num_features
            assert model.get_submodule(f"{stage}.nonlocal{i}").in_channels == block_out
    # ... and runs there: record the execution order.
    order = []
    for name, module in model.named_modules():
        if name.count(".") == 1 and name.split(".")[0] in model.stage_names:
            module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    model.eval()(torch.randn(1, 3, 8, 32, 32))
    for name in expected:
        stage, nl = name.split(".")
        assert order[order.index(name) - 1] == f"{stage}.block{nl.removeprefix('nonlocal')}"


def test_return_attention_collects_every_block():
    model = ResNet3d(depth=18, base_width=4, nonlocal_blocks=[[1], [0], [1], []],
                     nonlocal_layer=StandInNonLocal, **CONV_8X8).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    logits, attention = model(x, return_attention=True)
    assert list(attention) == model.nonlocal_names() == ["res2.nonlocal1", "res3.nonlocal0", "res4.nonlocal1"]
    assert attention["res2.nonlocal1"].shape == (2, 4 * 8 * 8, 4 * 8 * 8)
    torch.testing.assert_close(logits, model(x))


def test_real_nonlocal_block_attention_shapes():
    layer = functools.partial(NonLocalBlock, pairwise="embedded_gaussian", sub_sample=True)
    model = ResNet3d(depth=18, base_width=4, nonlocal_blocks=[[], [1], [], []], nonlocal_layer=layer,
                     **CONV_8X8).eval()
    logits, attention = model(torch.randn(1, 3, 4, 64, 64), return_attention=True)
    # res3 of an 8x8 clip of 4 frames at 64x64: T=2 (pool2), 8x8; keys sub-sampled 1x2x2.
    assert attention["res3.nonlocal1"].shape == (1, 2 * 8 * 8, 2 * 4 * 4)
    assert logits.shape == (1, 400)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_reference_parameter_counts():
    # Reference codebases (400 classes); built on the meta device (shapes only, no init cost).
    with torch.device("meta"):
        # C2D R50 24.33 M = torchvision's ResNet-50 with a 400-way fc; same for R101.
        assert count(ResNet3d(depth=50)) == count(torchvision.models.resnet50(num_classes=400)) == 24_327_632
        assert count(ResNet3d(depth=101)) == count(torchvision.models.resnet101(num_classes=400))
        i3d = dict(depth=50, stem_kernel=(5, 7, 7), temporal_kernels=I3D_R50)
        assert round(count(ResNet3d(**i3d)) / 1e6, 2) == 28.04
        for pairwise, millions in [("embedded_gaussian", 35.4), ("dot_product", 35.4), ("gaussian", 31.7)]:
            model = ResNet3d(**i3d, nonlocal_blocks=FIVE_BLOCKS,
                             nonlocal_layer=functools.partial(NonLocalBlock, pairwise=pairwise))
            assert round(count(model) / 1e6, 1) == millions, pairwise


def test_every_parameter_gets_a_gradient():
    layer = functools.partial(NonLocalBlock, pairwise="embedded_gaussian")
    model = ResNet3d(depth=18, base_width=4, num_classes=5, stem_kernel=(3, 7, 7),
                     temporal_kernels=i3d_kernels(18), nonlocal_blocks=[[], [0], [1], []],
                     nonlocal_layer=layer, dropout=0.0, **CONV_8X8)
    for name in model.nonlocal_names():  # NL blocks start as the identity (BN gamma 0): open them
        nn.init.ones_(model.get_submodule(name).norm.weight)
    model(torch.randn(2, 3, 4, 64, 64)).logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_state_dict_round_trip_and_key_names(tmp_path):
    kwargs = dict(depth=50, base_width=2, num_classes=3, nonlocal_blocks=FIVE_BLOCKS,
                  nonlocal_layer=functools.partial(NonLocalBlock, pairwise="dot_product"))
    model = ResNet3d(**kwargs).eval()
    keys = set(model.state_dict())
    for key in ["stem.conv.weight", "stem.bn.running_var", "res2.block0.conv1.weight",
                "res2.block0.shortcut.conv.weight", "res3.block0.shortcut.bn.bias", "res4.block5.bn3.weight",
                "res3.nonlocal1.theta.weight", "res4.nonlocal5.w_z.weight", "head.fc.weight", "head.fc.bias"]:
        assert key in keys, key  # state-dict key names are public API
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = ResNet3d(**kwargs).eval()
    fresh.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


def test_zero_init_residual_and_head_init():
    model = ResNet3d(depth=50, base_width=2, zero_init_residual=True)
    last_bns = [m.bn3 for m in model.modules() if hasattr(m, "bn3")]
    assert len(last_bns) == 16 and all(bool((bn.weight == 0).all()) for bn in last_bns)
    assert bool((model.stem.bn.weight == 1).all())
    assert float(model.head.fc.weight.std()) == pytest.approx(0.01, rel=0.2)


def test_checkpoint_stages_match_plain_gradients():
    kwargs = dict(depth=18, base_width=4, num_classes=3, dropout=0.0, **CONV_8X8)
    torch.manual_seed(0)
    plain = ResNet3d(**kwargs)
    ckpt = ResNet3d(**kwargs, checkpoint_stages=["res3", "res4"])
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    for model in (plain, ckpt):
        model(x).sum().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_channels_last_matches_default_layout():
    kwargs = dict(depth=18, base_width=4, num_classes=3, **CONV_8X8)
    torch.manual_seed(0)
    plain = ResNet3d(**kwargs).eval()
    cl = ResNet3d(**kwargs, channels_last=True).eval()
    cl.load_state_dict(plain.state_dict())
    assert cl.stem.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cl(x), plain(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(depth=50, temporal_kernels=[[3, 3, 3], [3, 1, 3, 1], [3, 1, 3], [1, 3, 1]]),
     r"temporal_kernels.*\[3, 4, 3, 3\].*depth 50.*\[3, 4, 6, 3\]"),
    (dict(depth=18, temporal_kernels=[[1, 1], [1, 1], [1, 1]]), r"temporal_kernels.*4 lists.*\[2, 2, 2, 2\]"),
    (dict(depth=50, temporal_kernels=[[2, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]),
     r"temporal_kernels for res2.*odd"),
    (dict(depth=42), r"depth=42.*\[18, 34, 50, 101, 152\]"),
    (dict(depth=50, nonlocal_blocks=[[], [4], [], []], nonlocal_layer=StandInNonLocal),
     r"nonlocal_blocks for res3.*\[4\].*4 blocks.*0\.\.3"),
    (dict(depth=50, nonlocal_blocks=[[], [1], []]), r"nonlocal_blocks must be a list of 4"),
    (dict(depth=50, nonlocal_blocks=[[], [1], [], []]), r"needs nonlocal_layer"),
    (dict(depth=50, checkpoint_stages=["layer3"]), r"checkpoint_stages.*layer3.*res2"),
    (dict(depth=50, stem_kernel=(7, 7)), r"stem_kernel must be"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet3d(base_width=2, **kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        ResNet3d(depth=18, base_width=2)(torch.randn(1, 3, 32, 32))
