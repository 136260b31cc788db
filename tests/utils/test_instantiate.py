"""The Hydra-free ``_target_`` resolver that rebuilds networks from a checkpoint's stored config."""
from __future__ import annotations

import functools

import pytest
import torch.nn as nn

from nlnet.utils.errors import ConfigError
from nlnet.utils.instantiate import instantiate_node, locate


def test_nested_nodes_partials_args_and_runtime_arguments():
    node = {"_target_": "torch.nn.Sequential",
            "_args_": [{"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 2},
                       {"_target_": "torch.nn.ReLU"}]}
    seq = instantiate_node(node)
    assert isinstance(seq[0], nn.Linear) and (seq[0].in_features, seq[0].out_features) == (4, 2)
    assert isinstance(seq[1], nn.ReLU)
    norm = instantiate_node({"_target_": "torch.nn.BatchNorm3d", "_partial_": True, "eps": 1e-3})
    assert isinstance(norm, functools.partial) and norm(8).eps == 1e-3 and norm(8).num_features == 8
    linear = instantiate_node({"_target_": "torch.nn.Linear", "in_features": 3}, out_features=5)
    assert linear.out_features == 5
    holder = instantiate_node({"_target_": "builtins.dict", "layer": {"_target_": "torch.nn.Identity"},
                               "sizes": [1, {"_target_": "builtins.int", "_args_": ["7"]}], "plain": {"a": 1}})
    assert isinstance(holder["layer"], nn.Identity) and holder["sizes"] == [1, 7] and holder["plain"] == {"a": 1}


def test_locate_walks_modules_then_attributes():
    assert locate("nlnet.models.ResNet3d").__name__ == "ResNet3d"
    assert locate("torch.nn.functional.relu") is nn.functional.relu


@pytest.mark.parametrize("node, message", [
    ({"_target_": "nlnet.models.NoSuchNet"}, r"model\.net\._target_=nlnet\.models\.NoSuchNet: no such class"),
    ({"_target_": "no_such_package.Net"}, r"model\.net\._target_=no_such_package\.Net: no such class"),
    ({"_target_": "nlnet.models.resnet3d.DEPTHS"}, r"model\.net\._target_=nlnet\.models\.resnet3d\.DEPTHS: not a"),
    ({"_target_": "nlnet.models.ResNet3d", "depth": 7}, r"^model\.net: depth=7 is not supported; valid depths"),
    ({"_target_": "nlnet.models.ResNet3d", "nope": 1}, r"^model\.net: .*unexpected keyword argument 'nope'"),
    ({"depth": 50}, r"model\.net: not a node with a _target_"),
])
def test_bad_nodes_are_one_line_naming_the_key(node, message):
    with pytest.raises(ConfigError, match=message):
        instantiate_node(node, key="model.net")
