"""The batch prologue: what happens to a batch between the loader and the model, in one place.

DataLoader workers return uint8 (B, C, T, H, W) clips in pinned memory (4x less than float32 to
copy); the prologue copies them to the device without blocking, optionally puts them in
``channels_last_3d`` layout (on uint8, before the float clip exists), flips the clips whose ``flip``
is set (datasets with ``flip_on_device``), and normalises them (``nlnet.data.transforms.normalize``,
the same float32 operations a worker would do, so the model's input is bit-for-bit what a
worker-side normalisation gives). The trainer step, evaluation, precise BN and the GPU check all call
it. The same ``channels_last`` setting gives the model its memory format (:meth:`prepare_model`), so
one knob (``trainer.channels_last``) decides both.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from nlnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, scaled_stats

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
        return cls(device=device, mean=getattr(dataset, "mean", IMAGENET_MEAN), std=getattr(dataset, "std", IMAGENET_STD),
                   channels_last=channels_last)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device, in ``channels_last_3d`` memory format when the clips are."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last_3d)
        return model

    def video(self, batch: dict[str, Any]) -> torch.Tensor:
        """The model's input (B, C, T, H, W) float on the device.

        uint8 clips are flipped (where ``batch["flip"]`` is set) and normalised; floating-point
        clips are taken as already normalised (stand-in batches) and only moved and laid out.
        """
        video = batch["video"].to(self.device, non_blocking=True)
        if "flip" in batch and not video.is_floating_point():  # (B,) bool: mirror those clips along W, on uint8
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
