"""Weights loaded outside constructors: ImageNet inflation on a fresh start only (model.pretrained),
never on resume, test or visualize; the one-line offline error; stored configs of older versions."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf

from helpers import compose, tiny_overrides
from nlnet.config import instantiate
from nlnet.checkpoint import weights
from nlnet.checkpoint.files import CheckpointManager, atomic_save, load_checkpoint
from nlnet.engine.test import test as launch_test
from nlnet.engine.train import train
from nlnet.checkpoint.weights import stored_model_config
from nlnet.models.inflate import inflate_from_2d, torchvision_to_resnet3d_key
from nlnet.utils.errors import ConfigError


def fake_resnet2d(model_cfg, path: Path) -> dict[str, torch.Tensor]:
    """A torchvision-keyed 2D ResNet state dict (random values) whose shapes fit the config's model."""
    target = instantiate(model_cfg.net).state_dict()
    gen = torch.Generator().manual_seed(0)
    source = {}
    for key in torchvision.models.resnet18(weights=None).state_dict():
        mine = torchvision_to_resnet3d_key(key)
        if mine in target and not key.startswith("fc."):
            shape = target[mine].shape
            shape = shape[:2] + shape[3:] if len(shape) == 5 else shape  # (O, I, t, k, k) -> (O, I, k, k)
            source[key] = (torch.rand(shape, generator=gen) + 0.5 if "running_var" in key
                           else torch.randn(shape, generator=gen)) if target[mine].is_floating_point() else target[mine]
    torch.save(source, path)
    return source


@pytest.mark.slow
def test_fresh_start_inflates_resume_does_not_and_test_needs_no_2d_file(tiny_videos, tmp_path, monkeypatch):
    calls = []

    def counting(model, source):
        calls.append(source)
        return inflate_from_2d(model, source)

    monkeypatch.setattr(weights, "inflate_from_2d", counting)
    run_dir = tmp_path / "run"
    file2d = tmp_path / "2d" / "resnet18.pth"
    file2d.parent.mkdir()
    overrides = tiny_overrides(tiny_videos, str(run_dir)) + [f"model.pretrained={file2d}", "trainer.test_at_end=false"]
    fake_resnet2d(compose("train", overrides).model, file2d)

    train(compose("train", overrides))  # fresh start: inflated once, the report logged
    assert calls == [str(file2d)]
    log = (run_dir / "log.txt").read_text()
    assert f"model.pretrained={file2d}: loaded" in log and "inflated" in log
    train(compose("train", [o for o in overrides if not o.startswith("trainer.max_iter")] + ["trainer.max_iter=3"]))
    assert calls == [str(file2d)]  # resumed from iteration 2: no second inflation
    assert load_checkpoint(CheckpointManager(directory=str(run_dir / "checkpoints")).latest())["iteration"] == 3

    # the checkpoint tests without the 2D file, also with an older version's model.net.pretrained
    file2d.unlink()
    state = load_checkpoint(CheckpointManager(directory=str(run_dir / "checkpoints")).latest())
    state["config"]["model"]["net"]["pretrained"] = str(file2d)
    old = tmp_path / "old.pt"
    atomic_save(state, str(old))
    cfg = OmegaConf.create(state["config"])
    cfg.checkpoint, cfg.output_dir = str(old), str(tmp_path / "test")
    metrics = launch_test(cfg)
    assert metrics["num_videos"] == 6 and Path(metrics["results_path"]).is_file()
    assert calls == [str(file2d)]


def test_offline_torchvision_fails_with_one_line(tiny_videos, tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    overrides = tiny_overrides(tiny_videos, str(tmp_path / "run")) + ["model.pretrained=torchvision"]
    with pytest.raises(ConfigError) as info:
        train(compose("train", overrides))
    text = str(info.value)
    assert "\n" not in text and text.startswith("model.pretrained=torchvision: could not fetch")
    assert "model.pretrained=/path/resnet18.pth" in text and "model.pretrained=null" in text
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before training


def test_stored_model_config_reads_older_versions():
    cfg = compose("train", ["experiment=demo", "model.nonlocal.pairwise=gaussian"]).model
    current = stored_model_config(cfg)
    assert current.net.nonlocal_layer.pool_ceil_mode is False and current.net.nonlocal_layer.scale_gaussian is False
    old = OmegaConf.to_container(cfg, resolve=True)
    old.pop("pretrained")
    old["net"]["pretrained"] = "/gone/resnet50.pth"
    for node in (old["nonlocal"], old["net"]["nonlocal_layer"]):
        node.pop("pool_ceil_mode"), node.pop("scale_gaussian")
    upgraded = stored_model_config(OmegaConf.create(old))
    assert "pretrained" not in upgraded.net
    for node in (upgraded["nonlocal"], upgraded.net.nonlocal_layer):  # how older versions computed the block
        assert node.pool_ceil_mode is True and node.scale_gaussian is True
    model = instantiate(upgraded.net)
    block = model.get_submodule(model.nonlocal_names()[0])
    assert block.pool_ceil_mode and block.logit_scale == block.in_channels ** -0.5
    old["net"]["nonlocal_layer"]["pairwise"] = "embedded_gaussian"  # scale_gaussian only for the Gaussian
    assert stored_model_config(OmegaConf.create(old)).net.nonlocal_layer.scale_gaussian is False
