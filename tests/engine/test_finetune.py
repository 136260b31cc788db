"""Fine-tuning (configs/experiment/finetune): a checkpoint of another class count starts the run, its
classifier re-initialised and every other weight loaded bit for bit; frozen stages stay as loaded; the three
official splits and their mean are one sweep and one table."""
from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest
import torch
from omegaconf import OmegaConf

from helpers import PYTHON, ROOT, compose, tiny_overrides, tool_env
from mini_datasets import make_folder, make_ucf101
from nlnet.config import instantiate
from nlnet.checkpoint.files import load_checkpoint
from nlnet.engine.train import train
from nlnet.checkpoint.weights import load_init_checkpoint

TINY_MODEL = ["model=tiny", "model.net.nonlocal_blocks=[[],[1],[],[]]"]  # the demo's network (tiny_overrides)


@pytest.fixture(scope="module")
def kinetics_checkpoint(tiny_videos, tmp_path_factory) -> str:
    """A tiny 3-class checkpoint trained for 2 iterations (the "Kinetics model")."""
    run = tmp_path_factory.mktemp("kinetics_run")
    train(compose("train", tiny_overrides(tiny_videos, str(run))))
    return sorted(glob.glob(str(run / "checkpoints" / "checkpoint_*.pt")))[-1]


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("folder_data")
    make_folder(root)
    return str(root)


def finetune_overrides(experiment: str, data_root: str, checkpoint: str, run_dir: str | None = None) -> list[str]:
    shared = [o for o in tiny_overrides(data_root, run_dir)
              if not o.startswith(("experiment=", "model.net.num_classes"))]
    return [f"experiment={experiment}", *TINY_MODEL, *shared, f"model.init_checkpoint={checkpoint}",
            "trainer.device=cpu", "trainer.schedule_unit=iterations", "logger=none"]


def test_classifier_reinitialised_everything_else_loaded_bit_for_bit(kinetics_checkpoint, folder_data):
    cfg = compose("train", finetune_overrides("finetune/folder", folder_data, kinetics_checkpoint) +
                  ["model.net.num_classes=2"])
    model = instantiate(cfg.model.net)
    report = load_init_checkpoint(model, str(cfg.model.init_checkpoint), pretrained=cfg.model.pretrained)
    assert set(report.skipped) == {"head.fc.weight", "head.fc.bias"}
    assert "classifier of another shape: checkpoint (3," in report.skipped["head.fc.weight"]
    source = load_checkpoint(kinetics_checkpoint)["model"]
    state = model.state_dict()
    assert state["head.fc.weight"].shape[0] == 2 and source["head.fc.weight"].shape[0] == 3
    loaded = [k for k in state if not k.startswith("head.fc.")]
    assert sorted(report.loaded) == sorted(loaded)
    assert all(torch.equal(state[k], source[k]) for k in loaded)


def test_frozen_stages_unchanged_after_training_steps(kinetics_checkpoint, folder_data, tmp_path):
    overrides = finetune_overrides("finetune/folder", folder_data, kinetics_checkpoint, str(tmp_path / "run"))
    summary = train(compose("train", overrides + ["model.net.num_classes=2", "model.net.frozen_stages=res3",
                                                  "trainer.max_iter=3", "trainer.precise_bn_iters=2"]))
    assert summary["iteration"] == 3 and summary["metrics"]["num_videos"] == 2 * 1
    source = load_checkpoint(kinetics_checkpoint)["model"]
    final = load_checkpoint(sorted(glob.glob(str(tmp_path / "run" / "checkpoints" / "checkpoint_*.pt")))[-1])
    state = final["model"]
    assert final["class_names"] == ["cat", "dog"]
    frozen = [k for k in state if k.split(".")[0] in ("stem", "res2", "res3")]
    assert any("nonlocal1" in k for k in frozen) and any("running_var" in k for k in frozen)
    assert all(torch.equal(state[k], source[k]) for k in frozen)  # weights and BN statistics, after precise BN
    trained = [k for k in state if k.startswith(("res4.", "res5.")) and k.endswith("conv1.weight")]
    assert trained and not any(torch.equal(state[k], source[k]) for k in trained)


def test_finetune_experiments_compose_with_their_recipe():
    for name, classes, lr in (("ucf101", 101, 0.001), ("hmdb51", 51, 0.001), ("ssv2", 174, 0.02)):
        cfg = compose("train", [f"experiment=finetune/{name}", "data.root=/data", "model.init_checkpoint=x.pt"])
        assert (cfg.name, cfg.model.net.num_classes, cfg.optim.lr, cfg.model.pretrained) == (
            f"finetune/{name}", classes, lr, None)
        assert cfg.trainer.grad_clip_norm == 20.0 and cfg.trainer.schedule_unit == "epochs"
    cfg = compose("train", ["experiment=finetune/ssv2", "data.root=/data", "model.init_checkpoint=x.pt"])
    assert cfg.data.train.sampler._target_.endswith("SegmentSampler") and cfg.data.val.num_clips == 1
    assert len(cfg.data.train.flip_label_map) == 6


@pytest.mark.slow
def test_three_split_sweep_and_its_mean(kinetics_checkpoint, tmp_path):
    data = tmp_path / "ucf101"
    make_ucf101(data)
    # finetune/ucf101 with the tiny network and clips, as a config (a sweep folder's name lists overrides)
    conf = tmp_path / "conf" / "experiment" / "finetune"
    conf.mkdir(parents=True)
    tiny = [o for o in finetune_overrides("finetune/ucf101", str(data), kinetics_checkpoint)
            if o.split("=")[0] not in ("experiment", "data.root", "model", "model.init_checkpoint", "logger")]
    base = {"defaults": ["/experiment/finetune/ucf101", {"override /model": "tiny"}, {"override /logger": "none"}],
            "name": "finetune/tiny_ucf101", **OmegaConf.to_container(OmegaConf.from_dotlist(tiny))}
    base["model"]["net"]["num_classes"] = 3
    (conf / "tiny_ucf101.yaml").write_text("# @package _global_\n" + OmegaConf.to_yaml(OmegaConf.create(base)))
    command = [PYTHON, str(ROOT / "tools" / "train.py"), "-m", "experiment=finetune/tiny_ucf101",
               f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"data.root={data}",
               f"model.init_checkpoint={kinetics_checkpoint}", "data.split=1,2,3"]
    done = subprocess.run(command, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(glob.glob(str(tmp_path / "runs" / "finetune" / "tiny_ucf101" / "data.split=*")))
    assert [os.path.basename(r) for r in runs] == ["data.split=1", "data.split=2", "data.split=3"]
    top1 = [json.load(open(os.path.join(r, "results.json")))["top1"] for r in runs]
    table = subprocess.run([PYTHON, str(ROOT / "tools" / "paper_table.py"), "runs/finetune/tiny_ucf101", "--mean",
                            "--no-cost", "--csv"], cwd=tmp_path, env=tool_env(), capture_output=True, text=True,
                           timeout=300)
    assert table.returncode == 0, table.stderr[-3000:]
    lines = table.stdout.strip().splitlines()
    assert len(lines) == 1 + 3 + 1 and lines[-1].split(",")[1] == "mean"
    column = lines[0].split(",").index("nlnet top-1")
    assert [float(line.split(",")[column]) for line in lines[1:4]] == pytest.approx([round(t, 2) for t in top1])
    assert float(lines[-1].split(",")[column]) == pytest.approx(sum(top1) / 3, abs=0.006)
    assert "mean of 3 of 3 runs" in lines[-1]


def test_ssv2_config_builds_segment_sampling_and_the_flip_swaps(tmp_path):
    from mini_datasets import make_ssv2
    make_ssv2(tmp_path)
    cfg = compose("train", ["experiment=finetune/ssv2", f"data.root={tmp_path}", "model.init_checkpoint=x.pt",
                            "data.num_frames=4", "data.num_segments=4", "data.train.crop_size=32",
                            "data.train.train_scale=[32,32]", "data.val.test_scale=32", "data.val.test_crop_size=32"])
    train_set, val_set = instantiate(cfg.data.train), instantiate(cfg.data.val)
    assert train_set.flip_labels == {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5}  # left <-> right, by labels.json index
    assert type(train_set.sampler).__name__ == type(val_set.sampler).__name__ == "SegmentSampler"
    assert val_set.num_views == 3 and val_set.labels == [1, 4, 0]
