"""Labelling videos: the right class through a trained model, the multi-view average, timelines,
folders with unreadable files, JSON, devices."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nlnet.data.decoding import VideoReader
from nlnet.data.sampling import clip_span, clip_times, eval_clip_start
from nlnet.data.synthetic import SYNTHETIC_CLASSES
from nlnet.inference import (FailedVideo, Predictor, Timeline, VideoPrediction, find_videos, half_precision,
                             load_trained_model, predictions_to_json, timeline_windows, write_predictions)
from nlnet.utils.errors import ConfigError
from tiny_trained import DOWN, FPS, SEGMENT_FRAMES, UP, motion_video, trained_checkpoint  # noqa: F401


@pytest.fixture(scope="module")
def trained(trained_checkpoint):
    return load_trained_model(trained_checkpoint, views={"num_clips": 3})


def name(label: int) -> str:
    return SYNTHETIC_CLASSES[label]


def test_videos_of_a_known_class_get_it_as_top1(trained, tmp_path):
    up = motion_video(str(tmp_path / "up.mp4"), [UP] * 3, seed=2024)
    down = motion_video(str(tmp_path / "down.mp4"), [DOWN] * 3, seed=2025)
    results = Predictor.from_trained(trained).predict([up, down])
    assert [r.path for r in results] == [up, down]
    for result, label in zip(results, (UP, DOWN)):
        assert isinstance(result, VideoPrediction)
        assert trained.class_names[int(result.scores.argmax())] == name(label)
        assert result.scores.sum() == pytest.approx(1.0, abs=1e-5) and result.num_views == 3


def test_scores_are_the_mean_softmax_of_the_protocol_views(trained, tmp_path):
    """A hand-made multi-view test (paper §4.1): decode each clip, crop, normalise, softmax, average."""
    path = motion_video(str(tmp_path / "up.mp4"), [UP] * 3, seed=7)
    protocol = trained.protocol
    transform = protocol.transform()
    views = []
    with VideoReader(path) as reader:
        info = reader.info
        span = clip_span(protocol.num_frames, protocol.sampling_rate, info.fps)
        for i in range(protocol.num_clips):
            times = clip_times(eval_clip_start(info.duration, span, i, protocol.num_clips), protocol.num_frames,
                               protocol.sampling_rate, info.fps)
            frames, _ = reader.read(times, short_side=protocol.short_side)
            clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
            views += [transform(clip, c) for c in range(protocol.num_crops)]
    with torch.no_grad():
        expected = trained.model(torch.stack(views)).softmax(dim=1).mean(dim=0)
    for batch_size in (1, 2, 16):  # batching views changes nothing
        result, = Predictor.from_trained(trained, batch_size=batch_size).predict([path])
        torch.testing.assert_close(result.scores, expected, rtol=1e-5, atol=1e-6)


def test_batches_hold_at_most_batch_size_views_and_keep_a_clips_crops_together(trained_checkpoint, tmp_path):
    class Recording(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model, self.sizes = model, []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.sizes.append(len(x))
            return self.model(x)

    trained = load_trained_model(trained_checkpoint, views={"num_clips": 3, "num_crops": 3})
    model = trained.model = Recording(trained.model)
    videos = [motion_video(str(tmp_path / f"{i}.mp4"), [UP] * 3, seed=i) for i in range(2)]
    for batch_size, expected in ((4, [3] * 6), (7, [6] * 3), (100, [18])):
        model.sizes.clear()
        results = Predictor.from_trained(trained, batch_size=batch_size).predict(videos)
        assert model.sizes == expected and all(r.num_views == 9 for r in results)


def test_scores_equal_those_of_the_multi_view_test(trained_checkpoint):
    """The training run tested its final checkpoint (tools/test.py's path) on its validation videos:
    predict, with the stored protocol, gives the same per-video scores."""
    run = Path(trained_checkpoint).parents[1]
    videos = json.loads((run / "per_video_scores.json").read_text())["videos"]
    results = Predictor.from_trained(load_trained_model(trained_checkpoint)).predict([v["path"] for v in videos])
    for video, result in zip(videos, results):
        assert result.scores.tolist() == pytest.approx(video["scores"], abs=2e-6)  # stored to 6 decimals


def test_timeline_shows_where_each_motion_happens(trained, tmp_path):
    path = motion_video(str(tmp_path / "up_then_down.mp4"), [UP, UP, UP, DOWN, DOWN, DOWN], seed=99)
    window = SEGMENT_FRAMES / FPS  # one rendered motion per window
    result, = Predictor.from_trained(trained).predict([path], timeline=Timeline(window=window, stride=window / 2))
    duration = 6 * SEGMENT_FRAMES / FPS
    assert result.info.duration == pytest.approx(duration)
    assert len(result.timeline) == len(timeline_windows(duration, window, window / 2)) == 11
    top1 = [trained.class_names[int(w.scores.argmax())] for w in result.timeline]
    # windows that lie inside one motion (even index: aligned with a rendered segment)
    assert top1[0:5:2] == [name(UP)] * 3 and top1[6:11:2] == [name(DOWN)] * 3
    assert result.window_at(0.1).window.start == 0.0
    assert result.window_at(duration).window.end == pytest.approx(duration)


def test_a_folder_reports_unreadable_files_and_goes_on(trained, tmp_path):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    good = motion_video(str(folder / "sub" / "up.mp4"), [UP] * 3, seed=5)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    (folder / "empty.avi").write_bytes(b"")
    (folder / "notes.txt").write_text("not a video")
    paths = find_videos(folder)
    assert paths == sorted([str(folder / "broken.mp4"), str(folder / "empty.avi"), good])
    for workers in (0, 1):
        results = Predictor.from_trained(trained, num_workers=workers).predict(paths)
        failed = {r.path: r.error for r in results if isinstance(r, FailedVideo)}
        assert sorted(failed) == [str(folder / "broken.mp4"), str(folder / "empty.avi")]
        assert all("VideoDecodeError" in e for e in failed.values()), failed
        labelled, = [r for r in results if isinstance(r, VideoPrediction)]
        assert labelled.path == good and trained.class_names[int(labelled.scores.argmax())] == name(UP)


def test_json_holds_every_prediction(trained, tmp_path):
    video = motion_video(str(tmp_path / "up.mp4"), [UP] * 2, seed=3)
    results = Predictor.from_trained(trained).predict([video, str(tmp_path / "missing.mp4")],
                                                      timeline=Timeline(window=0.32))
    data = predictions_to_json(results, class_names=trained.class_names, k=5, meta={"checkpoint": "x"})
    path = write_predictions(tmp_path / "out" / "preds.json", data)
    loaded = json.loads(open(path).read())
    assert loaded["checkpoint"] == "x" and loaded["class_names"] == trained.class_names
    video_json, = loaded["videos"]
    assert video_json["path"] == video and video_json["num_views"] == 3
    assert [c["class"] for c in video_json["top_k"]][0] == name(UP) and len(video_json["top_k"]) == 2  # k <= K
    assert [w["start"] for w in video_json["timeline"]] == pytest.approx([0.0, 0.32])
    failed, = loaded["failed"]
    assert failed["path"] == str(tmp_path / "missing.mp4") and "No such file" in failed["error"]


def test_find_videos_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="video: no such file or folder"):
        find_videos(tmp_path / "nope")
    with pytest.raises(ConfigError, match="the folder holds no video file"):
        find_videos(tmp_path)


def test_half_precision_is_cuda_only():
    with pytest.raises(ConfigError, match="half=true: half precision runs on a CUDA device only"):
        half_precision(torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_precision_agrees_with_the_cpu(trained, tmp_path):
    video = motion_video(str(tmp_path / "up.mp4"), [UP] * 3, seed=11)
    cpu, = Predictor.from_trained(trained).predict([video])
    device = torch.device("cuda")
    gpu, = Predictor.from_trained(trained, device=device, precision=half_precision(device)).predict([video])
    assert int(gpu.scores.argmax()) == int(cpu.scores.argmax())
    torch.testing.assert_close(gpu.scores, cpu.scores, atol=2e-2, rtol=0)
