"""The attention-figure hook: at each validation of a real (tiny) training loop, TensorBoard receives
the figure of a fixed validation clip."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from nlnet.data.synthetic import write_video
from nlnet.data.transforms import ViewProtocol
from nlnet.engine.hooks.attention import AttentionFigureHook
from nlnet.engine.hooks import EvalHook
from nlnet.engine.hooks.tensorboard import TensorBoardLogger, open_writer
from nlnet.solver.schedule import MultiStepSchedule, build_scheduler
from nlnet.engine.trainer import Trainer
from nlnet.models import NonLocalBlock, ResNet3d


class Batches:
    """Endless random batches of two 8x32x32 clips."""

    def __init__(self):
        self.i = 0

    def __next__(self):
        self.i += 1
        g = torch.Generator().manual_seed(self.i)
        return {"video": torch.randn(2, 3, 8, 32, 32, generator=g), "label": torch.tensor([0, 1])}


def tiny_model(nonlocal_blocks=((), (0,), (0,), ())) -> ResNet3d:
    return ResNet3d(depth=18, base_width=4, num_classes=2, stem_kernel=(1, 7, 7), stem_stride=(1, 2, 2),
                    pool1_kernel=(1, 3, 3), pool1_stride=(1, 2, 2), nonlocal_blocks=nonlocal_blocks,
                    nonlocal_layer=partial(NonLocalBlock, impl="reference"), dropout=0.0)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("attention_hook") / "val.mp4"
    frames = np.zeros((12, 32, 40, 3), np.uint8)
    for t in range(12):
        frames[t, 8:16, 2 * t:2 * t + 8] = 255
    write_video(path, frames, fps=8)
    return str(path)


def run(tmp_path, video, model, max_iter=2, **hook_args):
    metrics = {"top1": 50.0, "top5": 100.0, "mean_class_accuracy": 50.0, "num_videos": 1}
    writer = open_writer(str(tmp_path / "tb"))  # one writer, passed to both hooks
    view = ViewProtocol(num_frames=8, sampling_rate=1, short_side=32, crop_size=32, mean=(0.45,) * 3,
                        std=(0.225,) * 3)
    hook = AttentionFigureHook(writer=writer, video=video, view=view, num_queries=1, top_k=2, panel_size=48,
                               **hook_args)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = Trainer(model=model, optimizer=opt, scheduler=build_scheduler(opt, schedule=MultiStepSchedule()),
                      data=Batches(), max_iter=max_iter, device=torch.device("cpu"),
                      hooks=[TensorBoardLogger(writer=writer, period=1),
                             EvalHook(period=1, evaluate=lambda: dict(metrics)), hook])
    with writer:
        trainer.train()
    return hook


def logged_images(log_dir) -> dict[str, list[tuple[int, int, int]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    return {tag: [(e.step, e.width, e.height) for e in events.Images(tag)] for tag in events.Tags()["images"]}


def test_figures_logged_at_each_validation(tmp_path, video):
    model = tiny_model()
    hook = run(tmp_path, video, model, blocks=["all"])
    assert hook.frames.shape == (8, 32, 32, 3)  # the fixed clip: decoded once, centre crop
    assert hook.logged == [("attention/res3.nonlocal0", 1), ("attention/res4.nonlocal0", 1),
                           ("attention/res3.nonlocal0", 2), ("attention/res4.nonlocal0", 2)]
    images = logged_images(tmp_path / "tb")
    # res3 of this model is 4x4x4 (4 panels: pool2 halves time), res4 4x2x2; one query row of 48 px + title
    assert images["attention/res3.nonlocal0"] == [(1, 4 * 48, 48 + 18), (2, 4 * 48, 48 + 18)]
    assert [step for step, *_ in images["attention/res4.nonlocal0"]] == [1, 2]
    assert model.training  # the figure's eval-mode forward pass restored the training mode


def test_default_block_and_models_without_blocks(tmp_path, video):
    hook = run(tmp_path / "a", video, tiny_model(), max_iter=1)
    assert hook.logged == [("attention/res4.nonlocal0", 1)]  # the last block
    hook = run(tmp_path / "b", video, tiny_model(((), (), (), ())), max_iter=1)
    assert hook.logged == [] and hook.clip is None  # nothing to draw, nothing decoded
    with pytest.raises(ValueError, match=r"blocks \['res2.nonlocal0'\] are not in the model; its blocks: "
                                         r"res3.nonlocal0, res4.nonlocal0"):
        run(tmp_path / "c", video, tiny_model(), max_iter=1, blocks=["res2.nonlocal0"])


def test_training_run_logs_attention_figures_through_config(tiny_videos, tmp_path):
    """`trainer.attention_figures` (on by default) puts the figure of the first validation video in the
    run's TensorBoard at the final test of a model with a non-local block."""
    from helpers import compose, tiny_overrides
    from nlnet.engine.train import train

    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_videos, str(run_dir))
    overrides = [o for o in overrides if not o.startswith("trainer.max_iter")] + [
        "trainer.max_iter=1", "model.net.nonlocal_blocks=[[],[],[0],[]]", "trainer.attention_figures.num_queries=1",
        "trainer.attention_figures.panel_size=40"]
    train(compose("train", overrides))
    images = logged_images(run_dir / "tensorboard")
    # 4 frames of 32x32: res4 of the tiny model is 2x2x2 (2 panels), one query row + title band
    assert images["attention/res4.nonlocal0"] == [(1, 2 * 40, 40 + 18)]
