"""Train/test spatial transforms on (T, C, H, W) uint8 clips."""
import numpy as np
import pytest
import torch

from nlnet.data import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainParams, TrainTransform
from nlnet.data.transforms import crop_offsets


def ramp_clip(t=4, h=40, w=60):
    x = torch.arange(w, dtype=torch.uint8).view(1, 1, 1, w) * 4  # horizontal ramp: column -> value
    return x.expand(t, 3, h, w).contiguous()


def unnormalize(video):
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return (video * std + mean) * 255


def test_train_transform_shape_normalisation_and_params():
    transform = TrainTransform(crop_size=32, scale=(40, 48))
    clip = ramp_clip()
    out = transform(clip, TrainParams(short_side=40, top=0.0, left=1.0, flip=False))
    assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32
    # no resize needed (short side already 40); left=1.0 takes the right-most 32 columns
    np.testing.assert_allclose(unnormalize(out)[0, 0, 0].numpy(), np.arange(28, 60) * 4, atol=1e-3)
    flipped = transform(clip, TrainParams(short_side=40, top=0.0, left=1.0, flip=True))
    torch.testing.assert_close(flipped, out.flip(-1))
    bigger = transform(clip, TrainParams(short_side=48, top=0.5, left=0.5, flip=False))
    assert bigger.shape == (3, 4, 32, 32)


def test_train_sampling_is_seeded_and_in_range():
    transform = TrainTransform(crop_size=32, scale=(40, 48))
    draws = [transform.sample(np.random.default_rng([0, 0, i])) for i in range(200)]
    assert draws[5] == transform.sample(np.random.default_rng([0, 0, 5]))
    sides = {d.short_side for d in draws}
    assert min(sides) == 40 and max(sides) == 48  # inclusive range, like [256, 320]
    assert 0.35 < np.mean([d.flip for d in draws]) < 0.65
    with pytest.raises(ValueError, match="train_scale"):
        TrainTransform(crop_size=64, scale=(40, 48))


def test_test_crops_along_long_side():
    assert crop_offsets(60, 40, 3) == [0, 10, 20] and crop_offsets(60, 40, 1) == [10]
    transform = EvalTransform(crop_size=40, short_side=40, num_crops=3)
    clip = ramp_clip()  # landscape 40x60: crops left / centre / right
    firsts = [unnormalize(transform(clip, i))[0, 0, 0, 0].item() for i in range(3)]
    np.testing.assert_allclose(firsts, [0, 40, 80], atol=1e-3)
    portrait = ramp_clip().transpose(-1, -2).contiguous()  # 60x40: crops top / middle / bottom
    tops = [unnormalize(transform(portrait, i))[0, 0, 0, 0].item() for i in range(3)]
    np.testing.assert_allclose(tops, [0, 40, 80], atol=1e-3)
    resized = EvalTransform(crop_size=20, short_side=20, num_crops=3)(clip, 1)
    assert resized.shape == (3, 4, 20, 20)


def test_view_protocol_reads_a_stored_data_val_node_with_segments_and_placement():
    """``ViewProtocol.from_dataset_node``: the dataset's key names, its defaults, an SSv2-style segment
    sampler given as a stored config node, and overrides on top."""
    from nlnet.data.decoding import VideoInfo
    from nlnet.data.sampling import SegmentSampler
    from nlnet.data.transforms import ViewProtocol
    from nlnet.utils.errors import ConfigError

    node = {"num_frames": 8, "sampling_rate": 1, "test_scale": 160, "test_crop_size": None, "num_clips": 2,
            "sampler": {"_target_": "nlnet.data.sampling.SegmentSampler", "num_segments": 8}}
    view = ViewProtocol.from_dataset_node(node)
    assert (view.short_side, view.crop_size, view.num_clips, view.num_crops) == (160, 160, 2, 3)
    assert view.num_segments == 8 and view.clip_placement == "nlnet" and not view.full_frame
    info = VideoInfo(duration=4.0, fps=25.0, num_frames=100, width=200, height=160)
    expected = SegmentSampler(num_segments=8).test_times(info, 1, 2, num_frames=8, sampling_rate=1)
    np.testing.assert_allclose(view.test_times(info, 1), expected)
    wide = ViewProtocol.from_dataset_node(node, full_frame=True, num_crops=None)
    assert wide.full_frame and wide.num_crops == 1 and wide.transform().crop_size is None
    with pytest.raises(ConfigError, match="views.num_segments=3: must be a positive integer dividing"):
        ViewProtocol.from_dataset_node({**node, "sampler": SegmentSampler(num_segments=3)}, num_frames=8)
