"""Hooks of the training loop, one module per job: ``timing`` (log lines, progress bar), ``precise_bn``,
``checkpointing``, ``evaluation``, ``signals``, ``tensorboard`` and ``attention`` (figures). Each is
small and independent and owns its resumable state (``state_dict``/``load_state_dict``, stored in
checkpoints under ``hooks``); ``nlnet.engine.train`` assembles them and passes in what they share (the
TensorBoard writer).

Order matters within one iteration's ``after_step``: signals -> precise BN -> checkpoint -> eval ->
writers, so a checkpoint holds precise-BN statistics and evaluation sees them too.
"""
from nlnet.engine.hooks.checkpointing import Checkpointer
from nlnet.engine.hooks.evaluation import EvalHook
from nlnet.engine.hooks.precise_bn import PreciseBN, update_bn_stats
from nlnet.engine.hooks.signals import SignalHandler
from nlnet.engine.hooks.timing import MetricLogger, ProgressBar, is_due, memory_mb
from nlnet.engine.trainer import HookBase

__all__ = ["HookBase", "Checkpointer", "EvalHook", "PreciseBN", "update_bn_stats", "SignalHandler", "MetricLogger",
           "ProgressBar", "is_due", "memory_mb"]
