"""The labelled video: one output frame per input frame, at its time, display-rotated, labels drawn;
the H.264 writer streams frames and writes atomically."""
from __future__ import annotations

import os

import numpy as np
import pytest

from nlnet.data.decoding import VideoReader
from nlnet.data.synthetic import write_video
from nlnet.inference import H264Writer, annotate_video, draw_labels
from tiny_trained import DOWN, UP, motion_video


def decoded(path: str) -> tuple[np.ndarray, list[float]]:
    with VideoReader(path) as reader:
        items = list(reader.frames_between(0.0, float("inf")))
        return np.stack([f.to_ndarray(format="rgb24") for _, f in items]), [t for t, _ in items]


def test_every_frame_is_written_at_its_time_with_its_labels(tmp_path):
    src = motion_video(str(tmp_path / "src.mp4"), [UP, UP, DOWN, DOWN, UP], seed=1, size=96)
    asked = []

    def labels_at(time: float) -> list[str]:
        asked.append(time)
        return ["0.90 moving up" if time < 0.64 else "0.90 moving down", "0.10 other"]

    dst = str(tmp_path / "out" / "labelled.mp4")
    written = annotate_video(src, dst, labels_at)
    source_frames, source_times = decoded(src)
    frames, times = decoded(dst)
    assert written == len(frames) == len(source_frames) == 40
    with VideoReader(dst) as reader:
        assert reader.count_frames() == 40
    assert times == pytest.approx(source_times, abs=1e-3) and asked == pytest.approx(source_times, abs=1e-6)
    assert frames.shape == source_frames.shape
    # the labels are in the top-left corner; the rest of the picture is the input (up to H.264 loss)
    corner = np.abs(frames[:, :12, :40].astype(int) - source_frames[:, :12, :40]).mean()
    rest = np.abs(frames[:, 48:, 48:].astype(int) - source_frames[:, 48:, 48:]).mean()
    assert corner > 20 and rest < 4, (corner, rest)
    # each frame is its input frame with labels_at(its time) drawn (up to H.264 loss)
    def corner_error(i: int, time: float) -> float:
        expected = draw_labels(source_frames[i], labels_at(time))
        return float(np.abs(frames[i, :24, :80].astype(int) - expected[:24, :80]).mean())
    for i, other_time in ((5, 1.0), (20, 0.0)):
        assert corner_error(i, source_times[i]) < 4 < corner_error(i, other_time)


def test_rotated_input_is_written_as_displayed(tmp_path):
    frames = np.zeros((6, 32, 64, 3), np.uint8)
    frames[:, :, :8] = 255  # a white band on the left of the coded picture
    src = str(tmp_path / "rotated.mp4")
    write_video(src, frames, fps=10, rotation=90)
    dst = str(tmp_path / "labelled.mp4")
    assert annotate_video(src, dst, lambda t: []) == 6
    out, _ = decoded(dst)
    with VideoReader(src) as reader:
        shown, _ = reader.read([0.0], short_side=None)  # the decoder's display rotation
    assert out.shape[1:] == shown.shape[1:] == (64, 32, 3)
    assert np.abs(out[0].astype(int) - shown[0]).mean() < 4


def test_small_videos_are_enlarged_by_an_integer_factor(tmp_path):
    src = motion_video(str(tmp_path / "small.mp4"), [UP], seed=4, size=32)
    dst = str(tmp_path / "big.mp4")
    assert annotate_video(src, dst, lambda t: [], min_short_side=100) == 8
    small, _ = decoded(src)
    big, _ = decoded(dst)
    assert big.shape == (8, 128, 128, 3)  # 4 x 32 >= 100
    assert np.abs(big[:, ::4, ::4].astype(int) - small).mean() < 4  # every 4th pixel is the source's


def test_draw_labels_changes_only_its_corner():
    image = np.full((120, 160, 3), 128, np.uint8)
    out = draw_labels(image, ["0.93 moving up", "0.05 moving down", "0.01 growing"])
    changed = np.argwhere(np.any(out != image, axis=-1))
    assert len(changed) > 0 and changed[:, 0].max() < 60 and changed[:, 1].max() < 120
    assert draw_labels(image, []) is image


def test_writer_pads_odd_sizes_and_writes_nothing_on_error(tmp_path):
    path = str(tmp_path / "odd.mp4")
    with H264Writer(path, width=33, height=21, fps=5) as writer:
        for i in range(4):
            writer.write(np.full((21, 33, 3), 60 * i, np.uint8))
        with pytest.raises(ValueError, match="frame of size 32x21 for a 33x21 video"):
            writer.write(np.zeros((21, 32, 3), np.uint8))
    frames, times = decoded(path)
    assert frames.shape == (4, 22, 34, 3) and times == pytest.approx([0, 0.2, 0.4, 0.6], abs=1e-3)
    broken = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="stop"):
        with H264Writer(broken, width=16, height=16) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("stop")
    assert not broken.exists() and os.listdir(tmp_path) == ["odd.mp4"]
