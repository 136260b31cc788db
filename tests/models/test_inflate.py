"""ImageNet inflation from a 2D torchvision ResNet, and fine-tuning loads (load_finetune)."""
from __future__ import annotations

import functools
import logging
import urllib.error

import pytest
import torch
import torch.nn as nn
import torchvision

from nlnet.models import NonLocalBlock, ResNet3d, load_finetune
from nlnet.models.inflate import inflate_from_2d, torchvision_to_resnet3d_key

I3D_R50 = [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]
# No temporal down-sampling, so every input frame keeps its own time step up to res5.
NO_TIME_POOL = dict(stem_stride=(1, 2, 2), pool1_kernel=(1, 3, 3), pool1_stride=(1, 2, 2), pool2_kernel=(1, 1, 1))
# Temporal receptive half-width of I3D R50 without pooling: conv1 5 -> 2, then one per 3x1x1 conv.
HALF_WIDTH = 2 + sum(k // 2 for stage in I3D_R50 for k in stage)


def random_resnet(arch: str) -> nn.Module:
    """A randomly initialised torchvision ResNet whose BN layers are not the identity."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    """|actual - expected| <= tol * max|expected| everywhere (fp32 error grows with the feature scale)."""
    scale = expected.abs().max()
    torch.testing.assert_close(actual / scale, expected / scale, rtol=0, atol=tol)


def layer4(net: nn.Module, image: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    net = random_resnet("resnet50")
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.fixture(scope="module")
def inflated_i3d(resnet50_file):
    """I3D R50 with two NL blocks, inflated from the random ResNet-50: (model, report, init before)."""
    _, path = resnet50_file
    nl = functools.partial(NonLocalBlock, pairwise="embedded_gaussian")
    model = ResNet3d(depth=50, num_classes=10, stem_kernel=(5, 7, 7), temporal_kernels=I3D_R50,
                     nonlocal_blocks=[[], [1, 3], [], []], nonlocal_layer=nl, **NO_TIME_POOL).eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("head.", "res3.nonlocal"))}
    return model, inflate_from_2d(model, str(path)), before


def test_inflated_i3d_on_a_static_clip_equals_the_2d_network(resnet50_file, inflated_i3d):
    net2d, _ = resnet50_file
    model, _, _ = inflated_i3d
    image = torch.randn(1, 3, 64, 64)
    frames = 2 * HALF_WIDTH + 1  # the middle step sees no temporal zero padding
    clip = image.unsqueeze(2).repeat(1, 1, frames, 1, 1)  # (1, 3, T, 64, 64), every frame the image
    with torch.no_grad():
        expected = layer4(net2d, image)  # (1, 2048, 2, 2)
        features = model.features(clip)  # (1, 2048, T, 2, 2)
    assert features.shape == (1, 2048, frames, 2, 2)
    assert_close_to_scale(features[:, :, HALF_WIDTH], expected)
    # Near the clip's ends the zero padding of 3x1x1 convs changes the result: the check can fail.
    with pytest.raises(AssertionError):
        assert_close_to_scale(features[:, :, 0], expected)


def test_inflated_c2d_r18_from_a_file_matches_at_every_time_step(tmp_path):
    net2d = random_resnet("resnet18")  # basic blocks: 3x3 kernels inflated to 1x3x3
    path = tmp_path / "resnet18.pth"
    torch.save(net2d.state_dict(), path)
    model = ResNet3d(depth=18, **NO_TIME_POOL)
    inflate_from_2d(model, str(path))
    model.eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.features(image.unsqueeze(2).repeat(1, 1, 2, 1, 1))
        expected = layer4(net2d, image)
    for t in range(2):
        assert_close_to_scale(features[:, :, t], expected)


def test_report_lists_every_key(resnet50_file, inflated_i3d):
    _, path = resnet50_file
    model, report, before = inflated_i3d
    state = model.state_dict()
    # Every model key is accounted for exactly once.
    accounted = report.loaded + report.inflated + list(report.skipped) + report.missing
    assert sorted(accounted) == sorted(state)
    assert report.missing and all(k.startswith(("res3.nonlocal1.", "res3.nonlocal3.")) for k in report.missing)
    assert set(report.skipped) == {"head.fc.weight", "head.fc.bias"}
    assert "stem.conv.weight" in report.inflated and "res2.block0.conv1.weight" in report.inflated
    assert "res3.block1.conv1.weight" in report.loaded  # temporal kernel 1: a plain copy
    assert report.unexpected == []
    for key, value in before.items():  # classifier and NL blocks keep their init
        torch.testing.assert_close(state[key], value, msg=key)
    source = torch.load(path, weights_only=True)
    torch.testing.assert_close(state["stem.bn.running_var"], source["bn1.running_var"])
    torch.testing.assert_close(state["res2.block0.conv1.weight"].sum(2), source["layer1.0.conv1.weight"])
    assert "kept at init" in str(report) and "missing" in str(report)


def test_unexpected_and_missing_keys_are_reported_and_logged(caplog):
    net = torchvision.models.resnet18(weights=None)
    source = net.state_dict()
    source["extra.weight"] = torch.zeros(1)
    del source["layer2.0.bn1.running_mean"]
    model = ResNet3d(depth=18, base_width=64)
    with caplog.at_level(logging.WARNING, logger="nlnet.models.inflate"):
        report = inflate_from_2d(model, source)
    assert report.unexpected == ["extra.weight"]
    assert report.missing == ["res3.block0.bn1.running_mean"]
    assert "extra.weight" in caplog.text and "res3.block0.bn1.running_mean" in caplog.text


def test_mismatched_network_is_an_error():
    with torch.device("meta"):  # shapes only
        model, source = ResNet3d(depth=50), torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(ValueError, match=r"cannot inflate layer1\.0\.conv1\.weight .* res2\.block0\.conv1\.weight"):
        inflate_from_2d(model, source)


def test_missing_file_and_offline_torchvision(tmp_path, monkeypatch):
    model = ResNet3d(depth=18, base_width=2)
    with pytest.raises(FileNotFoundError, match="no such file: .*no_such.pth"):
        inflate_from_2d(model, str(tmp_path / "no_such.pth"))

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"could not fetch torchvision's ImageNet resnet18 weights from https://"
                                           r".*resnet18.*URLError.*no network.*local copy"):
        inflate_from_2d(model, "torchvision")


def test_key_mapping():
    assert torchvision_to_resnet3d_key("conv1.weight") == "stem.conv.weight"
    assert torchvision_to_resnet3d_key("layer1.2.bn3.bias") == "res2.block2.bn3.bias"
    assert torchvision_to_resnet3d_key("layer4.0.downsample.0.weight") == "res5.block0.shortcut.conv.weight"
    assert torchvision_to_resnet3d_key("fc.weight") == "head.fc.weight"
    assert torchvision_to_resnet3d_key("something.else") is None


def test_load_finetune_keeps_all_but_a_classifier_of_another_shape(caplog):
    kwargs = dict(depth=18, base_width=4, nonlocal_blocks=[[], [0], [], []],
                  nonlocal_layer=functools.partial(NonLocalBlock))
    source = ResNet3d(num_classes=10, **kwargs)
    for p in source.parameters():
        p.data.normal_()
    target = ResNet3d(num_classes=5, **kwargs)
    fc_init = target.head.fc.weight.clone()
    checkpoint = {"model": {f"module.{k}": v for k, v in source.state_dict().items()}}  # DDP keys, wrapped
    with caplog.at_level(logging.WARNING, logger="nlnet.models.inflate"):
        report = load_finetune(target, checkpoint)
    assert set(report.skipped) == {"head.fc.weight", "head.fc.bias"}
    assert "head.fc.weight" in caplog.text and f"(10, {source.feature_channels})" in caplog.text
    torch.testing.assert_close(target.head.fc.weight, fc_init)
    src = source.state_dict()
    for key, value in target.state_dict().items():
        if not key.startswith("head.fc."):
            torch.testing.assert_close(value, src[key], msg=key)

    same = ResNet3d(num_classes=10, **kwargs)
    assert load_finetune(same, source.state_dict()).skipped == {}
    torch.testing.assert_close(same.head.fc.weight, source.head.fc.weight)


def test_load_finetune_rejects_other_mismatches():
    source = ResNet3d(depth=18, base_width=4).state_dict()
    with pytest.raises(ValueError, match=r"mismatched: \['stem.conv.weight"):
        load_finetune(ResNet3d(depth=18, base_width=8), source)
    with pytest.raises(ValueError, match=r"missing: res3\.nonlocal0"):
        load_finetune(ResNet3d(depth=18, base_width=4, nonlocal_blocks=[[], [0], [], []],
                               nonlocal_layer=functools.partial(NonLocalBlock)), source)
