"""The official Caffe2 release (facebookresearch/video-nonlocal-net): ``.pkl`` files of numpy blobs.

Conventions (each read from the official code; ``docs/checkpoints.md`` has the full table):

* File: ``pickle.dump(dict(blobs=...))`` of numpy arrays, Python 2 (lib/utils/checkpoints.py
  ``save_model_params``); also ``model_iter``, ``lr`` and a ``<param>_momentum`` blob per trainable
  parameter, which are not weights. Converted files (process_data/convert_models/) hold the dict itself.
* Blob names (lib/models/resnet_video.py, resnet_helper.py, nonlocal_helper.py,
  model_builder_video.py): ``conv1_w``, ``res_conv1_bn_{s,b,rm,riv}``, ``res{2..5}_{i}_branch2{a,b,c}_w``
  and ``_bn_*``, ``res{n}_0_branch1_w`` (projection shortcut), ``nonlocal_conv{3,4}_{i}_{theta,phi,g,out}_{w,b}``
  and ``_bn_*`` (the NL block after residual block i), ``pred_{w,b}``. ``_s``/``_b`` are the BN scale
  and shift, ``_rm`` the running mean and ``_riv`` the running variance (SpatialBN's running_var
  input; process_data/convert_models/convert_to_finetune.py divides by sqrt(riv + eps)).
* Input: RGB (``MODEL.USE_BGR False``; the decoder outputs AV_PIX_FMT_RGB24), 0-255 values normalised
  with ``MODEL.MEAN 114.75`` / ``MODEL.STD 57.375`` for every channel (lib/core/config.py) = 0.45 / 0.225
  on [0, 1].
* BN epsilon ``1.0000001e-5`` (MODEL.BN_EPSILON, NONLOCAL.BN_EPSILON).
* pool1: max-pool 1x3x3 stride (1,2,2) (8-frame models, resnet_video.py) or 2x3x3 stride 2 (32- and
  128-frame models, resnet_video_org.py) with NO padding, floor rounding (Caffe2's pooling): res2 is
  55x55 at 224 input, not 56x56.
* Non-local: embedded Gaussian, theta^T phi * C'^-1/2, the input max-pooled 1x2x2 (floor, no padding)
  before phi and g, biases on theta/phi/g/out, BN after out with gamma initialised 0. Placement
  (NONLOCAL.LAYER_MOD 2): after blocks 1, 3 of res3 and 1, 3, 5 of res4 (R101: res4 blocks 6, 13, 20).
* Frozen-BN ("affine") models (``MODEL.USE_AFFINE``: the 32x4 and 128x1 rows): every BN is an AffineNd
  (``_s``, ``_b`` only); their NL blocks have no BN (``NONLOCAL.USE_BN False``) and res3's NL blocks
  run on 4 groups of 4 consecutive frames (``res_stage_nonlocal_group``, group_size=4).
* Test (the official code's test_net_video.py, ``TEST.TEST_FULLY_CONV``): short side 256, 3 crops of 256 along the
  long side, 10 clips; the head average-pools T'x7x7 windows with stride 1, applies the fc as a 1x1x1
  conv and softmax at every position, and averages the probabilities (resnet_video.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from nlnet.models.convert.arch import C2D, I3D, NL_FIVE, NO_NL, OFFICIAL_NL, Arch, Clip
from nlnet.models.convert.core import Loaded, Source
from nlnet.models.convert.keys import ABC, BN_CAFFE2, KeyTable
from nlnet.models.convert.safe_load import UnsafeFileError, load_numpy_pickle

PLACEMENT = "caffe2"  # the release's test clips: frame floor(N / n * k), wrapping past the end (nlnet.data.placement)

__all__ = ["Caffe2", "CAFFE2_TABLE", "IMAGENET_TABLE", "PUBLISHED", "load_blobs", "momentum_reason"]

CAFFE2_TABLE = KeyTable.parse("""
    stem.conv.weight                        conv1_w
    stem.bn.{p}                             res_conv1_bn_{p}
    res{s}.block{i}.conv{c}.weight          res{s}_{i}_branch2{c}_w
    res{s}.block{i}.bn{c}.{p}               res{s}_{i}_branch2{c}_bn_{p}
    res{s}.block{i}.shortcut.conv.weight    res{s}_{i}_branch1_w
    res{s}.block{i}.shortcut.bn.{p}         res{s}_{i}_branch1_bn_{p}
    res{s}.nonlocal{i}.{conv}.{w}           nonlocal_conv{s}_{i}_{conv}_{w}
    res{s}.nonlocal{i}.norm.{p}             nonlocal_conv{s}_{i}_bn_{p}
    head.fc.{w}                             pred_{w}
""", c=ABC, p=BN_CAFFE2, conv={"theta": "theta", "phi": "phi", "g": "g", "w_z": "out"}, w={"weight": "w", "bias": "b"})

# The ImageNet-pretrained 2D ResNets (pretrained_model.tar.gz) as torchvision state dicts:
# torchvision's layer{n} is the official res{n+1}.
IMAGENET_TABLE = KeyTable.parse("""
    conv1.weight                            conv1_w
    bn1.{p}                                 res_conv1_bn_{p}
    layer{s}.{i}.conv{c}.weight             res{s}_{i}_branch2{c}_w
    layer{s}.{i}.bn{c}.{p}                  res{s}_{i}_branch2{c}_bn_{p}
    layer{s}.{i}.downsample.0.weight        res{s}_{i}_branch1_w
    layer{s}.{i}.downsample.1.{p}           res{s}_{i}_branch1_bn_{p}
    fc.{w}                                  pred_{w}
""", s={"1": "2", "2": "3", "3": "4", "4": "5"}, c=ABC, p=BN_CAFFE2, w={"weight": "w", "bias": "b"})

_EPS = 1.0000001e-5  # MODEL.BN_EPSILON, NONLOCAL.BN_EPSILON (lib/core/config.py)
_CLIP_8X8 = dict(stem_stride_t=1, pool1_kernel_t=1, pool1_stride_t=1)  # resnet_video.py
_CLIP_ORG = dict(stem_stride_t=2, pool1_kernel_t=2, pool1_stride_t=2)  # resnet_video_org.py (32x2, 128x1)
_R101_NL = ((), (1, 3), (6, 13, 20), ())  # LAYER_MOD 2 in res3, 2 * 4 - 1 = 7 in res4 (resnet_video.py)
_AFFINE_NL = {**OFFICIAL_NL, "bn_layer": False}  # NONLOCAL.USE_BN False in the affine configs


_C2D, _I3D = (C2D, 1), (I3D, 5)  # (temporal kernels of the blocks, of conv1): VIDEO_ARC_CHOICE 1 / 2 (obtain_arc)


def _official(name: str, clip: Clip, geometry: dict, *, family, depth: int = 50, nl=NO_NL,
              head_pool_t: int, affine: bool = False, published=()) -> Arch:
    temporal, stem_t = family
    return Arch(name=name, clip=clip, depth=depth, temporal=temporal, stem_kernel_t=stem_t,
                pool1_padding=(0, 0, 0), nonlocal_blocks=nl, head_pool_t=head_pool_t, head_test="softmax",
                nonlocal_options=_AFFINE_NL if affine else OFFICIAL_NL,
                nonlocal_groups=(1, 4, 1, 1) if affine else (1, 1, 1, 1),
                bn_eps=0.0 if affine else _EPS, nonlocal_bn_eps=_EPS, affine=affine, published=published,
                **geometry)


def _archs() -> dict[str, Arch]:
    clip8, clip32, clip32x4, clip128 = (Clip(clip_placement=PLACEMENT, num_frames=t, sampling_rate=tau)
                                        for t, tau in ((8, 8), (32, 2), (32, 4), (128, 1)))
    out: list[Arch] = []
    for prefix, family in (("c2d", _C2D), ("i3d", _I3D)):
        for depth in (50, 101):
            for nl_name, nl in (("", NO_NL), ("_nl", NL_FIVE if depth == 50 else _R101_NL)):
                for clip, geometry in ((clip8, _CLIP_8X8), (clip32, _CLIP_ORG)):
                    name = f"{prefix}{nl_name}_r{depth}_{clip.num_frames}x{clip.sampling_rate}"
                    out.append(_official(name, clip, geometry, family=family, depth=depth, nl=nl, head_pool_t=4,
                                         published=PUBLISHED.get(name, ())))
    for nl_name, nl in (("", NO_NL), ("_nl", NL_FIVE)):  # frozen BN, res5 T = 16 (pool5 [16, 7, 7])
        for clip, geometry in ((clip32x4, _CLIP_8X8), (clip128, _CLIP_ORG)):
            name = f"i3d{nl_name}_r50_{clip.num_frames}x{clip.sampling_rate}_affine"
            out.append(_official(name, clip, geometry, family=_I3D, nl=nl, head_pool_t=16, affine=True,
                                 published=PUBLISHED.get(name, ())))
    for depth in (50, 101):
        out.append(Arch(name=f"resnet{depth}_2d", clip=Clip(num_frames=1, sampling_rate=1), depth=depth,
                        image_2d=True, num_classes=1000, hint=f"r{depth}_pretrain",
                        published=((f"r{depth}_pretrain_c2_model_iter450450_clean.pkl", None, None),)))
    return {a.name: a for a in out}


# README.md "Main Results" tables: file name (https://dl.fbaipublicfiles.com/video-nonlocal/<file>), top-1, top-5.
PUBLISHED = {
    "c2d_r50_32x2": (("c2d_baseline_32x2_IN_pretrain_400k.pkl", "72.0", "90.0"),),
    "c2d_nl_r50_32x2": (("c2d_nonlocal_32x2_IN_pretrain_400k.pkl", "73.9", "91.0"),),
    "i3d_r50_32x2": (("i3d_baseline_32x2_IN_pretrain_400k.pkl", "73.6", "90.8"),),
    "i3d_nl_r50_32x2": (("i3d_nonlocal_32x2_IN_pretrain_400k.pkl", "74.9", "91.6"),),
    "i3d_r50_128x1_affine": (("i3d_baseline_128x1_I3D_pretrain_400k.pkl", "75.2", "92.0"),),
    "i3d_nl_r50_128x1_affine": (("i3d_nonlocal_128x1_I3D_pretrain_400k.pkl", "76.5", "92.7"),),
    "c2d_r50_8x8": (("c2d_baseline_8x8_IN_pretrain_400k.pkl", "71.9", "90.0"),),
    "c2d_nl_r50_8x8": (("c2d_nonlocal_8x8_IN_pretrain_400k.pkl", "74.4", "91.4"),),
    "i3d_r50_8x8": (("i3d_baseline_8x8_IN_pretrain_400k.pkl", "73.4", "90.9"),
                    ("i3d_baseline_8x8_IN_pretrain_300k.pkl", "73.2", "90.8"),
                    ("i3d_baseline_8x8_IN_pretrain_600k_4gpu.pkl", "73.0", "90.4"),
                    ("i3d_baseline_8x8_IN_pretrain_300k_4gpu.pkl", "72.0", "90.1")),
    "i3d_nl_r50_8x8": (("i3d_nonlocal_8x8_IN_pretrain_400k.pkl", "74.7", "91.6"),),
    "i3d_r50_32x4_affine": (("i3d_baseline_32x4_I3D_pretrain_400k.pkl", "75.5", "92.0"),),
    "i3d_nl_r50_32x4_affine": (("i3d_nonlocal_32x4_I3D_pretrain_400k.pkl", "76.5", "92.6"),),
}


def momentum_reason(key: str) -> str | None:
    """Caffe2 checkpoints store each parameter's SGD momentum as ``<param>_momentum``."""
    return "SGD momentum of a parameter (optimizer state)" if key.endswith("_momentum") else None


def load_blobs(path: str) -> Loaded:
    """The blobs of a Caffe2 ``.pkl`` (``{"blobs": {...}}`` or the dict itself) as tensors; non-array
    entries (``model_iter``, ``lr``) are reported as ignored."""
    obj = load_numpy_pickle(path)
    blobs = obj.get("blobs", obj) if isinstance(obj, dict) else None
    if not isinstance(blobs, dict):
        raise UnsafeFileError(f"{path}: not a Caffe2 checkpoint (expected a dict of named numpy blobs)")
    tensors, ignored = {}, {}
    for key, value in blobs.items():
        if hasattr(value, "dtype") and getattr(value, "ndim", 0) > 0 and value.dtype.kind in "fiu":
            tensors[str(key)] = torch.from_numpy(value.copy())
        else:
            ignored[str(key)] = "training state (iteration, learning rate), not a weight"
    return Loaded(tensors=tensors, ignored=ignored)


class Caffe2(Source):
    """The official release's ``.pkl`` files (see the module docstring)."""

    name = "caffe2"
    archs = _archs()

    def load(self, path: str) -> Loaded:
        return load_blobs(path)

    def table(self, arch: Arch) -> KeyTable:
        return IMAGENET_TABLE if arch.image_2d else CAFFE2_TABLE

    def ignore_reason(self, key: str) -> str | None:
        return momentum_reason(key)

    def classifier_key(self, arch: Arch) -> str:
        return "fc.weight" if arch.image_2d else "head.fc.weight"

    def fill(self, key: str, like: torch.Tensor, arch: Arch) -> tuple[torch.Tensor, str] | None:
        if (arch.affine or arch.image_2d) and key.endswith("running_mean"):
            return torch.zeros_like(like), _NO_STATS
        if (arch.affine or arch.image_2d) and key.endswith("running_var"):
            return torch.ones_like(like), _NO_STATS
        return super().fill(key, like, arch)

    def read_dims(self, loaded: Loaded, arch: Arch) -> Arch:
        if arch.image_2d:
            fc = loaded.tensors.get("pred_w")
            return arch.replace(num_classes=int(fc.shape[0]) if fc is not None else arch.num_classes)
        return super().read_dims(loaded, arch)

    def build(self, arch: Arch) -> nn.Module:
        if arch.image_2d:
            from torchvision.models import resnet50, resnet101
            return {50: resnet50, 101: resnet101}[arch.depth](weights=None, num_classes=arch.num_classes)
        return super().build(arch)


_NO_STATS = ("BN statistics the file does not have (affine layers: mean 0, variance 1 with eps 0 is x * s + b; "
             "ImageNet file: the official code starts them at 0 and 1 too)")
