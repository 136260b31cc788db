"""What a non-local block attends to, drawn over the clip (the paper's Figures 1 and 3).

A non-local block computes, for every query position i of its feature map, normalised pairwise
weights f(x_i, x_j) / C(x) over the key positions j (Eq. 1). This module takes those weights for
one clip, picks query points, finds each query's top-k keys and draws them over the decoded frames
as arrows (query -> key, across frames) and heatmaps.

Coordinates. The block sees a feature map of T_f x H_f x W_f query positions; with sub-sampling its
keys live on a pooled grid T_k x H_k x W_k (pool window p per axis, floor or ceil at odd sizes). A
feature cell f along an axis of input size S covers pixels [f * S / G_f, (f + 1) * S / G_f): the
strides are the input/feature ratios, measured by a forward pass, not assumed. A key cell c covers
the feature cells [c * p, min((c + 1) * p, G_f)); a position is drawn at the centre of the pixels its
cell covers (the centre of the cell's footprint, an approximation of its receptive-field centre).
One panel per feature time step shows the input frame nearest to the centre of that step.

Scopes (Table 2d). For ``space`` scope the block returns per-frame matrices (B*T_f, H_f*W_f, n'):
the keys of a query are in the query's frame. For ``time`` scope it returns per-position matrices
(B*H_f*W_f, T_f, n'): the keys are at the query's spatial position across frames. Both are mapped
back to the global key grid; keys outside a query's scope have no weight (NaN, never drawn).

Weights shown are exactly what the block normalised: softmax values for (embedded) Gaussian,
f / N' for dot product and concatenation (these do not sum to one; dot-product ones can be
negative — the top-k are the largest). Heatmaps run from a row's smallest to its largest weight.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch
from torch import Tensor, nn

from nlnet.utils.io import atomic_path

SCOPES = ("spacetime", "space", "time")
QUERY_SELECTIONS = ("response", "peak")

Point = tuple[int, ...]  # (t, y, x), a cell of a grid
Shape3 = tuple[int, ...]  # (T, H, W)
Coords = tuple[float, ...]  # (frame, y, x) in pixel-index coordinates of the clip

# one colour per query row (tab10), so arrows and markers of different queries stay apart
_QUERY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf")


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------
def infer_key_shape(query_shape: Shape3, num_keys: int, pool: Shape3, *, scope: str = "spacetime") -> Shape3:
    """The global key grid (T_k, H_k, W_k) of a block from its query grid and its key count.

    The max-pool (kernel = stride = ``pool``) may round up (``ceil_mode``, partial border windows,
    as ``NonLocalBlock`` does) or down; the key count tells which.

    Args:
        query_shape: (T_f, H_f, W_f), the block's input feature grid.
        num_keys: keys per attention row: N' (spacetime), the per-frame n' (space) or the
            per-position n' (time).
        pool: the key/value max-pool window (pt, ph, pw); (1, 1, 1) without sub-sampling.
        scope: spacetime, space or time. Space scope keeps every frame (T_k = T_f); time scope
            keeps every spatial position (H_k, W_k = H_f, W_f).

    Raises:
        ValueError: when neither rounding gives ``num_keys`` keys.
    """
    _check_scope(scope)
    keep = {"spacetime": (False, False, False), "space": (True, False, False), "time": (False, True, True)}[scope]
    for rounding in (math.ceil, math.floor):
        shape = tuple(q if kept else max(1, rounding(q / p)) for q, p, kept in zip(query_shape, pool, keep))
        tk, hk, wk = shape
        if {"spacetime": tk * hk * wk, "space": hk * wk, "time": tk}[scope] == num_keys:
            return shape
    raise ValueError(
        f"attention rows have {num_keys} keys, which no pooling of the query grid {tuple(query_shape)} "
        f"with window {tuple(pool)} gives for scope '{scope}'"
    )


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope '{scope}'; valid scopes: {', '.join(SCOPES)}")


@dataclass(frozen=True)
class PixelMapping:
    """Maps the block's query/key grids onto the input clip's frames and pixels.

    Args:
        input_shape: (T, H, W) of the clip fed to the model (the frames drawn).
        query_shape: (T_f, H_f, W_f) of the block's feature map.
        key_shape: (T_k, H_k, W_k), the pooled key grid.
        key_pool: pooling window (pt, ph, pw) from query to key grid.
    """

    input_shape: Shape3
    query_shape: Shape3
    key_shape: Shape3
    key_pool: Shape3

    @property
    def strides(self) -> Coords:
        """Input frames/pixels per feature cell along (T, H, W): the stage's strides."""
        return tuple(s / g for s, g in zip(self.input_shape, self.query_shape))

    def query_to_pixel(self, point: Point) -> Coords:
        """Centre (frame, y, x) of a query cell, in pixel-index coordinates."""
        return tuple((c + 0.5) * s - 0.5 for c, s in zip(point, self.strides))

    def key_to_pixel(self, point: Point) -> Coords:
        """Centre (frame, y, x) of a pooled key cell (partial last windows accounted for)."""
        out = []
        for c, p, g, s in zip(point, self.key_pool, self.query_shape, self.strides):
            lo, hi = c * p, min((c + 1) * p, g)  # feature cells the key cell covers
            out.append((lo + hi) / 2 * s - 0.5)
        return tuple(out)

    def key_time_span(self, tk: int) -> range:
        """Feature time steps (panels) a key time index covers."""
        return range(tk * self.key_pool[0], min((tk + 1) * self.key_pool[0], self.query_shape[0]))

    def pixel_to_query(self, point: Sequence[float]) -> Point:
        """The query cell holding pixel (frame, y, x) of the input clip.

        Raises:
            ValueError: when the point lies outside the clip.
        """
        if len(point) != 3:
            raise ValueError(f"a query point is [t, y, x] (frame, row, column); got {list(point)}")
        cells = []
        for name, c, size, s, g in zip("tyx", point, self.input_shape, self.strides, self.query_shape):
            if not 0 <= c < size:
                raise ValueError(
                    f"query point {list(point)}: {name}={c} is outside the clip, whose (T, H, W) is "
                    f"{tuple(self.input_shape)} (valid {name}: 0..{size - 1})"
                )
            cells.append(min(int((c + 0.5) // s), g - 1))
        return tuple(cells)

    def panel_frame(self, t: int) -> int:
        """Index of the input frame shown for feature time step ``t`` (nearest the step's centre)."""
        centre = (t + 0.5) * self.strides[0] - 0.5
        return min(max(int(math.floor(centre + 0.5)), 0), self.input_shape[0] - 1)


# --------------------------------------------------------------------------------------------
# Attention of one clip on the global grids
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionMap:
    """One clip's pairwise weights of one non-local block.

    Args:
        weights: the block's matrices for this clip: (N, N') for spacetime scope,
            (T_f, H_f*W_f, H_k*W_k) for space scope, (H_f*W_f, T_f, T_k) for time scope.
        scope: spacetime, space or time.
        query_shape: (T_f, H_f, W_f).
        key_shape: (T_k, H_k, W_k).
        key_pool: the pooling window from query to key grid, (1, 1, 1) without sub-sampling.
    """

    weights: Tensor
    scope: str
    query_shape: Shape3
    key_shape: Shape3
    key_pool: Shape3

    @classmethod
    def from_block(
        cls,
        attention: Tensor,
        *,
        batch_size: int,
        scope: str,
        query_shape: Shape3,
        pool: Shape3,
        index: int = 0,
    ) -> "AttentionMap":
        """Slice clip ``index`` out of a block's ``return_attention`` output.

        Args:
            attention: (B, N, N') for spacetime scope; the per-group matrices (B*groups, n, n')
                for space (groups = frames) or time (groups = spatial positions) scope.
            batch_size: B.
            scope: the block's scope.
            query_shape: (T_f, H_f, W_f) of the block's input.
            pool: the block's key/value pooling window, (1, 1, 1) without sub-sampling.
            index: which clip of the batch.
        """
        _check_scope(scope)
        t, h, w = query_shape
        if attention.dim() != 3 or attention.shape[0] % batch_size:
            raise ValueError(f"attention of shape {tuple(attention.shape)} is not (B*groups, n, n') for B={batch_size}")
        groups = attention.shape[0] // batch_size
        # (groups per clip, queries per group): one group; one per frame; one per spatial position
        expected_groups, queries_per_group = {"spacetime": (1, t * h * w), "space": (t, h * w),
                                              "time": (h * w, t)}[scope]
        if groups != expected_groups or attention.shape[1] != queries_per_group:
            raise ValueError(
                f"attention of shape {tuple(attention.shape)} does not match scope '{scope}' on the query grid "
                f"{tuple(query_shape)} (expected ({batch_size * expected_groups}, {queries_per_group}, n'))"
            )
        key_shape = infer_key_shape(query_shape, attention.shape[2], pool, scope=scope)
        key_pool = tuple(1 if k == q else p for k, q, p in zip(key_shape, query_shape, pool))
        weights = attention.detach().float().cpu()[index * groups:(index + 1) * groups]
        if scope == "spacetime":
            weights = weights[0]
        return cls(weights=weights, scope=scope, query_shape=tuple(query_shape), key_shape=key_shape,
                   key_pool=key_pool)

    def row(self, query: Point) -> Tensor:
        """Weights of one query over the global key grid (T_k, H_k, W_k); NaN outside its scope."""
        t, y, x = query
        _, h, w = self.query_shape
        if not all(0 <= c < g for c, g in zip(query, self.query_shape)):
            raise ValueError(f"query {tuple(query)} is outside the feature grid {self.query_shape}")
        tk, hk, wk = self.key_shape
        if self.scope == "spacetime":
            return self.weights[(t * h + y) * w + x].view(tk, hk, wk).clone()
        out = torch.full((tk, hk, wk), float("nan"))
        if self.scope == "space":  # (T_f, H*W, H_k*W_k): keys in the query's own frame
            out[t] = self.weights[t, y * w + x].view(hk, wk)
        else:  # time: (H*W, T_f, T_k): keys at the query's spatial position, across frames
            out[:, y, x] = self.weights[y * w + x, t]
        return out

    def top_keys(self, query: Point, k: int) -> list[tuple[Point, float]]:
        """The ``k`` keys with the largest weights for ``query``: [((t_k, y_k, x_k), weight)], best first."""
        if k < 1:
            raise ValueError(f"top_k must be >= 1, got {k}")
        row = self.row(query).flatten()
        valid = torch.nonzero(~torch.isnan(row)).flatten()
        values, order = row[valid].topk(min(k, valid.numel()))
        _, hk, wk = self.key_shape
        keys = []
        for value, j in zip(values.tolist(), valid[order].tolist()):
            keys.append(((j // (hk * wk), (j // wk) % hk, j % wk), value))
        return keys

    def peak_scores(self) -> Tensor:
        """Peakiness of every query's weights, (T_f, H_f, W_f): max / mean |weight| over its keys.

        Scale-free, so it ranks queries alike for softmax and for f / N' weights; 1 for a uniform row.
        """
        if self.scope == "spacetime":
            rows = self.weights  # (N, N')
        elif self.scope == "space":
            rows = self.weights.flatten(0, 1)  # (T*H*W, n'), queries in (t, y, x) order
        else:
            rows = self.weights.transpose(0, 1).flatten(0, 1)  # (H*W, T, n') -> (T, H*W, n') -> (T*H*W, n')
        scores = rows.max(dim=1).values / rows.abs().mean(dim=1).clamp_min(1e-12)
        return scores.view(self.query_shape)


# --------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------
def nonlocal_names(model: nn.Module) -> list[str]:
    """Names of the model's non-local blocks, in order (``model.nonlocal_names()`` when it has one)."""
    if hasattr(model, "nonlocal_names"):
        return list(model.nonlocal_names())
    from nlnet.models import NonLocalBlock

    return [name for name, module in model.named_modules() if isinstance(module, NonLocalBlock)]


def resolve_block(model: nn.Module, block: str | None) -> str:
    """The block name to visualise: ``block`` checked against the model's blocks, or the last one.

    Raises:
        ValueError: the model has no non-local block, or ``block`` is not one of them (lists them).
    """
    names = nonlocal_names(model)
    if not names:
        raise ValueError("the model has no non-local block to visualise (its nonlocal_blocks lists are all empty)")
    if block is None:
        return names[-1]
    if block not in names:
        raise ValueError(f"unknown non-local block '{block}'; this model's blocks: {', '.join(names)}")
    return block


def block_pool(block: nn.Module) -> Shape3:
    """The key/value pooling window of a 3D non-local block; (1, 1, 1) without sub-sampling."""
    if not getattr(block, "sub_sample", True):
        return (1, 1, 1)
    pool = getattr(block, "pool_size", None)
    if pool is None:
        pool = (1, 2, 2)  # the block's documented default for 3D input
    if isinstance(pool, int):
        pool = (pool,) * 3
    return tuple(int(p) for p in pool)


@dataclass(frozen=True)
class BlockCapture:
    """What one forward pass tells about one non-local block.

    Attributes:
        name: the block's module name.
        attention: the clip's weights on the global grids.
        mapping: feature/key grid -> frames and pixels of the clip.
        response: (T_f, H_f, W_f) norm over channels of the block's residual z - x (Eq. 6).
        logits: the model's output for the clip, (num_classes,).
    """

    name: str
    attention: AttentionMap
    mapping: PixelMapping
    response: Tensor
    logits: Tensor


@torch.no_grad()
def capture_attention(model: nn.Module, clip: Tensor, block: str | None = None) -> BlockCapture:
    """Run ``model`` on one clip and capture one non-local block's attention and response.

    The model must follow ``ResNet3d.forward(x, return_attention=True) -> (logits, {name: attn})``;
    a forward hook on the block records its input and output (for the feature grid and the response).
    The model is run in eval mode and its training flag restored.

    Args:
        model: the network.
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

    def hook(_module: nn.Module, inputs: tuple, output) -> None:
        seen["x"] = inputs[0]
        seen["z"] = output[0] if isinstance(output, (tuple, list)) else output

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        logits, attentions = model(clip, return_attention=True)
    finally:
        handle.remove()
        model.train(was_training)
    if name not in attentions:
        raise KeyError(f"the model returned no attention for block '{name}'; it returned: {', '.join(attentions)}")
    x, z = seen["x"], seen["z"]  # (1, C, T_f, H_f, W_f) each
    query_shape = tuple(x.shape[2:])
    pool = block_pool(module)
    attention = AttentionMap.from_block(attentions[name], batch_size=1, scope=getattr(module, "scope", "spacetime"),
                                        query_shape=query_shape, pool=pool)
    mapping = PixelMapping(input_shape=tuple(clip.shape[2:]), query_shape=attention.query_shape,
                           key_shape=attention.key_shape, key_pool=attention.key_pool)
    response = (z - x).float().norm(dim=1)[0].cpu()  # (C, T, H, W) residual -> (T, H, W)
    return BlockCapture(name=name, attention=attention, mapping=mapping, response=response, logits=logits[0].cpu())


# --------------------------------------------------------------------------------------------
# Query selection
# --------------------------------------------------------------------------------------------
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
        raise ValueError(f"the number of queries must be >= 1, got {num}")
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
        raise ValueError(f"unknown query selection '{selection}'; valid: {', '.join(QUERY_SELECTIONS)}")
    scores = capture.response
    if selection == "peak" or float(scores.max()) <= 1e-12:
        scores = capture.attention.peak_scores()
    return select_queries(scores, num)


def queries_from_pixels(mapping: PixelMapping, points: Iterable[Sequence[float]]) -> list[Point]:
    """Query cells from user points [t, y, x] given in frame/pixel coordinates of the clip."""
    return [mapping.pixel_to_query(p) for p in points]


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------
def format_point(point: Sequence[float]) -> str:
    """A pixel-coordinate point as short text: ``2.5,19.5,27.5``."""
    return ",".join(f"{c:g}" for c in point)


UNIFORM_SPREAD = 0.01  # rows whose weights differ by less than this fraction of the largest: no heat
TITLE_PIXELS = 18  # height of the figure's title band, when it has a title


def figure_size(num_queries: int, num_panels: int, panel_size: int, *, title: bool = False) -> tuple[int, int]:
    """Pixel (width, height) of the PNG grid: one row per query, one column per feature time step,
    plus a title band of ``TITLE_PIXELS`` when there is a title."""
    return num_panels * panel_size, num_queries * panel_size + (TITLE_PIXELS if title else 0)


def _check_frames(frames: np.ndarray, mapping: PixelMapping) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    if tuple(frames.shape[:3]) != tuple(mapping.input_shape):
        raise ValueError(f"frames of (T, H, W) {frames.shape[:3]} do not match the clip fed to the model "
                         f"{tuple(mapping.input_shape)}")
    return frames


def _weight_range(values: Tensor) -> tuple[float, float]:
    """(smallest, largest) weight of a query's row over its scope (NaN outside it is ignored)."""
    finite = values[~torch.isnan(values)]
    return (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 0.0)


def _heat_rgba(sheet: Tensor, span: tuple[float, float]) -> np.ndarray:
    """(H_k, W_k) weights -> RGBA image, scaled from the row's smallest (clear) to its largest weight
    (opaque, bright): the frame stays visible where a query attends little. A nearly uniform row
    (spread under ``UNIFORM_SPREAD`` of its largest weight, e.g. a block still near its
    initialisation) shows no heat rather than amplified noise. NaN (outside the scope) is clear."""
    from matplotlib import colormaps

    low, high = span
    if high - low <= UNIFORM_SPREAD * max(abs(high), abs(low), 1e-30):
        level = np.zeros(tuple(sheet.shape))
    else:
        level = ((sheet - low) / (high - low)).nan_to_num(0.0).clamp(0, 1).numpy()
    rgba = colormaps["inferno"](0.35 + 0.65 * level)
    rgba[..., 3] = 0.65 * level
    return rgba


def _key_extent(mapping: PixelMapping) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) of the key grid in the frame's pixel coordinates."""
    _, ph, pw = mapping.key_pool
    _, sh, sw = mapping.strides
    _, hk, wk = mapping.key_shape
    return (-0.5, wk * pw * sw - 0.5, hk * ph * sh - 0.5, -0.5)


def draw_attention(
    frames: np.ndarray,
    attention: AttentionMap,
    mapping: PixelMapping,
    queries: Sequence[Point],
    *,
    top_k: int = 5,
    heatmap: bool = True,
    arrows: bool = True,
    panel_size: int = 160,
    title: str | None = None,
) -> Figure:
    """A grid figure: one row per query, one panel per feature time step.

    Each row marks its query (star) on the frame of its time step, overlays the query's weights
    on every frame (heatmap from the row's smallest to its largest weight), circles its top-k keys
    (numbered by rank) and draws arrows from the query to them, across frames as in Fig. 1/3.

    Args:
        frames: (T, H, W, 3) uint8, the clip fed to the model (after crop), in display colours.
        attention: the block's weights for this clip.
        mapping: grids -> frames/pixels of ``frames``.
        queries: query cells (t, y, x) on the feature grid.
        top_k: keys drawn per query.
        heatmap, arrows: what to draw.
        panel_size: pixels per panel; the PNG is ``figure_size(len(queries), T_f, panel_size, title=...)``.
        title: optional text in a band above the panels (e.g. the block's name).
    """
    frames = _check_frames(frames, mapping)
    if not queries:
        raise ValueError("no query points to draw")
    if panel_size < 32:
        raise ValueError(f"panel_size must be >= 32 pixels, got {panel_size}")
    num_panels = mapping.query_shape[0]
    width, height = figure_size(len(queries), num_panels, panel_size, title=bool(title))
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    fontsize = max(5.0, panel_size / 26)
    header = int(fontsize * 2.2)  # pixels kept above each panel for its "frame k" line
    if title:
        fig.text(0.005, 1 - 0.5 * TITLE_PIXELS / height, title, fontsize=8, va="center", ha="left")
    _, frame_h, frame_w = mapping.input_shape
    for row, query in enumerate(queries):
        colour = _QUERY_COLOURS[row % len(_QUERY_COLOURS)]
        weights = attention.row(query)  # (T_k, H_k, W_k), NaN outside the scope
        span = _weight_range(weights)
        keys = attention.top_keys(query, top_k)
        axes = []
        for col in range(num_panels):
            # panel rectangle in figure fractions: the row's cell below the title band, minus the header
            left, bottom = col * panel_size / width, ((len(queries) - 1 - row) * panel_size) / height
            ax = fig.add_axes((left, bottom, panel_size / width, (panel_size - header) / height))
            ax.imshow(frames[mapping.panel_frame(col)], interpolation="nearest")
            tk = col // mapping.key_pool[0]
            if heatmap and tk < attention.key_shape[0]:
                ax.imshow(_heat_rgba(weights[tk], span), interpolation="nearest", extent=_key_extent(mapping))
            ax.set_xlim(-0.5, frame_w - 0.5)
            ax.set_ylim(frame_h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"frame {mapping.panel_frame(col)}", fontsize=fontsize, pad=1.5, loc="left")
            if col == query[0]:  # the query's own panel says where the query is
                ax.text(0.02, 0.02, f"q{row} {format_point(mapping.query_to_pixel(query))}",
                        transform=ax.transAxes, fontsize=fontsize, color="white", va="bottom", ha="left",
                        bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
            axes.append(ax)
        qt, qy, qx = mapping.query_to_pixel(query)
        axes[query[0]].plot(qx, qy, marker="*", markersize=panel_size / 12, color=colour,
                            markeredgecolor="white", markeredgewidth=0.8, zorder=5)
        for rank, (key, weight) in enumerate(keys):
            kt, ky, kx = mapping.key_to_pixel(key)
            span = mapping.key_time_span(key[0])
            for t in span:
                axes[t].plot(kx, ky, marker="o", markersize=panel_size / 20, markerfacecolor="none",
                             markeredgecolor=colour, markeredgewidth=1.2, zorder=5)
                axes[t].annotate(str(rank + 1), (kx, ky), xytext=(2, 2), textcoords="offset points",
                                 color="white", fontsize=fontsize, zorder=6)
            if arrows:
                target = min(span, key=lambda t: abs(t - query[0]))  # nearest panel the key covers
                fig.add_artist(ConnectionPatch(
                    xyA=(qx, qy), coordsA=axes[query[0]].transData, xyB=(kx, ky), coordsB=axes[target].transData,
                    arrowstyle="-|>", color=colour, linewidth=1.0 + 1.5 * (1 - rank / max(len(keys), 1)),
                    mutation_scale=panel_size / 16, alpha=0.9, zorder=4,
                ))
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> str:
    """Write ``fig`` as an image at its exact pixel size (no tight bbox), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = os.fspath(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=fig.dpi)
    return path


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` to an (H, W, 3) uint8 array (for TensorBoard's add_image and animations)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# --------------------------------------------------------------------------------------------
# Animation: every input frame, one column per query
# --------------------------------------------------------------------------------------------
def render_animation(
    frames: np.ndarray,
    attention: AttentionMap,
    mapping: PixelMapping,
    queries: Sequence[Point],
    *,
    top_k: int = 5,
    panel_size: int = 160,
) -> list[np.ndarray]:
    """Images (H, W, 3) uint8, one per input frame: each query's column shows that frame with the
    weights of the key time step covering it, the query while the frame is in the query's time step,
    and its top-k keys while the frame is in theirs."""
    frames = _check_frames(frames, mapping)
    if not queries:
        raise ValueError("no query points to draw")
    dpi = 100
    fig = Figure(figsize=(len(queries) * panel_size / dpi, panel_size / dpi), dpi=dpi)
    _, frame_h, frame_w = mapping.input_shape
    st = mapping.strides[0]
    cols = []
    for col, query in enumerate(queries):
        colour = _QUERY_COLOURS[col % len(_QUERY_COLOURS)]
        ax = fig.add_axes((col / len(queries), 0, 1 / len(queries), 1))
        ax.set_axis_off()
        image = ax.imshow(frames[0], interpolation="nearest")
        weights = attention.row(query)
        heat = ax.imshow(_heat_rgba(weights[0], (0.0, 0.0)), interpolation="nearest", extent=_key_extent(mapping))
        ax.set_xlim(-0.5, frame_w - 0.5)
        ax.set_ylim(frame_h - 0.5, -0.5)
        _, qy, qx = mapping.query_to_pixel(query)
        (star,) = ax.plot(qx, qy, marker="*", markersize=panel_size / 12, color=colour, markeredgecolor="white")
        key_marks = []
        for key, _weight in attention.top_keys(query, top_k):
            _, ky, kx = mapping.key_to_pixel(key)
            (mark,) = ax.plot(kx, ky, marker="o", markersize=panel_size / 20, markerfacecolor="none",
                              markeredgecolor=colour, markeredgewidth=1.2)
            key_marks.append((key, mark))
        cols.append((query, image, heat, weights, star, key_marks))
    images = []
    for frame_index in range(frames.shape[0]):
        t = min(int((frame_index + 0.5) // st), mapping.query_shape[0] - 1)  # feature time step of this frame
        tk = min(t // mapping.key_pool[0], attention.key_shape[0] - 1)
        for query, image, heat, weights, star, key_marks in cols:
            image.set_data(frames[frame_index])
            heat.set_data(_heat_rgba(weights[tk], _weight_range(weights)))
            star.set_visible(query[0] == t)
            for key, mark in key_marks:
                mark.set_visible(key[0] == tk)
        images.append(figure_to_array(fig))
    return images


def write_gif(images: Sequence[np.ndarray], path: str | os.PathLike, *, fps: float = 4.0) -> str:
    """Write images as an animated GIF (Pillow), atomically."""
    from PIL import Image

    path = os.fspath(path)
    pil = [Image.fromarray(im) for im in images]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path


def write_mp4(images: Sequence[np.ndarray], path: str | os.PathLike, *, fps: int = 4) -> str:
    """Write images as an H.264 MP4 (PyAV), atomically; odd sizes are padded to even ones (yuv420p)."""
    import av

    path = os.fspath(path)
    height, width = images[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    with atomic_path(path) as tmp, av.open(tmp, mode="w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        for im in images:
            padded = np.zeros((even_h, even_w, 3), dtype=np.uint8)
            padded[:height, :width] = im
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
