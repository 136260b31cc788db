"""Decoding: exact frames by time, seeking, VFR, non-zero start, rotation, clamping, bad files."""
import numpy as np
import pytest

from nlnet.data import VideoDecodeError, VideoReader
from nlnet.data.decoding import scaled_size
from nlnet.data.synthetic import frame_indices, index_frames, write_audio_only, write_video


@pytest.fixture(scope="module")
def cfr_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("dec") / "cfr.mp4"
    write_video(path, index_frames(60, width=48, height=32), fps=10, gop_size=8)  # 6 s, keyframe every 8
    return path


def test_info(cfr_video):
    with VideoReader(cfr_video) as reader:
        info = reader.info
    assert info.num_frames == 60 and info.fps == pytest.approx(10)
    assert info.duration == pytest.approx(6.0)
    assert (info.width, info.height) == (48, 32)


def test_reads_frames_shown_at_times_with_seek(cfr_video):
    with VideoReader(cfr_video) as reader:
        frames, times = reader.read(np.arange(37, 45) / 10)  # starts mid-GOP: seek + decode forward
    assert frames.dtype == np.uint8 and frames.shape == (8, 32, 48, 3)
    assert frame_indices(frames).tolist() == list(range(37, 45))
    np.testing.assert_allclose(times, np.arange(37, 45) / 10)
    # a time between two frames selects the frame on screen at that time
    with VideoReader(cfr_video) as reader:
        frames, _ = reader.read([1.05, 1.19, 5.0])
    assert frame_indices(frames).tolist() == [10, 11, 50]


def test_scaling_in_decoder(cfr_video):
    assert scaled_size(48, 32, 16) == (24, 16) and scaled_size(32, 48, 16) == (16, 24)
    with VideoReader(cfr_video) as reader:
        frames, _ = reader.read([0.0, 0.5], short_side=20)
    assert frames.shape == (2, 20, 30, 3)
    assert frame_indices(frames).tolist() == [0, 5]


def test_short_video_clamps(tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, index_frames(5), fps=10)
    with VideoReader(path) as reader:
        frames, _ = reader.read(np.arange(8) * 0.2)  # wants 1.4 s of a 0.5 s video
    assert frame_indices(frames).tolist() == [0, 2, 4, 4, 4, 4, 4, 4]


def test_variable_frame_rate_and_nonzero_start(tmp_path):
    # frames alternate between 0.1 s and 0.04 s on screen; the first timestamp is 2.0 s
    gaps = [0.1 if i % 2 == 0 else 0.04 for i in range(29)]
    times = 2.0 + np.concatenate([[0.0], np.cumsum(gaps)])
    for ext in ("mp4", "mkv"):
        path = tmp_path / f"vfr.{ext}"
        write_video(path, index_frames(30), times=times, fps=14)
        with VideoReader(path) as reader:
            assert reader.info.duration == pytest.approx(times[-1] - 2.0 + 0.04, abs=0.06)
            query = times[[3, 10, 17, 25]] - 2.0 + 0.01  # just after frames 3, 10, 17, 25 appear
            frames, got = reader.read(query)
        assert frame_indices(frames).tolist() == [3, 10, 17, 25], ext  # counting frames would give others
        np.testing.assert_allclose(got, times[[3, 10, 17, 25]] - 2.0, atol=1e-3)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    image = np.zeros((2, 32, 48, 3), np.uint8)
    image[:, :16, :16] = 255  # a white block in the top-left corner of a landscape frame
    path = tmp_path / "rot.mp4"
    write_video(path, image, fps=10, rotation=rotation)
    with VideoReader(path) as reader:
        frames, _ = reader.read([0.0], short_side=16)
    expected = np.rot90(image[0, :, :, 0], k=rotation // 90)  # counter-clockwise, as displayed
    assert frames.shape[1:3] == ((16, 24) if rotation == 180 else (24, 16))
    small = expected[::2, ::2]
    assert np.abs(frames[0, :, :, 0].astype(int) - small).mean() < 30


def test_webm_and_mkv(tmp_path):
    for name, codec in (("a.webm", "libvpx-vp9"), ("a.mkv", "libx264")):
        write_video(tmp_path / name, index_frames(20), fps=10, codec=codec)
        with VideoReader(tmp_path / name) as reader:
            assert reader.info.duration == pytest.approx(2.0, abs=0.05)
            frames, _ = reader.read([0.0, 1.5])
        assert frame_indices(frames).tolist() == [0, 15]


def test_audio_is_ignored(tmp_path):
    path = tmp_path / "av.mp4"
    write_video(path, index_frames(20), fps=10, audio=True)
    with VideoReader(path) as reader:
        frames, _ = reader.read([1.0, 1.9])
    assert frame_indices(frames).tolist() == [10, 19]


def make_bad_files(folder, good_video):
    """Every kind of bad input; returns {kind: path}."""
    data = good_video.read_bytes()
    bad = {
        "zero_byte": folder / "zero.mp4",
        "text": folder / "text.mp4",
        "truncated": folder / "truncated.mp4",
        "corrupt": folder / "corrupt.mp4",
        "audio_only": folder / "audio.mp4",
    }
    bad["zero_byte"].write_bytes(b"")
    bad["text"].write_text("this is not a video\n" * 50)
    bad["truncated"].write_bytes(data[: len(data) // 2])
    rng = np.random.default_rng(0)
    garbage = bytearray(data)
    start = 48  # keep the file signature, destroy the rest
    garbage[start:] = rng.integers(0, 256, size=len(data) - start, dtype=np.uint8).tobytes()
    bad["corrupt"].write_bytes(bytes(garbage))
    write_audio_only(bad["audio_only"])
    return bad


def test_bad_files_raise_decode_error(tmp_path, cfr_video):
    for kind, path in make_bad_files(tmp_path, cfr_video).items():
        with pytest.raises(VideoDecodeError):
            with VideoReader(path) as reader:
                reader.read([0.0, 1.0])


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    from damaged_videos import write_damaged_videos

    return write_damaged_videos(tmp_path_factory.mktemp("damaged"))


def test_damaged_files_raise_only_decode_errors_naming_the_file(damaged):
    # every clip position a dataset reads: from the start, mid-file (a seek), the end
    for kind, path in damaged.items():
        for times in ([0.0, 0.5], [2.0, 2.5], [3.5, 3.9]):
            try:
                with VideoReader(path) as reader:
                    reader.read(times, short_side=16)
            except VideoDecodeError as e:
                assert str(path) in str(e) and e.reason and "\n" not in str(e), kind
            # any other exception fails the test: an escape
    with VideoReader(damaged["good"]) as reader:
        assert frame_indices(reader.read([2.0, 2.5])[0]).tolist() == [20, 25]


def test_a_failed_seek_falls_back_to_decoding_from_the_start(damaged):
    # the zeroed sample table makes FFmpeg's seek fail; the frames are still there in order
    with VideoReader(damaged["sample_table_zeroed"]) as reader:
        try:
            reader.read([2.0])
        except VideoDecodeError as e:
            assert "PermissionError" not in e.reason and "Operation not permitted" not in e.reason


def test_stream_without_decoder_is_named(damaged):
    with pytest.raises(VideoDecodeError, match="no decoder for the video stream") as info:
        VideoReader(damaged["no_decoder"])
    assert str(damaged["no_decoder"]) in str(info.value)


def test_declared_frame_size_is_capped_before_decoding(damaged):
    path = damaged["huge_declared_size"]
    assert path.stat().st_size < 100_000
    with pytest.raises(VideoDecodeError, match=r"8192x8192 are over the cap of 16777216 pixels \(max_frame_pixels\)"):
        VideoReader(path)  # 4096 x 4096 by default: refused from the header, nothing decoded
    with pytest.raises(VideoDecodeError, match="max_frame_pixels"):
        VideoReader(damaged["good"], max_frame_pixels=48 * 32 - 1)
    with VideoReader(damaged["good"], max_frame_pixels=None) as reader:
        assert reader.read([0.0])[0].shape == (1, 32, 48, 3)


def test_decode_time_is_capped(damaged):
    with VideoReader(damaged["good"], decode_timeout=1e-9) as reader:
        with pytest.raises(VideoDecodeError, match="decode_timeout"):
            reader.read([1.0, 2.0])
