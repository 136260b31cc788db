"""One test view from one stored config: the test dataset, predict, export, the attention figures and
the TensorBoard attention hook all see the checkpoint's ``data.val`` as the same ``ViewProtocol``; a
checkpoint tested full-frame is predicted, exported and drawn full-frame."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import compose
from tiny_trained import trained_checkpoint  # noqa: F401  (fixture)

from nlnet import config as C
from nlnet.checkpoint.files import atomic_save
from nlnet.data.dataset import VideoDataset
from nlnet.data.synthetic import write_video
from nlnet.data.transforms import ViewProtocol, normalize
from nlnet.engine.hooks.attention import clip_of_dataset
from nlnet.inference import Predictor, load_trained_model
from nlnet.inference.export import export_model, sidecar_path
from nlnet.inference.views import ClipViews, VideoViewStream
from nlnet.viz import decode_clip
from nlnet.viz import visualize as V


@pytest.fixture(scope="module")
def full_frame_checkpoint(trained_checkpoint, tmp_path_factory) -> str:
    """The tiny trained checkpoint as if it had been tested full-frame, 2 clips placed by PySlowFast's rule."""
    state = torch.load(trained_checkpoint, weights_only=True)
    state["config"]["data"]["val"].update(full_frame=True, clip_placement="pyslowfast", num_clips=2, num_crops=3)
    path = str(tmp_path_factory.mktemp("full_frame") / "full_frame.pt")
    atomic_save(state, path)
    return path


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory) -> str:
    """A 24x40 (H x W) video: a full-frame view is wider than it is high."""
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, size=(30, 3, 5, 3), dtype=np.uint8), 8, axis=1).repeat(8, axis=2)
    path = str(tmp_path_factory.mktemp("wide") / "wide.mp4")
    write_video(path, frames, fps=25)
    return path


def test_dataset_predict_export_and_hook_get_one_view_from_one_stored_config(full_frame_checkpoint):
    state = torch.load(full_frame_checkpoint, weights_only=True)
    trained = load_trained_model(full_frame_checkpoint)
    dataset = C.instantiate(C.from_container(state["config"]["data"]["val"]))
    assert isinstance(dataset, VideoDataset) and dataset.mode == "test"
    view = trained.protocol
    assert view == dataset.view == ViewProtocol.from_dataset_node(state["config"]["data"]["val"])
    assert view.full_frame and view.num_crops == 1 and view.clip_placement == "pyslowfast" and view.num_clips == 2
    assert Predictor.from_trained(trained).protocol == view
    assert clip_of_dataset(dataset)["view"] == view  # the attention hook's view
    assert dataset.num_views == view.num_clips * view.num_crops == 2


@pytest.mark.slow  # an export
def test_a_full_frame_checkpoint_is_exported_full_frame(full_frame_checkpoint, tmp_path):
    trained = load_trained_model(full_frame_checkpoint)
    view = trained.protocol
    report = export_model(trained, format="torchscript", out=tmp_path / "m.pt")
    with open(sidecar_path(report.path)) as f:
        pipeline = json.load(f)["pipeline"]
    assert {k: pipeline[k] for k in ("full_frame", "clip_placement", "num_clips", "num_crops", "short_side")} == {
        "full_frame": True, "clip_placement": "pyslowfast", "num_clips": 2, "num_crops": 1,
        "short_side": view.short_side}
    assert "full frame" in pipeline["views"] and "pyslowfast" in pipeline["views"]


def test_a_full_frame_checkpoint_is_predicted_full_frame(full_frame_checkpoint, wide_video):
    trained = load_trained_model(full_frame_checkpoint)
    side = trained.protocol.short_side
    records = [r for r in VideoViewStream(paths=[wide_video], protocol=trained.protocol).video_views(0)
               if isinstance(r, ClipViews)]
    # 2 clips, one view each: the whole 24x40 frame at short side ``side`` (not a side x side crop)
    assert len(records) == 2
    assert all(r.views.shape == (1, 3, trained.protocol.num_frames, side, round(40 * side / 24)) for r in records)
    result, = Predictor.from_trained(trained).predict([wide_video])
    assert result.num_views == 2 and result.scores.sum() == pytest.approx(1.0, abs=1e-5)
    # asking for crops (views.full_frame=false) gives the stored num_crops back: 2 clips x 3 crops
    cropped = load_trained_model(full_frame_checkpoint, views={"full_frame": False})
    assert Predictor.from_trained(cropped).predict([wide_video])[0].num_views == 6


def test_predicted_views_are_the_test_datasets_views(full_frame_checkpoint, wide_video, tmp_path):
    """The same frames, placement and full-frame transform in predict as in the test dataset."""
    state = torch.load(full_frame_checkpoint, weights_only=True)
    val = dict(state["config"]["data"]["val"])
    (tmp_path / "list.txt").write_text("wide.mp4 0\n")
    shutil.copy(wide_video, tmp_path / "wide.mp4")
    val.update(root=str(tmp_path), annotations=str(tmp_path / "list.txt"), label_map=None)
    dataset = C.instantiate(C.from_container(val))
    trained = load_trained_model(full_frame_checkpoint)
    records = [r for r in VideoViewStream(paths=[wide_video], protocol=trained.protocol).video_views(0)
               if isinstance(r, ClipViews)]
    for clip_index, record in enumerate(records):
        item = dataset[clip_index]["video"]  # uint8 (C, T, H, W), normalised by the batch prologue
        normalised = normalize(item, trained.protocol.mean, trained.protocol.std)
        assert torch.allclose(record.views[0], normalised, atol=1e-5)


def test_attention_figure_uses_the_test_view(full_frame_checkpoint, wide_video, monkeypatch, tmp_path):
    trained = load_trained_model(full_frame_checkpoint)
    clip, frames = decode_clip(wide_video, trained.protocol)
    side = trained.protocol.short_side
    assert clip.shape[-2:] == (side, round(40 * side / 24)) and frames.shape[1:3] == clip.shape[-2:]
    # the view predict scores for the middle clip (clip 1 of 2), exactly
    records = [r for r in VideoViewStream(paths=[wide_video], protocol=trained.protocol).video_views(0)
               if isinstance(r, ClipViews)]
    assert torch.equal(clip, records[1].views[0])
    seen = []

    def spy(path, view, **kwargs):
        seen.append(view)
        return decode_clip(path, view, **kwargs)

    monkeypatch.setattr(V, "decode_clip", spy)  # the tool's figure: the same view
    if not trained.model.nonlocal_names():
        pytest.skip("the tiny trained model has no non-local block to draw")
    V.visualize(compose("visualize", [f"checkpoint={full_frame_checkpoint}", f"video={wide_video}",
                                     "num_queries=1", f"out={tmp_path}/a.png"]))
    assert seen == [trained.protocol]
