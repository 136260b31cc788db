"""The composition roots: ``train(cfg)`` and ``test(cfg)``, called by ``tools/train.py`` and
``tools/test.py``. They validate the config before any heavy work (``nlnet.config.validate``), turn it
into objects (``nlnet.config.instantiate``) and assemble the trainer and its hooks. No other engine
module sees a config.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from nlnet import config as C
from nlnet.data.classes import class_difference
from nlnet.engine import distributed as du
from nlnet.engine import hooks as H
from nlnet.engine.attention_hook import clip_of_dataset
from nlnet.engine.checkpoint import (CheckpointManager, checkpoint_run_dir, load_checkpoint, load_model_state,
                                    require_training_state)
from nlnet.engine.evaluation import evaluate, write_results
from nlnet.engine.loader import EndlessLoader, build_eval_loader
from nlnet.engine.objectives import metrics_summary, objective_for
from nlnet.engine.prologue import BatchPrologue
from nlnet.engine.report import write_plan
from nlnet.engine.schedule import ScheduleBudget, build_scheduler
from nlnet.engine.tensorboard import open_writer, write_eval_metrics
from nlnet.engine.trainer import Trainer
from nlnet.engine.weights import load_init_checkpoint, load_pretrained, stored_model_config
from nlnet.utils.errors import CheckpointError, ConfigError, one_line
from nlnet.utils.io import exclusive_lock, remove_stale_temporaries, require_folder
from nlnet.utils.logger import get_logger, setup_logging
from nlnet.utils.seeding import seed_everything, set_rng_state


def build_model(model_cfg: Any) -> nn.Module:
    """The network of a ``model`` config (``instantiate(model_cfg.net)``; errors name the config key)."""
    return C.instantiate(model_cfg.net)


def check_num_classes(model: nn.Module, classes: list[str], annotations: Any, label_map: Any = None) -> None:
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != len(classes):
        source = f"the label map {label_map} lists" if label_map else f"{annotations} has"
        raise ConfigError(
            f"model.net.num_classes={num_classes} but {source} {len(classes)} classes: "
            f"set model.net.num_classes={len(classes)}"
        )


@contextlib.contextmanager
def _own_run_directory(run_dir: str) -> Iterator[None]:
    """Rank 0 locks the run directory against a second writer and removes what interrupted writes left;
    every rank sets up logging."""
    holder: contextlib.AbstractContextManager = exclusive_lock(run_dir) if du.is_main_process() else \
        contextlib.nullcontext()
    with holder as previous:
        setup_logging(run_dir, rank=du.get_rank())
        if previous:
            get_logger().warning(f"took over the lock of {run_dir} left by {previous}, which is no longer running")
        if du.is_main_process():
            for path in remove_stale_temporaries(run_dir) + remove_stale_temporaries(os.path.join(run_dir, "checkpoints")):
                get_logger().info(f"removed {path}, left by an interrupted write")
        yield


# ---- training ---------------------------------------------------------------------------------------
def train(cfg: Any) -> dict[str, Any]:
    """Train (and optionally test) the run ``cfg`` describes; resumes from ``cfg.resume`` or from the
    newest intact checkpoint in the run directory.

    Returns:
        A summary: run_dir, iteration, stopped (reason or None), exit_code, metrics, results_path.
    """
    t_cfg = cfg.trainer
    C.validate(cfg, splits=("train", "val") if (t_cfg.eval_period or t_cfg.test_at_end) else ("train",))
    run_dir = os.path.abspath(str(cfg.run_dir))
    require_folder(run_dir, key="run_dir")
    device = du.init_distributed(str(t_cfg.device))
    try:
        with _own_run_directory(run_dir):
            return _train(cfg, run_dir, device)
    finally:
        du.cleanup()


@dataclass
class _Data:
    """The training set and what the loaders and evaluations of a run share."""

    train_set: Any
    classes: list[str]
    loader_kw: dict[str, Any]
    eval_kw: dict[str, Any]
    objective: Any


def _train(cfg: Any, run_dir: str, device: torch.device) -> dict[str, Any]:
    """The steps of a training run; each is a function below."""
    t_cfg = cfg.trainer
    _setup_process(t_cfg, run_dir, device)
    manager = CheckpointManager(directory=os.path.join(run_dir, "checkpoints"), keep_last=int(t_cfg.keep_last))
    resume_path, state = _checkpoint_to_resume(cfg, manager)
    model = _build_model(cfg, fresh_start=state is None)
    data = _build_data(cfg, model, device)
    trainer, budget = _build_trainer(cfg, model, data, device)
    config_text = C.to_yaml(cfg)
    if du.is_main_process():
        with open(os.path.join(run_dir, "config.yaml"), "w") as f:
            f.write(config_text)
        write_plan(run_dir, budget=budget, recipe_max_iter=int(t_cfg.max_iter))
    iteration = int(state["iteration"]) if state is not None else 0
    writer = open_writer(os.path.join(run_dir, "tensorboard"), purge_step=iteration) \
        if _uses_tensorboard(cfg) else None
    results: dict[str, Any] = {}
    try:
        hooks, final_test = _build_hooks(cfg, trainer, data, manager, run_dir=run_dir, writer=writer,
                                         config_text=config_text, results=results)
        trainer.register_hooks(hooks)
        if state is not None:  # after the hooks: they get their state back too
            _resume(trainer, resume_path, state, seed=int(t_cfg.seed))
        start = time.perf_counter()
        with contextlib.closing(trainer.data):  # the workers end here, also on an error
            trainer.train()
        if trainer.start_iter >= trainer.max_iter:
            get_logger().info(f"{run_dir} is already trained to iteration {trainer.iter}; to train again, delete "
                              "it or change an override")
            if final_test is not None and not trainer.stop_reason:  # e.g. killed during its final test
                trainer.call_hooks("after_eval", final_test())  # best.pt as in an uninterrupted run
    finally:
        if writer is not None:
            writer.close()
    signals = next(h for h in hooks if isinstance(h, H.SignalHandler))
    return _summarize(trainer, run_dir, results, seconds=time.perf_counter() - start, stop_signal=signals.stop_signal)


def _setup_process(t_cfg: Any, run_dir: str, device: torch.device) -> None:
    get_logger().info(f"run directory: {run_dir}")
    get_logger().info(f"device: {device}, processes: {du.get_world_size()}, torch {torch.__version__}")
    if t_cfg.sync_bn and du.get_world_size() > 1 and device.type != "cuda":
        raise ConfigError("trainer.sync_bn=true needs CUDA devices (SyncBatchNorm does not run on CPU)")
    if t_cfg.get("num_threads"):
        torch.set_num_threads(int(t_cfg.num_threads))
    seed_everything(int(t_cfg.seed) + du.get_rank())


def _build_model(cfg: Any, *, fresh_start: bool) -> nn.Module:
    """The network; on a fresh start, initialised from another run (fine-tuning) or ImageNet weights."""
    model = build_model(cfg.model)
    if fresh_start and cfg.model.get("init_checkpoint"):
        load_init_checkpoint(model, str(cfg.model.init_checkpoint), pretrained=cfg.model.get("pretrained"))
    elif fresh_start and cfg.model.get("pretrained"):  # ImageNet inflation
        load_pretrained(model, str(cfg.model.pretrained))
    return model


def _build_data(cfg: Any, model: nn.Module, device: torch.device) -> _Data:
    train_set = C.instantiate(cfg.data.train)
    classes = list(train_set.classes)
    check_num_classes(model, classes, train_set.annotations, cfg.data.train.get("label_map"))
    get_logger().info(f"model: {type(model).__name__} with {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
                      f"parameters; training set: {len(train_set)} clips, {len(classes)} classes")
    eval_kw = _eval_settings(cfg, device, classes, train_set)
    loader_kw = dict(batch_size=int(cfg.data.batch_size), num_workers=eval_kw["num_workers"],
                     num_replicas=du.get_world_size(), rank=du.get_rank(), worker_threads=eval_kw["worker_threads"],
                     failures={})  # one log line per bad file
    return _Data(train_set=train_set, classes=classes, loader_kw=loader_kw, eval_kw=eval_kw,
                 objective=eval_kw["objective"])


def _uses_tensorboard(cfg: Any) -> bool:
    """Whether the run logs to TensorBoard (a ``logger`` node; ``logger=null`` turns it off)."""
    return bool(cfg.get("logger")) and "_target_" in cfg.logger


def _eval_settings(cfg: Any, device: torch.device, class_names: list[str], dataset: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`_evaluate_with_videos` (validation, final test, ``test``); the
    objective is the one of ``dataset``'s labels, with ``trainer.view_aggregation`` (null: its default)."""
    return dict(device=device, precision=str(cfg.trainer.precision), channels_last=bool(cfg.trainer.channels_last),
                batch_size=int(cfg.trainer.get("eval_batch_size") or cfg.data.batch_size),
                num_workers=int(cfg.data.num_workers), worker_threads=int(cfg.data.get("worker_threads") or 1),
                class_names=class_names,
                objective=objective_for(dataset, aggregation=cfg.trainer.get("view_aggregation")))


def _metrics_line(m: dict[str, Any]) -> str:
    return (f"test: {metrics_summary(m, '%')} "
            f"({m['num_videos']} videos x {m['views_per_video']} views, {m['failed_videos']} failed)")


def check_label_kind(dataset: Any, multi_label: bool, key: str, trained_on: str) -> None:
    """Refuse a multi-label dataset for a single-label model, or the reverse (one line naming ``key``)."""
    kinds = {True: "multi-label", False: "single-label"}
    if bool(getattr(dataset, "multi_label", False)) != multi_label:
        raise ConfigError(f"{key}: a {kinds[not multi_label]} dataset, but {trained_on} is {kinds[multi_label]}; "
                          f"use a {kinds[multi_label]} dataset (multi-label: data.*.reader)")


def _build_trainer(cfg: Any, model: nn.Module, data: _Data, device: torch.device) -> tuple[Trainer, ScheduleBudget]:
    """The model on its device (DDP, compile), the optimiser and schedule scaled to the batch, the loader."""
    t_cfg, world = cfg.trainer, du.get_world_size()
    prologue = BatchPrologue.for_dataset(data.train_set, device=device, channels_last=bool(t_cfg.channels_last))
    prologue.prepare_model(model)
    if t_cfg.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    total_batch_size = int(cfg.data.batch_size) * world
    optimizer = C.instantiate(cfg.optim, model=model, total_batch_size=total_batch_size)
    budget = ScheduleBudget(unit=str(t_cfg.get("schedule_unit") or "iterations"), total_batch_size=total_batch_size,
                            reference_batch_size=int(t_cfg.get("schedule_batch_size") or total_batch_size))
    schedule = C.instantiate(cfg.schedule).scaled(budget)
    max_iter = budget.iterations(int(t_cfg.max_iter))
    get_logger().info(budget.describe(max_iter=int(t_cfg.max_iter), schedule=schedule))
    train_module: nn.Module = model
    if world > 1:
        train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if t_cfg.compile:
        train_module = torch.compile(train_module)
    loader = EndlessLoader(dataset=data.train_set, seed=int(t_cfg.seed), pin_memory=device.type == "cuda",
                           **data.loader_kw)
    trainer = Trainer(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, schedule=schedule),
                      data=loader, max_iter=max_iter, device=device, train_module=train_module,
                      precision=str(t_cfg.precision), grad_clip_norm=t_cfg.grad_clip_norm,
                      prologue=prologue, objective=data.objective)
    return trainer, budget


def _build_hooks(cfg: Any, trainer: Trainer, data: _Data, manager: CheckpointManager, *, run_dir: str, writer: Any,
                 config_text: str, results: dict[str, Any]) -> tuple[list[H.HookBase], Callable[[], Any] | None]:
    """The hooks in their order (see ``nlnet.engine.hooks``), and the final test (None when off), which
    fills ``results`` with its metrics and results path."""
    t_cfg, model = cfg.trainer, trainer.model
    hooks: list[H.HookBase] = [H.SignalHandler()]
    if t_cfg.precise_bn_iters > 0:
        def precise_bn_batches(iteration: int) -> Iterator[Any]:
            with contextlib.closing(EndlessLoader(dataset=data.train_set, seed=int(t_cfg.seed) + 1 + iteration,
                                                  **data.loader_kw)) as batches:
                yield from batches
        hooks.append(H.PreciseBN(batches=precise_bn_batches, num_iters=int(t_cfg.precise_bn_iters),
                                 periods=(int(t_cfg.checkpoint_period), int(t_cfg.eval_period))))
    hooks.append(H.Checkpointer(manager=manager, period=int(t_cfg.checkpoint_period),
                                extra={"config": C.to_container(cfg), "class_names": data.classes,
                                       "multi_label": data.objective.multi_label},
                                best_metric=data.objective.best_metric))
    eval_set, final_test = None, None
    if t_cfg.eval_period > 0:
        val_set = eval_set = C.instantiate(cfg.data.val,
                                           **({} if t_cfg.eval_multi_view else {"num_clips": 1, "num_crops": 1}))
        check_label_kind(val_set, data.objective.multi_label, "data.val", "data.train")
        hooks.append(H.EvalHook(period=int(t_cfg.eval_period), at_end=not t_cfg.test_at_end,
                                evaluate=lambda: {**_evaluate_with_videos(model, val_set, **data.eval_kw)[0],
                                                  "tag": "val"}))
    if t_cfg.test_at_end:
        test_set = C.instantiate(cfg.data.val)
        check_label_kind(test_set, data.objective.multi_label, "data.val", "data.train")
        eval_set = eval_set or test_set

        def test_and_record() -> dict[str, Any]:
            metrics, path = _test_and_write(model, test_set, output_dir=run_dir, checkpoint=manager.path(trainer.iter),
                                            **data.eval_kw)
            results.update(metrics=metrics, results_path=path)
            return {**metrics, "tag": "test"}
        final_test = test_and_record
        hooks.append(H.EvalHook(period=0, evaluate=final_test, at_end=True))
    hooks.append(H.MetricLogger(period=int(t_cfg.log_period)))
    if _uses_tensorboard(cfg):
        hparams = {"model": str(cfg.model.net.get("_target_")), "depth": cfg.model.net.get("depth"),
                   "nonlocal_blocks": str(cfg.model.net.get("nonlocal_blocks")),
                   "pairwise": cfg.model.get("nonlocal", {}).get("pairwise"), "lr": cfg.optim.get("lr"),
                   "batch_size": int(cfg.data.batch_size) * du.get_world_size(), "max_iter": trainer.max_iter,
                   "precision": str(t_cfg.precision)}
        hooks.append(C.instantiate(cfg.logger, writer=writer, config_text=config_text, hparams=hparams,
                                   class_names=data.classes))
        # attention figures of the first validation video at each evaluation (nlnet.engine.attention_hook)
        if t_cfg.get("attention_figures") and eval_set is not None and eval_set.num_videos:
            hooks.append(C.instantiate(t_cfg.attention_figures, writer=writer, **clip_of_dataset(eval_set)))
    if t_cfg.progress_bar:
        hooks.append(H.ProgressBar())
    return hooks, final_test


def _summarize(trainer: Trainer, run_dir: str, results: dict[str, Any], *, seconds: float,
               stop_signal: int | None) -> dict[str, Any]:
    log = get_logger()
    summary: dict[str, Any] = {"run_dir": run_dir, "iteration": trainer.iter, "stopped": trainer.stop_reason,
                               "exit_code": 0, "seconds": seconds, **results}
    if trainer.stop_reason:
        log.info(f"stopped at iteration {trainer.iter} ({trainer.stop_reason}); the same command resumes")
        summary["exit_code"] = 128 + int(stop_signal or signal.SIGTERM)
    else:
        log.info(f"training finished: iteration {trainer.iter} of {trainer.max_iter} ({seconds:.0f}s)")
        if results:
            log.info(_metrics_line(results["metrics"]))
            log.info(f"results: {results['results_path']}")
        log.info(f"TensorBoard: tensorboard --logdir {run_dir}")
    return summary


def _checkpoint_to_resume(cfg: Any, manager: CheckpointManager) -> tuple[str | None, dict | None]:
    """``resume=PATH`` (refused when damaged), else with ``trainer.auto_resume`` the newest intact
    checkpoint of the run directory (damaged newer ones are skipped with a warning)."""
    if cfg.get("resume"):
        path = str(cfg.resume)
        return path, require_training_state(load_checkpoint(path, map_location="cpu"), path)
    if not cfg.trainer.auto_resume:
        return None, None
    path, state, skipped = manager.load_latest(map_location="cpu")
    for message in skipped:
        get_logger().warning(f"{message}: skipped; " + (f"resuming from {path}" if path else "starting afresh"))
    return path, state


def _resume(trainer: Trainer, path: str, state: dict[str, Any], *, seed: int) -> None:
    load_model_state(trainer.model, state, path)
    try:
        trainer.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this run ({one_line(e)}); resume from a checkpoint "
                              "of the same configuration, or use another run directory") from e
    rank, world = du.get_rank(), du.get_world_size()
    rng_states = state.get("rng_states") or []
    if state.get("world_size") == world and len(rng_states) == world:
        set_rng_state(rng_states[rank])
    else:
        get_logger().warning(f"checkpoint written by {state.get('world_size')} processes, resuming with {world}: "
                             "random streams are re-seeded (the data order is kept)")
        seed_everything(seed + rank + 1_000_003 * trainer.iter)
    get_logger().info(f"resumed from {path} at iteration {trainer.iter}")


# ---- evaluation -------------------------------------------------------------------------------------
def _evaluate_with_videos(model: nn.Module, dataset: Any, *, device: torch.device, precision: str,
                          channels_last: bool, batch_size: int, num_workers: int, worker_threads: int,
                          class_names: list[str], objective: Any) -> tuple:
    if getattr(dataset, "full_frame", False):  # whole frames: sizes differ between videos, one clip a batch
        batch_size = 1
    loader = build_eval_loader(dataset=dataset, batch_size=batch_size, num_workers=num_workers,
                               num_replicas=du.get_world_size(), rank=du.get_rank(),
                               pin_memory=device.type == "cuda", worker_threads=worker_threads)
    return evaluate(model, loader, num_videos=int(dataset.num_videos), num_classes=len(class_names), device=device,
                    class_names=class_names, views_per_video=int(dataset.num_views), precision=precision,
                    prologue=BatchPrologue.for_dataset(dataset, device=device, channels_last=channels_last),
                    probabilities=objective.probabilities, aggregation=objective.aggregation, metrics=objective.metrics)


def _test_and_write(model: nn.Module, dataset: Any, *, output_dir: str, checkpoint: str | None,
                    **kw: Any) -> tuple[dict[str, Any], str]:
    metrics, videos = _evaluate_with_videos(model, dataset, **kw)
    path = os.path.join(output_dir, "results.json")
    if du.is_main_process():
        path = write_results(output_dir, metrics, videos, class_names=kw["class_names"],
                             video_paths=list(getattr(dataset, "video_paths", []) or []),
                             extra={"checkpoint": checkpoint, "view_aggregation": kw["objective"].aggregation})
        for failed, reason in sorted(videos.failures.items()):
            get_logger().warning(f"cannot decode {failed} ({reason}); left out of the results")
    du.barrier()
    return metrics, path


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
    state = load_checkpoint(checkpoint, map_location="cpu")
    model = build_model(stored_model_config(cfg.model))  # never inflates: the weights are the checkpoint's
    load_model_state(model, state, checkpoint)
    dataset = C.instantiate(cfg.data.val)
    prologue = BatchPrologue.for_dataset(dataset, device=device, channels_last=bool(cfg.trainer.channels_last))
    prologue.prepare_model(model)
    class_names = list(state.get("class_names") or dataset.classes)
    check_label_kind(dataset, bool(state.get("multi_label", False)), "data.val", f"checkpoint {checkpoint}")
    difference = class_difference(dataset.classes, class_names)
    if difference:
        label_map = cfg.data.val.get("label_map")
        raise ConfigError(f"data.val.label_map={label_map}: {difference}" if label_map else
                          f"data.val.annotations: {difference}")
    log.info(f"testing {checkpoint} (iteration {state.get('iteration')}) on {dataset.num_videos} videos x "
             f"{dataset.num_views} views of {dataset.num_frames} frames at stride {dataset.sampling_rate}")
    start = time.perf_counter()
    metrics, path = _test_and_write(model, dataset, output_dir=output_dir, checkpoint=os.path.abspath(checkpoint),
                                    **_eval_settings(cfg, device, class_names, dataset))
    if _uses_tensorboard(cfg):
        writer = open_writer(os.path.join(output_dir, "tensorboard"))
        if writer is not None:
            with writer:
                write_eval_metrics(writer, metrics, int(state.get("iteration", 0)), tag="test", class_names=class_names)
    log.info(f"{_metrics_line(metrics)} in {time.perf_counter() - start:.0f}s")
    log.info(f"results: {path}")
    return {**metrics, "results_path": path}
