"""The trained network as a deployable file (TorchScript, ONNX or a torch.export ExportedProgram), plus
a JSON sidecar with everything needed to feed it and read its output.

Formats are data (``FORMATS``): a file ending, the packages the exporter and the check need, a writer
and a loader. Every format can export a fixed batch or a dynamic one (``dynamic_batch``).

Non-local blocks: the fast exact paths of ``NonLocalBlock(impl="auto")`` export as they are, the
concatenation block's sort/prefix-sum algorithm included (ONNX has no ``searchsorted``: the export
writes it as a compare-and-count, ``_onnx_searchsorted``, O(N N') booleans instead of the O(N N' C')
concatenation tensor of the reference form). If an exporter still rejects the model, every
``impl="auto"`` block is switched to ``impl="reference"`` (the same function, materialising the
(N, N') matrix) and the export is tried again; the report names the blocks that fell back and why.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nlnet.inference.loading import TrainedModel, ViewProtocol
from nlnet.models.nonlocal_block import NonLocalBlock
from nlnet.utils.errors import ConfigError, one_line, root_cause
from nlnet.utils.io import atomic_path

__all__ = ["ExportFormat", "FORMATS", "ExportReport", "export_model", "load_exported", "sidecar_path"]

INPUT_NAME, OUTPUT_NAME = "clip", "scores"
Runner = Callable[[torch.Tensor], torch.Tensor]


# ---- the formats ------------------------------------------------------------------------------------
def _batch_dim(dynamic: bool) -> tuple[dict[int, Any], ...] | None:
    return ({0: torch.export.Dim("batch", min=1)},) if dynamic else None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporters: TorchScript's deprecation and tracer warnings (shape arithmetic is constant
    for a fixed clip size; the check runs other batch sizes), the ONNX exporter's progress lines."""
    with contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _trace_torchscript(model: nn.Module, example: torch.Tensor, dynamic: bool) -> Any:
    with _quiet():
        return torch.jit.trace(model, example, check_trace=False)


def _save_torchscript(traced: Any, path: str) -> None:
    with _quiet():
        torch.jit.save(traced, path)


def _load_torchscript(path: str, threads: int | None = None) -> Runner:
    with _quiet():
        return torch.jit.load(path, map_location="cpu").eval()


def _export_program(model: nn.Module, example: torch.Tensor, dynamic: bool) -> Any:
    return torch.export.export(model, (example,), dynamic_shapes=_batch_dim(dynamic))


def _load_exported_program(path: str, threads: int | None = None) -> Runner:
    return torch.export.load(path).module()


def _onnx_searchsorted(sorted_sequence, values, out_int32: bool = False, right: bool = False,
                       side: str | None = None, sorter=None):
    """``torch.searchsorted`` (ascending ``sorted_sequence`` (..., N'), ``values`` (..., N)) in ONNX ops:
    the insertion index is the number of entries below the value (``<=`` for side="right"): exact."""
    from onnxscript import opset18 as op

    # onnxscript's stubs type axes as INT64 tensors and inputs by one dtype variable; its translator
    # also takes Python int lists and any tensor (the ignores below are for that typing gap only)
    rows = op.Unsqueeze(sorted_sequence, [-2])  # type: ignore[arg-type]  # (..., 1, N')
    cols = op.Unsqueeze(values, [-1])  # type: ignore[arg-type]  # (..., N, 1)
    below = op.LessOrEqual(rows, cols) if (right or side == "right") else op.Less(rows, cols)  # (..., N, N')
    count = op.ReduceSum(op.Cast(below, to=7), [-1], keepdims=0)  # type: ignore[type-var,arg-type]  # 7: INT64
    return op.Cast(count, to=6) if out_int32 else count  # type: ignore[type-var]  # 6: ONNX INT32


# aten ops the ONNX exporter has no translation for, written in ONNX ops (exact)
ONNX_TRANSLATIONS: dict[Any, Callable] = {torch.ops.aten.searchsorted.Tensor: _onnx_searchsorted}


def _export_onnx(model: nn.Module, example: torch.Tensor, dynamic: bool) -> Any:
    with _quiet():
        return torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                 dynamic_shapes=_batch_dim(dynamic), custom_translation_table=ONNX_TRANSLATIONS,
                                 verbose=False)


def _save_onnx(program: Any, path: str) -> None:
    program.save(path)


def _load_onnx(path: str, threads: int | None = None) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(clip: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {INPUT_NAME: clip.numpy()})[0])
    return run


@dataclass(frozen=True)
class ExportFormat:
    """One way to ship the network.

    Attributes:
        name: the ``format=`` value.
        suffix: the usual file ending.
        packages: modules the exporter needs (pip extra ``nlnet[export]``).
        check_packages: modules that run the exported file for ``check``.
        export: ``(model, example clip, dynamic batch)`` -> the exported artefact (in memory).
        save: ``(artefact, path)`` -> writes the file.
        load: ``(path, threads)`` -> a callable from a clip batch to the outputs; ``threads`` sets the
            runtime's intra-op threads where it has its own (ONNX Runtime; PyTorch's are global).
        runtime: what runs the file in deployment.
    """

    name: str
    suffix: str
    packages: tuple[str, ...]
    check_packages: tuple[str, ...]
    export: Callable[[nn.Module, torch.Tensor, bool], Any]
    save: Callable[[Any, str], None]
    load: Callable[[str, int | None], Runner]
    runtime: str


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("torchscript", ".torchscript.pt", (), (), _trace_torchscript, _save_torchscript, _load_torchscript,
                 "torch.jit.load (PyTorch C++ or Python, no model code needed; PyTorch 2.14 deprecates "
                 "TorchScript in favour of torch.export)"),
    ExportFormat("onnx", ".onnx", ("onnx", "onnxscript"), ("onnxruntime",), _export_onnx, _save_onnx, _load_onnx,
                 "onnxruntime.InferenceSession (or any ONNX runtime)"),
    ExportFormat("exported_program", ".pt2", (), (), _export_program, torch.export.save, _load_exported_program,
                 "torch.export.load(path).module() (PyTorch >= 2.1; AOTInductor can compile it)"),
)}


def _require(packages: tuple[str, ...], what: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(f"{what} needs the Python packages {', '.join(missing)}: "
                          "pip install -e '.[export]' in the nlnet folder")


def _format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ConfigError(f"format={name}: unknown export format; valid choices: {', '.join(FORMATS)}")
    return FORMATS[name]


# ---- exporting ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _reference_impl(blocks: dict[str, NonLocalBlock]) -> Iterator[None]:
    """Run ``blocks`` with ``impl="reference"`` (the same function, the (N, N') matrix materialised)."""
    saved = {name: block.impl for name, block in blocks.items()}
    try:
        for block in blocks.values():
            block.impl = "reference"
        yield
    finally:
        for name, block in blocks.items():
            block.impl = saved[name]


@dataclass
class ExportReport:
    """What ``export_model`` wrote and found.

    Attributes:
        path: the exported network.
        sidecar: its JSON sidecar (``sidecar_path(path)``).
        format: the format's name.
        fell_back: non-local blocks exported in their reference form, because the exporter rejected
            the fast one (empty when nothing fell back).
        fallback_reason: the exporter's error on the fast form (None when nothing fell back).
        max_abs_diff: with ``check``, the largest |exported - eager| output difference, else None.
        check_batches: the batch sizes checked.
    """

    path: str
    sidecar: str
    format: str
    fell_back: list[str] = field(default_factory=list)
    fallback_reason: str | None = None
    max_abs_diff: float | None = None
    check_batches: list[int] = field(default_factory=list)


def sidecar_path(path: str | os.PathLike) -> str:
    """The JSON sidecar of an exported file: ``<path>.json``."""
    return os.fspath(path) + ".json"


def _export_with_fallback(fmt: ExportFormat, model: nn.Module, example: torch.Tensor,
                          dynamic: bool) -> tuple[Any, list[str], str | None]:
    """The exported artefact; if the exporter rejects the fast non-local paths, their reference form's.

    Returns:
        (artefact, names of the blocks that fell back, the exporter's error on the fast form).
    """
    fast = {name: m for name, m in model.named_modules() if isinstance(m, NonLocalBlock) and m.impl == "auto"}
    try:
        return fmt.export(model, example, dynamic), [], None
    except Exception as exc:  # any exporter error: retry with the exact reference form, else report it
        reason = one_line(root_cause(exc))[:300]
        if not fast:
            raise ConfigError(f"format={fmt.name}: the exporter failed: {reason}") from exc
    with _reference_impl(fast):
        try:
            return fmt.export(model, example, dynamic), sorted(fast), reason
        except Exception as exc:
            raise ConfigError(f"format={fmt.name}: the exporter failed, also with the non-local blocks' "
                              f"reference form: {one_line(root_cause(exc))[:300]}") from exc


@torch.no_grad()
def _check(fmt: ExportFormat, model: nn.Module, path: str, shape: tuple[int, ...], batches: list[int],
           seed: int) -> float:
    """Largest |exported(x) - model(x)| over random clips of each batch size (normalised-input scale)."""
    run = fmt.load(path, None)
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in batches:
        clip = torch.randn(batch, *shape, generator=generator)
        worst = max(worst, float((run(clip).float() - model(clip).float()).abs().max()))
    return worst


def _blocks_json(model: nn.Module, fell_back: list[str]) -> list[dict[str, Any]]:
    return [{"name": name, "pairwise": m.pairwise, "scope": m.scope,
             "impl": "reference" if name in fell_back else m.impl, "fell_back": name in fell_back}
            for name, m in model.named_modules() if isinstance(m, NonLocalBlock)]


OUTPUT_MEANING = {"softmax": "class scores: softmax over the last axis gives the probabilities",
                  "sigmoid": "class scores (multi-label): a sigmoid of each gives that class's probability"}
VIEW_AGGREGATION = {"mean": "average", "max": "take the element-wise maximum of"}


def _clips_text(protocol: ViewProtocol) -> str:
    if protocol.num_segments is not None:
        return (f"num_clips clips of num_frames frames in {protocol.num_segments} runs, one per equal segment of "
                "the video (segment sampling)")
    return f"num_clips clips placed in time by the {protocol.clip_placement} rule (nlnet.data.placement)"


def _crops_text(protocol: ViewProtocol) -> str:
    if protocol.full_frame:
        return ("the full frame at short side short_side (one view per clip; the export was traced on a "
                "short_side x short_side frame)")
    return "num_crops crops along the long side"


def _sidecar(trained: TrainedModel, report: ExportReport, *, batch: int | str) -> dict[str, Any]:
    protocol, fmt, objective = trained.protocol, FORMATS[report.format], trained.objective
    return {
        "format": report.format, "file": os.path.basename(report.path), "runtime": fmt.runtime,
        "input": {"name": INPUT_NAME, "shape": [batch, *protocol.input_shape], "dtype": "float32",
                  "layout": "batch, RGB channels, frames, height, width",
                  "values": "RGB on the [0, 1] scale, then (x - mean) / std per channel"},
        "output": {"name": OUTPUT_NAME, "shape": [batch, len(trained.class_names)],
                   "activation": objective.activation, "meaning": OUTPUT_MEANING[objective.activation]},
        "pipeline": {"num_frames": protocol.num_frames, "sampling_rate": protocol.sampling_rate,
                     "short_side": protocol.short_side, "crop_size": protocol.crop_size,
                     "num_clips": protocol.num_clips, "num_crops": protocol.num_crops,
                     "mean": list(protocol.mean), "std": list(protocol.std),
                     "decode_resize": protocol.decode_resize, "full_frame": protocol.full_frame,
                     "clip_placement": protocol.clip_placement, "num_segments": protocol.num_segments,
                     "views": f"{_clips_text(protocol)} x {_crops_text(protocol)}; "
                              f"{VIEW_AGGREGATION[objective.aggregation]} the {objective.activation} over the "
                              "views (nlnet.inference.Predictor)",
                     "view_aggregation": objective.aggregation},
        "class_names": list(trained.class_names),
        "nonlocal_blocks": _blocks_json(trained.model, report.fell_back),
        "fallback_reason": report.fallback_reason,
        "check": None if report.max_abs_diff is None else {"max_abs_diff": report.max_abs_diff,
                                                             "batch_sizes": report.check_batches},
        "checkpoint": os.path.abspath(trained.checkpoint), "iteration": trained.iteration,
        "torch": torch.__version__,
    }


def export_model(trained: TrainedModel, *, format: str, out: str | os.PathLike, dynamic_batch: bool = False,
                 batch_size: int = 1, check: bool = False, seed: int = 0) -> ExportReport:
    """Export ``trained.model`` (float32, eval mode, on the CPU) and write its sidecar.

    Args:
        trained: the model, its class names and input protocol (``load_trained_model``).
        format: a key of ``FORMATS``: ``torchscript``, ``onnx`` or ``exported_program``.
        out: the file to write (atomically; without a file ending, the format's is added); the
            sidecar goes to ``sidecar_path(out)``.
        dynamic_batch: any batch size (checked at 1 and 3), else exactly ``batch_size``.
        batch_size: the fixed batch size (ignored with ``dynamic_batch``).
        check: run the exported file on random clips and compare with the eager model.
        seed: seed of the random clips.

    Raises:
        ConfigError: unknown format, missing packages, bad batch size, an exporter failure.
    """
    fmt = _format(format)
    _require(fmt.packages, f"format={format}")
    if check:
        _require(fmt.check_packages, f"check=true with format={format}")
    if not dynamic_batch and (not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch_size={batch_size}: must be a positive integer (or dynamic_batch=true)")
    model = trained.model.cpu().float().eval()
    shape = trained.protocol.input_shape
    example = torch.randn(2 if dynamic_batch else batch_size, *shape)  # torch.export specialises a batch of 1
    out = os.fspath(out)
    if not os.path.splitext(out)[1]:  # the writers need a file ending (zip archives named after it)
        out += fmt.suffix
    artefact, fell_back, reason = _export_with_fallback(fmt, model, example, dynamic_batch)
    with atomic_path(out) as tmp:
        fmt.save(artefact, tmp)
    report = ExportReport(path=out, sidecar=sidecar_path(out), format=format, fell_back=fell_back,
                          fallback_reason=reason)
    if check:
        report.check_batches = [1, 3] if dynamic_batch else [batch_size]
        report.max_abs_diff = _check(fmt, model, out, shape, report.check_batches, seed)
    with atomic_path(report.sidecar) as tmp, open(tmp, "w") as f:
        json.dump(_sidecar(trained, report, batch="batch" if dynamic_batch else batch_size), f, indent=1)
    return report


def load_exported(path: str | os.PathLike, format: str, *, threads: int | None = None) -> Runner:
    """A callable running an exported file on the CPU: (B, 3, T, H, W) float32 -> (B, K) scores.

    ``threads``: ONNX Runtime's intra-op threads (None: its default); PyTorch formats use PyTorch's.
    """
    fmt = _format(format)
    _require(fmt.check_packages, f"running format={format}")
    return fmt.load(os.fspath(path), threads)
