"""Import published checkpoints: the official Caffe2 release, PySlowFast, mmaction2 and pytorchvideo.

    from nlnet.models.convert import convert
    conversion = convert("i3d_nonlocal_8x8_IN_pretrain_400k.pkl", source="caffe2")
    print(conversion.report)
    conversion.save("i3d_nl_8x8.pt", base_config=cfg)   # cfg: a resolved nlnet training config

:func:`convert` is the entry point (``nlnet.models`` does not import this package). Each source has one module
with its key table and conventions (``caffe2``, ``pyslowfast``, ``mmaction2``, ``pytorchvideo``);
``core`` holds what they share (assembly, report, checkpoint), ``arch`` the network description,
``safe_load`` the loading that never runs a file's code. ``convert_checkpoint.py`` is the command
line; ``docs/checkpoints.md`` lists every supported published model.
"""
from __future__ import annotations

import os

from nlnet.models.convert.arch import Arch, Clip
from nlnet.models.convert.caffe2 import Caffe2
from nlnet.models.convert.core import Conversion, ConversionError, ConvertReport, Source, assemble
from nlnet.models.convert.mmaction2 import MMAction2
from nlnet.models.convert.pyslowfast import PySlowFast
from nlnet.models.convert.pytorchvideo import PyTorchVideo
from nlnet.models.convert.safe_load import UnsafeFileError

__all__ = ["convert", "SOURCES", "Arch", "Clip", "Conversion", "ConversionError", "ConvertReport", "Source",
           "UnsafeFileError", "describe", "published_models"]

SOURCES: dict[str, Source] = {source.name: source for source in (Caffe2(), PySlowFast(), MMAction2(), PyTorchVideo())}


def _class_names(names: list[str] | None, num_classes: int) -> list[str]:
    from nlnet.resources import kinetics400_classes
    if names is not None:
        if len(names) != num_classes:
            raise ConversionError(f"class names: {len(names)} given for a classifier of {num_classes} classes")
        return list(names)
    if num_classes == 400:
        return kinetics400_classes()
    return [f"class_{i}" for i in range(num_classes)]


def convert(path: str | os.PathLike, *, source: str, arch: str | Arch | None = None, strict: bool = True,
            class_names: list[str] | None = None) -> Conversion:
    """Convert a published checkpoint into an nlnet model.

    Args:
        path: the source file.
        source: ``caffe2`` (official release), ``pyslowfast``, ``mmaction2`` or ``pytorchvideo``.
        arch: the source network (a name of ``SOURCES[source].archs`` or an :class:`Arch`); None:
            detected from the file's stored config or its key patterns (and file name), refused in one
            line when ambiguous.
        strict: refuse source weights without a place in the model and model weights missing from the
            file (False: convert anyway and list them in the report).
        class_names: class names by index (default: Kinetics-400 for 400 classes, else ``class_<i>``).

    Returns:
        The :class:`Conversion` (model, arch, class names, report).

    Raises:
        ConversionError: wrong arch (first mismatching key and both shapes), ambiguous detection,
            unknown source or arch.
        UnsafeFileError: a truncated or damaged file, or one that would run code when loaded.
    """
    if source not in SOURCES:
        raise ConversionError(f"--from {source!r}: unknown source; valid: {', '.join(SOURCES)}")
    handler = SOURCES[source]
    path = os.fspath(path)
    loaded = handler.load(path)
    if arch is None:
        chosen = handler.detect(loaded, path)
        detected = True
    else:
        chosen = handler.read_dims(loaded, handler.arch(arch) if isinstance(arch, str) else arch)
        detected = False
    model, report = assemble(handler, loaded, chosen, path=path, strict=strict)
    if detected:
        report.notes.insert(0, f"arch {chosen.name} detected from the file")
    return Conversion(arch=chosen, model=model, class_names=_class_names(class_names, chosen.num_classes),
                      report=report)


def describe() -> str:
    """Every source's networks (``--arch`` names) and the published files each converts."""
    lines = []
    for name, source in SOURCES.items():
        lines.append(f"--from {name}:")
        for arch in source.archs.values():
            files = ", ".join(f if t1 is None else f"{f} ({t1} / {t5})" for f, t1, t5 in arch.published)
            lines.append(f"  {arch.name:34s} {arch.clip_name:>6s}  {files}")
    return "\n".join(lines)


def published_models() -> list[tuple[str, Arch, str, str | None, str | None]]:
    """Every published model the converters know: (source, arch, file name, top-1, top-5)."""
    return [(name, arch, *entry) for name, source in SOURCES.items() for arch in source.archs.values()
            for entry in arch.published]
