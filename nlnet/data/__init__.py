"""Kinetics-style video data: annotations, PyAV decoding, clip sampling, transforms, datasets."""
from .annotations import Annotations, VideoRecord, read_annotations, read_label_map
from .dataset import VideoDataset
from .decoding import VideoDecodeError, VideoInfo, VideoReader
from .sampling import clip_span, clip_times, eval_clip_start, train_clip_start
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainParams, TrainTransform

__all__ = [
    "VideoDataset",
    "VideoReader",
    "VideoInfo",
    "VideoDecodeError",
    "Annotations",
    "VideoRecord",
    "read_annotations",
    "read_label_map",
    "clip_span",
    "clip_times",
    "train_clip_start",
    "eval_clip_start",
    "TrainTransform",
    "EvalTransform",
    "TrainParams",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
