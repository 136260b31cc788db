"""ImageNet inflation of 2D torchvision ResNets into :class:`ResNet3d`, and fine-tuning loads.

Inflation (I3D, Sec. 4 of the paper): every k x k kernel of the 2D network becomes t x k x k,
repeated t times along time and divided by t, so a clip of identical frames gives the 2D network's
activations at every time step (away from the temporal zero padding). BN parameters and running
statistics are copied. Non-local blocks and the classifier keep their init. Nothing is dropped
silently: the returned :class:`LoadReport` lists loaded, inflated, skipped, missing and unexpected
keys.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

# torchvision ResNet key prefix -> ResNet3d key prefix. torchvision's layer{n}.{i}. is res{n+1}.block{i}.
_TOP_LEVEL = {"conv1.": "stem.conv.", "bn1.": "stem.bn.", "fc.": "head.fc."}
_IN_BLOCK = {"downsample.0.": "shortcut.conv.", "downsample.1.": "shortcut.bn."}
_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")
_CLASSIFIER = "head.fc."
_TORCHVISION_ARCHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101", 152: "resnet152"}


@dataclass
class LoadReport:
    """What a load did with every key. ``str(report)`` is a one-paragraph summary.

    Attributes:
        loaded: model keys copied as they are (BN parameters and statistics; a 2D kernel gains a
            time axis of size 1 where the model's temporal kernel is 1).
        inflated: model keys filled from a 2D kernel repeated over t > 1 time steps and divided by t.
        skipped: key -> reason, for keys deliberately left at their init (classifier of another shape).
        missing: model keys the source did not provide (kept at init), e.g. non-local blocks.
        unexpected: source keys with no place in the model (not used).
    """

    loaded: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors", f"inflated {len(self.inflated)} kernels over time"]
        if self.skipped:
            parts.append("kept at init: " + "; ".join(f"{k} ({why})" for k, why in self.skipped.items()))
        if self.missing:
            parts.append(f"missing from source, kept at init ({len(self.missing)}): {_summarise(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected in source, ignored ({len(self.unexpected)}): "
                         f"{_summarise(self.unexpected)}")
        return ", ".join(parts)


def _summarise(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def torchvision_to_resnet3d_key(key: str) -> str | None:
    """Name of a torchvision ResNet state-dict key in ResNet3d, or None if it has no counterpart.

    >>> torchvision_to_resnet3d_key("layer3.5.downsample.1.running_var")
    'res4.block5.shortcut.bn.running_var'
    """
    for old, new in _TOP_LEVEL.items():
        if key.startswith(old):
            return new + key[len(old):]
    match = _LAYER.match(key)
    if match is None:
        return None
    layer, block, rest = int(match.group(1)), int(match.group(2)), match.group(3)
    for old, new in _IN_BLOCK.items():
        if rest.startswith(old):
            rest = new + rest[len(old):]
    return f"res{layer + 1}.block{block}.{rest}"


def _unwrap(state_dict: Mapping) -> dict[str, torch.Tensor]:
    """A plain state dict from a state dict, a checkpoint {"model"/"state_dict": ...}, or DDP keys."""
    for wrapper in ("model", "state_dict", "model_state"):
        inner = state_dict.get(wrapper) if isinstance(state_dict, Mapping) else None
        if isinstance(inner, Mapping) and all(torch.is_tensor(v) for v in inner.values()):
            state_dict = inner
            break
    if not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ValueError("expected a state dict of tensors (or a checkpoint with a 'model' or "
                         "'state_dict' entry holding one)")
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def load_torchvision_state_dict(source: str | Mapping, *, depth: int) -> dict[str, torch.Tensor]:
    """The 2D ResNet state dict named by ``source``.

    Args:
        source: a path to a ``torch.save``-d torchvision ResNet state dict, "torchvision" for
            torchvision's ImageNet weights (``IMAGENET1K_V1``, the classic ImageNet init; downloaded
            or read from the torch hub cache), or a state dict.
        depth: the ResNet depth, to pick torchvision's weights.
    """
    if isinstance(source, Mapping):
        return _unwrap(source)
    if source == "torchvision":
        from torchvision.models import get_weight
        if depth not in _TORCHVISION_ARCHS:
            raise ValueError(f"'torchvision' has no ImageNet ResNet of depth {depth}; "
                             f"valid depths: {sorted(_TORCHVISION_ARCHS)}")
        arch = _TORCHVISION_ARCHS[depth]
        weights = get_weight(f"{arch.replace('resnet', 'ResNet')}_Weights.IMAGENET1K_V1")
        try:
            return dict(weights.get_state_dict(progress=False))
        except Exception as error:  # no network: URLError, OSError, ...
            raise RuntimeError(f"could not fetch torchvision's ImageNet {arch} weights from {weights.url} "
                               f"({type(error).__name__}: {error}); a local copy's path works offline") from error
    if not os.path.isfile(source):
        raise FileNotFoundError(f"no such file: {source!r} (expected a 2D torchvision ResNet state dict saved "
                                f"with torch.save, or 'torchvision')")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as e:  # torch raises UnpicklingError, EOFError, KeyError, RuntimeError, ... on such files
        if isinstance(e, pickle.UnpicklingError) and "global" in str(e).lower():  # weights_only refused a global
            raise ValueError(f"{source} holds objects other than tensors and plain containers: refused, since "
                             "loading it could run code") from None
        raise ValueError(f"{source} cannot be loaded: empty, truncated or not written by torch.save "
                         f"({type(e).__name__})") from None
    return _unwrap(state)


def inflate_from_2d(model: nn.Module, source: str | Mapping) -> LoadReport:
    """Initialise a ResNet3d from a 2D torchvision ResNet (ImageNet inflation), in place.

    A 2D kernel (O, I, k, k) becomes (O, I, t, k, k): repeated t times over time and divided by t
    (Sec. 4, "I3D"). BN weights, biases and running statistics are copied. The classifier keeps its
    init (ImageNet's 1000 classes are not the model's), as do non-local blocks (missing from the
    source; reported in ``missing``). Keys of the source with no counterpart are ``unexpected``.

    Args:
        model: a :class:`~nlnet.models.ResNet3d` (any depth matching the source).
        source: path to a torchvision ResNet state dict, "torchvision", or the state dict itself.

    Returns:
        the :class:`LoadReport`; missing keys other than non-local blocks, and unexpected keys, are
        also logged as warnings.

    Raises:
        ValueError: a source tensor whose shape cannot be inflated into the model's (e.g. a
            ResNet-18 state dict for a ResNet-50, or another base width).
    """
    source_dict = load_torchvision_state_dict(source, depth=getattr(model, "depth", 50))
    target = model.state_dict()
    report = LoadReport()
    new_state: dict[str, torch.Tensor] = {}
    for src_key, value in source_dict.items():
        key = torchvision_to_resnet3d_key(src_key)
        if key is None or key not in target:
            report.unexpected.append(src_key)
            continue
        if key.startswith(_CLASSIFIER):
            report.skipped[key] = f"classifier keeps its init; source {src_key} has shape {tuple(value.shape)}"
            continue
        want = target[key]
        if value.dim() == 4 and want.dim() == 5 and value.shape == want.shape[:2] + want.shape[3:]:
            t = want.shape[2]
            # (O, I, k, k) -> (O, I, t, k, k), each time slice w / t: sums to w over a static clip.
            new_state[key] = value.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
            (report.inflated if t > 1 else report.loaded).append(key)
        elif value.shape == want.shape:
            new_state[key] = value
            report.loaded.append(key)
        else:
            raise ValueError(f"cannot inflate {src_key} {tuple(value.shape)} into {key} {tuple(want.shape)}: "
                             f"the 2D network does not match this ResNet3d (depth/base_width)")
    for key in target:
        if key not in new_state and key not in report.skipped:
            report.missing.append(key)
    model.load_state_dict(new_state, strict=False)
    unusual = [k for k in report.missing if ".nonlocal" not in k]
    if unusual or report.unexpected:
        log.warning("inflate_from_2d: %s", report)
    return report


def load_finetune(model: nn.Module, state_dict: Mapping) -> LoadReport:
    """Load an nlnet checkpoint into a model that may have another number of classes (fine-tuning).

    Every weight is loaded except a classifier (``head.fc.*``) whose shape differs, which keeps its
    init and is reported in ``skipped`` (and logged). Any other missing, unexpected or mismatched key
    is an error: fine-tuning should never silently start from a partly random network.

    Args:
        model: the network to fill (e.g. a ResNet3d with the new ``num_classes``).
        state_dict: its state dict from a checkpoint (plain, ``{"model": ...}`` or DDP ``module.`` keys).

    Returns:
        the :class:`LoadReport`.
    """
    source = _unwrap(state_dict)
    target = model.state_dict()
    report = LoadReport()
    new_state: dict[str, torch.Tensor] = {}
    mismatched = []
    for key, value in source.items():
        if key not in target:
            report.unexpected.append(key)
        elif value.shape == target[key].shape:
            new_state[key] = value
            report.loaded.append(key)
        elif key.startswith(_CLASSIFIER):
            report.skipped[key] = (f"classifier of another shape: checkpoint {tuple(value.shape)}, "
                                   f"model {tuple(target[key].shape)}; kept at init")
        else:
            mismatched.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}")
    report.missing = [k for k in target if k not in source]
    if mismatched or report.missing or report.unexpected:
        raise ValueError("load_finetune: checkpoint does not match the model apart from the classifier; "
                         f"mismatched: {mismatched or 'none'}; missing: {_summarise(report.missing) or 'none'}; "
                         f"unexpected: {_summarise(report.unexpected) or 'none'}")
    model.load_state_dict(new_state, strict=False)
    if report.skipped:
        log.warning("load_finetune: %s", report)
    return report
