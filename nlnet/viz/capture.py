"""Run a model on one clip and capture what one non-local block attends to, then choose queries.

The block's input is captured with a forward pre-hook and handed to the block's own accessor,
:meth:`~nlnet.models.NonLocalBlock.attention`, which returns the weights it normalised with their
query and key grids; nothing here re-derives the block's layouts or pooling.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from nlnet.utils.errors import ConfigError
from nlnet.viz.geometry import AttentionMap, PixelMapping, Point

QUERY_SELECTIONS = ("response", "peak")


def nonlocal_names(model: nn.Module) -> list[str]:
    """Names of the model's non-local blocks, in order (``model.nonlocal_names()`` when it has one)."""
    if hasattr(model, "nonlocal_names"):
        # nn.Module types every attribute as Tensor | Module; a model that has it offers the method
        return list(cast(Callable[[], Iterable[str]], model.nonlocal_names)())
    from nlnet.models import NonLocalBlock

    return [name for name, module in model.named_modules() if isinstance(module, NonLocalBlock)]


def resolve_block(model: nn.Module, block: str | None) -> str:
    """The block name to visualise: ``block`` checked against the model's blocks, or the last one.

    Raises:
        ConfigError: the model has no non-local block, or ``block`` is not one of them (lists them).
    """
    names = nonlocal_names(model)
    if not names:
        raise ConfigError("the model has no non-local block to visualise (its nonlocal_blocks lists are all empty)")
    if block is None:
        return names[-1]
    if block not in names:
        raise ConfigError(f"unknown non-local block '{block}'; this model's blocks: {', '.join(names)}")
    return block


@dataclass(frozen=True)
class BlockCapture:
    """What one forward pass tells about one non-local block.

    Attributes:
        name: the block's module name.
        attention: the clip's weights on the global grids.
        mapping: feature/key grid -> frames and pixels of the clip.
        response: (T_f, H_f, W_f) norm over channels of the block's residual z - x (Eq. 6).
        logits: the model's output for the clip, (num_classes,) (log-probabilities for a model
            tested fully convolutionally).
    """

    name: str
    attention: AttentionMap
    mapping: PixelMapping
    response: Tensor
    logits: Tensor


@torch.no_grad()
def capture_attention(model: nn.Module, clip: Tensor, block: str | None = None) -> BlockCapture:
    """Run ``model`` on one clip and capture one non-local block's attention and response.

    A forward pre-hook records the block's input x (then ``block.attention(x)`` gives the weights
    and grids), a forward hook its output z. The model is run in eval mode and its training flag
    restored.

    Args:
        model: the network; the block must offer ``attention(x)`` (:class:`~nlnet.models.NonLocalBlock`).
        clip: (C, T, H, W) or (1, C, T, H, W), normalised as the model expects.
        block: the block's module name; default the last non-local block.
    """
    if clip.dim() == 4:
        clip = clip.unsqueeze(0)
    if clip.dim() != 5 or clip.shape[0] != 1:
        raise ValueError(f"expected one clip (C, T, H, W) or (1, C, T, H, W), got shape {tuple(clip.shape)}")
    name = resolve_block(model, block)
    module = model.get_submodule(name)
    seen: dict[str, Tensor] = {}
    handles = [module.register_forward_pre_hook(lambda _module, inputs: seen.update(x=inputs[0])),
               module.register_forward_hook(lambda _module, _inputs, output: seen.update(z=output))]
    was_training = model.training
    model.eval()
    try:
        logits = model(clip)
        if "x" not in seen:
            raise RuntimeError(f"non-local block '{name}' did not run in the model's forward pass")
        # the block offers attention(x) (see Args); nn.Module types every attribute as Tensor | Module
        attend = cast(Callable[[Tensor], Any], module.attention)
        attention = AttentionMap.from_attention(attend(seen["x"]))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    x, z = seen["x"], seen["z"]  # (1, C, T_f, H_f, W_f) each
    mapping = PixelMapping(input_shape=tuple(clip.shape[2:]), query_shape=attention.query_shape,
                           key_shape=attention.key_shape, key_pool=attention.key_pool)
    response = (z - x).float().norm(dim=1)[0].cpu()  # (C, T, H, W) residual -> (T, H, W)
    return BlockCapture(name=name, attention=attention, mapping=mapping, response=response, logits=logits[0].cpu())


def select_queries(scores: Tensor, num: int, *, min_distance: int = 1) -> list[Point]:
    """The ``num`` query cells with the highest scores, at least ``min_distance`` cells apart.

    Two cells are apart when they differ by more than ``min_distance`` along some axis
    (Chebyshev distance), so a single strong region does not take every query. On a grid too small
    for ``num`` such cells, the best remaining cells fill up the list.

    Args:
        scores: (T_f, H_f, W_f) score per query position.
        num: how many queries.
        min_distance: suppression radius in feature cells (0: any distinct cells).
    """
    if num < 1:
        raise ConfigError(f"the number of queries must be >= 1, got {num}")
    t, h, w = scores.shape
    order = torch.argsort(scores.flatten(), descending=True, stable=True).tolist()
    chosen: list[Point] = []
    cells = [(j // (h * w), (j // w) % h, j % w) for j in order]
    for p in cells:
        if len(chosen) < num and all(max(abs(a - b) for a, b in zip(p, q)) > min_distance for q in chosen):
            chosen.append(p)
    chosen += [p for p in cells if p not in chosen][: num - len(chosen)]
    return chosen


def default_queries(capture: BlockCapture, num: int, *, selection: str = "response") -> list[Point]:
    """Query cells with the strongest responses.

    ``response``: largest norm of the block's residual z - x (what the block adds at that position,
    Eq. 6); when every residual is zero (a block at its identity init) it falls back to ``peak``.
    ``peak``: most peaked weights (max / mean over the query's keys).
    """
    if selection not in QUERY_SELECTIONS:
        raise ConfigError(f"unknown query selection '{selection}'; valid: {', '.join(QUERY_SELECTIONS)}")
    scores = capture.response
    if selection == "peak" or float(scores.max()) <= 1e-12:
        scores = capture.attention.peak_scores()
    return select_queries(scores, num)


def queries_from_pixels(mapping: PixelMapping, points: Iterable[Sequence[float]]) -> list[Point]:
    """Query cells from user points [t, y, x] given in frame/pixel coordinates of the clip."""
    return [mapping.pixel_to_query(p) for p in points]
