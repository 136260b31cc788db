"""Helpers for the conversion tests: random "source" models and source-format files written through the
sources' own key tables (nlnet -> source direction), so the tests exercise the tables the converters use."""
from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from nlnet.models.convert import Arch
from nlnet.models.convert.keys import KeyTable


def randomize(model: nn.Module, *, seed: int = 0, affine: bool = False, x: torch.Tensor | None = None) -> nn.Module:
    """Make every BN non-trivial (random scale and shift, NL gammas non-zero, random statistics) and every
    NL conv larger than its 0.01 init, so that no block is the identity and every key matters.

    With a clip ``x``, the BN statistics are those of ``x`` instead of random (one forward in train
    mode), which keeps deep random networks finite (the dot-product NL block is cubic in its input).
    With ``affine``, statistics stay at 0 / 1 (the official frozen-BN models have none)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) - 0.5)
                if not affine:
                    module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator) - 0.5)
                    module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            elif ".nonlocal" in f".{name}" and isinstance(module, (nn.Conv3d, nn.Conv2d)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.05)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.05)
    if x is not None and not affine:
        fit_statistics(model, x)
    return model.eval()


def fit_statistics(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BN's running statistics to those of clip ``x`` (one forward in train mode), the variance
    raised by 0.5 (a single clip leaves nearly constant channels, whose tiny variance would amplify
    rounding errors)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    with torch.no_grad():
        for m in norms:
            m.momentum = 1.0  # running statistics := the statistics of x
        model.train()(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.num_batches_tracked.zero_()
            m.running_var.add_(0.5)
    return model.eval()


def calibrate(model: nn.Module, x: torch.Tensor, spread: float = 1.0) -> nn.Module:
    """Scale the classifier so that the logits on ``x`` have standard deviation ``spread`` (random
    weights otherwise give logits of hundreds, whose softmax is one-hot and hides differences)."""
    with torch.no_grad():
        pooled = model.eval().head.pool(model.features(x))  # per-position logits: before any softmax
        factor = spread / float(model.head.fc(pooled.movedim(1, -1)).std())
        model.head.fc.weight.mul_(factor)
        model.head.fc.bias.mul_(factor)
    return model


def source_state(state: dict[str, torch.Tensor], table: KeyTable,
                 keep: Callable[[str], bool] = lambda key: True) -> dict[str, torch.Tensor]:
    """``state`` under the source's key names (keys without a source name, or not kept, dropped)."""
    out = {}
    for key, value in state.items():
        source_key = table.to_source(key)
        if source_key is not None and keep(key):
            out[source_key] = value.clone()
    return out


def write_caffe2(path, blobs: dict[str, torch.Tensor], *, momentum: bool = True, wrapped: bool = True) -> None:
    """A Caffe2 checkpoint as lib/utils/checkpoints.py writes it: numpy blobs, their ``_momentum``
    blobs, ``lr`` and ``model_iter`` (protocol 2, numpy 1.x module names as in the released files)."""
    arrays = {k: v.numpy().astype(np.float32) for k, v in blobs.items()}
    if momentum:
        arrays.update({f"{k}_momentum": np.full_like(v, 0.5) for k, v in arrays.items()})
    arrays.update(lr=np.array(0.01, np.float32), model_iter=400000)
    data = pickle.dumps({"blobs": arrays} if wrapped else arrays, protocol=2)
    with open(path, "wb") as f:
        f.write(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def clip_for(arch: Arch, size: int, batch: int = 2, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, arch.clip.num_frames, size, size, generator=generator).to(dtype)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)
