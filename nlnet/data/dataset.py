"""``VideoDataset``: annotations -> decode -> sample -> transform, one map-style dataset.

Train mode: item ``i`` is one random clip of video ``i`` (paper §4.1). Test mode: item ``i`` is
view ``i % num_views`` of video ``i // num_views``, a view being one of ``num_clips`` uniformly
spaced clips times one of ``num_crops`` crops, tagged for score aggregation.

Every random choice of an item comes from a generator seeded with (seed, epoch, index, attempt),
so the result does not depend on the worker, the process or the order of access (DDP-safe).

Items hold uint8 (C, T, H, W) clips (4x less host memory and copying than float32); the batch prologue
(``nlnet.data.prologue``) normalises them on the device with this dataset's ``mean`` and ``std``.
With ``flip_on_device`` the training flip is left to the prologue too: the item carries ``flip``.

A video that cannot be decoded is a value, never an exception: every item carries ``failures``, the
``(path, reason)`` of each video that failed while making it, so that the main process can report
them whatever the number of DataLoader workers (``nlnet.data.loader.collate``). Items also carry
``decoder``, which decoder read their video (``nlnet.data.hwdecode``: ``"cpu"``, ``"cuda"``, or
``"cpu (...)"`` with the reason NVDEC was not used), so the main process can report it the same way.

With ``color_convert="device"`` items hold YUV 4:2:0 planes instead of RGB (``nlnet.data.yuv``:
``video`` is the luma, plus ``chroma`` and ``yuv_format``); the batch prologue converts them to RGB.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nlnet.utils.errors import DataError

from .annotations import read_annotations
from .decoding import DECODE_TIMEOUT, MAX_FRAME_PIXELS, VideoDecodeError, VideoReader
from .hwdecode import Decoder, check_choice
from .multilabel import clip_target
from .sampling import DenseSampler, read_frames
from .transforms import IMAGENET_MEAN, IMAGENET_STD, TrainTransform, ViewProtocol
from .yuv import YuvClip

__all__ = ["VideoDataset", "MODES", "COLOR_CONVERTS"]

MODES = ("train", "test")
COLOR_CONVERTS = ("worker", "device")  # where YUV becomes RGB: FFmpeg in the worker, or the batch prologue


class VideoDataset(Dataset):
    """Kinetics-style video clips for training (random clip) or testing (clips x crops views).

    Args:
        root: dataset folder.
        annotations: Kinetics CSV or ``relative/path label_index`` list (see ``annotations.py``); unused
            with ``reader``.
        reader: the dataset's annotation reader (``nlnet.data.readers``: UCF101, HMDB51, SSv2, class
            folders, lists); None: ``read_annotations(annotations, root, label_map=label_map)``.
            With a multi-label table (``nlnet.data.multilabel``: Charades, multi-label lists) an item's
            ``label`` is a multi-hot (K,) float32 target (``nlnet.data.multilabel.clip_target``): the
            actions overlapping the training clip's time span, all the video's actions in testing.
        sampler: where clips lie in time (``nlnet.data.sampling``); None: :class:`DenseSampler`, the
            paper's one T x tau clip. :class:`SegmentSampler` spreads T frames over the whole video.
        flip_label_map: class swapped by the training flip (e.g. "... left to right" <-> "... right to
            left" in SSv2), by index or by class name, both directions given (mmaction2's
            ``flip_label_map``); a class not listed keeps its label.
        mode: ``"train"`` or ``"test"``.
        num_frames: frames per clip, T (32 for the paper's 32x2, 8 for 8x8).
        sampling_rate: stride between sampled frames, tau (2 or 8), in frames of the video's rate.
        crop_size: training crop side (224).
        train_scale: inclusive range of the random short side in training ((256, 320), §4.1).
        test_scale: short side in testing (256).
        test_crop_size: test crop side (None: ``test_scale``, the official 256x256 crops).
        num_clips: test clips per video, uniformly spaced, the last ending at the video's end (10).
        num_crops: test crops per clip along the long side (3).
        full_frame: test on the whole frame at short side ``test_scale``, one spatial view per clip
            (the paper's fully-convolutional test; ``num_crops`` and ``test_crop_size`` are unused).
        clip_placement: the rule placing the dense test clips in time (``nlnet.data.placement``:
            ``nlnet``, the default, ``pyslowfast`` or ``caffe2``; converted checkpoints store their source's).
        flip_prob: training horizontal flip probability (0.5).
        flip_on_device: leave the training flip to the batch prologue (items carry ``flip``); the
            model's input is bit-for-bit the same.
        mean: per-channel mean on the [0, 1] scale (ImageNet's), for the batch prologue.
        std: per-channel std on the [0, 1] scale (ImageNet's), for the batch prologue.
        label_map: class-name file fixing class indices (see ``read_label_map``).
        seed: base seed of all random choices.
        max_retries: in training, how many other videos to try when one cannot be decoded; when all
            fail, the item has ``ok=False`` (a zero clip) and the training loader stops.
        decode_resize: let FFmpeg do the short-side resize while converting frames; False (the default,
            11-17% less CPU per clip on 256p videos, ``docs/benchmarks.md``) decodes at native size and
            resizes the uint8 frames with ``torchvision.transforms.v2``.
        decode_threads: FFmpeg threads per video (0: FFmpeg decides; 1 suits DataLoader workers,
            which are the parallelism).
        max_frame_pixels: a video with larger frames (width x height) is a failure, not decoded
            (None: no cap).
        decode_timeout: a clip that takes longer to decode (seconds) is a failure (None: no limit).
        decode_device: ``"cpu"`` (FFmpeg's software decoders) or ``"cuda"`` (NVDEC through PyAV's
            hwaccel, probed once per worker; where it cannot run, the worker decodes on the CPU and
            its items say why, ``nlnet.data.hwdecode``).
        color_convert: ``"worker"`` (FFmpeg converts to RGB in the worker) or ``"device"`` (items hold
            YUV 4:2:0 planes cropped at even offsets; the batch prologue converts them on the device,
            ``nlnet.data.yuv``).
        worker_start_method: how DataLoader workers start (``multiprocessing`` start method; None:
            the platform's default, fork on Linux). NVDEC cannot be used in a worker forked from a
            process that already uses CUDA, so ``decode_device="cuda"`` defaults to ``"spawn"``.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        annotations: str | os.PathLike | None = None,
        reader: Any | None = None,
        sampler: Any | None = None,
        flip_label_map: Mapping[int | str, int | str] | None = None,
        mode: str = "train",
        num_frames: int,
        sampling_rate: int,
        crop_size: int = 224,
        train_scale: Sequence[int] = (256, 320),
        test_scale: int = 256,
        test_crop_size: int | None = None,
        num_clips: int = 10,
        num_crops: int = 3,
        full_frame: bool = False,
        clip_placement: str = "nlnet",
        flip_prob: float = 0.5,
        flip_on_device: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        label_map: str | os.PathLike | None = None,
        seed: int = 0,
        max_retries: int = 10,
        decode_resize: bool = False,
        decode_threads: int = 1,
        max_frame_pixels: int | None = MAX_FRAME_PIXELS,
        decode_timeout: float | None = DECODE_TIMEOUT,
        decode_device: str = "cpu",
        color_convert: str = "worker",
        worker_start_method: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: valid choices are {MODES}")
        if num_frames < 1 or sampling_rate < 1:
            raise ValueError(f"num_frames={num_frames} and sampling_rate={sampling_rate} must be >= 1")
        if num_clips < 1 or num_crops < 1:
            raise ValueError(f"num_clips={num_clips} and num_crops={num_crops} must be >= 1")
        self.root = str(root)
        if reader is None and annotations is None:
            raise ValueError("VideoDataset needs annotations=<file> or reader=<a nlnet.data.readers reader>")
        # what was read, for messages (a reader's ``source`` when it names one)
        self.annotations = str(annotations if reader is None else getattr(reader, "source", type(reader).__name__))
        self.sampler = sampler if sampler is not None else DenseSampler()
        self.sampler.check(num_frames)
        self.mode = mode
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.num_clips = num_clips if mode == "test" else 1
        # the test views as one object (shared with predict, export and the attention figures)
        self.view = ViewProtocol.from_dataset_node(dict(
            num_frames=num_frames, sampling_rate=sampling_rate, test_scale=test_scale, test_crop_size=test_crop_size,
            num_clips=num_clips, num_crops=num_crops, full_frame=full_frame, decode_resize=decode_resize, mean=mean,
            std=std, clip_placement=clip_placement, sampler=self.sampler))
        self.num_crops = self.view.num_crops if mode == "test" else 1
        self.full_frame = full_frame
        self.flip_on_device = flip_on_device
        self.mean, self.std = tuple(mean), tuple(std)
        self.seed = seed
        self.max_retries = max_retries
        self.decode_resize = decode_resize
        self.decoder = Decoder(device=decode_device)
        self.color_convert = check_choice("data.color_convert", color_convert, COLOR_CONVERTS)
        self.worker_start_method = worker_start_method or ("spawn" if decode_device != "cpu" else None)
        self.decoded_by = "cpu"  # the decoder of the last video opened in this process
        self.reader_options: dict[str, Any] = dict(threads=decode_threads, max_frame_pixels=max_frame_pixels,
                                                   decode_timeout=decode_timeout)  # VideoReader's, for every video
        self.epoch = 0
        if reader is not None:
            table = reader.read()
        else:
            assert annotations is not None  # checked above: one of the two is given
            table = read_annotations(annotations, root, label_map=label_map)
        if not table.records:
            raise DataError(f"none of the {len(table.missing)} videos listed in {self.annotations} is under {root} "
                            f"(first: {table.missing[0]})")
        self.classes = table.classes
        self.video_paths = [r.path for r in table.records]
        self.labels = [r.label for r in table.records]
        self.multi_label = table.multi_label
        self.records = table.records
        self._train_window: tuple[float, float] | None = None  # the last training clip's (start_s, end_s)
        self.num_missing = len(table.missing)
        self.flip_labels = flip_label_swaps(flip_label_map or {}, self.classes)
        self.failures: dict[str, str] = {}  # path -> reason, in this process (worker)
        self.train_transform = TrainTransform(crop_size=crop_size, scale=tuple(train_scale), flip_prob=flip_prob,
                                              mean=mean, std=std)
        self.test_transform = self.view.transform()
        # test mode: the crops of one clip share one decode
        self._cache_key: tuple[int, int] | None = None
        self._cache_value: torch.Tensor | YuvClip | None = None

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def num_videos(self) -> int:
        return len(self.video_paths)

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return self.num_videos * self.num_views

    def set_epoch(self, epoch: int) -> None:
        """Change the random clips of training (call at the start of every epoch)."""
        self.epoch = epoch

    def rng(self, index: int, attempt: int = 0) -> np.random.Generator:
        """The generator of an item: a pure function of (seed, epoch, index, attempt)."""
        return np.random.default_rng([self.seed, self.epoch, index, attempt])

    # -- items ----------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside a dataset of {len(self)} items")
        if self.mode == "train":
            return self._train_item(index)
        return self._test_item(index)

    def _train_item(self, index: int) -> dict:
        video_index = index
        failures = []
        for attempt in range(self.max_retries + 1):
            rng = self.rng(index, attempt)
            if attempt > 0:  # a bad video is replaced by another one, chosen by the same generator
                video_index = int(rng.integers(self.num_videos))
            params = self.train_transform.sample(rng)
            path = self.video_paths[video_index]
            try:
                frames = self.decode_train_clip(path, self.sampler.draw(rng), params.short_side)
            except VideoDecodeError as e:
                failures.append(self._record_failure(path, e.reason))
                continue
            # with flip_on_device the worker returns the unflipped crop and the item says whether to flip
            crop_params = dataclasses.replace(params, flip=False) if self.flip_on_device else params
            video: torch.Tensor | YuvClip
            if isinstance(frames, YuvClip):
                video = self.train_transform.crop_planes(frames, crop_params)
            else:
                video = self.train_transform.crop(frames, crop_params)
            return self._item(video, video_index, 0, True, failures, params.flip)
        return self._item(self._blank(self.train_transform.crop_size), video_index, 0, False, failures, False)

    def _blank(self, size: int) -> torch.Tensor | YuvClip:
        """The zero clip of a failed item, RGB or YUV like the others."""
        if self.color_convert == "worker":
            return torch.zeros(3, self.num_frames, size, size, dtype=torch.uint8)
        half = (size + 1) // 2
        return YuvClip(torch.zeros(self.num_frames, 1, size, size, dtype=torch.uint8),
                       torch.zeros(self.num_frames, 2, half, half, dtype=torch.uint8), 0)

    def _item(self, video: torch.Tensor | YuvClip, video_index: int, view_index: int, ok: bool, failures: list,
              flip: bool) -> dict:
        label = self.labels[video_index]
        if self.multi_label:
            window = self._train_window if self.mode == "train" else None
            label = clip_target(self.records[video_index], len(self.classes), window)
        elif flip and self.mode == "train":  # the flipped clip shows the mirrored class (SSv2's left/right)
            label = self.flip_labels.get(label, label)
        item = {"video": video, "label": label, "video_index": video_index,
                "view_index": view_index, "ok": ok, "failures": failures, "decoder": self.decoded_by}
        if isinstance(video, YuvClip):  # luma as ``video``, plus ``chroma`` and ``yuv_format``
            item.update(video.item())
        if self.flip_on_device and self.mode == "train":
            item["flip"] = flip
        return item

    def decode_train_clip(self, path: str, u: Any, short_side: int) -> torch.Tensor | YuvClip:
        """uint8 (T, C, H, W) frames of a training clip at position ``u`` (``sampler.draw``: for the
        dense clip a number in [0, 1)); a ``YuvClip`` with ``color_convert="device"``."""
        with self._reader(path) as reader:
            times = self.sampler.train_times(reader.info, u, num_frames=self.num_frames,
                                             sampling_rate=self.sampling_rate)
            self._train_window = (float(times.min()), float(times.max()) + 1 / reader.info.fps)  # seconds
            return read_frames(reader, times, short_side=short_side if self.decode_resize else None,
                               planes=self._planes)

    def _test_item(self, index: int) -> dict:
        video_index, view_index = divmod(index, self.num_views)
        clip_index, crop_index = divmod(view_index, self.num_crops)
        path = self.video_paths[video_index]
        reason = self.failures.get(path)  # a video that failed once is not decoded again
        video: torch.Tensor | YuvClip
        if reason is None:
            try:
                frames = self.decode_test_clip(video_index, clip_index)
                if isinstance(frames, YuvClip):
                    video = self.test_transform.crop_planes(frames, crop_index)
                else:
                    video = self.test_transform.crop(frames, crop_index)
            except VideoDecodeError as e:
                reason = self._record_failure(path, e.reason)[1]
        if reason is not None:
            video = self._blank(self.test_transform.crop_size or self.test_transform.short_side)
        return self._item(video, video_index, view_index, reason is None, [] if reason is None else [(path, reason)],
                          False)

    def decode_test_clip(self, video_index: int, clip_index: int) -> torch.Tensor | YuvClip:
        """uint8 (T, C, H, W) frames (or a ``YuvClip``) of test clip ``clip_index``; the last one is cached
        for the crops."""
        key = (video_index, clip_index)
        if key == self._cache_key and self._cache_value is not None:
            return self._cache_value
        with self._reader(self.video_paths[video_index]) as reader:
            times = self.view.test_times(reader.info, clip_index)
            frames = read_frames(reader, times, short_side=self.view.decode_short_side, planes=self._planes)
        self._cache_key, self._cache_value = key, frames
        return frames

    @property
    def _planes(self) -> bool:
        return self.color_convert == "device"

    def _reader(self, path: str) -> VideoReader:
        if self.decoder.device == "cpu":
            return VideoReader(path, **self.reader_options)
        reader, self.decoded_by = self.decoder.open(path, **self.reader_options)
        return reader

    def _record_failure(self, path: str, reason: str) -> tuple[str, str]:
        self.failures.setdefault(path, reason)
        return path, reason


def flip_label_swaps(flip_label_map: Mapping[int | str, int | str], classes: Sequence[str]) -> dict[int, int]:
    """``flip_label_map`` (class indices or names) as index -> index, checked: every class exists and
    every swap is listed both ways (a one-way entry would silently mislabel flipped clips)."""
    def index(value: int | str) -> int:
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            if value not in classes:
                raise ValueError(f"flip_label_map: {value!r} is not a class of this dataset")
            return classes.index(value)
        if not 0 <= int(value) < len(classes):
            raise ValueError(f"flip_label_map: class index {value} outside 0..{len(classes) - 1}")
        return int(value)

    swaps = {index(k): index(v) for k, v in flip_label_map.items()}
    one_way = [(a, b) for a, b in swaps.items() if swaps.get(b) != a]
    if one_way:
        a, b = one_way[0]
        raise ValueError(f"flip_label_map={dict(flip_label_map)}: {classes[a]!r} -> {classes[b]!r} is not "
                         "swapped back; give both directions")
    return swaps
