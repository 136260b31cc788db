"""The batch prologue: uint8 workers + device-side normalisation (and flip) give the model bit-for-bit the
input of the former path, where workers normalised float32 clips."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as F

from nlnet.data import IMAGENET_MEAN, IMAGENET_STD, VideoDataset
from nlnet.data.synthetic import index_frames, write_video
from nlnet.data.loader import collate
from nlnet.data.prologue import BatchPrologue

HEADER = "label,youtube_id,time_start,time_end,split\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("prologue")
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(["a", "b", "a", "b"]):
        folder = root / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        frames = index_frames(30, width=48, height=32)
        frames = np.clip(frames.astype(int) + rng.integers(-40, 40, frames.shape), 0, 255).astype(np.uint8)
        write_video(folder / f"v{i}_000000_000010.mp4", frames, fps=10, gop_size=10)
        rows.append(f"{label},v{i},0,10,train\n")
    (root / "train.csv").write_text(HEADER + "".join(rows))
    return root


def make(root, **kwargs):
    args = dict(root=root, annotations=root / "train.csv", num_frames=4, sampling_rate=2, crop_size=24,
                train_scale=(28, 36), test_scale=28, test_crop_size=24, num_clips=2, num_crops=3,
                mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return VideoDataset(**{**args, **kwargs})


# ---- the former path, as it was: float32 normalisation in the worker --------------------------------
def reference_resize(video, short_side):
    h, w = video.shape[-2:]
    if min(h, w) == short_side:
        return video
    if h <= w:
        size = [short_side, max(1, round(w * short_side / h))]
    else:
        size = [max(1, round(h * short_side / w)), short_side]
    return F.resize(video, size, antialias=True)


def reference_normalize(video, mean, std):
    video = video.permute(1, 0, 2, 3).contiguous()  # (T, C, H, W) -> (C, T, H, W), uint8
    c, t, h, w = video.shape
    video = F.to_dtype(video, torch.float32, scale=False)
    flat = F.normalize(video.view(c, t * h, w), [m * 255 for m in mean], [s * 255 for s in std], inplace=True)
    return flat.view(c, t, h, w)


def reference_train_item(ds, index):
    rng = ds.rng(index, 0)
    params = ds.train_transform.sample(rng)
    frames = ds.decode_train_clip(ds.video_paths[index], float(rng.random()), params.short_side)
    video = reference_resize(frames, params.short_side)
    size = ds.train_transform.crop_size
    top = int(round(params.top * (video.shape[-2] - size)))
    left = int(round(params.left * (video.shape[-1] - size)))
    video = F.crop(video, top, left, size, size)
    if params.flip:
        video = F.horizontal_flip(video)
    return reference_normalize(video, ds.mean, ds.std), params.flip


def reference_test_item(ds, index):
    video_index, view_index = divmod(index, ds.num_views)
    clip_index, crop_index = divmod(view_index, ds.num_crops)
    frames = reference_resize(ds.decode_test_clip(video_index, clip_index), ds.test_transform.short_side)
    size = ds.test_transform.crop_size
    room = frames.shape[-1] - size  # landscape frames: crops move left -> right
    left = [0, int(round(room / 2)), room][crop_index]
    video = F.crop(frames, (frames.shape[-2] - size) // 2, left, size, size)
    return reference_normalize(video, ds.mean, ds.std)


def batches_of(ds, batch_size):
    return list(DataLoader(ds, batch_size=batch_size, collate_fn=collate, shuffle=False))


@pytest.mark.parametrize("decode_resize", [True, False])
@pytest.mark.parametrize("flip_on_device", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_train_input_is_bit_for_bit_the_former_path(root, decode_resize, flip_on_device, channels_last):
    ds = make(root, decode_resize=decode_resize, flip_on_device=flip_on_device)
    ds.set_epoch(2)
    expected = [reference_train_item(ds, i) for i in range(len(ds))]
    assert {flip for _, flip in expected} == {False, True}  # both branches of the flip are exercised
    prologue = BatchPrologue.for_dataset(ds, device="cpu", channels_last=channels_last)
    got = []
    for batch in batches_of(ds, 2):
        assert batch["video"].dtype == torch.uint8
        assert ("flip" in batch) == flip_on_device
        video, labels = prologue(batch)
        assert video.dtype == torch.float32 and labels.tolist() == batch["label"].tolist()
        assert video.is_contiguous(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
        got.append(video)
    assert torch.equal(torch.cat(got), torch.stack([v for v, _ in expected]))


def test_test_views_are_bit_for_bit_the_former_path(root):
    ds = make(root, mode="test")
    expected = torch.stack([reference_test_item(ds, i) for i in range(len(ds))])
    prologue = BatchPrologue.for_dataset(ds, device="cpu")
    got = torch.cat([prologue.video(batch) for batch in batches_of(ds, 5)])
    assert got.shape == (len(ds), 3, 4, 24, 24) and torch.equal(got, expected)


def test_float_batches_pass_through_and_the_model_gets_the_layout():
    prologue = BatchPrologue(device="cpu", channels_last=True)
    video = torch.randn(2, 3, 2, 4, 4)
    out, labels = prologue({"video": video})
    assert labels is None and torch.equal(out, video)  # stand-in batches are taken as normalised
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    model = prologue.prepare_model(torch.nn.Conv3d(3, 4, 1))
    assert model.weight.is_contiguous(memory_format=torch.channels_last_3d)
