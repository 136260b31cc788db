"""pytorchvideo (facebookresearch/pytorchvideo): state dicts of its hub ResNets ``c2d_r50``, ``i3d_r50``,
``slow_r50`` (``.pyth``: ``{"model_state": ...}``; PySlowFast's PyTorchVideo zoo adds a ``model.`` prefix).

Conventions (each read from pytorchvideo 0.1.5's code; ``docs/checkpoints.md`` has the full table):

* Builders (pytorchvideo/models/hub/resnet.py): ``c2d_r50`` = ``create_resnet(stem_conv_kernel_size=
  (1,7,7), stage1_pool=MaxPool3d, stage_conv_a_kernel_size=((1,1,1),)*4)``, ``i3d_r50`` the same with
  conv1 (5,7,7) and conv_a ((3,1,1), [(3,1,1),(1,1,1)], [(3,1,1),(1,1,1)], [(1,1,1),(3,1,1)]) (= I3D),
  ``slow_r50`` conv1 (1,7,7), no stage-1 pool, conv_a (1,1,1) in res2/res3 and (3,1,1) in res4/res5,
  head pool (8,7,7).
* Keys (pytorchvideo/models/resnet.py, stem.py, head.py, net.py): ``blocks.0.{conv,norm}`` (stem),
  ``blocks.{k}.res_blocks.{i}.branch1_{conv,norm}`` / ``branch2.{conv,norm}_{a,b,c}`` for the four stages
  (k = 1, 3, 4, 5 when the stage-1 max-pool is ``blocks.2``, else 1..4), ``blocks.{last}.proj`` (head).
* Geometry (resnet.py ``create_resnet``): conv1 stride (1, 2, 2), padding k // 2; stem pool 1x3x3 stride
  (1, 2, 2) padding (0, 1, 1), floor; stage-1 pool 2x1x1; BN eps 1e-5.
* Head (head.py ``create_res_basic_head``): AvgPool3d(head_pool_kernel_size, stride 1), dropout, a Linear
  at every position, no activation (``head_activation=None``), then the MEAN OF THE LOGITS over positions
  (``output_with_global_average``).
* Input (pytorchvideo model zoo via PySlowFast configs/Kinetics/pytorchvideo/*.yaml and
  slowfast/config/defaults.py): RGB in [0, 1], mean 0.45, std 0.225; test: short side 256, 3 crops of 256,
  10 clips.
"""
from __future__ import annotations

from dataclasses import replace

from nlnet.models.convert.arch import C2D, I3D, SLOW, Arch, Clip
from nlnet.models.convert.core import Loaded, Source, tensors_of
from nlnet.models.convert.keys import ABC, BN_TORCH, WEIGHT_BIAS, KeyTable
from nlnet.models.convert.safe_load import load_torch_file

# the hub models' published numbers were measured with PySlowFast's test (pytorchvideo 0.1.5's
# ConstantClipsPerVideoSampler also starts clip k at (duration - span) * k / n): its placement rule
PLACEMENT = "pyslowfast"

__all__ = ["PyTorchVideo", "table_for"]


_TABLE = """
    stem.conv.weight                        blocks.0.conv.weight
    stem.bn.{p}                             blocks.0.norm.{p}
    res{s}.block{i}.conv{c}.weight          blocks.{s}.res_blocks.{i}.branch2.conv_{c}.weight
    res{s}.block{i}.bn{c}.{p}               blocks.{s}.res_blocks.{i}.branch2.norm_{c}.{p}
    res{s}.block{i}.shortcut.conv.weight    blocks.{s}.res_blocks.{i}.branch1_conv.weight
    res{s}.block{i}.shortcut.bn.{p}         blocks.{s}.res_blocks.{i}.branch1_norm.{p}
    head.fc.{w}                             blocks.<head>.proj.{w}
"""


def table_for(arch: Arch) -> KeyTable:
    """The key table of ``arch``: its stages are ``blocks.1..4``, or ``blocks.1, 3, 4, 5`` around the
    stage-1 pool."""
    with_pool = arch.pool2_t > 1
    stages = dict(zip("2345", "1345" if with_pool else "1234"))
    return KeyTable.parse(_TABLE.replace("<head>", "6" if with_pool else "5"), s=stages, c=ABC, p=BN_TORCH,
                          w=WEIGHT_BIAS)


def _hub(name: str, clip: Clip, *, temporal, stem_t: int, pool2_t: int, published=()) -> Arch:
    clip = replace(clip, clip_placement=PLACEMENT)
    return Arch(name=name, clip=clip, temporal=temporal, stem_kernel_t=stem_t, pool2_t=pool2_t,
                head_pool_t=clip.num_frames // pool2_t, head_test="logits", published=published)


# hub/resnet.py docstrings and PySlowFast projects/pytorchvideo/README.md (Kinetics-400, 3 crops x 10 clips):
# file (https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/<file>), top-1, top-5.
_ARCHS = [
    _hub("c2d_r50_8x8", Clip(num_frames=8, sampling_rate=8), temporal=C2D, stem_t=1, pool2_t=2,
         published=(("C2D_8x8_R50.pyth", "71.46", "89.68"),)),
    _hub("i3d_r50_8x8", Clip(num_frames=8, sampling_rate=8), temporal=I3D, stem_t=5, pool2_t=2,
         published=(("I3D_8x8_R50.pyth", "73.27", "90.70"),)),
    _hub("slow_r50_8x8", Clip(num_frames=8, sampling_rate=8), temporal=SLOW, stem_t=1, pool2_t=1,
         published=(("SLOW_8x8_R50.pyth", "74.58", "91.63"),)),
    _hub("slow_r50_4x16", Clip(num_frames=4, sampling_rate=16), temporal=SLOW, stem_t=1, pool2_t=1,
         published=(("SLOW_4x16_R50.pyth", "72.40", "90.18"),)),
]


class PyTorchVideo(Source):
    """pytorchvideo hub ResNet state dicts (see the module docstring)."""

    name = "pytorchvideo"
    archs = {a.name: a for a in _ARCHS}

    def load(self, path: str) -> Loaded:
        state = load_torch_file(path)
        tensors = tensors_of(state, path, "model_state", prefixes=("module.", "model."))
        ignored = ({k: "training state (optimizer, epoch), not a weight" for k in state if k != "model_state"}
                   if isinstance(state, dict) and "model_state" in state else {})
        return Loaded(tensors=tensors, ignored=ignored)

    def table(self, arch: Arch) -> KeyTable:
        return table_for(arch)
