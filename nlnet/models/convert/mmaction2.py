"""mmaction2 (open-mmlab/mmaction2): ``.pth`` checkpoints of its I3D ResNet-50 (non-local) recognisers.

Conventions (each read from mmaction2 / mmcv code; ``docs/checkpoints.md`` has the full table):

* File (mmengine ``save_checkpoint``): ``torch.save({"meta": {..., "cfg": config text}, "state_dict":
  ..., "optimizer": ..., "message_hub": ...})``; released files may hold only meta and state_dict.
* Keys (mmaction/models/backbones/resnet3d.py ``ResNet3d``/``Bottleneck3dLayer``, mmcv ``ConvModule``,
  mmaction/models/heads/i3d_head.py): ``backbone.conv1.{conv,bn}``, ``backbone.layer{1..4}.{i}.conv{1,2,3}.
  {conv,bn}``, ``.downsample.{conv,bn}``, ``backbone.layer{n}.{i}.non_local_block.{theta.conv, phi.0.conv,
  g.0.conv, conv_out.conv, conv_out.bn}`` (the NL block closes residual block i: nlnet's nonlocal{i}),
  ``cls_head.fc_cls``; layer{n} is nlnet's res{n+1}.
* Geometry (configs/_base_/models/i3d_r50.py, resnet3d.py ``_make_stem_layer``): conv1 5x7x7 stride
  (2, 2, 2); pool1 1x3x3 stride (2, 2, 2) padding (0, 1, 1); pool2 2x1x1; inflate
  ((1,1,1), (1,0,1,0), (1,0,1,0,1,0), (0,1,0)); BN eps 1e-5 (BN3d).
* Non-local (mmcv/cnn/bricks/non_local.py ``NonLocal3d``): sub_sample max-pools 1x2x2 (floor) AFTER
  phi and g (nlnet ``pool_before=false``); the Gaussian's keys are the pooled input; ``use_scale=False``
  in every released config (so no scaling); conv_out is a ConvModule with BN and no bias (nlnet's
  w_z.bias is 0); placement ``non_local=((0,0,0), (0,1,0,1), (0,1,0,1,0,1), (0,0,0))``.
* Head (I3DHead ``spatial_type='avg'``): global average pool, dropout 0.5, fc; test scores averaged
  as probabilities (``average_clips='prob'``).
* Input (``data_preprocessor``): RGB (decord) 0-255, mean [123.675, 116.28, 103.53], std [58.395, 57.12,
  57.375] = ImageNet's on [0, 1]; test: SampleFrames 32x2, 10 clips, short side 256, ThreeCrop 256.
"""
from __future__ import annotations

import re

import torch

from nlnet.models.convert.arch import I3D, NL_FIVE, NO_NL, Arch, Clip
from nlnet.models.convert.core import ConversionError, Loaded, Source, detect_by_fit, tensors_of
from nlnet.models.convert.keys import ABC, BN_TORCH, WEIGHT_BIAS, KeyTable
from nlnet.models.convert.safe_load import load_torch_file

__all__ = ["MMAction2", "MMACTION2_TABLE"]

MMACTION2_TABLE = KeyTable.parse("""
    stem.conv.weight                        backbone.conv1.conv.weight
    stem.bn.{p}                             backbone.conv1.bn.{p}
    res{s}.block{i}.conv{c}.weight          backbone.layer{s}.{i}.conv{c}.conv.weight
    res{s}.block{i}.bn{c}.{p}               backbone.layer{s}.{i}.conv{c}.bn.{p}
    res{s}.block{i}.shortcut.conv.weight    backbone.layer{s}.{i}.downsample.conv.weight
    res{s}.block{i}.shortcut.bn.{p}         backbone.layer{s}.{i}.downsample.bn.{p}
    res{s}.nonlocal{i}.{conv}.{w}           backbone.layer{s}.{i}.non_local_block.{conv}.{w}
    res{s}.nonlocal{i}.norm.{p}             backbone.layer{s}.{i}.non_local_block.conv_out.bn.{p}
    head.fc.{w}                             cls_head.fc_cls.{w}
""", s={"2": "1", "3": "2", "4": "3", "5": "4"}, c={c: c for c in ABC}, p=BN_TORCH, w=WEIGHT_BIAS,
    conv={"theta": "theta.conv", "phi": ("phi.0.conv", "phi.conv"), "g": ("g.0.conv", "g.conv"),
          "w_z": "conv_out.conv"})

_IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # [123.675, ...] / 255
# mmaction2's 3D test (SampleFrames test_mode) spreads the clips from the first frame to the last, nlnet's rule
# (it counts the span as T * tau frames and rounds starts: at most a frame apart)
_CLIP = Clip(num_frames=32, sampling_rate=2, clip_placement="nlnet", mean=_IMAGENET["mean"], std=_IMAGENET["std"])
_URL = "https://download.openmmlab.com/mmaction/v1.0/recognition/i3d/"


def _i3d(name: str, *, pairwise: str | None, hint: str, published=()) -> Arch:
    options = {"pairwise": pairwise or "embedded_gaussian", "scale": False, "pool_before": False,
               "sub_sample": True, "bn_layer": True}
    return Arch(name=name, clip=_CLIP, temporal=I3D, stem_kernel_t=5, stem_stride_t=2, pool1_kernel_t=1,
                pool1_stride_t=2, pool2_t=2, nonlocal_blocks=NL_FIVE if pairwise else NO_NL, nonlocal_options=options,
                head_pool_t=None, hint=hint, published=published)


# configs/recognition/i3d/README.md, Kinetics-400 (10 clips x 3 crops): checkpoint file, top-1, top-5.
_ARCHS = [
    _i3d("i3d_r50_32x2", pairwise=None, hint="", published=(
        ("i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb_20220812-e213c223.pth", "73.47", "91.27"),
        ("i3d_imagenet-pretrained-r50_8xb8-dense-32x2x1-100e_kinetics400-rgb_20220812-9f46003f.pth",
         "73.77", "91.35"))),
    _i3d("i3d_nl_embedded_gaussian_r50_32x2", pairwise="embedded_gaussian", hint="embedded-gaussian", published=(
        ("i3d_imagenet-pretrained-r50-nl-embedded-gaussian_8xb8-32x2x1-100e_kinetics400-rgb_20220812-afd8f562.pth",
         "74.73", "91.80"),)),
    _i3d("i3d_nl_dot_product_r50_32x2", pairwise="dot_product", hint="dot-product", published=(
        ("i3d_imagenet-pretrained-r50-nl-dot-product_8xb8-32x2x1-100e_kinetics400-rgb_20220812-8e1f2148.pth",
         "74.80", "92.07"),)),
    _i3d("i3d_nl_gaussian_r50_32x2", pairwise="gaussian", hint="nl-gaussian", published=(
        ("i3d_imagenet-pretrained-r50-nl-gaussian_8xb8-32x2x1-100e_kinetics400-rgb_20220812-0c5cbf5a.pth",
         "73.97", "91.33"),)),
]
_MODE = re.compile(r"""mode\s*=\s*['"](\w+)['"]""")
_SCALE = re.compile(r"use_scale\s*=\s*(True|False)")


class MMAction2(Source):
    """mmaction2 ``.pth`` files (see the module docstring)."""

    name = "mmaction2"
    archs = {a.name: a for a in _ARCHS}

    def load(self, path: str) -> Loaded:
        state = load_torch_file(path)
        tensors = tensors_of(state, path, "state_dict")
        meta = state.get("meta") if isinstance(state, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        ignored = {k: "training state (optimizer, message hub), not a weight" for k in state
                   if k not in ("state_dict", "meta")} if isinstance(state, dict) and "state_dict" in state else {}
        return Loaded(tensors=tensors, meta=meta, ignored=ignored)

    def table(self, arch: Arch) -> KeyTable:
        return MMACTION2_TABLE

    def ignore_reason(self, key: str) -> str | None:
        if key.startswith("data_preprocessor."):
            return "input normaliser (its mean/std are the pipeline's)"
        return None

    def fill(self, key: str, like: torch.Tensor, arch: Arch) -> tuple[torch.Tensor, str] | None:
        if key.endswith(".w_z.bias"):
            return torch.zeros_like(like), "w_z bias: mmcv's conv_out has BN and no bias"
        return super().fill(key, like, arch)

    def detect(self, loaded: Loaded, path: str) -> Arch:
        """Key patterns, narrowed by the NL mode and scaling of the config text stored in ``meta``."""
        text = next((v for k, v in loaded.meta.items() if k in ("cfg", "config") and isinstance(v, str)), "")
        modes, scaled = set(_MODE.findall(text)), "True" in _SCALE.findall(text)
        if scaled and "gaussian" in modes:
            raise ConversionError(f"{path}: its config has the Gaussian with use_scale=True, which mmcv versions "
                                  "scale differently; the released models use use_scale=False (pass --arch)")
        candidates = [a for a in self.archs.values()
                      if not modes or not a.has_nonlocal or a.nonlocal_options["pairwise"] in modes]
        arch = detect_by_fit(self, loaded, path, candidates)
        if scaled:  # mmcv scales theta^T phi by C'^-1/2 (embedded Gaussian only), as nlnet's scale=True
            arch = arch.replace(name=f"{arch.name} (use_scale=True)",
                                nonlocal_options={**arch.nonlocal_options, "scale": True})
        return arch
