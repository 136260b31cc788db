"""The official Caffe2 release: round trips through the blob table, the official network's function
(tests/models/_reference.py, written from the official code), reports and refusals."""
from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from _convert_util import calibrate, clip_for, randomize, source_state, write_caffe2
from _reference import Geometry, assert_matches

import nlnet.models.convert as converters
from nlnet.models.convert import convert
from nlnet.models.convert import ConversionError, UnsafeFileError
from nlnet.models.convert.caffe2 import CAFFE2_TABLE, IMAGENET_TABLE

SOURCE = converters.SOURCES["caffe2"]
VIDEO_ARCHS = [name for name, arch in SOURCE.archs.items() if not arch.image_2d]


def official_geometry(arch) -> Geometry:
    """The official network of ``arch`` as lib/models/resnet_video*.py builds it (see _reference.py)."""
    return Geometry(stem_stride_t=arch.stem_stride_t, pool1_kernel_t=arch.pool1_kernel_t,
                    pool1_stride_t=arch.pool1_stride_t, pool1_pad=(0, 0, 0), pool2_t=2, eps=1.0000001e-5,
                    affine=arch.affine, nl_bn=not arch.affine, nl_groups=(1, 4, 1, 1) if arch.affine else (1, 1, 1, 1),
                    head_window=(arch.head_pool_t, arch.head_pool_hw, arch.head_pool_hw))


def make_file(tmp_path, name: str, *, width: int = 4, classes: int = 7, seed: int = 0, x: torch.Tensor | None = None,
              **write):
    """A random official model of arch ``name`` as a Caffe2 .pkl named after the arch; (path, model, blobs).
    With a clip ``x``, the classifier is calibrated on it (moderate logits)."""
    arch = SOURCE.arch(name).replace(base_width=width, num_classes=classes, **({"head_pool_hw": 2} if x is not None else {}))
    torch.manual_seed(seed)
    model = randomize(SOURCE.build(arch), seed=seed, affine=arch.affine, x=x)
    if x is not None:
        calibrate(model, x)
    keep = (lambda k: "running_" not in k) if arch.affine else (lambda k: True)
    blobs = source_state(model.state_dict(), CAFFE2_TABLE, keep)
    path = tmp_path / f"{name}.pkl"
    write_caffe2(path, blobs, **write)
    return path, model, blobs


@pytest.mark.slow
@pytest.mark.parametrize("name", VIDEO_ARCHS)
def test_round_trip_every_arch(tmp_path, name):
    path, model, blobs = make_file(tmp_path, name)
    conversion = convert(path, source="caffe2")  # detected from the weights and the clip in the file name
    assert conversion.arch.name == name
    assert (conversion.arch.base_width, conversion.arch.num_classes) == (4, 7)
    got, want = conversion.state_dict, model.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    report = conversion.report
    assert sorted(report.used) == sorted(blobs)
    assert {k for k, r in report.ignored.items() if "momentum" in r} == {f"{k}_momentum" for k in blobs}
    assert {"lr", "model_iter"} <= report.ignored.keys()
    assert not report.unused and not report.missing
    assert all(k.endswith(("num_batches_tracked", "running_mean", "running_var")) for k in report.filled)


# The head's 7x7 window is shrunk to 2x2 (Arch.head_pool_hw) so that small clips have several
# window positions; every other rule is the published one.
@pytest.mark.parametrize("name, size", [
    ("i3d_nl_r50_8x8", 96),            # fully convolutional test: res5 3 x 3, 2 x 2 positions of the head window
    ("c2d_nl_r50_8x8", 71),            # odd sizes: pool1 without padding (36 -> 17), NL pooling 9 -> 4 (floor)
    ("i3d_nl_r50_32x2", 71),           # conv1 temporal stride 2, pool1 2x3x3
    ("i3d_nl_r50_32x4_affine", 71),    # affine BN, NL without BN, res3 NL in 4 groups of 4 frames
    ("i3d_nl_r101_8x8", 97),           # R101 placement res4 [6, 13, 20]
])
@pytest.mark.slow
def test_computes_the_official_network(tmp_path, name, size):
    x = clip_for(SOURCE.arch(name), size, batch=1)
    path, _, blobs = make_file(tmp_path, name, x=x)
    arch = SOURCE.arch(name).replace(head_pool_hw=2)
    conversion = convert(path, source="caffe2", arch=arch)
    assert_matches(conversion.model, x, blobs, official_geometry(conversion.arch), depth=conversion.arch.depth)


def test_grouped_blocks_feed_the_attention_figures(tmp_path):
    """res3's NL blocks of the affine models attend within 4 groups of frames; the viz capture (through
    NonLocalBlock.attention) still sees the whole clip's grid."""
    from nlnet.viz.capture import capture_attention
    path, _, _ = make_file(tmp_path, "i3d_nl_r50_32x4_affine")
    model = convert(path, source="caffe2", arch=SOURCE.arch("i3d_nl_r50_32x4_affine").replace(head_pool_hw=2)).model
    assert model.get_submodule("res3.nonlocal1").temporal_groups == 4
    assert model.get_submodule("res4.nonlocal1").temporal_groups == 1
    capture = capture_attention(model, torch.randn(3, 32, 64, 64), "res3.nonlocal1")
    assert capture.attention.query_shape == (16, 8, 8) and capture.attention.key_shape == (16, 4, 4)
    weights = capture.attention.weights.view(16, 64, 16, 16)  # (t, hw, t', h'w')
    assert weights[:4, :, 4:].abs().max() == 0 and weights[:4, :, :4].sum() > 0  # group 0 sees frames 0-3 only


@pytest.mark.slow
def test_128_frame_affine_model(tmp_path):
    name = "i3d_nl_r50_128x1_affine"
    x = clip_for(SOURCE.arch(name), 65, batch=1)  # res5 2 x 2
    path, _, blobs = make_file(tmp_path, name, width=2, x=x)
    conversion = convert(path, source="caffe2", arch=SOURCE.arch(name).replace(head_pool_hw=2))
    assert_matches(conversion.model, x, blobs, official_geometry(conversion.arch))


@pytest.mark.slow
def test_classifier_stored_as_a_test_net_conv(tmp_path):
    """The test net's ``pred`` is a 1x1x1 conv: (K, C, 1, 1, 1) fits the fc (K, C)."""
    path, model, blobs = make_file(tmp_path, "c2d_r50_8x8")
    blobs["pred_w"] = blobs["pred_w"][:, :, None, None, None]
    write_caffe2(path, blobs)
    conversion = convert(path, source="caffe2")
    assert torch.equal(conversion.state_dict["head.fc.weight"], model.state_dict()["head.fc.weight"])
    assert any("pred_w reshaped (7, 128, 1, 1, 1) -> (7, 128)" in note for note in conversion.report.notes)


def test_wrong_arch_names_the_first_mismatching_key(tmp_path):
    path, _, _ = make_file(tmp_path, "i3d_r50_8x8")
    with pytest.raises(ConversionError) as error:
        convert(path, source="caffe2", arch="c2d_r50_8x8")
    message = str(error.value)
    assert "\n" not in message
    assert "does not fit --arch c2d_r50_8x8: conv1_w (4, 3, 5, 7, 7) -> stem.conv.weight (4, 3, 1, 7, 7)" in message


def test_unused_and_missing_weights(tmp_path):
    nl_path, _, _ = make_file(tmp_path, "i3d_nl_r50_8x8")
    with pytest.raises(ConversionError, match=r"60 tensors of the file have no place in the model \(nonlocal_conv3_1"):
        convert(nl_path, source="caffe2", arch="i3d_r50_8x8")
    loose = convert(nl_path, source="caffe2", arch="i3d_r50_8x8", strict=False)
    assert len(loose.report.unused) == 60 and all(k.startswith("nonlocal_conv") for k in loose.report.unused)
    assert "UNUSED 60" in str(loose.report)

    plain_path, _, _ = make_file(tmp_path, "i3d_r50_8x8")
    with pytest.raises(ConversionError, match="model weights are not in the file"):
        convert(plain_path, source="caffe2", arch="i3d_nl_r50_8x8")
    loose = convert(plain_path, source="caffe2", arch="i3d_nl_r50_8x8", strict=False)
    assert loose.report.missing and all(".nonlocal" in k for k in loose.report.missing)
    assert "MISSING" in str(loose.report)


@pytest.mark.slow
def test_ambiguous_clip_is_refused_in_one_line(tmp_path):
    path, _, blobs = make_file(tmp_path, "i3d_nl_r50_8x8")
    renamed = tmp_path / "model.pkl"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ConversionError) as error:
        convert(renamed, source="caffe2")
    assert "i3d_nl_r50_8x8, i3d_nl_r50_32x2" in str(error.value) and "--arch" in str(error.value)
    assert "\n" not in str(error.value)


def test_unwrapped_blob_dict_and_400_kinetics_classes(tmp_path):
    """Files written by process_data/convert_models/ hold the blob dict itself."""
    path, model, _ = make_file(tmp_path, "c2d_nl_r50_8x8", classes=400, wrapped=False, momentum=False)
    conversion = convert(path, source="caffe2")
    assert conversion.class_names[:3] == ["abseiling", "air drumming", "answering questions"]
    assert len(conversion.class_names) == 400
    assert torch.equal(conversion.state_dict["head.fc.bias"], model.state_dict()["head.fc.bias"])


def test_damaged_and_tampered_files(tmp_path):
    path, _, _ = make_file(tmp_path, "c2d_r50_8x8")
    cut = tmp_path / "cut_8x8.pkl"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UnsafeFileError, match="cut_8x8.pkl: truncated or not a pickle"):
        convert(cut, source="caffe2")
    marker = tmp_path / "MARKER"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil_8x8.pkl"
    evil.write_bytes(pickle.dumps({"blobs": {"conv1_w": Payload()}}, protocol=2))
    with pytest.raises(UnsafeFileError, match="asks for the Python global"):
        convert(evil, source="caffe2")
    assert not marker.exists()


@pytest.mark.slow
def test_imagenet_resnet50_becomes_a_torchvision_state_dict(tmp_path):
    """Without BN statistics in the file (as a "clean" ImageNet file may be): filled with 0 / 1."""
    torch.manual_seed(0)
    net = randomize(torchvision.models.resnet50(weights=None))
    blobs = source_state(net.state_dict(), IMAGENET_TABLE, keep=lambda k: "running_" not in k)
    path = tmp_path / "r50_pretrain_c2_model_iter450450_clean.pkl"
    write_caffe2(path, blobs, momentum=False)  # "clean": the released file holds no momentum blobs
    conversion = convert(path, source="caffe2")
    assert conversion.arch.name == "resnet50_2d"
    out = conversion.save(tmp_path / "resnet50_imagenet.pth")
    state = torch.load(out, weights_only=True)
    for key, value in net.state_dict().items():
        if "running_" not in key:
            assert torch.equal(state[key], value), key
    assert torch.equal(state["bn1.running_var"], torch.ones(64)) and torch.equal(state["bn1.running_mean"], torch.zeros(64))
    assert len([k for k in conversion.report.filled if "running_" in k]) == 2 * 53
    # usable as model.pretrained: inflates into an nlnet ResNet3d
    from nlnet.models import ResNet3d, inflate_from_2d
    report = inflate_from_2d(ResNet3d(depth=50, num_classes=10), str(out))
    assert len(report.loaded) + len(report.inflated) > 300 and not report.unexpected
