"""One way from a checkpoint file to its network, with one set of refusals."""
from __future__ import annotations

import copy

import pytest
import torch

from nlnet.checkpoint.files import atomic_save
from nlnet.checkpoint.restore import restore_checkpoint
from nlnet.config import to_container
from nlnet.models import build_model
from nlnet.utils.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def tiny_state():
    from helpers import compose

    cfg = compose("train", ["model=tiny", "model.net.num_classes=3", "data.root=/data"])
    config = {"model": to_container(cfg.model), "data": {"val": to_container(cfg.data.val)}}
    torch.manual_seed(0)
    model = build_model(config["model"]["net"])
    return {"model": model.state_dict(), "config": config, "class_names": ["a", "b", "c"], "iteration": 12}


def _save(state, tmp_path, name="c.pt") -> str:
    path = str(tmp_path / name)
    atomic_save(state, path)
    return path


def test_the_network_weights_names_and_iteration_come_back(tiny_state, tmp_path):
    restored = restore_checkpoint(_save(tiny_state, tmp_path))
    assert not restored.model.training
    assert all(torch.equal(v, tiny_state["model"][k]) for k, v in restored.model.state_dict().items())
    assert (restored.class_names, restored.iteration) == (["a", "b", "c"], 12)
    assert restored.config == tiny_state["config"]


def test_a_given_config_replaces_the_stored_one(tiny_state, tmp_path):
    config = {"model": {**tiny_state["config"]["model"],
                        "net": {**tiny_state["config"]["model"]["net"], "dropout": 0.0}}}
    restored = restore_checkpoint(_save(tiny_state, tmp_path), config=config)
    assert restored.model.head.dropout.p == 0.0 and restored.config == config


@pytest.mark.parametrize("change, error, message", [
    (lambda s: s.pop("config"), ConfigError, r"not an nlnet checkpoint \(it needs the keys 'model' and 'config'"),
    (lambda s: s["config"].pop("model"), ConfigError, r"its stored config has no model.net node"),
    (lambda s: s["config"]["model"]["net"].update(depth=7), ConfigError, r"c\.pt: model\.net: depth=7 is not"),
    (lambda s: s.update(class_names=["a"]), ConfigError, r"1 class names for a model with 3 outputs"),
    (lambda s: s["model"].pop("head.fc.weight"), CheckpointError, r"does not fit the model"),
])
def test_what_cannot_be_rebuilt_is_one_line_naming_the_file(tiny_state, tmp_path, change, error, message):
    state = copy.deepcopy(tiny_state)
    change(state)
    path = _save(state, tmp_path)
    with pytest.raises(error, match=message):
        restore_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="checkpoint: file not found"):
        restore_checkpoint(tmp_path / "missing.pt")
