"""An independent functional forward of the sources' networks, written from their code (not from nlnet's
modules), over weights named as in the official Caffe2 release.

It is what the conversion must reproduce: the converted nlnet model on a clip must give the
probabilities this function gives on the same clip. Switches (``Geometry``) select each source's rule;
the file each rule comes from is named beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlnet.models.convert.keys import KeyTable
from nlnet.models.resnet3d import DEPTHS


@dataclass(frozen=True)
class Geometry:
    stem_stride_t: int            # conv1 temporal stride (official resnet_video_org.py: 2, else 1)
    pool1_kernel_t: int           # pool1 temporal kernel (2 in resnet_video_org.py, else 1)
    pool1_stride_t: int           # pool1 temporal stride (mmaction2 i3d_r50.py: 2 with a 1x3x3 kernel)
    pool1_pad: tuple              # official: (0, 0, 0); PySlowFast, mmaction2, pytorchvideo: (0, 1, 1)
    pool2_t: int                  # temporal max-pool after res2 (1: none)
    eps: float                    # BN epsilon (official 1.0000001e-5)
    affine: bool = False          # official MODEL.USE_AFFINE: BN = x * s + b
    nl_pool_before: bool = True   # official/PySlowFast pool the input; mmcv pools phi(x) and g(x)
    nl_pairwise: str = "embedded_gaussian"
    nl_scale: bool = True         # official USE_SCALE / PySlowFast "softmax": C'^-1/2
    nl_bn: bool = True            # NONLOCAL.USE_BN (False in the affine configs)
    nl_groups: tuple = (1, 1, 1, 1)  # official add_nonlocal_group (res3 of the affine models)
    head_window: tuple | None = None  # avg-pool (T', 7, 7) stride 1, None: global average
    head_softmax: bool = True     # per-position softmax then mean (official, PySlowFast); else mean of logits
    bgr: bool = False             # the first conv's input channels are B, G, R


def _bn(x, blobs, name, g: Geometry, eps=None):
    shape = (1, -1, 1, 1, 1)
    s, b = blobs[f"{name}_s"].view(shape), blobs[f"{name}_b"].view(shape)
    if g.affine and f"{name}_rm" not in blobs:
        return x * s + b
    rm, rv = blobs[f"{name}_rm"].view(shape), blobs[f"{name}_riv"].view(shape)
    return (x - rm) / torch.sqrt(rv + (g.eps if eps is None else eps)) * s + b


def _nonlocal(x, blobs, prefix, g: Geometry, groups: int):
    """lib/models/nonlocal_helper.py spacetime_nonlocal (+ add_nonlocal_group), or mmcv NonLocal3d."""
    b0, c, t0, h, w = x.shape
    if groups > 1:  # (B, C, T, H, W) -> (B*G, C, T/G, H, W), consecutive frames per group
        x = x.transpose(1, 2).reshape(b0 * groups, t0 // groups, c, h, w).transpose(1, 2)
    n = x.shape[0]

    def conv(inp, name):
        return F.conv3d(inp, blobs[f"{prefix}_{name}_w"], blobs.get(f"{prefix}_{name}_b"))

    def pool(inp):
        return F.max_pool3d(inp, (1, 2, 2), (1, 2, 2))  # floor rounding, no padding

    if g.nl_pairwise == "gaussian":
        theta, phi = x, pool(x)
    else:
        theta = conv(x, "theta")
        phi = conv(pool(x), "phi") if g.nl_pool_before else pool(conv(x, "phi"))
    gx = conv(pool(x), "g") if g.nl_pool_before else pool(conv(x, "g"))
    theta, phi, gx = (v.reshape(n, v.shape[1], -1) for v in (theta, phi, gx))
    affinity = torch.bmm(theta.transpose(1, 2), phi)  # (n, N, N')
    if g.nl_pairwise in ("embedded_gaussian", "gaussian"):
        if g.nl_scale and g.nl_pairwise == "embedded_gaussian":
            affinity = affinity * theta.shape[1] ** -0.5
        p = affinity.softmax(dim=2)
    else:  # dot_product
        p = affinity / affinity.shape[2]
    y = torch.bmm(gx, p.transpose(1, 2)).reshape(n, gx.shape[1], *x.shape[2:])
    out = conv(y, "out")
    if g.nl_bn:
        out = _bn(out, blobs, f"{prefix}_bn", g)
    z = x + out
    if groups > 1:
        z = z.transpose(1, 2).reshape(b0, t0, c, h, w).transpose(1, 2)
    return z


def caffe2_forward(blobs: dict[str, torch.Tensor], x: torch.Tensor, g: Geometry, *,
                   depth: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-position scores (B, P, K), probabilities (B, K)) of the network whose Caffe2-named weights are
    ``blobs``, on clip ``x``."""
    if g.bgr:
        x = x.flip(1)  # the source sees B, G, R where nlnet sees R, G, B
    w1 = blobs["conv1_w"]
    x = F.conv3d(x, w1, stride=(g.stem_stride_t, 2, 2), padding=(w1.shape[2] // 2, 3, 3))
    x = F.relu(_bn(x, blobs, "res_conv1_bn", g))
    x = F.max_pool3d(x, (g.pool1_kernel_t, 3, 3), (g.pool1_stride_t, 2, 2), g.pool1_pad)
    for s, blocks in zip(range(2, 6), DEPTHS[depth][1]):
        for i in range(blocks):
            p = f"res{s}_{i}"
            stride = 2 if (i == 0 and s > 2) else 1
            wa = blobs[f"{p}_branch2a_w"]
            out = F.relu(_bn(F.conv3d(x, wa, padding=(wa.shape[2] // 2, 0, 0)), blobs, f"{p}_branch2a_bn", g))
            out = F.relu(_bn(F.conv3d(out, blobs[f"{p}_branch2b_w"], stride=(1, stride, stride), padding=(0, 1, 1)),
                             blobs, f"{p}_branch2b_bn", g))
            out = _bn(F.conv3d(out, blobs[f"{p}_branch2c_w"]), blobs, f"{p}_branch2c_bn", g)
            short = x if f"{p}_branch1_w" not in blobs else _bn(
                F.conv3d(x, blobs[f"{p}_branch1_w"], stride=(1, stride, stride)), blobs, f"{p}_branch1_bn", g)
            x = F.relu(out + short)
            if f"nonlocal_conv{s}_{i}_g_w" in blobs:
                x = _nonlocal(x, blobs, f"nonlocal_conv{s}_{i}", g, g.nl_groups[s - 2])
        if s == 2 and g.pool2_t > 1:
            x = F.max_pool3d(x, (g.pool2_t, 1, 1), (g.pool2_t, 1, 1))
    x = F.avg_pool3d(x, g.head_window, stride=1) if g.head_window else x.mean((2, 3, 4), keepdim=True)
    pred_w = blobs["pred_w"].reshape(blobs["pred_w"].shape[0], -1, 1, 1, 1)
    scores = F.conv3d(x, pred_w, blobs["pred_b"]).flatten(2)  # (B, K, positions): the fc as a 1x1x1 conv
    if g.head_softmax:
        return scores.transpose(1, 2), scores.softmax(dim=1).mean(dim=2)
    return scores.transpose(1, 2), scores.mean(dim=2).softmax(dim=1)


def nlnet_scores(model, x: torch.Tensor) -> torch.Tensor:
    """The nlnet model's per-position logits (B, P, K): features, the head's pool, the classifier."""
    pooled = model.head.pool(model.features(x))  # (B, C, T', H', W')
    return model.head.fc(pooled.movedim(1, -1)).flatten(1, 3)


def assert_matches(model, x: torch.Tensor, blobs: dict, g: Geometry, *, depth: int = 50) -> None:
    """The converted model computes the reference network: per-position logits to 1e-10 of their scale
    (float64), and the probabilities nlnet's evaluation uses, softmax(model(x)), to 1e-6 (the head's
    softmax runs in at least float32)."""
    model = model.double().eval()
    blobs = {k: v.double() for k, v in blobs.items()}
    with torch.no_grad():
        scores, probabilities = caffe2_forward(blobs, x.double(), g, depth=depth)
        got_scores = nlnet_scores(model, x.double())
        got = model(x.double()).double().softmax(dim=1)
    scale = scores.abs().max()
    torch.testing.assert_close(got_scores / scale, scores / scale, rtol=0, atol=1e-10)
    torch.testing.assert_close(got, probabilities, rtol=0, atol=1e-6)
    assert probabilities.max() < 0.999, "saturated probabilities would hide differences (calibrate the fc)"


def as_caffe2(state: dict[str, torch.Tensor], source_table: KeyTable, caffe2_table: KeyTable) -> dict:
    """A source's state dict renamed to Caffe2 blob names (through nlnet names)."""
    out = {}
    for key, value in state.items():
        nl = source_table.to_nlnet(key)
        name = caffe2_table.to_source(nl) if nl else None
        if name is not None:
            out[name] = value.double()
    return out
