"""ResNet3d: shapes per depth and variant, NL placement, attention through the block's accessor,
reference parameter counts, gradients, state-dict round trip, options (checkpointing, channels_last,
zero-init, pool1 padding, fully-convolutional test head, frozen BN), any-sequence arguments (Hydra's
ListConfig), no file I/O in the constructor, argument errors."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from nlnet.engine.hooks import update_bn_stats
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

    def forward(self, x):
        return x + self.proj(x)


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


def capture_inputs(model: ResNet3d) -> dict[str, torch.Tensor]:
    """Each non-local block's input of the next forward pass, recorded by a forward pre-hook."""
    seen: dict[str, torch.Tensor] = {}
    for name in model.nonlocal_names():
        model.get_submodule(name).register_forward_pre_hook(lambda m, args, name=name: seen.update({name: args[0]}))
    return seen


def test_attention_through_a_pre_hook_and_the_accessor():
    layer = functools.partial(NonLocalBlock, pairwise="embedded_gaussian", sub_sample=True)
    model = ResNet3d(depth=18, base_width=4, nonlocal_blocks=[[1], [1], [], []], nonlocal_layer=layer,
                     **CONV_8X8).eval()
    seen = capture_inputs(model)
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        logits = model(x)  # the network returns logits only: attention is the block's business
    assert logits.shape == (1, 400) and list(seen) == ["res2.nonlocal1", "res3.nonlocal1"]
    # res3 of an 8x8 clip of 4 frames at 64x64: T=2 (pool2), 8x8; keys sub-sampled 1x2x2.
    attention = model.get_submodule("res3.nonlocal1").attention(seen["res3.nonlocal1"])
    assert attention.weights.shape == (1, 2 * 8 * 8, 2 * 4 * 4)
    assert (attention.query_grid, attention.key_grid, attention.key_pool) == ((2, 8, 8), (2, 4, 4), (1, 2, 2))
    assert model.get_submodule("res2.nonlocal1").attention(seen["res2.nonlocal1"]).query_grid == (4, 16, 16)


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
    assert float(model.head.fc.weight.detach().std()) == pytest.approx(0.01, rel=0.2)


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
    from nlnet.data.prologue import BatchPrologue  # trainer.channels_last: model and clips, one knob

    kwargs = dict(depth=18, base_width=4, num_classes=3, **CONV_8X8)
    torch.manual_seed(0)
    plain = ResNet3d(**kwargs).eval()
    cl = ResNet3d(**kwargs).eval()
    cl.load_state_dict(plain.state_dict())
    prologue = BatchPrologue(device="cpu", channels_last=True)
    prologue.prepare_model(cl)
    assert cl.stem.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cl(prologue.video({"video": x})), plain(x), rtol=1e-4, atol=1e-5)


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
    (dict(depth=50, frozen_bn=["res6"]), r"frozen_bn has unknown parts \['res6'\]; valid: all, stem, res2"),
    (dict(depth=50, nonlocal_blocks="[[],[],[],[]]"), r"nonlocal_blocks must be a list"),
    (dict(depth=50, head_pool_kernel=(4, 7)), r"head_pool_kernel must be"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet3d(base_width=2, **kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        ResNet3d(depth=18, base_width=2)(torch.randn(1, 3, 32, 32))


def test_pool1_padding():
    """Default pool1 padding (0, 1, 1) as torchvision / PySlowFast / pytorchvideo; (0, 0, 0) as the
    official Caffe2 code: 32 -> 16 rows, or 15 without padding (floor)."""
    x = torch.randn(1, 3, 1, 64, 64)
    kwargs = dict(depth=18, base_width=2, **CONV_8X8)
    assert ResNet3d(**kwargs).stem(x).shape[2:] == (1, 16, 16)
    assert ResNet3d(**kwargs, pool1_padding=(0, 0, 0)).stem(x).shape[2:] == (1, 15, 15)


# --------------------------------------------------------------------------------------------
# Fully-convolutional test head
# --------------------------------------------------------------------------------------------
def per_position_logits(model: ResNet3d, x: torch.Tensor, pool: tuple[int, int, int] | None) -> torch.Tensor:
    """By hand: res5 features, average pool (stride 1), the fc at every position: (B, P, K)."""
    features = model.features(x)
    pooled = features.mean((2, 3, 4), keepdim=True) if pool is None else F.avg_pool3d(features, pool, stride=1)
    return pooled.flatten(2).transpose(1, 2) @ model.head.fc.weight.T + model.head.fc.bias


@pytest.mark.parametrize("pool", [(1, 1, 1), (2, 1, 1), None])
def test_fully_convolutional_test_head(pool):
    torch.manual_seed(0)
    kwargs = dict(depth=18, base_width=4, num_classes=5, dropout=0.0, **CONV_8X8)
    model = ResNet3d(**kwargs, head_pool_kernel=pool, fully_conv_test=True)
    x = torch.randn(2, 3, 4, 64, 64)  # res5: 2 x 2 x 2 positions
    with torch.no_grad():
        model.eval()
        logits = per_position_logits(model, x, pool)  # (2, P, 5)
        assert logits.shape[1] == {(1, 1, 1): 8, (2, 1, 1): 4, None: 1}[pool]
        expected = logits.softmax(-1).mean(1)  # the official test: softmax per position, averaged
        torch.testing.assert_close(model(x).softmax(1), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(x).exp(), expected, rtol=1e-5, atol=1e-6)  # log of the mean
        model.train()  # training (batch statistics): ordinary logits, the mean over positions
        torch.testing.assert_close(model(x), per_position_logits(model, x, pool).mean(1), rtol=1e-5, atol=1e-6)


def test_head_off_by_default_gives_todays_logits():
    torch.manual_seed(0)
    model = ResNet3d(depth=18, base_width=4, num_classes=5, **CONV_8X8).eval()
    assert model.head.fully_conv_test is False and isinstance(model.head.pool, nn.AdaptiveAvgPool3d)
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        expected = model.head.fc(model.features(x).mean((2, 3, 4)))  # global pool -> fc
        torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-6)
    assert set(model.state_dict()) >= {"head.fc.weight", "head.fc.bias"}


# --------------------------------------------------------------------------------------------
# Frozen BatchNorm
# --------------------------------------------------------------------------------------------
def frozen_model(frozen_bn) -> ResNet3d:
    torch.manual_seed(0)
    model = ResNet3d(depth=18, base_width=4, num_classes=3, dropout=0.0, nonlocal_blocks=[[], [0], [], []],
                     nonlocal_layer=NonLocalBlock, frozen_bn=frozen_bn, **CONV_8X8)
    with torch.no_grad():  # trained-looking statistics and affine parameters, NL blocks open
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
    return model


def bn_state(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.startswith(prefix) and any(b in k for b in ("bn", "norm"))}


def test_frozen_bn_keeps_statistics_and_affine_over_a_training_step():
    model = frozen_model(["stem", "res3"])
    frozen = {**bn_state(model, "stem."), **bn_state(model, "res3.")}
    assert any(".nonlocal0.norm." in k for k in frozen)  # the NL block's BN inside res3 is frozen too
    live = bn_state(model, "res2.")
    model.train()
    assert all(not m.training for m in model.frozen_norms()) and model.res2.block0.bn1.training
    assert model.stem.bn.weight.requires_grad is False and model.res2.block0.bn1.weight.requires_grad
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(2, 3, 4, 32, 32)), torch.tensor([0, 2])).backward()
        optimizer.step()
    state = model.state_dict()
    for key, value in frozen.items():
        assert torch.equal(state[key], value), key
    assert all(not torch.equal(state[k], v) for k, v in live.items() if "num_batches" not in k)
    for conv in (model.stem.conv, model.res3.block0.conv1, model.res3.nonlocal0.theta):  # gradients still flow
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    from nlnet.solver.optim import param_groups
    grouped = {id(p) for group in param_groups(model, weight_decay=1e-4) for p in group["params"]}
    assert id(model.stem.bn.weight) not in grouped and id(model.res2.block0.bn1.weight) in grouped


def test_frozen_bn_stays_eval_precise_bn_skips_it_and_round_trips(tmp_path):
    model = frozen_model("all")
    assert model.frozen_bn == ("stem", "res2", "res3", "res4", "res5")
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm3d))  # from construction on
    model.eval().train(True)
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm3d))
    before = bn_state(model, "")
    batches = [{"video": torch.randn(2, 3, 4, 32, 32)} for _ in range(2)]
    assert update_bn_stats(model, batches, num_iters=2, device=torch.device("cpu")) == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    partly = frozen_model(["res2"])  # precise BN recomputes the others only
    res2, res3 = bn_state(partly, "res2."), bn_state(partly, "res3.")
    assert update_bn_stats(partly, batches, num_iters=2, device=torch.device("cpu")) == 2
    assert all(torch.equal(partly.state_dict()[k], v) for k, v in res2.items())
    assert not torch.equal(partly.state_dict()["res3.block0.bn1.running_mean"], res3["res3.block0.bn1.running_mean"])
    path = tmp_path / "frozen.pt"
    torch.save(model.state_dict(), path)
    x = torch.randn(1, 3, 4, 32, 32)
    for other in (frozen_model("all"), frozen_model(())):  # same keys, frozen or not
        other.load_state_dict(torch.load(path, weights_only=True), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(other.eval()(x), model.eval()(x))


# --------------------------------------------------------------------------------------------
# Construction: any sequence (Hydra without _convert_), no file I/O
# --------------------------------------------------------------------------------------------
def test_instantiate_without_convert_builds_from_listconfig():
    import hydra

    from helpers import compose

    cfg = compose("train", ["experiment=nl_i3d_r50_kinetics", "run_dir=/tmp/unused", "model.net.frozen_bn=[stem,res2]",
                            "model.net.head_pool_kernel=[4,7,7]", "model.net.pool1_padding=[0,0,0]",
                            "model.net.checkpoint_stages=[res3]", "+model.nonlocal.pool_size=[1,2,2]"])
    assert type(cfg.model.net.nonlocal_blocks).__name__ == "ListConfig"
    with torch.device("meta"):
        model = hydra.utils.instantiate(cfg.model.net)  # no _convert_: ListConfig everywhere
    assert model.nonlocal_names() == ["res3.nonlocal1", "res3.nonlocal3", "res4.nonlocal1", "res4.nonlocal3",
                                      "res4.nonlocal5"]
    assert [[model.get_submodule(f"{s}.block{i}").conv1.kernel_size[0] for i in range(len(k))]
            for s, k in zip(model.stage_names, I3D_R50)] == I3D_R50
    assert model.frozen_bn == ("stem", "res2") and model.head.pool.kernel_size == (4, 7, 7)
    assert model.stem.pool.padding == (0, 0, 0) and model.res3.use_checkpoint


def test_constructor_opens_no_file(monkeypatch):
    import builtins
    import io

    ResNet3d(depth=18, base_width=2)  # imports done before files are forbidden

    def forbidden(*args, **kwargs):
        raise AssertionError(f"file I/O in a constructor: {args}")

    for module, name in ((builtins, "open"), (io, "open"), (torch, "load"), (torch.hub, "load_state_dict_from_url")):
        monkeypatch.setattr(module, name, forbidden)
    model = ResNet3d(depth=18, base_width=2, nonlocal_blocks=[[], [0], [], []], nonlocal_layer=NonLocalBlock,
                     frozen_bn="all", head_pool_kernel=(1, 1, 1), fully_conv_test=True)
    assert model.nonlocal_names() == ["res3.nonlocal0"]
    with pytest.raises(TypeError, match="pretrained"):  # weights are loaded outside (nlnet.checkpoint.weights)
        ResNet3d(depth=18, base_width=2, pretrained="torchvision")


# --------------------------------------------------------------------------------------------
# Frozen stages (fine-tuning)
# --------------------------------------------------------------------------------------------
def test_frozen_stages_freeze_weights_and_bn_of_stem_to_the_named_stage():
    torch.manual_seed(0)
    model = ResNet3d(depth=18, base_width=4, num_classes=3, dropout=0.0, nonlocal_blocks=[[], [0], [], []],
                     nonlocal_layer=NonLocalBlock, frozen_stages="res3", **CONV_8X8)
    assert model.frozen_stages == ("stem", "res2", "res3") and model.frozen_bn == ("stem", "res2", "res3")
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] in model.frozen_stages}
    live = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("res4.", "res5.", "head."))}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(("res4.", "res5.", "head."))}
    model.train()
    assert not model.res3.nonlocal0.norm.training and model.res4.block0.bn1.training
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(2, 3, 4, 32, 32)), torch.tensor([0, 2])).backward()
        optimizer.step()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # weights and BN statistics
    assert not any(torch.equal(state[k], v) for k, v in live.items() if k.endswith("weight"))
    assert ResNet3d(depth=18, base_width=4, frozen_stages=None).frozen_stages == ()
    with pytest.raises(ValueError, match=r"^frozen_stages='res6': valid values are null, stem, res2, res3, res4, res5"):
        ResNet3d(depth=18, base_width=4, frozen_stages="res6")
