"""TensorBoard figures of what the non-local blocks attend to, at each validation (Figs. 1 and 3)."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from nlnet.data.transforms import ViewProtocol
from nlnet.engine.trainer import HookBase
from nlnet.utils.errors import ConfigError
from nlnet.utils.logger import get_logger
from nlnet.viz import attention_figure, decode_clip, nonlocal_names


class AttentionFigureHook(HookBase):
    """After each validation, draw a fixed clip's attention for chosen non-local blocks and log the
    figures to TensorBoard through ``writer`` (nothing is decoded or drawn where it is None: ranks
    other than 0).

    The clip is decoded once, before training: one of the views the test scores (``view``, the
    validation dataset's ``ViewProtocol``: its middle clip, centre crop or full frame;
    ``nlnet.viz.decode_clip``). Queries are chosen afresh at each validation (strongest
    responses), unless ``queries`` fixes them, so the figures follow the model as it learns.

    Args:
        writer: the run's ``SummaryWriter`` (shared with ``TensorBoardLogger``), or None.
        video: path of the validation video to draw (e.g. the validation set's first video).
        view: the test views (``nlnet.data.transforms.ViewProtocol``; a test-mode ``VideoDataset``'s ``view``).
        blocks: names of the blocks to draw (``model.nonlocal_names()``); empty: the last block;
            ``["all"]``: every block.
        queries: fixed query points [t, y, x] in frame/pixel coordinates of the crop, or None.
        num_queries: queries per figure when ``queries`` is None.
        top_k: keys drawn per query.
        panel_size: pixels per panel.
        tag: TensorBoard tag prefix; each figure is ``<tag>/<block name>``.
    """

    def __init__(self, *, writer: Any, video: str, view: ViewProtocol, blocks: Sequence[str] = (),
                 queries: Sequence[Sequence[float]] | None = None, num_queries: int = 3, top_k: int = 5,
                 panel_size: int = 128, tag: str = "attention") -> None:
        self.writer = writer
        self.video = video  # decoded once by before_train, as the test decodes it
        self.view = view
        self.blocks = list(blocks)
        # nlnet.viz.attention_figure with what each figure shows
        self.draw = functools.partial(attention_figure, queries=queries, num_queries=num_queries, top_k=top_k,
                                      panel_size=panel_size)
        self.tag = tag
        self.clip: torch.Tensor | None = None
        self.frames: Any = None
        self.logged: list[tuple[str, int]] = []  # (tag, iteration) of every figure written

    def _block_names(self) -> list[str]:
        names = nonlocal_names(self.trainer.model)
        if not names:
            return []
        if self.blocks == ["all"]:
            return names
        if not self.blocks:
            return names[-1:]
        unknown = [b for b in self.blocks if b not in names]
        if unknown:
            raise ConfigError(f"attention figure blocks {unknown} are not in the model; its blocks: {', '.join(names)}")
        return self.blocks

    def before_train(self) -> None:
        if self.writer is None or not self._block_names():
            return
        self.clip, self.frames = decode_clip(self.video, self.view)

    def after_eval(self, metrics: dict[str, Any]) -> None:
        if self.writer is None or self.clip is None:
            return
        it = self.trainer.iter
        for name in self._block_names():
            result = self.draw(self.trainer.model, self.clip, self.frames, block=name, device=self.trainer.device)
            tag = f"{self.tag}/{name}"
            self.writer.add_figure(tag, result.figure, it)
            self.logged.append((tag, it))
        get_logger().info(f"attention figures of {', '.join(self._block_names())} logged to TensorBoard")


def clip_of_dataset(dataset: Any, index: int = 0) -> dict[str, Any]:
    """The arguments of ``AttentionFigureHook`` that describe a test-mode ``VideoDataset``'s clips,
    for its video ``index`` (the trainer's fixed validation clip): the video and the dataset's view."""
    return {"video": dataset.video_paths[index], "view": dataset.view}


__all__ = ["AttentionFigureHook", "clip_of_dataset"]
