"""Predict and export with a multi-label checkpoint (a miniature Charades run): per-class sigmoid
probabilities combined over views by their max, labels above a threshold or the top-k, in the timeline,
the JSON and the annotated video; the export sidecar says sigmoid."""
from __future__ import annotations

import glob
import json
import os

import pytest
import torch

from helpers import compose
from nlnet.data.decoding import VideoReader
from nlnet.data.sampling import clip_span, clip_times, eval_clip_start
from nlnet.data.synthetic import make_synthetic_charades
from nlnet.evaluation.objectives import MultiLabel
from nlnet.inference import Predictor, load_trained_model
from nlnet.inference.commands import run_export, run_predict
from nlnet.inference.predict import select_classes
from nlnet.utils.errors import ConfigError


@pytest.fixture(scope="module")
def multilabel_checkpoint(tmp_path_factory) -> tuple[str, str]:
    """(checkpoint, a test video) of a 2-iteration run on a miniature Charades (weights untrained: the
    tests check how outputs become labels, not what the model learnt)."""
    from nlnet.engine.train import train

    tmp = tmp_path_factory.mktemp("multilabel")
    paths = make_synthetic_charades(tmp / "data", num_classes=4, train_videos=4, test_videos=1)
    train(compose("train", ["experiment=demo_charades", f"data.root={tmp / 'data'}", f"run_dir={tmp / 'run'}",
                            "model.net.base_width=4", "data.batch_size=2", "data.num_workers=0", "trainer.max_iter=2",
                            "trainer.precise_bn_iters=1", "trainer.test_at_end=false", "trainer.progress_bar=false",
                            "trainer.num_threads=1", "logger=none"]))
    checkpoint = sorted(glob.glob(str(tmp / "run" / "checkpoints" / "checkpoint_*.pt")))[-1]
    return checkpoint, sorted(glob.glob(os.path.join(paths["videos"], "*.mp4")))[-1]


@pytest.mark.slow
def test_a_multi_label_checkpoint_predicts_the_max_of_per_class_sigmoids(multilabel_checkpoint):
    checkpoint, video = multilabel_checkpoint
    trained = load_trained_model(checkpoint, views={"num_clips": 3})
    assert isinstance(trained.objective, MultiLabel) and trained.objective.aggregation == "max"
    protocol, transform = trained.protocol, trained.protocol.transform()
    views = []
    with VideoReader(video) as reader:
        info = reader.info
        span = clip_span(protocol.num_frames, protocol.sampling_rate, info.fps)
        for i in range(protocol.num_clips):
            times = clip_times(eval_clip_start(info.duration, span, i, protocol.num_clips), protocol.num_frames,
                               protocol.sampling_rate, info.fps)
            frames, _ = reader.read(times, short_side=protocol.short_side if protocol.decode_resize else None)
            clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
            views += [transform(clip, c) for c in range(protocol.num_crops)]
    with torch.no_grad():
        expected = trained.model(torch.stack(views)).sigmoid().max(dim=0).values
    result, = Predictor.from_trained(trained, batch_size=2).predict([video])
    torch.testing.assert_close(result.scores, expected, rtol=1e-5, atol=1e-6)
    assert result.num_views == 3


def test_select_classes_by_threshold_or_top_k():
    scores, names = torch.tensor([0.2, 0.9, 0.55, 0.7]), ["a", "b", "c", "d"]
    assert [n for n, _ in select_classes(scores, names, 2)] == ["b", "d"]
    assert [n for n, _ in select_classes(scores, names, 2, threshold=0.5)] == ["b", "d", "c"]
    assert select_classes(scores, names, 2, threshold=0.95) == []


@pytest.mark.slow
def test_predict_writes_probabilities_labels_timeline_and_annotated_video(multilabel_checkpoint, tmp_path, capsys):
    checkpoint, video = multilabel_checkpoint
    out, preds = tmp_path / "labelled.mp4", tmp_path / "preds.json"
    assert run_predict(checkpoint=checkpoint, video=video, window=0.48, threshold=0.0, out=str(out),
                       json=str(preds), device="cpu") == 0
    data = json.loads(preds.read_text())
    assert (data["activation"], data["view_aggregation"], data["threshold"]) == ("sigmoid", "max", 0.0)
    entry, = data["videos"]
    assert set(entry["probabilities"]) == set(data["class_names"]) and len(entry["labels"]) == 4  # all >= 0
    assert sum(entry["probabilities"].values()) != pytest.approx(1.0)  # independent sigmoids
    assert len(entry["timeline"]) == 2 and all("probabilities" in w and "labels" in w for w in entry["timeline"])
    with VideoReader(str(out)) as reader:
        assert reader.info.num_frames > 0
    printed = capsys.readouterr().out
    assert "annotated video" in printed and data["class_names"][0] in printed
    with pytest.raises(ConfigError, match=r"^threshold=1.5: must be a probability in \[0, 1\]"):
        run_predict(checkpoint=checkpoint, video=video, threshold=1.5, device="cpu")


@pytest.mark.slow
def test_export_sidecar_says_sigmoid_and_max(multilabel_checkpoint, tmp_path):
    checkpoint, _ = multilabel_checkpoint
    out = tmp_path / "m.pt"
    assert run_export(checkpoint=checkpoint, format="torchscript", out=str(out)) == 0
    sidecar = json.loads((tmp_path / "m.pt.json").read_text())
    assert sidecar["output"]["activation"] == "sigmoid" and "sigmoid" in sidecar["output"]["meaning"]
    assert sidecar["pipeline"]["view_aggregation"] == "max" and "maximum" in sidecar["pipeline"]["views"]
