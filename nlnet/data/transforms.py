"""Spatial augmentation of decoded clips with ``torchvision.transforms.v2`` (paper §4.1).

Train: short side rescaled to a random size in ``scale`` ([256, 320] in the paper), a random
``crop_size`` square crop, horizontal flip with probability 0.5, ImageNet mean/std.
Test: short side ``short_side`` (256), ``num_crops`` square crops spread along the long side
(left/centre/right or top/middle/bottom for 3); ``ViewProtocol`` is that test as data (with T, tau, clips).

Random choices are drawn up front from the item's seeded ``numpy`` generator into a
``TrainParams`` and passed explicitly to ``v2.functional`` calls, so an item's augmentation is a
pure function of (seed, epoch, index, attempt) whatever worker or process computes it. The drawn
short side is also what the decoder scales to with ``decode_resize`` (in FFmpeg); the resize here is
then a no-op.

Input: uint8 (T, C, H, W) tensor. ``crop`` gives the uint8 (C, T, H, W) clip that DataLoader workers
return; :func:`normalize` (run on the device by ``nlnet.data.prologue``) turns it into the model's
float32 input; calling a transform does both (inference, visualisation).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from nlnet.utils.errors import ConfigError

from .decoding import scaled_size
from .placement import check_placement
from .sampling import DenseSampler, SegmentSampler

if TYPE_CHECKING:
    from .yuv import YuvClip

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TrainParams", "TrainTransform", "EvalTransform", "ViewProtocol",
           "crop_offsets", "normalize", "scaled_stats"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TrainParams:
    """The random choices of one training clip.

    Attributes:
        short_side: target length of the shorter side.
        top: vertical crop position as a fraction of the free room, in [0, 1].
        left: horizontal crop position as a fraction of the free room, in [0, 1].
        flip: whether to flip horizontally.
    """

    short_side: int
    top: float
    left: float
    flip: bool


def _resize_short_side(video: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resize (T, C, H, W) so min(H, W) == short_side (no-op when the decoder already did)."""
    h, w = video.shape[-2:]
    if min(h, w) == short_side:
        return video
    width, height = scaled_size(w, h, short_side)
    return F.resize(video, [height, width], antialias=True)


def _resize_planes(clip: YuvClip, short_side: int) -> YuvClip:
    """:func:`_resize_short_side` of a YUV 4:2:0 clip (both planes)."""
    h, w = clip.size
    if min(h, w) == short_side:
        return clip
    width, height = scaled_size(w, h, short_side)
    return clip.resized(height, width)


def _even(offset: int) -> int:
    """A crop offset moved down to an even one (YUV 4:2:0 crops keep whole 2x2 chroma blocks)."""
    return offset - offset % 2


def _to_ctwh(video: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) -> contiguous (C, T, H, W), done on uint8 (4x less memory traffic than on float)."""
    return video.transpose(0, 1).contiguous()


def normalize(video: torch.Tensor, mean: Sequence[float] | torch.Tensor,
              std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, T, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, same shape and layout.

    The 1/255 is folded into mean and std (``(x - 255 mean) / (255 std)``), so the float clip is
    written twice; the memory format of ``video`` (e.g. ``channels_last_3d``) is kept. Every caller
    (worker-side transforms, the device-side batch prologue) computes exactly these float32 operations,
    so the results are bit-for-bit equal wherever they run.

    Args:
        video: uint8 clips, channels at dim -4.
        mean, std: per-channel values on the [0, 1] scale, or float32 (C, 1, 1, 1) tensors already
            multiplied by 255 (see :func:`scaled_stats`).
    """
    if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor):
        # both are sequences here: callers pass the two in one form (config values, or scaled_stats' pair)
        mean, std = scaled_stats(cast(Sequence[float], mean), cast(Sequence[float], std), device=video.device)
    return video.to(torch.float32).sub_(mean).div_(std)


def scaled_stats(mean: Sequence[float], std: Sequence[float], *,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(255 mean, 255 std) as float32 (C, 1, 1, 1) tensors that broadcast over (..., C, T, H, W)."""
    scaled_mean, scaled_std = (torch.tensor([v * 255 for v in values], dtype=torch.float32,
                                            device=device).view(-1, 1, 1, 1) for values in (mean, std))
    return scaled_mean, scaled_std


def crop_offsets(length: int, crop: int, num_crops: int) -> list[int]:
    """Start offsets of ``num_crops`` crops spread evenly over ``length`` (first at 0, last at the end).

    One crop is centred.
    """
    room = max(length - crop, 0)
    if num_crops == 1:
        return [room // 2]
    return [int(round(room * i / (num_crops - 1))) for i in range(num_crops)]


class TrainTransform:
    """Random short-side scale, random crop, horizontal flip, normalisation (paper §4.1).

    Args:
        crop_size: side of the square crop (224 in the paper).
        scale: inclusive range of the random short side ((256, 320) in the paper).
        flip_prob: probability of a horizontal flip.
        mean: per-channel mean, on the [0, 1] scale.
        std: per-channel standard deviation, on the [0, 1] scale.
    """

    def __init__(
        self,
        *,
        crop_size: int,
        scale: Sequence[int] = (256, 320),
        flip_prob: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if scale[0] > scale[1] or scale[0] < crop_size:
            raise ValueError(f"train_scale={tuple(scale)} must be ordered and at least crop_size={crop_size}")
        self.crop_size = crop_size
        self.scale = (int(scale[0]), int(scale[1]))
        self.flip_prob = flip_prob
        self.mean = tuple(mean)
        self.std = tuple(std)

    def sample(self, rng: np.random.Generator) -> TrainParams:
        """Draw the random choices of one clip."""
        return TrainParams(
            short_side=int(rng.integers(self.scale[0], self.scale[1] + 1)),
            top=float(rng.random()),
            left=float(rng.random()),
            flip=bool(rng.random() < self.flip_prob),
        )

    def crop(self, video: torch.Tensor, params: TrainParams) -> torch.Tensor:
        """uint8 (T, C, H, W) -> uint8 (C, T, crop, crop): resize, crop, flip."""
        video = _resize_short_side(video, params.short_side)
        h, w = video.shape[-2:]
        top = int(round(params.top * (h - self.crop_size)))
        left = int(round(params.left * (w - self.crop_size)))
        video = F.crop(video, top, left, self.crop_size, self.crop_size)
        if params.flip:
            video = F.horizontal_flip(video)
        return _to_ctwh(video)

    def crop_planes(self, clip: YuvClip, params: TrainParams) -> YuvClip:
        """:meth:`crop` of a YUV 4:2:0 clip: the same resize and flip, the crop at even offsets
        (at most one pixel up and left of :meth:`crop`'s)."""
        clip = _resize_planes(clip, params.short_side)
        h, w = clip.size
        top = _even(int(round(params.top * (h - self.crop_size))))
        left = _even(int(round(params.left * (w - self.crop_size))))
        clip = clip.cropped(top, left, self.crop_size, self.crop_size)
        return clip.flipped() if params.flip else clip

    def __call__(self, video: torch.Tensor, params: TrainParams) -> torch.Tensor:
        """uint8 (T, C, H, W) -> normalised float32 (C, T, crop, crop)."""
        return normalize(self.crop(video, params), self.mean, self.std)


class EvalTransform:
    """Short-side resize and ``num_crops`` square crops along the long side (paper §4.1 testing).

    Args:
        crop_size: side of each square crop (256 in the official test); None: no crop, the whole
            resized frame (the paper's fully-convolutional test; frames of different videos then
            differ in size).
        short_side: short side after resizing (256).
        num_crops: crops per clip (3: left/centre/right, or top/middle/bottom for portrait videos).
        mean: per-channel mean, on the [0, 1] scale.
        std: per-channel standard deviation, on the [0, 1] scale.
    """

    def __init__(
        self,
        *,
        crop_size: int | None,
        short_side: int,
        num_crops: int = 3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if crop_size is not None and crop_size > short_side:
            raise ValueError(f"test crop size {crop_size} exceeds test_scale={short_side}")
        self.crop_size = crop_size
        self.short_side = short_side
        self.num_crops = num_crops
        self.mean = tuple(mean)
        self.std = tuple(std)

    def crop(self, video: torch.Tensor, crop_index: int) -> torch.Tensor:
        """uint8 (T, C, H, W) -> uint8 (C, T, crop, crop), crop ``crop_index`` (full frame: no crop)."""
        video = _resize_short_side(video, self.short_side)
        if self.crop_size is None:
            return _to_ctwh(video)
        h, w = video.shape[-2:]
        if w >= h:  # landscape: crops move left -> right
            top = (h - self.crop_size) // 2
            left = crop_offsets(w, self.crop_size, self.num_crops)[crop_index]
        else:  # portrait: top -> bottom
            left = (w - self.crop_size) // 2
            top = crop_offsets(h, self.crop_size, self.num_crops)[crop_index]
        return _to_ctwh(F.crop(video, top, left, self.crop_size, self.crop_size))

    def crop_planes(self, clip: YuvClip, crop_index: int) -> YuvClip:
        """:meth:`crop` of a YUV 4:2:0 clip, the crop at even offsets (at most one pixel off :meth:`crop`'s)."""
        clip = _resize_planes(clip, self.short_side)
        if self.crop_size is None:
            return clip
        h, w = clip.size
        if w >= h:
            top, left = (h - self.crop_size) // 2, crop_offsets(w, self.crop_size, self.num_crops)[crop_index]
        else:
            left, top = (w - self.crop_size) // 2, crop_offsets(h, self.crop_size, self.num_crops)[crop_index]
        return clip.cropped(_even(top), _even(left), self.crop_size, self.crop_size)

    def __call__(self, video: torch.Tensor, crop_index: int) -> torch.Tensor:
        """uint8 (T, C, H, W) -> normalised float32 (C, T, crop, crop) (see :meth:`crop`)."""
        return normalize(self.crop(video, crop_index), self.mean, self.std)


@dataclass(frozen=True)
class ViewProtocol:
    """How a video becomes the model's input views (the multi-view test of paper §4.1).

    Attributes:
        num_frames: T, frames per clip.
        sampling_rate: tau, stride between sampled frames (in frames of the video's average rate).
        short_side: the short side frames are resized to.
        crop_size: side of each square crop.
        num_clips: clips per video, uniformly spaced in time (the first starts at the first frame,
            the last ends at the last one; ``nlnet.data.sampling.eval_clip_start``).
        num_crops: crops per clip along the long side.
        mean: per-channel mean of RGB values on the [0, 1] scale.
        std: per-channel standard deviation on the same scale.
        decode_resize: the decoder scales frames to ``short_side`` (FFmpeg) instead of the transform
            resizing them after decoding at native size (``VideoDataset(decode_resize=...)``).
        full_frame: the whole frame at short side ``short_side``, one spatial view per clip (the paper's
            fully-convolutional test; ``num_crops`` becomes 1 and ``crop_size`` is unused).
        clip_placement: the rule that places the dense test clips in time, one of
            ``nlnet.data.placement.CLIP_PLACEMENTS`` (``nlnet``, ``pyslowfast``, ``caffe2``).
        num_segments: None for dense clips (T frames at stride tau); N for segment sampling, T frames
            in N runs over the whole video (``nlnet.data.sampling.SegmentSampler``, SSv2 recipes).

    A stored ``data.val`` config node (``VideoDataset`` arguments) becomes a protocol through
    :meth:`from_dataset_node`, the one place that maps its keys to these fields.
    """

    num_frames: int
    sampling_rate: int
    short_side: int = 256
    crop_size: int = 256
    num_clips: int = 10
    num_crops: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    decode_resize: bool = False
    full_frame: bool = False
    clip_placement: str = "nlnet"
    num_segments: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_frames", "sampling_rate", "short_side", "crop_size", "num_clips", "num_crops"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"views.{name}={value!r}: must be a positive integer")
        check_placement(self.clip_placement, "views.clip_placement")
        segments = self.num_segments
        if segments is not None and (not isinstance(segments, int) or segments < 1 or self.num_frames % segments):
            raise ConfigError(f"views.num_segments={segments!r}: must be a positive integer dividing "
                              f"views.num_frames={self.num_frames}")
        if self.full_frame:  # one spatial view: the whole frame
            object.__setattr__(self, "num_crops", 1)
            object.__setattr__(self, "crop_size", min(self.crop_size, self.short_side))  # unused
        if self.crop_size > self.short_side:
            raise ConfigError(f"views.crop_size={self.crop_size} exceeds views.short_side={self.short_side}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"views.mean={list(self.mean)}, views.std={list(self.std)}: need 3 values each "
                              "(R, G, B on the [0, 1] scale), std > 0")

    @classmethod
    def from_dataset_node(cls, node: Mapping[str, Any], **overrides: Any) -> ViewProtocol:
        """The protocol of a ``data.val`` node (``nlnet.data.VideoDataset`` arguments, as stored in a
        checkpoint's config or given to the dataset); keys it lacks keep the dataset's defaults.

        Args:
            node: ``num_frames``, ``sampling_rate``, ``test_scale``, ``test_crop_size``, ``num_clips``,
                ``num_crops``, ``full_frame``, ``decode_resize``, ``mean``, ``std``, ``clip_placement``
                and ``sampler`` (a ``SegmentSampler`` or its config node, or None: dense clips).
            overrides: field values on top (None values keep the node's).

        Raises:
            ConfigError: an unknown override, or no ``num_frames``/``sampling_rate`` anywhere.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigError(f"views.{unknown[0]}: unknown key; valid keys: {', '.join(known)}")
        sampler = node.get("sampler")
        segments = (sampler.get("num_segments") if isinstance(sampler, Mapping)  # a stored config node
                    else getattr(sampler, "num_segments", None))  # a sampler object (the dataset's)
        short_side = node.get("test_scale")
        stored = {field: node.get(key) for field, key in DATASET_KEYS.items()}
        stored.update(crop_size=node.get("test_crop_size") or short_side, num_segments=segments)
        given = {k: v for k, v in overrides.items() if v is not None}
        merged = {**{k: v for k, v in stored.items() if v is not None}, **given}
        if "num_frames" not in merged or "sampling_rate" not in merged:
            raise ConfigError("data.val has no num_frames / sampling_rate: pass views.num_frames=T "
                              "views.sampling_rate=TAU (and views.short_side, views.crop_size)")
        return cls(**merged)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one view (full frame: the square ``short_side`` frame; other aspect ratios
        give a longer W or H)."""
        side = self.short_side if self.full_frame else self.crop_size
        return (3, self.num_frames, side, side)

    @property
    def decode_short_side(self) -> int | None:
        """The short side the decoder scales to (``decode_resize``), or None: native size."""
        return self.short_side if self.decode_resize else None

    def sampler(self) -> Any:
        """Where a test clip's frames lie: ``DenseSampler`` or ``SegmentSampler(num_segments=N)``."""
        return DenseSampler() if self.num_segments is None else SegmentSampler(num_segments=self.num_segments)

    def test_times(self, info: Any, clip_index: int) -> np.ndarray:
        """Target times (T,) in seconds of test clip ``clip_index`` of a video with ``info``
        (``nlnet.data.decoding.VideoInfo``): the sampler's, dense clips placed by ``clip_placement``."""
        return self.sampler().test_times(info, clip_index, self.num_clips, num_frames=self.num_frames,
                                         sampling_rate=self.sampling_rate, placement=self.clip_placement)

    def transform(self) -> EvalTransform:
        """The spatial test transform: short-side resize, ``num_crops`` crops (or the full frame),
        normalisation."""
        return EvalTransform(crop_size=None if self.full_frame else self.crop_size, short_side=self.short_side,
                             num_crops=self.num_crops, mean=self.mean, std=self.std)


DATASET_KEYS = {"num_frames": "num_frames", "sampling_rate": "sampling_rate", "short_side": "test_scale",
                "num_clips": "num_clips", "num_crops": "num_crops", "mean": "mean", "std": "std",
                "decode_resize": "decode_resize", "full_frame": "full_frame", "clip_placement": "clip_placement"}
"""ViewProtocol field -> the ``data.val`` key (``VideoDataset`` argument) it is stored under."""
