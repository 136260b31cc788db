"""What the predict and export commands do, as functions of plain values (the tools only
unpack their Hydra config). Each prints a short human summary and returns the process exit status.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from nlnet.inference.annotate import annotate_video
from nlnet.inference.export import FORMATS, export_model
from nlnet.inference.loading import load_trained_model, resolve_device
from nlnet.inference.predict import (
    FailedVideo,
    Predictor,
    VideoPrediction,
    find_videos,
    half_precision,
    predictions_to_json,
    select_classes,
    write_predictions,
)
from nlnet.inference.views import Timeline
from nlnet.utils.errors import ConfigError

__all__ = ["run_predict", "run_export", "annotated_path"]

ANNOTATION_TOP_K = 3  # labels drawn on the annotated video


def _format_top(scores, class_names: Sequence[str], k: int, sep: str, threshold: float | None = None) -> str:
    return sep.join(f"{p:.3f} {name}" for name, p in select_classes(scores, class_names, k, threshold)) or "-"


def annotated_path(video: str, root: str, out: str) -> str:
    """Where the annotated copy of ``video`` goes: ``out`` itself for one file; for a folder ``root``,
    ``out/<path below root>`` with the ending ``.mp4``."""
    if os.path.isfile(root):
        return out
    return os.path.join(out, os.path.splitext(os.path.relpath(video, root))[0] + ".mp4")


def _print_prediction(result: VideoPrediction, class_names: Sequence[str], k: int,
                      threshold: float | None = None) -> None:
    info = result.info
    print(f"{result.path}: {info.duration:.2f}s, {result.num_views} views")
    print("  " + _format_top(result.scores, class_names, k, "\n  ", threshold))
    for w in result.timeline:
        top = _format_top(w.scores, class_names, k, " | ", threshold)
        print(f"    {w.window.start:7.2f}-{w.window.end:.2f}s  {top}")


def _labels_at(result: VideoPrediction, class_names: Sequence[str], threshold: float | None = None):
    def labels(time: float) -> list[str]:
        current = result.window_at(time)
        scores = result.scores if current is None else current.scores
        return [f"{p:.2f} {name}" for name, p in select_classes(scores, class_names, ANNOTATION_TOP_K, threshold)]
    return labels


def run_predict(*, checkpoint: str, video: str, top_k: int = 5, views: Mapping[str, Any] | None = None,
                window: float | None = None, stride: float | None = None, window_clips: int = 1,
                out: str | None = None, out_min_size: int = 240, json: str | None = None, device: str = "auto",
                half: bool = False, batch_size: int = 8, num_workers: int = 0, threshold: float | None = None) -> int:
    """Label ``video`` (a file or a folder) with ``checkpoint``; see ``configs/predict.yaml``. With
    ``threshold``, the labels printed and drawn are the classes at or above it (for multi-label models).

    Returns:
        0 when at least one video was labelled, 1 when none could be (each failure is printed on
        stderr and listed under ``failed`` in the JSON).
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k={top_k}: must be a positive integer")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise ConfigError(f"threshold={threshold}: must be a probability in [0, 1] (or null: top_k)")
    if stride is not None and window is None:
        raise ConfigError(f"stride={stride} needs window=SECONDS (the length of each timeline window)")
    paths = find_videos(video)
    folder = not os.path.isfile(video)
    if out and folder and os.path.splitext(out)[1]:
        raise ConfigError(f"out={out}: video={video} is a folder, so out must be a folder (one .mp4 per video)")
    timeline = Timeline(window=window, stride=stride, clips=window_clips) if window is not None else None
    target = resolve_device(device)
    precision = half_precision(target) if half else "fp32"
    trained = load_trained_model(checkpoint, views=views)
    predictor = Predictor.from_trained(trained, device=target, precision=precision, batch_size=batch_size,
                                       num_workers=num_workers)
    results = predictor.predict(paths, timeline=timeline, progress=folder)
    names = trained.class_names
    for result in results:
        if isinstance(result, FailedVideo):
            print(f"error: cannot read {result.path}: {result.error}", file=sys.stderr)
        else:
            _print_prediction(result, names, top_k, threshold)
            if out:
                path = annotated_path(result.path, video, out)
                written = annotate_video(result.path, path, _labels_at(result, names, threshold),
                                         min_short_side=out_min_size)
                print(f"  annotated video: {path} ({written} frames)")
    failed = sum(isinstance(r, FailedVideo) for r in results)
    if json:
        meta = {"checkpoint": os.path.abspath(checkpoint), "protocol": asdict(trained.protocol),
                "window": window, "stride": stride if stride is not None else window, "window_clips": window_clips,
                "activation": trained.objective.activation, "view_aggregation": trained.objective.aggregation,
                "threshold": threshold}
        data = predictions_to_json(results, class_names=names, k=top_k, meta=meta, threshold=threshold,
                                   all_probabilities=trained.objective.multi_label)
        print(f"predictions: {write_predictions(json, data)}")
    if folder:
        print(f"{len(results) - failed} of {len(results)} videos labelled, {failed} unreadable")
    return 1 if failed == len(results) else 0


def run_export(*, checkpoint: str, format: str, out: str | None = None, dynamic_batch: bool = False,
               batch_size: int = 1, check: bool = False, tolerance: float = 1e-4,
               views: Mapping[str, Any] | None = None) -> int:
    """Export ``checkpoint``'s network; see ``configs/export.yaml``.

    Returns:
        0, or 1 when ``check`` found a difference above ``tolerance``.
    """
    if format not in FORMATS:  # before loading the checkpoint
        raise ConfigError(f"format={format}: unknown export format; valid choices: {', '.join(FORMATS)}")
    if out is None:
        out = os.path.splitext(checkpoint)[0] + FORMATS[format].suffix
    trained = load_trained_model(checkpoint, views=views)
    report = export_model(trained, format=format, out=out, dynamic_batch=dynamic_batch, batch_size=batch_size,
                          check=check)
    shape = ["batch" if dynamic_batch else batch_size, *trained.protocol.input_shape]
    print(f"exported {format}: {report.path} (input {' x '.join(map(str, shape))})")
    print(f"sidecar: {report.sidecar}")
    if report.fell_back:
        print(f"non-local blocks exported in their reference form (the exporter rejected the fast one: "
              f"{report.fallback_reason}): {', '.join(report.fell_back)}")
    if report.max_abs_diff is not None:
        ok = report.max_abs_diff <= tolerance
        print(f"check: max |exported - eager| = {report.max_abs_diff:.3g} on random clips of batch "
              f"{', '.join(map(str, report.check_batches))} ({'within' if ok else 'ABOVE'} tolerance {tolerance:g})")
        return 0 if ok else 1
    return 0


