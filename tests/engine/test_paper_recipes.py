"""The paper's recipes through the trainer and the test: fine-tuning from another run with BN frozen
(the 128-frame rows), and the fully-convolutional full-frame test (the paper's Sec. 4.1 test)."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from helpers import PYTHON, ROOT, TINY_DATASET, compose, tiny_overrides, tool_env
from nlnet.config import instantiate
from nlnet.data import VideoDataset
from nlnet.data.synthetic import make_synthetic_dataset
from nlnet.data.transforms import normalize
from nlnet.checkpoint.files import CheckpointManager, load_checkpoint
from nlnet.engine.train import train
from nlnet.checkpoint.weights import stored_model_config
from nlnet.utils.errors import ConfigError


def latest(run_dir) -> str:
    return CheckpointManager(directory=os.path.join(run_dir, "checkpoints")).latest()


@pytest.fixture(scope="module")
def source_run(tiny_videos, tmp_path_factory) -> str:
    """A finished tiny run (2 iterations, BN training): the "32-frame" model."""
    run_dir = str(tmp_path_factory.mktemp("source") / "run")
    train(compose("train", tiny_overrides(tiny_videos, run_dir) + ["trainer.test_at_end=false"]))
    return run_dir


def test_finetuning_from_a_run_with_frozen_bn_changes_convolutions_only(tiny_videos, source_run, tmp_path):
    run_dir = str(tmp_path / "finetune")
    summary = train(compose("train", tiny_overrides(tiny_videos, run_dir) + [
        f"model.init_checkpoint={source_run}", "model.net.frozen_bn=[all]", "trainer.test_at_end=false"]))
    assert summary["iteration"] == 2  # a fresh schedule, not the source's
    source_path = latest(source_run)
    assert (f"model.init_checkpoint={source_run}: started from {source_path} (iteration 2)"
            in Path(run_dir, "log.txt").read_text())
    source, tuned = load_checkpoint(source_path)["model"], load_checkpoint(latest(run_dir))["model"]
    model = instantiate(stored_model_config(compose("train", tiny_overrides(tiny_videos) + [
        "model.net.frozen_bn=[all]"]).model).net)
    model.load_state_dict(tuned)  # the checkpoint round-trips into a frozen model, strictly
    norms = {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm3d)}
    convs = {name for name, m in model.named_modules() if isinstance(m, nn.Conv3d)}
    assert any(".nonlocal" in name for name in norms)  # the NL block's BN (w_z) freezes too
    for key, value in source.items():
        module = key.rsplit(".", 1)[0]
        if module in norms:  # statistics and affine parameters: untouched by SGD and by precise BN
            assert torch.equal(tuned[key], value), key
        elif module in convs or module == "head.fc":  # gradients still reach every convolution
            assert not torch.equal(tuned[key], value), key


def test_init_checkpoint_errors_are_one_line(tiny_videos, source_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([f"model.init_checkpoint={empty}"], f"model.init_checkpoint={empty}: no intact checkpoint_*.pt in {empty}"),
        ([f"model.init_checkpoint={source_run}", "model.pretrained=torchvision"],
         "are both set: the checkpoint replaces every weight; set model.pretrained=null"),
        ([f"model.init_checkpoint={source_run}", "model.net.base_width=8"],
         f"model.init_checkpoint={source_run}: load_finetune: checkpoint does not match the model"),
        ([f"model.init_checkpoint={tmp_path / 'none.pt'}"], "no such run folder or checkpoint file"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError) as info:
            train(compose("train", tiny_overrides(tiny_videos, str(tmp_path / "run")) + overrides))
        assert message in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory) -> str:
    """Validation videos of two frame sizes (48x32 and 64x32) with the tiny dataset's classes."""
    root = tmp_path_factory.mktemp("two_sizes")
    other = tmp_path_factory.mktemp("other_size")
    spec = dict(num_classes=TINY_DATASET["num_classes"], train_per_class=1, val_per_class=1, num_frames=8)
    make_synthetic_dataset(root, size=(48, 32), seed=0, **spec)
    make_synthetic_dataset(other, size=(64, 32), seed=1, **spec)
    for path in (other / "val").rglob("*.mp4"):
        shutil.copy(path, root / "val" / path.parent.name / path.name)
    rows = (other / "val.csv").read_text().splitlines()[1:]
    with open(root / "val.csv", "a") as f:
        f.write("".join(row + "\n" for row in rows))
    return str(root)


@pytest.mark.slow
def test_fully_convolutional_full_frame_test_equals_a_hand_computation(source_run, two_sizes, tmp_path):
    checkpoint = latest(source_run)
    out = tmp_path / "test"
    done = subprocess.run([PYTHON, str(ROOT / "tools" / "test.py"), f"checkpoint={checkpoint}",
                           f"data.root={two_sizes}", f"output_dir={out}", "data.val.full_frame=true",
                           "model.net.head_pool_kernel=[1,1,1]", "model.net.fully_conv_test=true",
                           "trainer.eval_batch_size=4"],
                          env=tool_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert (results["num_videos"], results["views_per_video"], results["failed_videos"]) == (6, 2, 0)
    videos = json.loads((out / "per_video_scores.json").read_text())["videos"]

    # by hand: res5 features of each whole frame, the classifier at every position, softmax per
    # position, the mean over positions, then over the video's clips
    state = load_checkpoint(checkpoint)
    model = instantiate(stored_model_config(state["config"]["model"]).net).eval()
    model.load_state_dict(state["model"])
    stored = state["config"]["data"]["val"]
    dataset = VideoDataset(root=two_sizes, annotations=os.path.join(two_sizes, "val.csv"), mode="test",
                           num_frames=state["config"]["data"]["num_frames"],
                           sampling_rate=state["config"]["data"]["sampling_rate"], test_scale=stored["test_scale"],
                           num_clips=stored["num_clips"], full_frame=True, mean=stored["mean"], std=stored["std"],
                           decode_resize=stored["decode_resize"])
    assert dataset.num_views == 2
    sizes = set()
    with torch.no_grad():
        for v, video in enumerate(videos):
            probs = []
            for view in range(dataset.num_views):
                clip = dataset[v * dataset.num_views + view]["video"]  # uint8 (3, T, 32, W): the whole frame
                clip = normalize(clip, dataset.mean, dataset.std)  # as the batch prologue does
                sizes.add(tuple(clip.shape[-2:]))
                features = model.features(clip[None])[0]  # (C, T', H', W')
                logits = model.head.fc(features.flatten(1).T)  # (positions, K)
                probs.append(logits.softmax(dim=1).mean(dim=0))
            expected = torch.stack(probs).mean(dim=0)
            assert video["num_views"] == 2
            assert torch.allclose(torch.tensor(video["scores"]), expected, atol=2e-6), video["path"]
    assert sizes == {(32, 48), (32, 64)}  # two frame sizes in one test: one clip per batch
