"""YUV 4:2:0 clips: planes of decoded frames, conversion to RGB against FFmpeg's rgb24, crops at even offsets."""
import av
import numpy as np
import pytest
import torch

from nlnet.data.decoding import VideoReader
from nlnet.data.synthetic import render_synthetic_clip
from nlnet.data.transforms import EvalTransform, TrainParams, TrainTransform
from nlnet.data.yuv import FORMATS, YuvClip, frame_format, frame_planes, yuv_to_rgb
from nlnet.data.loader import collate
from nlnet.data.prologue import BatchPrologue

# FFmpeg's rgb24 (swscale's fixed-point fast path) against the exact ITU-R conversion, measured on
# H.264, MPEG-4 and VP9 (docs/benchmarks.md): at most 3 levels, about 1.2 on average (limited range).
MAX_LEVELS, MEAN_LEVELS = 3, 1.5

# (codec, container) x (AVColorSpace, AVColorRange) tags: BT.601 (unspecified), BT.709 limited, BT.709 full
CODECS = [("libx264", "mp4"), ("mpeg4", "mp4"), ("libvpx-vp9", "webm")]
TAGS = [(2, 0, ("bt601", "limited")), (1, 1, ("bt709", "limited")), (1, 2, ("bt709", "full")),
        (5, 2, ("bt601", "full"))]


def write_tagged(path, codec, colorspace, color_range, frames):
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = colorspace, color_range
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.colorspace, frame.color_range = i, colorspace, color_range
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def frames_of(path):
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def clip_of(frames):
    planes = [frame_planes(f) for f in frames]
    y = torch.from_numpy(np.stack([p[0] for p in planes]))[:, None]
    uv = torch.from_numpy(np.stack([p[1] for p in planes]))
    return YuvClip(y, uv, frame_format(frames[0]))


@pytest.fixture(scope="module")
def synthetic_frames():
    """The synthetic dataset's frames, the top half replaced by saturated 8x8 colour blocks (where
    the matrices differ most)."""
    rng = np.random.default_rng(0)
    frames = render_synthetic_clip(2, num_frames=4, width=64, height=48, rng=rng, noise=8.0)
    blocks = rng.integers(0, 256, (4, 3, 8, 3), dtype=np.uint8).repeat(8, axis=1).repeat(8, axis=2)
    frames[:, :24] = blocks
    return frames


# FFmpeg's MPEG-4 Part 2 encoder writes no colour tags: its streams are BT.601, limited range
CASES = [(*codec, *tags) for codec in CODECS for tags in TAGS if codec[0] != "mpeg4" or tags == TAGS[0]]


@pytest.mark.parametrize("codec,ext,colorspace,color_range,expected", CASES)
def test_conversion_matches_ffmpeg_rgb24_within_the_documented_tolerance(tmp_path, synthetic_frames, codec, ext,
                                                                         colorspace, color_range, expected):
    path = tmp_path / f"v.{ext}"
    write_tagged(path, codec, colorspace, color_range, synthetic_frames)
    frames = frames_of(path)
    clip = clip_of(frames)
    assert FORMATS[clip.format] == expected
    rgb = clip.rgb().permute(0, 2, 3, 1).numpy().astype(int)  # (T, H, W, 3)
    reference = np.stack([f.to_ndarray(format="rgb24") for f in frames]).astype(int)
    diff = np.abs(rgb - reference)
    assert diff.max() <= MAX_LEVELS and diff.mean() <= MEAN_LEVELS, (diff.max(), diff.mean())
    # the declared matrix and range matter: any other format is far off
    for other in range(len(FORMATS)):
        if other != clip.format:
            wrong = YuvClip(clip.y, clip.uv, other).rgb().permute(0, 2, 3, 1).numpy().astype(int)
            assert np.abs(wrong - reference).mean() > 2 * MEAN_LEVELS, FORMATS[other]


def test_reader_planes_are_the_frames_of_read(tmp_path, synthetic_frames):
    path = tmp_path / "v.mp4"
    write_tagged(path, "libx264", 2, 0, synthetic_frames)
    with VideoReader(path) as reader:
        rgb, times = reader.read([0.0, 0.08, 0.12])
        clip, plane_times = reader.read_planes([0.0, 0.08, 0.12])
    np.testing.assert_array_equal(times, plane_times)
    assert clip.y.shape == (3, 1, 48, 64) and clip.uv.shape == (3, 2, 24, 32)
    diff = np.abs(clip.rgb().permute(0, 2, 3, 1).numpy().astype(int) - rgb.astype(int))
    assert diff.max() <= MAX_LEVELS and diff.mean() <= MEAN_LEVELS


def test_nv12_frames_give_the_same_planes_as_yuv420p(tmp_path, synthetic_frames):
    path = tmp_path / "v.mp4"
    write_tagged(path, "libx264", 2, 0, synthetic_frames)
    frame = frames_of(path)[0]
    y, uv = frame_planes(frame)
    nv12 = frame.reformat(format="nv12")  # NVDEC's frames arrive as nv12
    y12, uv12 = frame_planes(nv12)
    np.testing.assert_array_equal(y, y12)
    np.testing.assert_array_equal(uv, uv12)
    # and VideoReader converts them to the software frames' RGB, bit for bit
    reader = VideoReader.__new__(VideoReader)
    reader.interpolation = "BILINEAR"
    for short_side in (None, 40):
        (rgb, _), (rgb12, _) = (reader._convert([(0.0, f)], short_side) for f in (frame, nv12))
        np.testing.assert_array_equal(rgb, rgb12)


def random_clip(t=3, h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    return YuvClip(torch.randint(0, 256, (t, 1, h, w), generator=g, dtype=torch.uint8),
                   torch.randint(0, 256, (t, 2, (h + 1) // 2, (w + 1) // 2), generator=g, dtype=torch.uint8), 2)


def test_crops_and_flips_of_yuv_clips_equal_those_of_the_converted_clip():
    clip = random_clip()
    rgb = clip.rgb()  # (T, 3, H, W)
    for top, left, size in ((0, 0, 24), (4, 10, 24), (16, 32, 23)):
        crop = clip.cropped(top, left, size, size).rgb()
        assert torch.equal(crop, rgb[..., top:top + size, left:left + size])
    assert torch.equal(clip.flipped().rgb(), rgb.flip(-1))
    with pytest.raises(ValueError, match="even offsets"):
        clip.cropped(1, 0, 8, 8)


def test_train_and_test_crops_of_planes_equal_the_rgb_crops_at_even_offsets():
    clip = random_clip(h=40, w=56)
    rgb = clip.rgb()
    train = TrainTransform(crop_size=24, scale=(40, 40))
    # top 0.5 x 16 = 8, left 0.25 x 32 = 8: even, so the same window as the RGB crop
    params = TrainParams(short_side=40, top=0.5, left=0.25, flip=True)
    yuv = train.crop_planes(clip, params)
    assert torch.equal(yuv.rgb().transpose(0, 1), train.crop(rgb, params))
    odd = TrainParams(short_side=40, top=0.5625, left=0.25, flip=False)  # RGB top 9 -> YUV top 8
    assert torch.equal(train.crop_planes(clip, odd).rgb().transpose(0, 1),
                       train.crop(rgb, TrainParams(short_side=40, top=0.5, left=0.25, flip=False)))
    test = EvalTransform(crop_size=24, short_side=40, num_crops=3)
    for index in range(3):  # left 0, 16, 32: even
        assert torch.equal(test.crop_planes(clip, index).rgb().transpose(0, 1), test.crop(rgb, index))


def test_resized_planes_keep_the_chroma_geometry():
    clip = random_clip(h=40, w=56).resized(33, 47)
    assert clip.size == (33, 47) and clip.uv.shape[-2:] == (17, 24)
    assert clip.rgb().shape == (3, 3, 33, 47)


def test_prologue_converts_yuv_batches_before_flip_and_normalisation():
    clips = [random_clip(seed=s).cropped(0, 0, 32, 32) for s in range(2)]
    items = [{**c.item(), "label": 0, "flip": bool(i)} for i, c in enumerate(clips)]
    rgb_items = [{"video": c.rgb().transpose(0, 1).contiguous(), "label": 0, "flip": bool(i)}
                 for i, c in enumerate(clips)]
    prologue = BatchPrologue(device="cpu")
    assert torch.equal(prologue.video(collate(items)), prologue.video(collate(rgb_items)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_conversion_matches_the_cpu_conversion():
    clip = random_clip(t=8, h=256, w=320)
    y, uv = clip.y.transpose(0, 1)[None], clip.uv.transpose(0, 1)[None]
    for format in range(len(FORMATS)):
        formats = torch.tensor([format])
        cpu = yuv_to_rgb(y, uv, formats)
        gpu = yuv_to_rgb(y.cuda(), uv.cuda(), formats.cuda()).cpu()
        diff = (cpu.int() - gpu.int()).abs()  # float32 sums in another order: a rounding tie at most
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
