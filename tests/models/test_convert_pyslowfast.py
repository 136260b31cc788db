"""PySlowFast: ``.pyth`` checkpoints with their stored cfg, and the Caffe2-format model-zoo ``.pkl``."""
from __future__ import annotations

import pytest
import torch
import yaml
from _convert_util import calibrate, clip_for, randomize, source_state, write_caffe2
from _reference import Geometry, as_caffe2, assert_matches, caffe2_forward

import nlnet.models.convert as converters
from nlnet.models.convert import convert
from nlnet.models.convert import ConversionError
from nlnet.models.convert.caffe2 import CAFFE2_TABLE
from nlnet.models.convert.pyslowfast import PYSLOWFAST_TABLE, arch_from_cfg

SOURCE = converters.SOURCES["pyslowfast"]


def slowfast_cfg(**changes) -> dict:
    """A PySlowFast config as ``cfg.dump()`` stores it (the keys the converter reads; values of
    configs/Kinetics/I3D_NLN_8x8_R50.yaml over slowfast/config/defaults.py, except a 64 training crop: a
    2x2 head window, so that small test clips have several positions), with ``changes`` ("A.B": v)."""
    cfg = {
        "MODEL": {"ARCH": "i3d", "MODEL_NAME": "ResNet", "NUM_CLASSES": 400, "DROPOUT_RATE": 0.5, "HEAD_ACT": "softmax"},
        "RESNET": {"DEPTH": 50, "WIDTH_PER_GROUP": 64, "NUM_GROUPS": 1, "TRANS_FUNC": "bottleneck_transform",
                   "STRIDE_1X1": False, "NUM_BLOCK_TEMP_KERNEL": [[3], [4], [6], [3]],
                   "SPATIAL_STRIDES": [[1], [2], [2], [2]], "SPATIAL_DILATIONS": [[1], [1], [1], [1]]},
        "NONLOCAL": {"LOCATION": [[[]], [[1, 3]], [[1, 3, 5]], [[]]], "GROUP": [[1], [1], [1], [1]],
                     "INSTANTIATION": "softmax", "POOL": [[[1, 2, 2], [1, 2, 2]]] * 4},
        "DATA": {"NUM_FRAMES": 8, "SAMPLING_RATE": 8, "TRAIN_JITTER_SCALES": [256, 320], "TRAIN_CROP_SIZE": 64,
                 "TEST_CROP_SIZE": 256, "MEAN": [0.45, 0.45, 0.45], "STD": [0.225, 0.225, 0.225],
                 "REVERSE_INPUT_CHANNEL": False},
        "TEST": {"NUM_ENSEMBLE_VIEWS": 10, "NUM_SPATIAL_CROPS": 3},
        "BN": {"NORM_TYPE": "batchnorm"}, "DETECTION": {"ENABLE": False}, "MULTIGRID": {"SHORT_CYCLE": False},
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return cfg


def geometry_of(arch, **changes) -> Geometry:
    """PySlowFast's ResNet (video_model_builder.py): pool1 padded (0, 1, 1), BN eps 1e-5."""
    values = dict(stem_stride_t=1, pool1_kernel_t=1, pool1_stride_t=1, pool1_pad=(0, 1, 1), pool2_t=arch.pool2_t,
                  eps=1e-5, nl_pairwise=arch.nonlocal_options["pairwise"], nl_scale=arch.nonlocal_options["scale"],
                  nl_groups=arch.nonlocal_groups, head_window=(arch.head_pool_t, arch.head_pool_hw, arch.head_pool_hw),
                  head_softmax=arch.head_test == "softmax", bgr=arch.bgr)
    return Geometry(**{**values, **changes})


def make_pyth(tmp_path, cfg: dict, *, width: int = 4, classes: int = 5, name: str = "checkpoint_epoch_00196.pyth",
              size: int = 65):
    arch = arch_from_cfg(cfg).replace(base_width=width, num_classes=classes)
    torch.manual_seed(0)
    x = clip_for(arch, size, batch=1)
    model = calibrate(randomize(SOURCE.build(arch), x=x), x)
    state = source_state(model.state_dict(), PYSLOWFAST_TABLE)
    path = tmp_path / name
    torch.save({"epoch": 196, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": yaml.safe_dump(cfg)}, path)
    return path, model, state


@pytest.mark.parametrize("changes", [
    {},                                                                   # I3D NLN 8x8, softmax
    {"MODEL.ARCH": "c2d", "NONLOCAL.INSTANTIATION": "dot_product"},      # C2D NLN, dot product
    {"DATA.NUM_FRAMES": 32, "DATA.SAMPLING_RATE": 2, "NONLOCAL.GROUP": [[1], [2], [1], [1]]},  # 32x2, groups
    {"MODEL.ARCH": "slow", "NONLOCAL.LOCATION": [[[]], [[]], [[]], [[]]]},  # Slow 8x8, no temporal pool
])
@pytest.mark.slow
def test_pyth_with_cfg_computes_pyslowfast_network(tmp_path, changes):
    path, model, state = make_pyth(tmp_path, slowfast_cfg(**changes))
    conversion = convert(path, source="pyslowfast")
    assert "from the stored cfg" in conversion.arch.name
    for key, value in model.state_dict().items():
        assert torch.equal(conversion.state_dict[key], value), key
    assert sorted(conversion.report.used) == sorted(state)
    assert set(conversion.report.ignored) == {"epoch", "optimizer_state"}
    x = clip_for(conversion.arch, 65, batch=1, dtype=torch.float64)  # res3 9 x 9: NL pooling floors to 4
    assert_matches(conversion.model, x, as_caffe2(state, PYSLOWFAST_TABLE, CAFFE2_TABLE), geometry_of(conversion.arch))
    data = conversion.data_config
    clip = conversion.arch.clip
    assert (data["num_frames"], data["sampling_rate"]) == (clip.num_frames, clip.sampling_rate)
    assert (data["val"]["test_scale"], data["val"]["test_crop_size"], data["val"]["num_clips"],
            data["val"]["num_crops"]) == (256, 256, 10, 3)


def test_bgr_input_is_folded_into_conv1(tmp_path):
    """DATA.REVERSE_INPUT_CHANNEL: the source sees B, G, R with its own per-channel mean/std; nlnet's model
    on nlnet's RGB input (mean/std reversed) must equal the source model on the source's input."""
    cfg = slowfast_cfg(**{"DATA.REVERSE_INPUT_CHANNEL": True, "DATA.MEAN": [0.40, 0.45, 0.50],
                          "DATA.STD": [0.20, 0.225, 0.25]})
    path, _, state = make_pyth(tmp_path, cfg, size=64)
    conversion = convert(path, source="pyslowfast")
    assert conversion.data_config["val"]["mean"] == [0.50, 0.45, 0.40]
    assert conversion.data_config["val"]["std"] == [0.25, 0.225, 0.20]
    pixels = torch.rand(1, 3, 8, 64, 64, dtype=torch.float64)  # RGB in [0, 1]
    mean = torch.tensor(conversion.data_config["val"]["mean"], dtype=torch.float64).view(1, 3, 1, 1, 1)
    std = torch.tensor(conversion.data_config["val"]["std"], dtype=torch.float64).view(1, 3, 1, 1, 1)
    source_input = (pixels.flip(1) - torch.tensor([0.40, 0.45, 0.50], dtype=torch.float64).view(1, 3, 1, 1, 1)) \
        / torch.tensor([0.20, 0.225, 0.25], dtype=torch.float64).view(1, 3, 1, 1, 1)
    blobs = as_caffe2(state, PYSLOWFAST_TABLE, CAFFE2_TABLE)
    _, reference = caffe2_forward(blobs, source_input, geometry_of(conversion.arch, bgr=False))
    with torch.no_grad():
        probabilities = conversion.model.double().eval()((pixels - mean) / std).double().softmax(dim=1)
    torch.testing.assert_close(probabilities, reference, rtol=0, atol=1e-6)
    assert reference.max() < 0.999
    assert any("BGR" in note for note in conversion.report.notes)


@pytest.mark.slow
def test_model_zoo_caffe2_pkl_uses_pyslowfast_geometry(tmp_path):
    arch = SOURCE.arch("i3d_nl_r50_8x8").replace(base_width=4, num_classes=5, head_pool_hw=2)
    x = clip_for(arch, 96, batch=1, dtype=torch.float64)
    model = calibrate(randomize(SOURCE.build(arch), x=x.float()), x.float())
    blobs = source_state(model.state_dict(), CAFFE2_TABLE)
    path = tmp_path / "I3D_NLN_8x8_R50.pkl"
    write_caffe2(path, blobs)
    assert convert(path, source="pyslowfast").arch.name == "i3d_nl_r50_8x8"  # detected: the zoo file name
    conversion = convert(path, source="pyslowfast", arch=arch)  # with the small head window
    assert_matches(conversion.model, x, blobs, geometry_of(conversion.arch))


@pytest.mark.slow
def test_pyth_without_cfg_is_detected_from_keys_and_file_name(tmp_path):
    path, model, _ = make_pyth(tmp_path, slowfast_cfg(), name="I3D_NLN_8x8_R50.pyth")
    state = torch.load(path, weights_only=True)
    torch.save({"model_state": state["model_state"]}, path)  # no cfg: keys say I3D NLN R50, the name says 8x8
    conversion = convert(path, source="pyslowfast")
    assert conversion.arch.name == "i3d_nl_r50_8x8"
    for key, value in model.state_dict().items():
        assert torch.equal(conversion.state_dict[key], value), key


@pytest.mark.parametrize("changes, message", [
    ({"MODEL.MODEL_NAME": "SlowFast", "MODEL.ARCH": "slowfast"}, "single-pathway ResNet"),
    ({"RESNET.NUM_GROUPS": 32}, "RESNET.NUM_GROUPS=32"),
    ({"NONLOCAL.POOL": [[[1, 2, 2]], [[1, 2, 2]], [[2, 2, 2]], [[1, 2, 2]]]}, "NONLOCAL.POOL"),
])
def test_unsupported_cfg_is_one_line(tmp_path, changes, message):
    cfg = slowfast_cfg(**changes)
    path = tmp_path / "x.pyth"
    torch.save({"model_state": {"w": torch.ones(1)}, "cfg": yaml.safe_dump(cfg)}, path)
    with pytest.raises(ConversionError, match=message) as error:
        convert(path, source="pyslowfast")
    assert "\n" not in str(error.value)
