"""mmaction2: I3D R50 with mmcv's NonLocal3d (embedded Gaussian, dot product, Gaussian), ``.pth`` files."""
from __future__ import annotations

import pytest
import torch
from _convert_util import calibrate, clip_for, fit_statistics, randomize, source_state
from _reference import Geometry, as_caffe2, assert_matches

import nlnet.models.convert as converters
from nlnet.models.convert import convert
from nlnet.models.convert import ConversionError
from nlnet.models.convert.caffe2 import CAFFE2_TABLE
from nlnet.models.convert.mmaction2 import MMACTION2_TABLE

SOURCE = converters.SOURCES["mmaction2"]
CONFIG_TEXT = """model = dict(
    type='Recognizer3D',
    backbone=dict(type='ResNet3d', depth=50, conv1_kernel=(5, 7, 7), conv1_stride_t=2, pool1_stride_t=2,
        non_local=((0, 0, 0), (0, 1, 0, 1), (0, 1, 0, 1, 0, 1), (0, 0, 0)),
        non_local_cfg=dict(sub_sample=True, use_scale={scale}, norm_cfg=dict(type='BN3d', requires_grad=True),
            mode='{mode}')),
    cls_head=dict(type='I3DHead', num_classes=400, in_channels=2048, spatial_type='avg', dropout_ratio=0.5))
"""


def mmaction2_geometry(arch) -> Geometry:
    """configs/_base_/models/i3d_r50.py + mmcv NonLocal3d (see _reference.py)."""
    return Geometry(stem_stride_t=2, pool1_kernel_t=1, pool1_stride_t=2, pool1_pad=(0, 1, 1), pool2_t=2, eps=1e-5,
                    nl_pool_before=False, nl_pairwise=arch.nonlocal_options["pairwise"],
                    nl_scale=arch.nonlocal_options["scale"], head_window=None)


def make_pth(tmp_path, name: str, *, mode: str | None, scale: bool = False, file: str = "epoch_100.pth",
             extra: dict | None = None):
    arch = SOURCE.arch(name).replace(base_width=4, num_classes=6)
    if scale:
        arch = arch.replace(nonlocal_options={**arch.nonlocal_options, "scale": True})
    model = randomize(SOURCE.build(arch))
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith(".w_z.bias"):
                value.zero_()  # mmcv's conv_out has no bias
    x = clip_for(arch, 65, batch=1)
    calibrate(fit_statistics(model, x), x)
    state = source_state(model.state_dict(), MMACTION2_TABLE, keep=lambda k: not k.endswith(".w_z.bias"))
    meta = {"cfg": CONFIG_TEXT.format(mode=mode, scale=scale)} if mode else {}
    path = tmp_path / file
    torch.save({"meta": meta, "state_dict": state, **(extra or {})}, path)
    return path, model, state


@pytest.mark.parametrize("name, mode", [
    ("i3d_nl_embedded_gaussian_r50_32x2", "embedded_gaussian"),
    ("i3d_nl_dot_product_r50_32x2", "dot_product"),
    ("i3d_nl_gaussian_r50_32x2", "gaussian"),
    ("i3d_r50_32x2", None),
])
@pytest.mark.slow
def test_computes_mmaction2_network(tmp_path, name, mode):
    path, model, state = make_pth(tmp_path, name, mode=mode, extra={"optimizer": {"state": {}}})
    conversion = convert(path, source="mmaction2")  # mode from the stored config, placement from the keys
    assert conversion.arch.name == name
    for key, value in model.state_dict().items():
        assert torch.equal(conversion.state_dict[key], value), key
    assert sorted(conversion.report.used) == sorted(state)
    assert conversion.report.ignored == {"optimizer": "training state (optimizer, message hub), not a weight"}
    assert all(k.endswith((".w_z.bias", "num_batches_tracked")) for k in conversion.report.filled)
    assert conversion.data_config["val"]["mean"] == [0.485, 0.456, 0.406]
    for size in (64, 65):  # the head pools globally: any size
        x = clip_for(conversion.arch, size, batch=1, dtype=torch.float64)
        assert_matches(conversion.model, x, as_caffe2(state, MMACTION2_TABLE, CAFFE2_TABLE),
                       mmaction2_geometry(conversion.arch))


@pytest.mark.slow
def test_use_scale_true_scales_the_embedded_gaussian(tmp_path):
    path, _, state = make_pth(tmp_path, "i3d_nl_embedded_gaussian_r50_32x2", mode="embedded_gaussian", scale=True)
    conversion = convert(path, source="mmaction2")
    assert conversion.arch.nonlocal_options["scale"] is True
    x = clip_for(conversion.arch, 65, batch=1, dtype=torch.float64)
    assert_matches(conversion.model, x, as_caffe2(state, MMACTION2_TABLE, CAFFE2_TABLE),
                   mmaction2_geometry(conversion.arch))


def test_embedded_gaussian_and_dot_product_need_the_config_or_the_file_name(tmp_path):
    path, _, _ = make_pth(tmp_path, "i3d_nl_dot_product_r50_32x2", mode=None)
    with pytest.raises(ConversionError) as error:
        convert(path, source="mmaction2")
    assert "i3d_nl_embedded_gaussian_r50_32x2, i3d_nl_dot_product_r50_32x2" in str(error.value)
    named = tmp_path / "i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb_20220812-8e1f2148.pth"
    named.write_bytes(path.read_bytes())
    assert convert(named, source="mmaction2").arch.name == "i3d_nl_dot_product_r50_32x2"
    assert convert(path, source="mmaction2", arch="i3d_nl_dot_product_r50_32x2").report.used
