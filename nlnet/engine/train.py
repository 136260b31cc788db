"""The composition root of training: ``train(cfg)``, called by the training command. It validates the
config before any heavy work (``nlnet.config.validate``), turns it into objects
(``nlnet.config.instantiate``) and assembles the trainer and its hooks; the test at the end is
``nlnet.engine.test``'s. No other engine module sees a config.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn as nn

from nlnet import config as C
from nlnet.checkpoint.files import CheckpointManager, load_checkpoint, load_model_state, require_training_state
from nlnet.checkpoint.weights import load_init_checkpoint, load_pretrained
from nlnet.data.loader import EndlessLoader
from nlnet.data.prologue import BatchPrologue
from nlnet.engine import hooks as H
from nlnet.engine.hooks.attention import clip_of_dataset
from nlnet.engine.hooks.tensorboard import open_writer
from nlnet.engine.run_dir import own_run_directory, restore_rng, write_plan
from nlnet.engine.settings import EvalSettings, LoaderSettings
from nlnet.engine.test import (
    check_label_kind,
    eval_settings,
    evaluate_dataset,
    metrics_line,
    test_and_write,
    uses_tensorboard,
)
from nlnet.engine.trainer import Trainer
from nlnet.solver.schedule import ScheduleBudget, build_scheduler
from nlnet.utils import distributed as du
from nlnet.utils.cluster import stop_signals
from nlnet.utils.errors import CheckpointError, ConfigError, one_line
from nlnet.utils.io import require_folder
from nlnet.utils.logger import get_logger
from nlnet.utils.seeding import seed_everything


def check_num_classes(model: nn.Module, classes: list[str], annotations: Any, label_map: Any = None) -> None:
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != len(classes):
        source = f"the label map {label_map} lists" if label_map else f"{annotations} has"
        raise ConfigError(
            f"model.net.num_classes={num_classes} but {source} {len(classes)} classes: "
            f"set model.net.num_classes={len(classes)}"
        )


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
        with own_run_directory(run_dir):
            return _train(cfg, run_dir, device)
    finally:
        du.cleanup()


@dataclass
class _Data:
    """The training set and what the loaders and evaluations of a run share."""

    train_set: Any
    classes: list[str]
    loader: LoaderSettings
    evaluation: EvalSettings
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
        if uses_tensorboard(cfg) else None
    results: dict[str, Any] = {}
    signals = H.SignalHandler(signals=stop_signals())  # the first hook; its signal sets the exit code
    try:
        hooks, final_test = _build_hooks(cfg, trainer, data, manager, signals, run_dir=run_dir, writer=writer,
                                         config_text=config_text, results=results)
        trainer.register_hooks(hooks)
        if resume_path is not None and state is not None:  # after the hooks: they get their state back too
            _resume(trainer, resume_path, state, seed=int(t_cfg.seed))
        start = time.perf_counter()
        assert isinstance(trainer.data, EndlessLoader)  # as _build_trainer made it
        with contextlib.closing(trainer.data):  # the workers end here, also on an error
            trainer.train()
        if trainer.start_iter >= trainer.max_iter:
            get_logger().info(f"{run_dir} is already trained to iteration {trainer.iter}; to train again, delete "
                              "it or change an override")
            if final_test is not None and not trainer.stop_reason:
                trainer.call_hooks("after_eval", final_test())  # best.pt as in an uninterrupted run
    finally:
        if writer is not None:
            writer.close()
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
    model = C.instantiate(cfg.model.net)  # errors name the config key
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
    loader = LoaderSettings(batch_size=int(cfg.data.batch_size), num_workers=int(cfg.data.num_workers),
                            worker_threads=int(cfg.data.get("worker_threads") or 1), num_replicas=du.get_world_size(),
                            rank=du.get_rank())  # its failures and decoders: one log line per bad file, per decoder
    evaluation = eval_settings(cfg, device, classes, train_set)
    return _Data(train_set=train_set, classes=classes, loader=loader, evaluation=evaluation,
                 objective=evaluation.objective)


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
        train_module = cast(nn.Module, torch.compile(train_module))  # an OptimizedModule for a module
    loader = EndlessLoader(dataset=data.train_set, seed=int(t_cfg.seed), pin_memory=device.type == "cuda",
                           **data.loader.loader_kwargs())
    trainer = Trainer(model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, schedule=schedule),
                      data=loader, max_iter=max_iter, device=device, train_module=train_module,
                      precision=str(t_cfg.precision), grad_clip_norm=t_cfg.grad_clip_norm,
                      prologue=prologue, objective=data.objective)
    return trainer, budget


def _build_hooks(cfg: Any, trainer: Trainer, data: _Data, manager: CheckpointManager, signals: H.SignalHandler, *,
                 run_dir: str, writer: Any, config_text: str,
                 results: dict[str, Any]) -> tuple[list[H.HookBase], Callable[[], Any] | None]:
    """The hooks in their order (see ``nlnet.engine.hooks``), and the final test (None when off), which
    fills ``results`` with its metrics and results path."""
    t_cfg, model = cfg.trainer, trainer.model
    hooks: list[H.HookBase] = [signals]
    if t_cfg.precise_bn_iters > 0:
        def precise_bn_batches(iteration: int) -> Iterator[Any]:
            with contextlib.closing(EndlessLoader(dataset=data.train_set, seed=int(t_cfg.seed) + 1 + iteration,
                                                  **data.loader.loader_kwargs())) as batches:
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
                                evaluate=lambda: {**evaluate_dataset(model, val_set, data.evaluation)[0],
                                                  "tag": "val"}))
    if t_cfg.test_at_end:
        test_set = C.instantiate(cfg.data.val)
        check_label_kind(test_set, data.objective.multi_label, "data.val", "data.train")
        eval_set = eval_set or test_set

        def test_and_record() -> dict[str, Any]:
            metrics, path = test_and_write(model, test_set, data.evaluation, output_dir=run_dir,
                                           checkpoint=manager.path(trainer.iter))
            results.update(metrics=metrics, results_path=path)
            return {**metrics, "tag": "test"}
        final_test = test_and_record
        hooks.append(H.EvalHook(period=0, evaluate=final_test, at_end=True))
    hooks.append(H.MetricLogger(period=int(t_cfg.log_period)))
    if uses_tensorboard(cfg):
        hparams = {"model": str(cfg.model.net.get("_target_")), "depth": cfg.model.net.get("depth"),
                   "nonlocal_blocks": str(cfg.model.net.get("nonlocal_blocks")),
                   "pairwise": cfg.model.get("nonlocal", {}).get("pairwise"), "lr": cfg.optim.get("lr"),
                   "batch_size": int(cfg.data.batch_size) * du.get_world_size(), "max_iter": trainer.max_iter,
                   "precision": str(t_cfg.precision)}
        hooks.append(C.instantiate(cfg.logger, writer=writer, config_text=config_text, hparams=hparams,
                                   class_names=data.classes))
        # attention figures of the first validation video at each evaluation (nlnet.engine.hooks.attention)
        if t_cfg.get("attention_figures") and eval_set is not None and eval_set.num_videos:
            # the view is an object, not config: given after instantiation so that it arrives as itself
            hook = C.instantiate(t_cfg.attention_figures, writer=writer, _partial_=True)
            hooks.append(hook(**clip_of_dataset(eval_set)))
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
            log.info(metrics_line(results["metrics"]))
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
    latest, state, skipped = manager.load_latest(map_location="cpu")
    for message in skipped:
        get_logger().warning(f"{message}: skipped; " + (f"resuming from {latest}" if latest else "starting afresh"))
    return latest, state


def _resume(trainer: Trainer, path: str, state: dict[str, Any], *, seed: int) -> None:
    load_model_state(trainer.model, state, path)
    try:
        trainer.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this run ({one_line(e)}); resume from a checkpoint "
                              "of the same configuration, or use another run directory") from e
    restore_rng(state.get("rng_states") or [], written_by=state.get("world_size"), seed=seed, iteration=trainer.iter)
    get_logger().info(f"resumed from {path} at iteration {trainer.iter}")


