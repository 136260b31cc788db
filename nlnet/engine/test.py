"""The composition root of testing: ``test(cfg)``, called by the test command (a checkpoint's multi-view
test, paper §4.1), and the evaluation steps training shares with it (validation, the final test).
"""
from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn as nn

from nlnet import config as C
from nlnet.checkpoint.files import checkpoint_run_dir
from nlnet.checkpoint.restore import restore_checkpoint
from nlnet.data.classes import class_difference
from nlnet.data.loader import build_eval_loader
from nlnet.data.prologue import BatchPrologue
from nlnet.engine.hooks.tensorboard import open_writer, write_eval_metrics
from nlnet.engine.settings import EvalSettings
from nlnet.evaluation.multiview import evaluate, write_results
from nlnet.evaluation.objectives import metrics_summary, objective_for
from nlnet.utils import distributed as du
from nlnet.utils.errors import ConfigError
from nlnet.utils.io import require_folder
from nlnet.utils.logger import get_logger, setup_logging


def evaluate_dataset(model: nn.Module, dataset: Any, settings: EvalSettings) -> tuple:
    """Multi-view evaluation of ``model`` on ``dataset`` (paper §4.1); returns (metrics, videos)."""
    batch_size = settings.batch_size
    if getattr(dataset, "full_frame", False):  # whole frames: sizes differ between videos, one clip a batch
        batch_size = 1
    loader = build_eval_loader(dataset=dataset, batch_size=batch_size, num_workers=settings.num_workers,
                               num_replicas=du.get_world_size(), rank=du.get_rank(),
                               pin_memory=settings.device.type == "cuda", worker_threads=settings.worker_threads)
    class_names = settings.class_names
    return evaluate(model, loader, num_videos=int(dataset.num_videos), num_classes=len(class_names),
                    device=settings.device, class_names=class_names, views_per_video=int(dataset.num_views),
                    precision=settings.precision,
                    prologue=BatchPrologue.for_dataset(dataset, device=settings.device,
                                                       channels_last=settings.channels_last),
                    probabilities=settings.objective.probabilities, aggregation=settings.objective.aggregation,
                    metrics=settings.objective.metrics)


def test_and_write(model: nn.Module, dataset: Any, settings: EvalSettings, *, output_dir: str,
                   checkpoint: str | None) -> tuple[dict[str, Any], str]:
    """Evaluate and write ``results.json`` and ``per_video_scores.json`` in ``output_dir`` (rank 0);
    returns (metrics, results path)."""
    metrics, videos = evaluate_dataset(model, dataset, settings)
    path = os.path.join(output_dir, "results.json")
    if du.is_main_process():
        path = write_results(output_dir, metrics, videos, class_names=settings.class_names,
                             video_paths=list(getattr(dataset, "video_paths", []) or []),
                             extra={"checkpoint": checkpoint, "view_aggregation": settings.objective.aggregation})
        for failed, reason in sorted(videos.failures.items()):
            get_logger().warning(f"cannot decode {failed} ({reason}); left out of the results")
    du.barrier()
    return metrics, path


def eval_settings(cfg: Any, device: torch.device, class_names: list[str], dataset: Any) -> EvalSettings:
    """The evaluation settings of a run config (validation, final test, ``test``); the objective is the
    one of ``dataset``'s labels, with ``trainer.view_aggregation`` (null: its default)."""
    return EvalSettings(device=device, precision=str(cfg.trainer.precision),
                        channels_last=bool(cfg.trainer.channels_last),
                        batch_size=int(cfg.trainer.get("eval_batch_size") or cfg.data.batch_size),
                        num_workers=int(cfg.data.num_workers), worker_threads=int(cfg.data.get("worker_threads") or 1),
                        class_names=class_names,
                        objective=objective_for(dataset, aggregation=cfg.trainer.get("view_aggregation")))


def uses_tensorboard(cfg: Any) -> bool:
    """Whether the run logs to TensorBoard (a ``logger`` node; ``logger=null`` turns it off)."""
    return bool(cfg.get("logger")) and "_target_" in cfg.logger


def check_label_kind(dataset: Any, multi_label: bool, key: str, trained_on: str) -> None:
    """Refuse a multi-label dataset for a single-label model, or the reverse (one line naming ``key``)."""
    kinds = {True: "multi-label", False: "single-label"}
    if bool(getattr(dataset, "multi_label", False)) != multi_label:
        raise ConfigError(f"{key}: a {kinds[not multi_label]} dataset, but {trained_on} is {kinds[multi_label]}; "
                          f"use a {kinds[multi_label]} dataset (multi-label: data.*.reader)")


def metrics_line(m: dict[str, Any]) -> str:
    return (f"test: {metrics_summary(m, '%')} "
            f"({m['num_videos']} videos x {m['views_per_video']} views, {m['failed_videos']} failed)")


def test(cfg: Any) -> dict[str, Any]:
    """Multi-view test of ``cfg.checkpoint``; writes ``results.json`` and ``per_video_scores.json`` in
    ``cfg.output_dir`` (default: the checkpoint's run directory).

    ``cfg`` is the checkpoint's stored config with the command line's overrides applied
    (``nlnet.config.apply_overrides``).

    Returns:
        The metrics (top1, top5, mean_class_accuracy, ...) plus results_path.
    """
    checkpoint = str(cfg.checkpoint)
    if not os.path.isfile(checkpoint):
        raise ConfigError(f"checkpoint: file not found: {checkpoint}")
    output_dir = os.path.abspath(str(cfg.get("output_dir") or checkpoint_run_dir(checkpoint)))
    require_folder(output_dir, key="output_dir")
    C.validate(cfg, splits=("val",))
    device = du.init_distributed(str(cfg.trainer.device))
    try:
        return _test(cfg, checkpoint, output_dir, device)
    finally:
        du.cleanup()


def _test(cfg: Any, checkpoint: str, output_dir: str, device: torch.device) -> dict[str, Any]:
    if cfg.trainer.get("num_threads"):
        torch.set_num_threads(int(cfg.trainer.num_threads))
    setup_logging(output_dir, rank=du.get_rank(), filename="test_log.txt")
    log = get_logger()
    # never inflates: the weights are the checkpoint's; the network is the (overridden) config's
    restored = restore_checkpoint(checkpoint, config={"model": C.to_container(cfg.model)})
    model = restored.model
    dataset = C.instantiate(cfg.data.val)
    prologue = BatchPrologue.for_dataset(dataset, device=device, channels_last=bool(cfg.trainer.channels_last))
    prologue.prepare_model(model)
    class_names = list(restored.class_names or dataset.classes)
    check_label_kind(dataset, restored.multi_label, "data.val", f"checkpoint {checkpoint}")
    difference = class_difference(dataset.classes, class_names)
    if difference:
        label_map = cfg.data.val.get("label_map")
        raise ConfigError(f"data.val.label_map={label_map}: {difference}" if label_map else
                          f"data.val.annotations: {difference}")
    log.info(f"testing {checkpoint} (iteration {restored.iteration}) on {dataset.num_videos} videos x "
             f"{dataset.num_views} views of {dataset.num_frames} frames at stride {dataset.sampling_rate}")
    start = time.perf_counter()
    metrics, path = test_and_write(model, dataset, eval_settings(cfg, device, class_names, dataset),
                                   output_dir=output_dir,
                                   checkpoint=os.path.abspath(checkpoint))
    if uses_tensorboard(cfg):
        writer = open_writer(os.path.join(output_dir, "tensorboard"))
        if writer is not None:
            with writer:
                write_eval_metrics(writer, metrics, int(restored.iteration or 0), tag="test", class_names=class_names)
    log.info(f"{metrics_line(metrics)} in {time.perf_counter() - start:.0f}s")
    log.info(f"results: {path}")
    return {**metrics, "results_path": path}
