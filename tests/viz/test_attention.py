"""Attention figures: coordinate mapping, known-answer top-k keys for every pairwise function and
scope, figure/animation files, clear errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.patches import ConnectionPatch
from PIL import Image
from torch import nn

from nlnet.data.transforms import ViewProtocol
from nlnet.models import NonLocalAttention, NonLocalBlock
from nlnet.viz import (
    AttentionMap,
    PixelMapping,
    capture_attention,
    decode_clip,
    default_queries,
    draw_attention,
    figure_size,
    queries_from_pixels,
    render_animation,
    save_figure,
    select_queries,
    unnormalize,
    write_gif,
    write_mp4,
)

PAIRWISE = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
SCOPES = ("spacetime", "space", "time")
SCALE = 4.0  # feature = SCALE * pixel / 255, so exp(x_i . x_j) separates the object clearly


class Probe(nn.Module):
    """A stand-in backbone: average-pool the clip by (2, 4, 4) into features, then one NL block.

    Features are the pooled RGB values (times SCALE), so the pairwise weights are known in closed
    form once theta/phi are identities.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.stem = nn.AvgPool3d((2, 4, 4))
        self.nl = block

    def nonlocal_names(self) -> list[str]:
        return ["nl"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nl(self.stem(x) * SCALE).mean(dim=(2, 3, 4))


def known_block(pairwise: str, scope: str) -> NonLocalBlock:
    """theta = phi = identity (3 -> 3 channels, no bias); for concatenation w_f picks phi's red channel."""
    block = NonLocalBlock(3, 3, pairwise=pairwise, scope=scope, sub_sample=True, scale=False, impl="reference")
    with torch.no_grad():
        for name in ("theta", "phi"):
            conv = getattr(block, name)
            if conv is None:
                continue
            conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1, 1))
            if conv.bias is not None:
                conv.bias.zero_()
        if pairwise == "concatenation":
            params = [p for p in block.concat_project.parameters() if p.numel() == 6]
            assert params, "concat_project holds w_f (2C' weights)"
            w_f = torch.zeros(6)
            w_f[3] = 1.0  # [w_theta (3), w_phi (3)]: f(x_i, x_j) = ReLU(phi_j red) / N'
            params[0].copy_(w_f.view_as(params[0]))
            for p in block.concat_project.parameters():
                if p.numel() == 1:
                    p.zero_()  # bias
    return block.eval()


def scene(scope: str) -> tuple[np.ndarray, list[float], tuple[range, range, range]]:
    """An 8x32x32 black clip with a dim red query patch and a bright red object where the block's
    scope lets the query see it (plus, for space/time scope, a brighter decoy it must not see).

    Returns frames (T, H, W, 3) uint8, the query point [t, y, x] in pixels, and the object's
    (frames, rows, columns).
    """
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    frames[0:2, 0:8, 24:32, 0] = 128  # the query's patch, frames 0-1, top right
    if scope == "spacetime":  # another frame, another place
        box = (range(6, 8), range(16, 24), range(8, 16))
    elif scope == "space":  # the query's own frames, another place
        box = (range(0, 2), range(16, 24), range(8, 16))
        frames[6:8, 8:16, 0:8, 0] = 255  # decoy in another frame: outside the scope
    else:  # time: the query's own place, another frame
        box = (range(6, 8), range(0, 8), range(24, 32))
        frames[2:4, 16:24, 8:16, 0] = 255  # decoy at another place: outside the scope
    value = 250 if scope != "spacetime" else 255
    frames[box[0].start:box[0].stop, box[1].start:box[1].stop, box[2].start:box[2].stop, 0] = value
    return frames, [0, 4, 28], box


def to_clip(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255  # (C, T, H, W)


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("pairwise", PAIRWISE)
def test_known_answer_top_key_is_the_object(pairwise, scope):
    frames, query_px, (obj_t, obj_y, obj_x) = scene(scope)
    capture = capture_attention(Probe(known_block(pairwise, scope)), to_clip(frames))
    mapping, attention = capture.mapping, capture.attention
    assert mapping.strides == (2.0, 4.0, 4.0)  # measured from the forward pass: input / feature
    (query,) = queries_from_pixels(mapping, [query_px])
    assert query == (0, 1, 7)
    (key, weight), *_ = attention.top_keys(query, 3)
    kt, ky, kx = mapping.key_to_pixel(key)
    assert math.floor(kt) in obj_t and math.floor(ky) in obj_y and math.floor(kx) in obj_x

    # the weights shown are the block's normalised f: a softmax (sums to 1 over the scope) or f / N'
    row = attention.row(query)
    in_scope = ~torch.isnan(row)
    num_keys = int(in_scope.sum())
    q_red, obj_red = SCALE * 128 / 255, SCALE * frames[obj_t.start, obj_y.start, obj_x.start, 0] / 255
    if pairwise in ("gaussian", "embedded_gaussian"):
        assert float(row[in_scope].sum()) == pytest.approx(1.0, abs=1e-5)
    elif pairwise == "dot_product":
        assert weight == pytest.approx(q_red * obj_red / num_keys, rel=1e-4)
    else:
        assert weight == pytest.approx(obj_red / num_keys, rel=1e-4)
    if scope == "space":  # keys only in the query's frame
        assert num_keys == attention.key_shape[1] * attention.key_shape[2]
        assert torch.isnan(row[1:]).all()
    elif scope == "time":  # keys only at the query's spatial position
        assert num_keys == attention.key_shape[0]

    # the figure draws the top key's circle on the object's frame, inside the object, with an arrow
    fig = draw_attention(frames, attention, mapping, [query], top_k=1, panel_size=48)
    panel = next(t for t in mapping.key_time_span(key[0]))
    assert mapping.panel_frame(panel) in obj_t
    circles = [line for line in fig.axes[panel].lines if line.get_marker() == "o"]
    assert len(circles) == 1
    (x,), (y,) = circles[0].get_xdata(), circles[0].get_ydata()
    assert math.floor(y) in obj_y and math.floor(x) in obj_x
    stars = [line for line in fig.axes[query[0]].lines if line.get_marker() == "*"]
    assert len(stars) == 1
    assert any(isinstance(a, ConnectionPatch) for a in fig.artists)


def test_figure_has_expected_pixel_size(tmp_path):
    frames, query_px, _ = scene("spacetime")
    capture = capture_attention(Probe(known_block("embedded_gaussian", "spacetime")), to_clip(frames))
    queries = queries_from_pixels(capture.mapping, [query_px, [5, 20, 3]])
    for title in (None, "nl (spacetime)"):
        fig = draw_attention(frames, capture.attention, capture.mapping, queries, top_k=3, panel_size=72, title=title)
        path = save_figure(fig, tmp_path / "sub" / "attention.png")
        width, height = figure_size(len(queries), capture.mapping.query_shape[0], 72, title=bool(title))
        assert (width, height) == (4 * 72, 2 * 72 + (18 if title else 0))
        with Image.open(path) as image:
            assert image.size == (width, height)
    assert not list((tmp_path / "sub").glob(".tmp-*"))  # written atomically, no leftovers


def test_animation_gif_and_mp4(tmp_path):
    import av

    frames, query_px, _ = scene("spacetime")
    capture = capture_attention(Probe(known_block("dot_product", "spacetime")), to_clip(frames))
    queries = queries_from_pixels(capture.mapping, [query_px, [7, 30, 30]])
    images = render_animation(frames, capture.attention, capture.mapping, queries, top_k=2, panel_size=50)
    assert len(images) == frames.shape[0]
    assert images[0].shape == (50, 100, 3) and images[0].dtype == np.uint8
    assert not np.array_equal(images[0], images[7])  # the frames (and the drawn keys) change
    with Image.open(write_gif(images, tmp_path / "a.gif")) as gif:
        assert gif.size == (100, 50) and gif.n_frames > 1
    with av.open(write_mp4(images, tmp_path / "a.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == frames.shape[0] and decoded[0].shape == (50, 100, 3)


def test_pixel_mapping_round_trip_and_odd_sizes():
    mapping = PixelMapping(input_shape=(8, 56, 40), query_shape=(4, 7, 5), key_shape=(4, 3, 2), key_pool=(1, 2, 2))
    assert mapping.strides == (2.0, 8.0, 8.0)
    for point in [(0, 0, 0), (3, 6, 4), (1, 3, 2)]:
        assert mapping.pixel_to_query(mapping.query_to_pixel(point)) == point
    assert mapping.query_to_pixel((0, 0, 0)) == (0.5, 3.5, 3.5)
    # floor pooling of 7 rows into 3 keys: key row 2 covers feature rows 4-5 -> pixels 32..47
    assert mapping.key_to_pixel((0, 2, 1)) == (0.5, 39.5, 23.5)
    assert [mapping.panel_frame(t) for t in range(4)] == [1, 3, 5, 7]
    with pytest.raises(ValueError, match=r"y=60 is outside the clip.*\(8, 56, 40\)"):
        mapping.pixel_to_query([0, 60, 3])


@pytest.mark.parametrize("ceil", [False, True])
@pytest.mark.parametrize("scope", SCOPES)
def test_key_grid_and_mapping_come_from_the_block(scope, ceil):
    """At odd sizes the key grid, its window and the drawn key positions follow the block's pooling
    rule (floor by default, ceil with pool_ceil_mode), read from the block, not inferred."""
    block = NonLocalBlock(3, 3, scope=scope, pool_ceil_mode=ceil, impl="reference").eval()
    frames = np.zeros((8, 28, 20, 3), np.uint8)  # features (4, 7, 5) after the Probe's (2, 4, 4) pooling
    capture = capture_attention(Probe(block), to_clip(frames))
    mapping, attention = capture.mapping, capture.attention
    pool = {"spacetime": (1, 2, 2), "space": (1, 2, 2), "time": (1, 1, 1)}[scope]
    keys = {"spacetime": (4, 4, 3) if ceil else (4, 3, 2), "space": (4, 4, 3) if ceil else (4, 3, 2),
            "time": (4, 7, 5)}[scope]
    assert (mapping.query_shape, mapping.key_pool, mapping.key_shape) == ((4, 7, 5), pool, keys)
    assert attention.weights.shape == (4 * 7 * 5, math.prod(keys))
    if scope != "time":  # the last key row covers feature rows 6 (ceil: partial) or 4-5 (floor)
        assert mapping.key_to_pixel((0, keys[1] - 1, 0))[1] == (25.5 if ceil else 19.5)


@pytest.mark.parametrize("scope", SCOPES)
def test_group_matrices_map_to_global_positions(scope):
    """A hand-made per-group matrix: every query's single weight lands on the expected global key."""
    t, h, w = 2, 3, 4
    if scope == "spacetime":
        attn = torch.zeros(1, t * h * w, t * h * w)
        attn[0, torch.arange(t * h * w), torch.arange(t * h * w).flip(0)] = 1  # i -> N - 1 - i
    elif scope == "space":
        attn = torch.zeros(t, h * w, h * w)
        attn[:, torch.arange(h * w), torch.arange(h * w).flip(0)] = 1  # within frame: mirrored
    else:
        attn = torch.zeros(h * w, t, t)
        attn[:, torch.arange(t), torch.arange(t).flip(0)] = 1  # same place: the other frame

    def attention(weights, scope, batch_size=1):
        return NonLocalAttention(weights=weights, scope=scope, query_grid=(t, h, w), key_grid=(t, h, w),
                                 key_pool=(1, 1, 1), batch_size=batch_size)

    amap = AttentionMap.from_attention(attention(attn, scope))
    for query in [(0, 0, 0), (1, 2, 1), (0, 1, 3)]:
        (key, weight), = amap.top_keys(query, 1)
        assert weight == 1.0
        qt, qy, qx = query
        expected = {"spacetime": (t - 1 - qt, h - 1 - qy, w - 1 - qx), "space": (qt, h - 1 - qy, w - 1 - qx),
                    "time": (t - 1 - qt, qy, qx)}[scope]
        assert key == expected
        assert int((~torch.isnan(amap.row(query))).sum()) == {"spacetime": t * h * w, "space": h * w, "time": t}[scope]
    second = AttentionMap.from_attention(attention(torch.cat([torch.zeros_like(attn), attn]), scope, 2), index=1)
    assert torch.equal(second.weights.nan_to_num(-1.0), amap.weights.nan_to_num(-1.0))  # clip 1 of a batch of 2
    with pytest.raises(ValueError, match="do not match scope"):
        attention(attn, "spacetime" if scope != "spacetime" else "space")
    with pytest.raises(ValueError, match="valid scopes: spacetime, space, time"):
        attention(attn, "global")


def test_query_selection():
    scores = torch.zeros(2, 4, 4)
    scores[1, 2, 2], scores[1, 2, 3], scores[0, 0, 0] = 5.0, 4.0, 3.0
    assert select_queries(scores, 2) == [(1, 2, 2), (0, 0, 0)]  # (1, 2, 3) is suppressed: a neighbour
    assert select_queries(scores, 2, min_distance=0) == [(1, 2, 2), (1, 2, 3)]
    assert select_queries(scores, 3, min_distance=5) == [(1, 2, 2), (1, 2, 3), (0, 0, 0)]  # filled up

    frames, _, _ = scene("spacetime")
    block = known_block("embedded_gaussian", "spacetime")
    capture = capture_attention(Probe(block), to_clip(frames))
    # at its identity init the block adds nothing (z = x): fall back to the most peaked weights
    assert float(capture.response.abs().max()) == 0.0
    peak = capture.attention.peak_scores()
    assert default_queries(capture, 1) == select_queries(peak, 1)
    with torch.no_grad():
        block.norm.weight.fill_(1.0)  # now the block responds; its strongest response is chosen
    capture = capture_attention(Probe(block), to_clip(frames))
    assert default_queries(capture, 1) == select_queries(capture.response, 1)
    with pytest.raises(ValueError, match="valid: response, peak"):
        default_queries(capture, 1, selection="entropy")


def test_bad_inputs(tmp_path):
    frames, _, _ = scene("spacetime")
    model = Probe(known_block("gaussian", "spacetime"))
    with pytest.raises(ValueError, match="unknown non-local block 'res4.nonlocal9'.*blocks: nl"):
        capture_attention(model, to_clip(frames), "res4.nonlocal9")
    capture = capture_attention(model, to_clip(frames))
    with pytest.raises(ValueError, match=r"do not match the clip fed to the model"):
        draw_attention(frames[:4], capture.attention, capture.mapping, [(0, 0, 0)])
    with pytest.raises(FileNotFoundError, match="video not found: .*missing.mp4"):
        decode_clip(tmp_path / "missing.mp4", ViewProtocol(num_frames=4, sampling_rate=2, short_side=32, crop_size=32))


def test_decode_clip_matches_test_pipeline(tmp_path):
    from nlnet.data.synthetic import write_video
    from nlnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(20, 40, 48, 3), dtype=np.uint8)
    video[:, :, :, :] = video[:, :1, :1, :]  # flat colours per frame survive H.264 nearly intact
    path = tmp_path / "v.mp4"
    write_video(path, video, fps=10)
    clip, frames = decode_clip(path, ViewProtocol(num_frames=4, sampling_rate=3, short_side=32, crop_size=32,
                                                  num_clips=1, num_crops=1))
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, unnormalize(clip, IMAGENET_MEAN, IMAGENET_STD))
    # the middle clip of 20 frames, 4 frames at stride 3 (span 10): frames 5, 8, 11, 14
    expected = video[[5, 8, 11, 14], 0, 0].astype(int)
    assert np.abs(frames[:, 16, 16].astype(int) - expected).max() <= 12
