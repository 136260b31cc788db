"""Label videos with a trained model: class probabilities averaged over the test views (paper §4.1),
optionally a timeline of per-window predictions, for one file or a folder of files. A multi-label model
(e.g. Charades, paper §5.2) gives a sigmoid probability per class, combined over views by its checkpoint's
aggregation (max by default); its labels are the classes above a threshold, or the top-k.

Views of all videos are packed into batches of ``batch_size`` for the network; decoding can run in
``num_workers`` processes (``VideoViewStream``). An unreadable file is reported and skipped.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from nlnet.data.decoding import VideoInfo
from nlnet.evaluation.objectives import MultiLabel, SingleLabel
from nlnet.inference.loading import TrainedModel, ViewProtocol
from nlnet.inference.views import WHOLE_VIDEO, ClipViews, Timeline, VideoDone, VideoFailed, VideoViewStream, Window
from nlnet.utils.errors import ConfigError
from nlnet.utils.io import atomic_path
from nlnet.utils.precision import autocast_context

__all__ = ["VIDEO_EXTENSIONS", "WindowPrediction", "VideoPrediction", "FailedVideo", "Predictor", "find_videos",
           "half_precision", "predictions_to_json", "top_classes", "select_classes", "write_predictions"]

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".ogv", ".3gp", ".ts")
_CPU = torch.device("cpu")  # the default device of a Predictor


def top_classes(scores: torch.Tensor, class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of a (K,) probability vector, as (name, probability)."""
    values, indices = scores.topk(min(k, len(scores)))
    return [(class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist())]


def select_classes(scores: torch.Tensor, class_names: Sequence[str], k: int,
                   threshold: float | None = None) -> list[tuple[str, float]]:
    """The classes to report: every class with probability >= ``threshold`` (most probable first), or,
    without a threshold, the ``k`` most probable (``top_classes``)."""
    if threshold is None:
        return top_classes(scores, class_names, k)
    return [(name, p) for name, p in top_classes(scores, class_names, len(scores)) if p >= threshold]


@dataclass
class WindowPrediction:
    """Mean class probabilities of the views inside one window of a video."""

    window: Window
    scores: torch.Tensor  # (K,)
    num_views: int


@dataclass
class VideoPrediction:
    """A labelled video: ``scores`` (K,) are the mean softmax over the protocol's views (multi-label:
    the max, or mean, of the per-class sigmoids)."""

    path: str
    info: VideoInfo
    scores: torch.Tensor
    num_views: int
    timeline: list[WindowPrediction] = field(default_factory=list)

    def window_at(self, time: float) -> WindowPrediction | None:
        """The window whose centre is nearest to ``time`` seconds (None without a timeline)."""
        if not self.timeline:
            return None
        return min(self.timeline, key=lambda w: abs((w.window.start + w.window.end) / 2 - time))


@dataclass
class FailedVideo:
    """A file that could not be labelled, and why."""

    path: str
    error: str


def find_videos(path: str | os.PathLike) -> list[str]:
    """``path`` itself if it is a file, else every file with a video extension below the folder, sorted."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"video: no such file or folder: {path}")
    found = [os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names
             if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith(".")]
    if not found:
        raise ConfigError(f"video={path}: the folder holds no video file ({', '.join(VIDEO_EXTENSIONS)})")
    return sorted(found)


def half_precision(device: torch.device) -> str:
    """The autocast precision of ``half=true``: bf16 where the GPU has it, else fp16; CUDA only."""
    if device.type != "cuda":
        raise ConfigError(f"half=true: half precision runs on a CUDA device only (device resolved to {device}); "
                          "on a CPU use half=false")
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


class _Scores:
    """Running sums (``aggregation="mean"``) or maxima (``"max"``) of probabilities per (video, group)."""

    def __init__(self, aggregation: str = "mean") -> None:
        self.aggregation = aggregation
        self.sums: dict[tuple[int, int], torch.Tensor] = {}
        self.counts: dict[tuple[int, int], int] = {}

    def add(self, video: int, groups: Iterable[int], probabilities: torch.Tensor) -> None:
        for group in groups:
            key = (video, group)
            if self.aggregation == "max":
                self.sums[key] = torch.maximum(self.sums[key], probabilities) if key in self.sums else probabilities
            else:
                self.sums[key] = self.sums.get(key, 0) + probabilities
            self.counts[key] = self.counts.get(key, 0) + 1

    def mean(self, video: int, group: int) -> tuple[torch.Tensor, int]:
        """The group's combined probabilities (mean or max) and its number of views."""
        total, count = self.sums[(video, group)], self.counts[(video, group)]
        return (total if self.aggregation == "max" else total / count), count


class Predictor:
    """Run a trained model over the views of video files and average their class probabilities.

    Args:
        model: the network; ``softmax(model(x))`` are class probabilities (multi-label: ``sigmoid``).
        protocol: how views are made (``ViewProtocol``).
        device: where the network runs.
        precision: ``fp32``, or ``bf16``/``fp16`` autocast (CUDA; see ``half_precision``).
        batch_size: views per forward pass (at most; more only if one clip has more crops).
        num_workers: decoding processes (0: decode in this process).
        objective: probabilities and view aggregation (default: softmax, mean; ``TrainedModel.objective``).
    """

    def __init__(self, *, model: nn.Module, protocol: ViewProtocol, device: torch.device = _CPU,
                 precision: str = "fp32", batch_size: int = 8, num_workers: int = 0,
                 objective: SingleLabel | MultiLabel | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be a positive integer")
        if num_workers < 0:
            raise ConfigError(f"num_workers={num_workers}: must be 0 or more")
        self.model = model.to(device).eval()
        self.protocol = protocol
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.objective = objective if objective is not None else SingleLabel()

    @classmethod
    def from_trained(cls, trained: TrainedModel, **kwargs: Any) -> Predictor:
        return cls(model=trained.model, protocol=trained.protocol, objective=trained.objective, **kwargs)

    @torch.no_grad()
    def _run(self, pending: list[ClipViews], scores: _Scores) -> None:
        """One forward pass over the views of ``pending`` clips; their probabilities go to ``scores``."""
        batch = torch.cat([clip.views for clip in pending]).to(self.device, non_blocking=True)
        with autocast_context(self.device, self.precision):
            logits = self.model(batch)
        probabilities = self.objective.probabilities(logits.float()).cpu()  # (V, K)
        row = 0
        for clip in pending:
            for view in probabilities[row: row + len(clip.views)]:
                scores.add(clip.video, clip.groups, view)
            row += len(clip.views)

    def predict(self, paths: Sequence[str], *, timeline: Timeline | None = None,
                progress: bool = False) -> list[VideoPrediction | FailedVideo]:
        """Label every file of ``paths`` (in order); unreadable ones come back as ``FailedVideo``."""
        stream = VideoViewStream(paths=paths, protocol=self.protocol, timeline=timeline,
                                 decode_threads=1 if self.num_workers else 0)
        loader = DataLoader(stream, batch_size=None, num_workers=self.num_workers)  # records one by one
        scores, results = _Scores(self.objective.aggregation), {}
        pending: list[ClipViews] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(paths), desc="videos", unit="video", dynamic_ncols=True)
        for record in loader:
            if isinstance(record, ClipViews):  # at most batch_size views a pass (a clip's crops stay together)
                if pending and sum(len(c.views) for c in pending) + len(record.views) > self.batch_size:
                    self._run(pending, scores)
                    pending = []
                pending.append(record)
                continue
            results[record.video] = record
            if bar is not None:
                bar.update(1)
        if pending:
            self._run(pending, scores)
        if bar is not None:
            bar.close()
        return [self._result(paths[i], results.get(i), scores) for i in range(len(paths))]

    @staticmethod
    def _result(path: str, record: VideoDone | VideoFailed | None, scores: _Scores) -> VideoPrediction | FailedVideo:
        if isinstance(record, VideoFailed):
            return FailedVideo(path=path, error=record.error)
        if record is None:
            return FailedVideo(path=path, error="no result (the decoding process ended early)")
        mean, views = scores.mean(record.video, WHOLE_VIDEO)
        timeline = [WindowPrediction(w, *scores.mean(record.video, k + 1)) for k, w in enumerate(record.windows)]
        return VideoPrediction(path=path, info=record.info, scores=mean, num_views=views, timeline=timeline)


def _top_json(scores: torch.Tensor, class_names: Sequence[str], k: int) -> list[dict[str, Any]]:
    return [{"class": name, "probability": round(p, 6)} for name, p in top_classes(scores, class_names, k)]


def _scores_json(scores: torch.Tensor, class_names: Sequence[str], k: int, threshold: float | None,
                 all_probabilities: bool) -> dict[str, Any]:
    """``top_k``, and ``labels`` (the classes >= ``threshold``) and ``probabilities`` (every class) when asked."""
    entry: dict[str, Any] = {"top_k": _top_json(scores, class_names, k)}
    if threshold is not None:
        entry["labels"] = [{"class": name, "probability": round(p, 6)}
                           for name, p in select_classes(scores, class_names, k, threshold)]
    if all_probabilities:
        entry["probabilities"] = {name: round(float(p), 6) for name, p in zip(class_names, scores.tolist())}
    return entry


def predictions_to_json(results: Sequence[VideoPrediction | FailedVideo], *, class_names: Sequence[str], k: int,
                        meta: dict[str, Any] | None = None, threshold: float | None = None,
                        all_probabilities: bool = False) -> dict[str, Any]:
    """Everything ``predict`` found, as JSON-ready containers: per video its top-k, its timeline, and
    the files that failed; with ``threshold``, also the ``labels`` at or above it; with
    ``all_probabilities`` (multi-label models), every class's probability."""
    videos, failed = [], []
    for r in results:
        if isinstance(r, FailedVideo):
            failed.append({"path": r.path, "error": r.error})
            continue
        videos.append({
            "path": r.path, "duration": round(r.info.duration, 6), "fps": round(r.info.fps, 6),
            "num_views": r.num_views, **_scores_json(r.scores, class_names, k, threshold, all_probabilities),
            "timeline": [{"start": round(w.window.start, 6), "end": round(w.window.end, 6), "num_views": w.num_views,
                          **_scores_json(w.scores, class_names, k, threshold, all_probabilities)} for w in r.timeline],
        })
    return {**(meta or {}), "class_names": list(class_names), "videos": videos, "failed": failed}


def write_predictions(path: str | os.PathLike, data: dict[str, Any]) -> str:
    """Write ``predictions_to_json``'s result to ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    return os.fspath(path)
