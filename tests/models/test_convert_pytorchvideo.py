"""pytorchvideo: its own hub builders (installed here) with random weights, converted, same logits
(float64 to 1e-10, float32 to 1e-5) at 224 and at an odd size."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from _convert_util import randomize
from pytorchvideo.models.hub.resnet import c2d_r50, i3d_r50, slow_r50

from nlnet.models.convert import convert

BUILDERS = {"c2d_r50_8x8": c2d_r50, "i3d_r50_8x8": i3d_r50, "slow_r50_8x8": slow_r50}


def pytorchvideo_model(name: str, *, width: int) -> nn.Module:
    """pytorchvideo's hub model ``name`` (random weights, random BN statistics); ``stem_dim_out`` sets
    its base width (64 is the published one; the tests use a narrower one to stay fast)."""
    torch.manual_seed(0)
    return randomize(BUILDERS[name](pretrained=False, stem_dim_out=width))


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def converted(request, tmp_path_factory):
    name = request.param
    model = pytorchvideo_model(name, width=4)
    path = tmp_path_factory.mktemp("ptv") / f"{name.upper()}.pyth"  # e.g. SLOW_R50_8X8.pyth: the clip names the arch
    torch.save({"model_state": model.state_dict()}, path)
    return name, model, convert(path, source="pytorchvideo")


@pytest.mark.slow
@pytest.mark.parametrize("size", [224, 239])  # 239: res5 is 8 x 8, the 7 x 7 head window has 2 x 2 positions
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_same_logits(converted, size, dtype, tol):
    name, model, conversion = converted
    assert conversion.arch.name == name
    assert not conversion.report.unused and not conversion.report.missing
    x = torch.randn(1, 3, 8, size, size, generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.no_grad():
        want = model.to(dtype).eval()(x)
        got = conversion.model.to(dtype).eval()(x)
    scale = want.abs().max()
    assert scale > 1
    torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=tol)


@pytest.mark.slow
def test_full_width_i3d_r50(tmp_path):
    """The published shape (base width 64, 400 classes), float32, 224: converted logits match."""
    model = pytorchvideo_model("i3d_r50_8x8", width=64)
    path = tmp_path / "I3D_8x8_R50.pyth"
    torch.save({"model_state": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)  # PySlowFast zoo
    conversion = convert(path, source="pytorchvideo")
    assert (conversion.arch.name, conversion.arch.base_width, conversion.arch.num_classes) == ("i3d_r50_8x8", 64, 400)
    x = torch.randn(1, 3, 8, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = model(x), conversion.model.eval()(x)
    scale = want.abs().max()
    torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=1e-5)
