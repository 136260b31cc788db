"""What every source shares: the :class:`Source` interface, the key-by-key assembly of an nlnet state
dict with its :class:`ConvertReport`, and the :class:`Conversion` that writes an nlnet checkpoint.

Assembly (:func:`assemble`): every tensor of the source file is used (mapped through the source's
key table onto a key of the nlnet model, shape checked), ignored (optimizer state, iteration
counters: named with the reason) or unused (no place in the model); every key of the model is
filled from the source, filled by rule (e.g. BN step counters the source does not store), or
missing. A shape that does not fit is refused with the first mismatching key (model order) and both
shapes; unused or missing weights are refused too unless ``strict=False``.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

import torch
import torch.nn as nn

from nlnet.models.convert.arch import Arch, data_config, deep_merge, model_config
from nlnet.models.convert.keys import KeyTable
from nlnet.models.resnet3d import DEPTHS
from nlnet.utils.errors import CheckpointError

__all__ = ["ConversionError", "ConvertReport", "Loaded", "Source", "Conversion", "assemble", "tensors_of"]


class ConversionError(CheckpointError):
    """A source file that cannot become the chosen nlnet model; the message is one line."""


@dataclass
class Loaded:
    """A source file in memory.

    Attributes:
        tensors: source key -> tensor (the file's weights, buffers and any other arrays).
        meta: the file's other entries (config text, epoch, ...), for detection and the report.
        ignored: top-level entries not read (optimizer state, ...) -> reason.
        table: the key table of this file when it differs from the source's usual one (e.g. a
            PySlowFast model-zoo file in Caffe2 format), else None.
    """

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    table: KeyTable | None = None

    def key_table(self, source: Source, arch: Arch) -> KeyTable:
        return self.table or source.table(arch)


@dataclass
class ConvertReport:
    """What the conversion did with every key (``str(report)``: a few lines).

    Attributes:
        source, path, arch: where from, into what.
        used: source key -> nlnet key, for every tensor copied.
        ignored: source key (or top-level entry) -> why it is not a weight (momentum, lr, ...).
        unused: source tensors with no place in the model.
        filled: nlnet key -> how it was filled without a source tensor (exactly).
        missing: nlnet keys left at their initialisation (only with ``strict=False``).
        notes: everything else done on the way (detection, reshapes, folds).
    """

    source: str
    path: str
    arch: str
    used: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    filled: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.source} {os.path.basename(self.path)} -> {self.arch}: {len(self.used)} tensors used"]
        reasons: dict[str, int] = {}
        for reason in self.ignored.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines += [f"ignored {n}: {reason}" for reason, n in reasons.items()]
        fills: dict[str, int] = {}
        for reason in self.filled.values():
            fills[reason] = fills.get(reason, 0) + 1
        lines += [f"filled {n}: {reason}" for reason, n in fills.items()]
        if self.unused:
            lines.append(f"UNUSED {len(self.unused)}: {summarise(self.unused)}")
        if self.missing:
            lines.append(f"MISSING {len(self.missing)} (kept at init): {summarise(self.missing)}")
        lines += self.notes
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Plain containers (stored in the converted checkpoint under ``converted_from``)."""
        return {"source": self.source, "file": os.path.basename(self.path), "arch": self.arch,
                "used": len(self.used), "ignored": dict(self.ignored), "unused": list(self.unused),
                "filled": dict(self.filled), "missing": list(self.missing), "notes": list(self.notes)}


def tensors_of(state: Any, path: str, *entries: str, prefixes: tuple[str, ...] = ("module.",)) -> dict:
    """The state dict inside a loaded torch checkpoint (first of ``entries`` present, or the object
    itself), without wrapper prefixes (DDP's ``module.``)."""
    for entry in entries:
        if isinstance(state, dict) and isinstance(state.get(entry), dict):
            state = state[entry]
            break
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise ConversionError(f"{path}: no state dict of tensors found (looked for {', '.join(entries)})")
    for prefix in prefixes:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


class Source:
    """One checkpoint source. Subclasses set ``name`` and ``archs`` and implement :meth:`load` and
    :meth:`table`; the other hooks have defaults that suit most sources."""

    name = ""
    archs: Mapping[str, Arch] = {}

    def load(self, path: str) -> Loaded:
        raise NotImplementedError

    def table(self, arch: Arch) -> KeyTable:
        raise NotImplementedError

    def ignore_reason(self, key: str) -> str | None:
        """Why a source tensor is not a weight (None: it is one)."""
        return None

    def fill(self, key: str, like: torch.Tensor, arch: Arch) -> tuple[torch.Tensor, str] | None:
        """An exact value for model key ``key`` that the source does not store, with the reason."""
        if key.endswith("num_batches_tracked"):
            return torch.zeros_like(like), "BatchNorm step counters (not stored; unused at test time)"
        return None

    def detect(self, loaded: Loaded, path: str) -> Arch:
        """The arch of a file when ``--arch`` is not given: from metadata, else from key patterns."""
        return detect_by_fit(self, loaded, path)

    def read_dims(self, loaded: Loaded, arch: Arch) -> Arch:
        """``arch`` with the base width and class count of the file (64 and 400 when published)."""
        table = loaded.key_table(self, arch)
        found = {table.to_nlnet(k): v for k, v in loaded.tensors.items()}
        stem, fc = found.get("stem.conv.weight"), found.get(self.classifier_key(arch))
        return arch.replace(base_width=int(stem.shape[0]) if stem is not None else arch.base_width,
                            num_classes=int(fc.shape[0]) if fc is not None else arch.num_classes)

    def classifier_key(self, arch: Arch) -> str:
        return "head.fc.weight"

    def build(self, arch: Arch) -> nn.Module:
        """The nlnet model of ``arch`` (random init; the conversion fills every tensor)."""
        from nlnet.models.builder import build_model  # builds what the test command builds from the stored config
        return build_model(model_config(arch)["net"])

    def arch(self, name: str) -> Arch:
        if name not in self.archs:
            raise ConversionError(f"--arch {name!r} is not a {self.name} model; valid: {', '.join(self.archs)}")
        return self.archs[name]


@lru_cache(maxsize=256)
def _unit_shapes(source: Source, arch: Arch) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of ``arch`` as built (a tiny CPU model when its base width is 1 or 2)."""
    return {k: tuple(v.shape) for k, v in source.build(arch).state_dict().items()}


def _shapes(source: Source, arch: Arch) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of ``arch`` without building it: every channel count of a ResNet is linear in the
    base width, so shape(w) = shape(1) + (w - 1) * (shape(2) - shape(1)). (:func:`assemble` builds
    the real model, whose ``load_state_dict`` checks the result again.)"""
    one, two = (_unit_shapes(source, arch.replace(base_width=w)) for w in (1, 2))
    w = arch.base_width
    return {k: tuple(a + (w - 1) * (b - a) for a, b in zip(one[k], two[k])) for k in one}


_UNIT = re.compile(r"^res(\d)\.(block|nonlocal)(\d+)\.|^layer(\d)\.(\d+)\.")  # nlnet | torchvision keys


def _layout(arch: Arch) -> set[tuple[int, str, int]]:
    """(stage, "block" | "nonlocal", index) of every residual and NL block of ``arch``."""
    blocks = DEPTHS[arch.depth][1]
    return ({(s + 2, "block", i) for s, n in enumerate(blocks) for i in range(n)}
            | {(s + 2, "nonlocal", i) for s, indices in enumerate(arch.nonlocal_blocks) for i in indices})


def _unit(match: re.Match) -> tuple[int, str, int]:
    if match.group(1):
        return int(match.group(1)), match.group(2), int(match.group(3))
    return int(match.group(4)) + 1, "block", int(match.group(5))  # torchvision layer{n} = res{n+1}


def _names_fit(source: Source, loaded: Loaded, arch: Arch) -> bool:
    """Cheap pre-check: the file's weights map onto exactly the model's key names (no shapes)."""
    table = loaded.key_table(source, arch)
    mapped = {table.to_nlnet(k) for k in loaded.tensors if source.ignore_reason(k) is None}
    if None in mapped:  # a tensor without a place in this model
        return False
    names = cast(set[str], mapped)  # None was ruled out just above
    units = {_unit(m) for m in map(_UNIT.match, names) if m}
    if units != _layout(arch):  # depth and NL placement, without building anything
        return False
    names = set(_unit_shapes(source, arch.replace(base_width=1)))
    if not mapped <= names:
        return False
    like = torch.empty(0, device="meta")
    return all(source.fill(k, like, arch) is not None for k in names - mapped)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape without its size-1 axes: a classifier stored as a 1x1x1 conv fits an fc."""
    return tuple(d for d in shape if d != 1)


def _problems(source: Source, loaded: Loaded, arch: Arch) -> tuple[dict, list[str], list[str], str | None]:
    """(mapped nlnet key -> source key, unused source keys, unfilled model keys, first shape mismatch)."""
    table, shapes = loaded.key_table(source, arch), _shapes(source, arch)
    mapped, unused = {}, []
    for key in loaded.tensors:
        if source.ignore_reason(key) is not None:
            continue
        nl = table.to_nlnet(key)
        if nl in shapes:
            mapped[nl] = key
        else:
            unused.append(key)
    mismatch = None
    for nl, want in shapes.items():
        if nl in mapped:
            got = tuple(loaded.tensors[mapped[nl]].shape)
            reshapable = nl == source.classifier_key(arch) and _squeezed(got) == _squeezed(want)
            if got != want and not reshapable:
                mismatch = mismatch or f"{mapped[nl]} {got} -> {nl} {want}"
    like = {k: torch.empty(v, device="meta") for k, v in shapes.items() if k not in mapped}
    unfilled = [k for k, v in like.items() if source.fill(k, v, arch) is None]
    return mapped, unused, unfilled, mismatch


def detect_by_fit(source: Source, loaded: Loaded, path: str, candidates: list[Arch] | None = None) -> Arch:
    """The one arch among ``candidates`` (default: all of the source) that the file fits exactly; when
    several fit, the one whose clip (e.g. ``32x2``) or file hint appears in the file name."""
    fitting = []
    for arch in candidates if candidates is not None else source.archs.values():
        if not _names_fit(source, loaded, arch):
            continue
        arch = source.read_dims(loaded, arch)
        _, unused, unfilled, mismatch = _problems(source, loaded, arch)
        if not (unused or unfilled or mismatch):
            fitting.append(arch)
    if not fitting:
        raise ConversionError(f"{path}: fits none of the {source.name} models ({', '.join(source.archs)}); "
                              "pass --arch NAME to see the first key that does not fit")
    if len(fitting) > 1:
        stem = os.path.basename(path).lower()
        named = [(len(a.hint_tokens), a) for a in fitting if all(t.lower() in stem for t in a.hint_tokens)]
        best = [a for n, a in named if n == max(named, key=lambda x: x[0])[0]] if named else []
        if len(best) == 1:
            return best[0]
        raise ConversionError(f"{path}: the weights fit {len(fitting)} {source.name} models "
                              f"({', '.join(a.name for a in fitting)}), which differ in the clip or NL options "
                              "the file does not store; pass --arch with one of them")
    return fitting[0]


def assemble(source: Source, loaded: Loaded, arch: Arch, *, path: str, strict: bool = True) -> tuple[
        nn.Module, ConvertReport]:
    """Fill the nlnet model of ``arch`` from ``loaded``, key by key (see the module docstring).

    Raises:
        ConversionError: the first key whose shape does not fit (both shapes); with ``strict``,
            source weights that have no place in the model or model weights the source lacks.
    """
    report = ConvertReport(source=source.name, path=path, arch=arch.name, ignored=dict(loaded.ignored))
    mapped, unused, unfilled, mismatch = _problems(source, loaded, arch)
    if mismatch:
        raise ConversionError(f"{path} does not fit --arch {arch.name}: {mismatch} (first mismatching key; "
                              "checkpoint shape -> model shape)")
    if strict and (unused or unfilled):
        parts = ([f"{len(unused)} tensors of the file have no place in the model ({summarise(unused, 4)})"]
                 if unused else []) + ([f"{len(unfilled)} model weights are not in the file "
                                        f"({summarise(unfilled, 4)})"] if unfilled else [])
        raise ConversionError(f"{path} does not fit --arch {arch.name}: {'; '.join(parts)}")
    model = source.build(arch)
    state = {}
    for key, like in model.state_dict().items():
        if key in mapped:
            value = loaded.tensors[mapped[key]]
            if tuple(value.shape) != tuple(like.shape):
                report.notes.append(f"{mapped[key]} reshaped {tuple(value.shape)} -> {tuple(like.shape)}")
                value = value.reshape(like.shape)
            state[key] = value.to(like.dtype).clone()
            report.used[mapped[key]] = key
            continue
        filled = source.fill(key, like, arch)
        if filled is not None:
            state[key], report.filled[key] = filled
        else:
            report.missing.append(key)
    for key in loaded.tensors:
        reason = source.ignore_reason(key)
        if reason is not None:
            report.ignored[key] = reason
    report.unused = unused
    if arch.bgr:
        state["stem.conv.weight"] = state["stem.conv.weight"].flip(1)
        report.notes.append("BGR input folded into stem.conv.weight (input channels reversed; mean/std in RGB order)")
    model.load_state_dict(state, strict=False)
    return model, report


@dataclass
class Conversion:
    """A converted model: weights, the arch it was built as, class names and the report.

    ``model_config`` / ``data_config`` are the nlnet config subtrees that rebuild the network and the
    source's test-time input; :meth:`checkpoint` merges them into a resolved nlnet config.
    """

    arch: Arch
    model: nn.Module
    class_names: list[str]
    report: ConvertReport

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    @property
    def model_config(self) -> dict[str, Any]:
        return model_config(self.arch)

    @property
    def data_config(self) -> dict[str, Any]:
        from nlnet.resources import kinetics400_classes
        return data_config(self.arch, kinetics_classes=self.class_names == kinetics400_classes())

    def checkpoint(self, base_config: Mapping[str, Any]) -> dict[str, Any]:
        """An nlnet checkpoint (``nlnet.checkpoint.files`` format) whose stored config is ``base_config``
        (a resolved nlnet training config, e.g. the composed ``train`` config) with this model's
        ``model`` and ``data`` settings written over it."""
        config = deep_merge(base_config, {"model": self.model_config, "data": self.data_config})
        return {"model": self.state_dict, "config": config, "class_names": list(self.class_names),
                "iteration": 0, "converted_from": self.report.as_dict()}

    def experiment(self, checkpoint: str) -> dict[str, Any]:
        """A training experiment (``# @package _global_`` delta) that fine-tunes this model on another
        dataset: the network and the source's input pipeline, started from ``checkpoint``
        (``model.init_checkpoint``, loaded by ``nlnet.models.load_finetune``: every weight but a
        classifier of another shape). The dataset's root, label map and class count stay the user's."""
        def without_dataset(node: dict) -> dict:
            return {k: without_dataset(v) if isinstance(v, dict) else v for k, v in node.items() if k != "label_map"}

        model = {**self.model_config, "pretrained": None, "init_checkpoint": os.path.abspath(checkpoint)}
        model["net"] = {**{k: v for k, v in model["net"].items() if k != "num_classes"},
                        "nonlocal_layer": "${model.nonlocal}"}  # as configs/model/*.yaml: one place per option
        return {"model": model, "data": without_dataset(self.data_config)}

    def save(self, path: str | os.PathLike, base_config: Mapping[str, Any] | None = None) -> str:
        """Write the result atomically: an nlnet checkpoint (needs ``base_config``, see :meth:`checkpoint`),
        or, for a 2D ImageNet ResNet, its torchvision state dict (for ``model.pretrained``)."""
        from nlnet.checkpoint.files import atomic_save
        from nlnet.utils.io import atomic_path
        if self.arch.image_2d:  # a plain state dict (no checkpoint fields), as torchvision saves it
            with atomic_path(os.fspath(path)) as tmp, open(tmp, "wb") as f:
                torch.save(self.state_dict, f)
        else:
            if base_config is None:
                raise ValueError("Conversion.save: base_config (a resolved nlnet training config) is needed to "
                                 "write a checkpoint that test.py can replay; convert_checkpoint.py "
                                 "passes the composed train config")
            atomic_save(self.checkpoint(base_config), os.fspath(path))
        return os.fspath(path)
