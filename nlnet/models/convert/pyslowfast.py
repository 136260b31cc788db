"""PySlowFast (facebookresearch/SlowFast): ``.pyth`` checkpoints and the Caffe2-format model-zoo ``.pkl``.

Conventions (each read from PySlowFast's code; ``docs/checkpoints.md`` has the full table):

* ``.pyth`` (slowfast/utils/checkpoint.py ``save_checkpoint``): ``torch.save({"epoch", "model_state",
  "optimizer_state", "cfg": cfg.dump()})``; ``cfg`` is the YAML text of the run's full config, from
  which the network and test pipeline are read (:func:`arch_from_cfg`).
* Model-zoo ``.pkl`` (MODEL_ZOO.md, ``TRAIN.CHECKPOINT_TYPE caffe2``): Caffe2 blobs named as in the
  official release; slowfast/utils/c2_model_loading.py maps them onto the same PyTorch modules.
* Keys (slowfast/models/video_model_builder.py ``ResNet``, resnet_helper.py, stem_helper.py,
  nonlocal_helper.py, head_helper.py): ``s1.pathway0_stem.{conv,bn}``, ``s{2..5}.pathway0_res{i}.branch1``
  / ``branch1_bn`` / ``branch2.{a,b,c}`` / ``branch2.{a,b,c}_bn``, ``s{3,4}.pathway0_nonlocal{i}.conv_{theta,
  phi,g,out}`` and ``.bn``, ``head.projection``; stage s{n} is nlnet's res{n}.
* Geometry: conv1 stride (1, 2, 2) with padding (t // 2, 3, 3); pool1 1x3x3 stride (1, 2, 2) padding
  (0, 1, 1); a 2x1x1 temporal max-pool after s2 for c2d/i3d (``_POOL1``), none for slow; BN eps 1e-5.
* Non-local (nonlocal_helper.py ``Nonlocal``): the input max-pooled by ``NONLOCAL.POOL`` (1x2x2, floor)
  before phi and g; ``softmax`` = embedded Gaussian scaled by C'^-1/2, ``dot_product`` divided by N';
  ``NONLOCAL.GROUP`` folds consecutive frame groups into the batch.
* Head (head_helper.py ``ResNetBasicHead``): average pool [T // pool2, crop // 32, crop // 32] stride 1;
  in eval the fc runs at every position, softmax (``MODEL.HEAD_ACT``) and the mean over positions.
* Input (slowfast/config/defaults.py, datasets/kinetics.py): RGB in [0, 1] normalised by DATA.MEAN /
  DATA.STD (0.45 / 0.225), ``DATA.REVERSE_INPUT_CHANNEL`` for BGR; test: short side = crop =
  ``DATA.TEST_CROP_SIZE`` (256), ``TEST.NUM_SPATIAL_CROPS`` (3) x ``TEST.NUM_ENSEMBLE_VIEWS`` (10).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from nlnet.models.convert.arch import C2D, I3D, NL_FIVE, NO_NL, SLOW, Arch, Clip, stage_lists
from nlnet.models.convert.caffe2 import CAFFE2_TABLE, load_blobs, momentum_reason
from nlnet.models.convert.core import ConversionError, Loaded, Source, tensors_of
from nlnet.models.convert.keys import ABC, BN_TORCH, WEIGHT_BIAS, KeyTable
from nlnet.models.convert.safe_load import is_zip_file, load_numpy_pickle, load_torch_file

PLACEMENT = "pyslowfast"  # get_start_end_idx: clip k starts at (N - T * tau) * k / n (nlnet.data.placement)

__all__ = ["PySlowFast", "PYSLOWFAST_TABLE", "arch_from_cfg"]

PYSLOWFAST_TABLE = KeyTable.parse("""
    stem.conv.weight                        s1.pathway0_stem.conv.weight
    stem.bn.{p}                             s1.pathway0_stem.bn.{p}
    res{s}.block{i}.conv{c}.weight          s{s}.pathway0_res{i}.branch2.{c}.weight
    res{s}.block{i}.bn{c}.{p}               s{s}.pathway0_res{i}.branch2.{c}_bn.{p}
    res{s}.block{i}.shortcut.conv.weight    s{s}.pathway0_res{i}.branch1.weight
    res{s}.block{i}.shortcut.bn.{p}         s{s}.pathway0_res{i}.branch1_bn.{p}
    res{s}.nonlocal{i}.{conv}.{w}           s{s}.pathway0_nonlocal{i}.conv_{conv}.{w}
    res{s}.nonlocal{i}.norm.{p}             s{s}.pathway0_nonlocal{i}.bn.{p}
    head.fc.{w}                             head.projection.{w}
""", c=ABC, p=BN_TORCH, conv={"theta": "theta", "phi": "phi", "g": "g", "w_z": "out"}, w=WEIGHT_BIAS)

# MODEL.ARCH -> (temporal basis, conv1 temporal kernel, pool after s2): _TEMPORAL_KERNEL_BASIS and
# _POOL1 of slowfast/models/video_model_builder.py.
_FAMILIES = {"c2d": (C2D, 1, 2), "i3d": (I3D, 5, 2), "slow": (SLOW, 1, 1), "slow_c2d": (C2D, 1, 1),
             "slow_i3d": (I3D, 5, 1), "2d": (C2D, 1, 1)}
_INSTANTIATION = {"softmax": {"pairwise": "embedded_gaussian", "scale": True},
                  "dot_product": {"pairwise": "dot_product", "scale": False}}
_HEAD_ACT = {"softmax": "softmax", "none": "logits"}


def _pyslowfast(name: str, family: str, clip: Clip, *, depth: int = 50, nl=NO_NL, instantiation: str = "softmax",
                groups=(1, 1, 1, 1), pool_size=(1, 2, 2), crop: int = 224, head_act: str = "softmax",
                dropout: float = 0.5, temporal_blocks=None, bgr: bool = False, published=()) -> Arch:
    temporal, stem_t, pool2_t = _FAMILIES[family]
    options = {**_INSTANTIATION[instantiation], "pool_before": True, "bn_layer": True,
               "sub_sample": any(k > 1 for k in pool_size), "pool_size": list(pool_size)}
    clip = replace(clip, clip_placement=PLACEMENT)  # the test clips where PySlowFast puts them
    return Arch(name=name, clip=clip, depth=depth, temporal=temporal, temporal_blocks=temporal_blocks,
                stem_kernel_t=stem_t, pool2_t=pool2_t, nonlocal_blocks=nl, nonlocal_options=options,
                nonlocal_groups=tuple(groups), head_pool_t=clip.num_frames // pool2_t, head_pool_hw=crop // 32,
                head_test=_HEAD_ACT[head_act], dropout=dropout, bgr=bgr, published=published)


def _archs() -> dict[str, Arch]:
    out = []
    for frames, rate in ((8, 8), (32, 2)):
        clip = Clip(num_frames=frames, sampling_rate=rate)
        for family in ("c2d", "i3d"):
            for depth in (50, 101):
                for nl_name, nl in (("", NO_NL), ("_nl", NL_FIVE)):
                    name = f"{family}{nl_name}_r{depth}_{frames}x{rate}"
                    out.append(_pyslowfast(name, family, clip, depth=depth, nl=nl, published=PUBLISHED.get(name, ())))
    # C2D_NOPOOL: assumed to be c2d without the temporal pool after s2 (PySlowFast's "slow_c2d")
    out.append(_pyslowfast("c2d_nopool_r50_8x8", "slow_c2d", Clip(num_frames=8, sampling_rate=8),
                           published=PUBLISHED["c2d_nopool_r50_8x8"]).replace(hint="nopool"))
    return {a.name: a for a in out}


# MODEL_ZOO.md, Kinetics 400: file (https://dl.fbaipublicfiles.com/pyslowfast/model_zoo/kinetics400/<file>),
# top-1, top-5 (3 crops x 10 clips).
PUBLISHED = {
    "c2d_nopool_r50_8x8": (("C2D_NOPOOL_8x8_R50.pkl", "67.2", "87.8"),),
    "i3d_r50_8x8": (("I3D_8x8_R50.pkl", "73.5", "90.8"),),
    "i3d_nl_r50_8x8": (("I3D_NLN_8x8_R50.pkl", "74.0", "91.1"),),
}


def _get(cfg: dict, dotted: str, default: Any) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def arch_from_cfg(cfg: dict) -> Arch:
    """The :class:`Arch` a PySlowFast config builds (defaults: slowfast/config/defaults.py).

    Raises:
        ConversionError: a network nlnet does not have (two pathways, ResNeXt groups, dilation, ...),
            naming the config key.
    """
    model_name, family = _get(cfg, "MODEL.MODEL_NAME", "SlowFast"), _get(cfg, "MODEL.ARCH", "slowfast")
    if model_name != "ResNet" or family not in _FAMILIES:
        raise ConversionError(f"PySlowFast MODEL.MODEL_NAME={model_name} MODEL.ARCH={family}: nlnet has the "
                              f"single-pathway ResNet ({', '.join(_FAMILIES)}) only")
    for key, want in (("RESNET.NUM_GROUPS", 1), ("RESNET.TRANS_FUNC", "bottleneck_transform"),
                      ("RESNET.STRIDE_1X1", False), ("RESNET.SPATIAL_DILATIONS", [[1], [1], [1], [1]]),
                      ("RESNET.SPATIAL_STRIDES", [[1], [2], [2], [2]]), ("BN.NORM_TYPE", "batchnorm"),
                      ("DETECTION.ENABLE", False), ("MULTIGRID.SHORT_CYCLE", False)):
        if _get(cfg, key, want) != want:
            raise ConversionError(f"PySlowFast {key}={_get(cfg, key, want)!r}: nlnet's ResNet3d needs {want!r}")
    pools = [tuple(p[0]) for p, loc in zip(_get(cfg, "NONLOCAL.POOL", [[[1, 2, 2]]] * 4),
                                            _get(cfg, "NONLOCAL.LOCATION", [[[]]] * 4)) if loc[0]]
    if len(set(pools)) > 1:
        raise ConversionError(f"PySlowFast NONLOCAL.POOL={pools}: one pooling for every NL block is supported")
    instantiation, head_act = _get(cfg, "NONLOCAL.INSTANTIATION", "dot_product"), _get(cfg, "MODEL.HEAD_ACT", "softmax")
    if instantiation not in _INSTANTIATION or head_act not in _HEAD_ACT:
        raise ConversionError(f"PySlowFast NONLOCAL.INSTANTIATION={instantiation} / MODEL.HEAD_ACT={head_act}: "
                              f"supported {list(_INSTANTIATION)} / {list(_HEAD_ACT)}")
    crop, test_crop = int(_get(cfg, "DATA.TRAIN_CROP_SIZE", 224)), int(_get(cfg, "DATA.TEST_CROP_SIZE", 256))
    clip = Clip(num_frames=int(_get(cfg, "DATA.NUM_FRAMES", 8)), sampling_rate=int(_get(cfg, "DATA.SAMPLING_RATE", 8)),
                short_side=test_crop, crop_size=test_crop, num_clips=int(_get(cfg, "TEST.NUM_ENSEMBLE_VIEWS", 10)),
                num_crops=int(_get(cfg, "TEST.NUM_SPATIAL_CROPS", 3)),
                mean=tuple(_get(cfg, "DATA.MEAN", [0.45] * 3)), std=tuple(_get(cfg, "DATA.STD", [0.225] * 3)),
                train_crop=crop, train_scale=tuple(_get(cfg, "DATA.TRAIN_JITTER_SCALES", [256, 320])))
    depth = int(_get(cfg, "RESNET.DEPTH", 50))
    nl = stage_lists([loc[0] for loc in _get(cfg, "NONLOCAL.LOCATION", [[[]]] * 4)])
    name = f"{family}{'_nl' if any(nl) else ''}_r{depth}_{clip.num_frames}x{clip.sampling_rate} (from the stored cfg)"
    return _pyslowfast(name, family, clip, depth=depth, nl=nl,
                       instantiation=instantiation, groups=[g[0] for g in _get(cfg, "NONLOCAL.GROUP", [[1]] * 4)],
                       pool_size=pools[0] if pools else (1, 2, 2), crop=crop, head_act=head_act,
                       dropout=float(_get(cfg, "MODEL.DROPOUT_RATE", 0.5)),
                       temporal_blocks=tuple(n[0] for n in _get(cfg, "RESNET.NUM_BLOCK_TEMP_KERNEL",
                                                                 [[3], [4], [6], [3]])),
                       bgr=bool(_get(cfg, "DATA.REVERSE_INPUT_CHANNEL", False)))


class PySlowFast(Source):
    """PySlowFast ``.pyth`` checkpoints and its Caffe2-format model-zoo ``.pkl`` (see the module docstring)."""

    name = "pyslowfast"
    archs = _archs()

    def load(self, path: str) -> Loaded:
        if not is_zip_file(path):
            obj = load_numpy_pickle(path)
            if isinstance(obj, dict):  # a model-zoo .pkl: Caffe2 blobs, Caffe2 names
                loaded = load_blobs(path)
                loaded.table = CAFFE2_TABLE
                return loaded
        state = load_torch_file(path)
        tensors = tensors_of(state, path, "model_state")
        meta = {k: v for k, v in state.items() if k != "model_state"} if isinstance(state, dict) else {}
        ignored = {k: "training state (optimizer, epoch), not a weight" for k in meta if k != "cfg"}
        return Loaded(tensors=tensors, meta=meta, ignored=ignored)

    def table(self, arch: Arch) -> KeyTable:
        return PYSLOWFAST_TABLE

    def ignore_reason(self, key: str) -> str | None:
        return momentum_reason(key)

    def detect(self, loaded: Loaded, path: str) -> Arch:
        cfg = loaded.meta.get("cfg")
        if isinstance(cfg, str):
            import yaml
            return self.read_dims(loaded, arch_from_cfg(yaml.safe_load(cfg)))
        return super().detect(loaded, path)
