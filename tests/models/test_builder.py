"""The named networks equal what configs/model builds, and build_model builds a stored node."""
from __future__ import annotations

import pytest
import torch

import nlnet.models as models
from nlnet.config import to_container
from nlnet.models.builder import NONLOCAL_DEFAULTS
from nlnet.utils.errors import ConfigError

NL_FIVE = {50: "[[],[1,3],[1,3,5],[]]", 101: "[[],[1,3],[6,13,20],[]]"}  # Table 2c; R101: the official places


def _config_net(name: str) -> dict:
    from helpers import compose

    nonlocal_, arch = name.startswith("nl_"), name.removeprefix("nl_")
    depth = int(arch.split("_r")[1])
    overrides = [f"model={arch}"] + ([f"model.net.nonlocal_blocks={NL_FIVE[depth]}"] if nonlocal_ else [])
    return to_container(compose("train", overrides).model.net)


def _same_network(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert repr(a) == repr(b)  # every layer's hyper-parameters
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "r101" in n else n for n in models.MODELS])
def test_named_network_equals_the_config_built_one(name):
    net = _config_net(name)
    _same_network(models.MODELS[name](), models.build_model(net))
    if name.startswith("nl_"):
        assert {k: v for k, v in net["nonlocal_layer"].items() if not k.startswith("_")} == NONLOCAL_DEFAULTS


def test_keyword_arguments_reach_the_network_and_its_blocks():
    model = models.nl_c2d_r50(num_classes=7, pairwise="dot_product", dropout=0.0)
    blocks = [model.get_submodule(n) for n in model.nonlocal_names()]
    assert model.num_classes == 7 and len(blocks) == 5 and all(b.pairwise == "dot_product" for b in blocks)
    with pytest.raises(TypeError, match=r"c2d_r50\(\) has no non-local blocks; use nl_c2d_r50\(\)"):
        models.c2d_r50(pairwise="dot_product")


def test_build_model_names_the_key_of_a_bad_argument():
    with pytest.raises(ConfigError, match=r"^model\.net: depth=3 is not supported"):
        models.build_model({"_target_": "nlnet.models.ResNet3d", "depth": 3})
