"""TensorBoard: the writer of a run, the logger hook (scalars, config, confusion matrix, hparams) and the
one function that writes an evaluation, shared by training and ``nlnet.engine.test``."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from nlnet.engine.hooks.timing import is_due, memory_mb
from nlnet.engine.trainer import HookBase
from nlnet.utils import distributed as du

EVAL_SCALARS = ("top1", "top5", "mean_class_accuracy", "map")  # those an evaluation has are written


def open_writer(log_dir: str, *, purge_step: int | None = None) -> Any:
    """A ``SummaryWriter`` on ``log_dir`` on rank 0 (events after ``purge_step``, left by an interrupted
    run, are dropped); None on other ranks. The caller closes it."""
    if not du.is_main_process():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir, purge_step=purge_step or None)


def confusion_figure(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> Any:
    """A matplotlib figure of the confusion matrix, rows normalised (true class -> predicted)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = torch.tensor(confusion, dtype=torch.float64)
    norm = cm / cm.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = min(2 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 60:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def write_eval_metrics(writer: Any, metrics: dict[str, Any], step: int, *, tag: str,
                       class_names: Sequence[str] = ()) -> None:
    """An evaluation in TensorBoard: ``<tag>/top1``, ``top5``, ``mean_class_accuracy`` (multi-label:
    ``<tag>/map``) and, when the metrics have one, the confusion matrix as a figure (used in training and
    by ``nlnet.engine.test``)."""
    for key in (k for k in EVAL_SCALARS if k in metrics):
        writer.add_scalar(f"{tag}/{key}", metrics[key], step)
    confusion = metrics.get("confusion_matrix")
    if confusion:
        import matplotlib.pyplot as plt

        fig = confusion_figure(confusion, list(class_names) or [str(i) for i in range(len(confusion))])
        writer.add_figure(f"{tag}/confusion_matrix", fig, step)
        plt.close(fig)


class TensorBoardLogger(HookBase):
    """TensorBoard scalars (train loss, lr, top-1/top-5, data vs compute time, clips/s, memory; val
    top-1/top-5/mean class accuracy), the config and the decoders that read the clips as text, the confusion
    matrix as a figure and hparams with the final metrics. Writes nothing where ``writer`` is None (ranks
    other than 0).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (created and closed by the caller, who
            may share it with other hooks), or None.
        period: iterations between scalar writes.
        config_text: the resolved config (YAML) shown under "config".
        hparams: flat hyper-parameters logged with the final metrics.
        class_names: labels of the confusion-matrix figure.

    Its state (resumed with the run) is the latest evaluation metrics, logged with the hparams.
    """

    def __init__(self, *, writer: Any, period: int = 20, config_text: str = "",
                 hparams: dict[str, Any] | None = None, class_names: Sequence[str] = ()) -> None:
        self.writer = writer
        self.period = period
        self.config_text = config_text
        self.hparams = dict(hparams or {})
        self.class_names = list(class_names)
        self.final_metrics: dict[str, float] = {}
        self._decoders: list[str] = []  # the decoders last written under "data/decoder"

    def state_dict(self) -> dict[str, Any]:
        return {"final_metrics": dict(self.final_metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.final_metrics = dict(state.get("final_metrics", {}))

    def before_train(self) -> None:
        if self.writer is not None and self.config_text:
            self.writer.add_text("config", "```\n" + self.config_text + "\n```", self.trainer.iter)

    def after_step(self) -> None:
        t = self.trainer
        if self.writer is None or not is_due(t.iter, self.period, t.max_iter):
            return
        s = t.storage
        w = self.writer
        for name, tag in (("loss", "train/loss"), ("top1", "train/top1"), ("top5", "train/top5"),
                          ("data_time", "time/data"), ("compute_time", "time/compute"),
                          ("clips_per_s", "throughput/clips_per_s"), ("grad_norm", "train/grad_norm")):
            if name in s.names():
                w.add_scalar(tag, s.avg(name), t.iter)
        w.add_scalar("train/lr", s.latest("lr"), t.iter)
        w.add_scalar("memory/peak_mib", memory_mb(t.device), t.iter)
        decoders = getattr(t.data, "decoders", None)  # EndlessLoader's: which decoder read the clips
        if decoders and sorted(decoders) != self._decoders:
            self._decoders = sorted(decoders)
            w.add_text("data/decoder", "\n".join(f"- {d}" for d in self._decoders), t.iter)

    def after_eval(self, metrics: dict[str, Any]) -> None:
        tag = metrics.get("tag", "val")
        self.final_metrics.update({f"{tag}/{key}": float(metrics[key]) for key in EVAL_SCALARS if key in metrics})
        if self.writer is not None:
            write_eval_metrics(self.writer, metrics, self.trainer.iter, tag=tag, class_names=self.class_names)

    def after_train(self) -> None:
        t = self.trainer
        if self.writer is None or t.iter != t.max_iter:
            return
        final = dict(self.final_metrics)
        if "loss" in t.storage.names():
            final["train/loss_final"] = t.storage.avg("loss")
        hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in self.hparams.items()}
        self.writer.add_hparams(hparams, final or {"train/loss_final": float("nan")}, run_name="hparams")
        self.writer.flush()
