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


def randomize(model: nn.Module, *, seed: int = 0, affine: bool = False) -> nn.Module:
    """Make every BN non-trivial (random statistics, scale, shift; NL gammas non-zero) and every NL conv
    larger than its 0.01 init, so that no block is the identity and every key matters. With ``affine``,
    BN statistics stay at 0 / 1 (the official frozen-BN models have none)."""
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
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.2)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model.eval()


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
    return torch.randn(batch, 3, arch.clip.frames, size, size, generator=generator).to(dtype)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)
