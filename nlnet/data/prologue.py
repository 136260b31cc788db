"""The batch prologue: batch -> model input, in one place (trainer step, evaluation, precise BN, GPU check).

Workers return pinned uint8 (B, C, T, H, W) clips (4x less to copy than float32); the prologue copies
them without blocking, flips those with ``flip`` set (``VideoDataset(flip_on_device=True)``), lays them
out ``channels_last_3d`` (still uint8) and normalises them with ``nlnet.data.transforms.normalize``: the
float32 operations of a worker-side normalisation, so the input is bit-for-bit the same. Its
``channels_last`` also gives the model its memory format (:meth:`prepare_model`): one knob. Batches of
YUV 4:2:0 planes (``VideoDataset(color_convert="device")``) are first converted to uint8 RGB here
(``nlnet.data.yuv.yuv_to_rgb``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from nlnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, scaled_stats
from nlnet.data.yuv import yuv_to_rgb

__all__ = ["BatchPrologue"]


class BatchPrologue:
    """Batch on the host -> model input and labels on the device.

    Args:
        device: where the model runs.
        mean: per-channel mean on the [0, 1] scale (the dataset's ``mean``).
        std: per-channel std on the [0, 1] scale (the dataset's ``std``).
        channels_last: ``torch.channels_last_3d`` layout for the clips and (:meth:`prepare_model`) the
            model's weights.
    """

    def __init__(self, *, device: torch.device | str, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, channels_last: bool = False) -> None:
        self.device = torch.device(device)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.channels_last = channels_last
        self._stats = scaled_stats(self.mean, self.std, device=self.device)  # (C, 1, 1, 1) x 255

    @classmethod
    def for_dataset(cls, dataset: Any, *, device: torch.device | str, channels_last: bool = False) -> BatchPrologue:
        """The prologue of a dataset's batches (its ``mean`` and ``std``; ImageNet's when it has none)."""
        return cls(device=device, mean=getattr(dataset, "mean", IMAGENET_MEAN),
                   std=getattr(dataset, "std", IMAGENET_STD), channels_last=channels_last)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device, in ``channels_last_3d`` memory format when the clips are."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last_3d)
        return model

    def video(self, batch: dict[str, Any]) -> torch.Tensor:
        """The model's input (B, C, T, H, W) float on the device.

        Clips are flipped where ``batch["flip"]`` is set; uint8 clips are normalised, floating-point
        ones are taken as already normalised (stand-in batches).
        """
        video = batch["video"].to(self.device, non_blocking=True)
        if "chroma" in batch:  # YUV 4:2:0 planes (VideoDataset(color_convert="device")) -> uint8 RGB here
            video = yuv_to_rgb(video, batch["chroma"].to(self.device, non_blocking=True), batch["yuv_format"])
        if "flip" in batch:  # (B,) bool: mirror those clips along W (on uint8, before normalising)
            flip = torch.as_tensor(batch["flip"]).to(self.device, non_blocking=True).view(-1, 1, 1, 1, 1)
            video = torch.where(flip, video.flip(-1), video)
        if self.channels_last:
            video = video.contiguous(memory_format=torch.channels_last_3d)
        return video if video.is_floating_point() else normalize(video, *self._stats)

    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(video, labels) on the device; labels None when the batch has none."""
        labels = batch.get("label")
        if labels is not None:
            labels = torch.as_tensor(labels).to(self.device, non_blocking=True)
        return self.video(batch), labels
