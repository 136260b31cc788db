"""What the converters share: key tables in both directions, the checkpoint's stored config, the
Kinetics-400 class list and the docs table of published models."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from _convert_util import randomize, source_state, write_caffe2

import nlnet.models as models
import nlnet.models.convert as converters
from nlnet.models.convert import convert
from helpers import ROOT, compose
from nlnet.config import instantiate
from nlnet.inference import ViewProtocol
from nlnet.models.convert.arch import Clip, data_config, deep_merge
from nlnet.models.convert.caffe2 import CAFFE2_TABLE
from nlnet.resources import kinetics400_classes, kinetics400_classes_path
from nlnet.utils.errors import ConfigError

ARCHS = [(source, name) for source, handler in converters.SOURCES.items() for name in handler.archs]


@pytest.mark.parametrize("source, name", ARCHS)
def test_key_table_reads_both_ways(source, name):
    """Every key of the nlnet model has a source name that maps back to it (or is filled by rule)."""
    handler = converters.SOURCES[source]
    arch = handler.arch(name).replace(base_width=1)
    table = handler.table(arch)
    like = torch.empty(0)
    for key in handler.build(arch).state_dict():
        source_key = table.to_source(key)
        if source_key is None:
            assert handler.fill(key, like, arch) is not None, key
        else:
            assert table.to_nlnet(source_key) == key, (key, source_key)


def test_callable_package_and_unknown_names(tmp_path):
    assert not callable(converters) and models.convert.convert is convert  # a plain function
    with pytest.raises(converters.ConversionError, match="unknown source; valid: caffe2, pyslowfast, mmaction2"):
        convert("x.pkl", source="detectron")
    path = tmp_path / "a.pkl"
    write_caffe2(path, {"conv1_w": torch.zeros(1)})
    with pytest.raises(converters.ConversionError, match="--arch 'nope' is not a caffe2 model; valid: c2d_r50_8x8"):
        convert(path, source="caffe2", arch="nope")


@pytest.mark.slow
def test_checkpoint_config_rebuilds_the_network(tmp_path):
    arch = converters.SOURCES["caffe2"].arch("i3d_nl_r50_8x8").replace(base_width=4, num_classes=400)
    model = randomize(converters.SOURCES["caffe2"].build(arch))
    path = tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl"
    write_caffe2(path, source_state(model.state_dict(), CAFFE2_TABLE))
    conversion = convert(path, source="caffe2")
    base = compose("train", ["data.root=/data/kinetics400", f"run_dir={tmp_path}"])
    from omegaconf import OmegaConf
    checkpoint = conversion.checkpoint(OmegaConf.to_container(base, resolve=True))
    config = checkpoint["config"]
    rebuilt = instantiate(config["model"]["net"])
    rebuilt.load_state_dict(checkpoint["model"])  # strict: the same keys and shapes
    x = torch.randn(1, 3, 8, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x), rtol=0, atol=0)
    val = config["data"]["val"]
    assert (val["num_frames"], val["sampling_rate"], val["test_scale"], val["test_crop_size"],
            val["num_clips"], val["num_crops"]) == (8, 8, 256, 256, 10, 3)
    assert val["mean"] == [0.45] * 3 and val["std"] == [0.225] * 3 and config["data"]["train"]["crop_size"] == 224
    assert val["label_map"] == kinetics400_classes_path() and Path(val["label_map"]).is_file()
    assert config["trainer"] == OmegaConf.to_container(base.trainer, resolve=True)  # the rest is the base config
    assert checkpoint["class_names"] == kinetics400_classes() and checkpoint["iteration"] == 0


@pytest.mark.parametrize("source, name", ARCHS)
def test_source_clip_is_the_stored_test_protocol(source, name):
    """A source's clip is a ViewProtocol, and the ``data.val`` node a conversion stores reads back (as
    ``load_trained_model`` reads it) as the same views."""
    arch = converters.SOURCES[source].arch(name)
    assert isinstance(arch.clip, ViewProtocol)
    views = ViewProtocol(**{f.name: getattr(arch.clip, f.name) for f in fields(ViewProtocol)})
    assert ViewProtocol.from_dataset_node(data_config(arch, kinetics_classes=False)["val"]) == views


def test_clip_checks_its_views():
    assert Clip(num_frames=8, sampling_rate=8).mean == (0.45,) * 3
    with pytest.raises(ConfigError, match="views.crop_size=320 exceeds views.short_side=256"):
        Clip(num_frames=8, sampling_rate=8, crop_size=320)
    with pytest.raises(ConfigError, match="views.num_frames=0: must be a positive integer"):
        Clip(num_frames=0, sampling_rate=8)


def test_deep_merge_keeps_base_keys():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}, "d": 3}


def test_kinetics400_class_list():
    names = kinetics400_classes()
    assert len(names) == len(set(names)) == 400
    assert names == sorted(names)  # classids.json / label_map_k400.txt: alphabetical
    assert (names[0], names[208], names[-1]) == ("abseiling", "passing American football (in game)", "zumba")


def test_docs_list_every_published_model():
    """docs/checkpoints.md has a row (file, arch, published top-1) for every published model."""
    text = (ROOT / "docs" / "checkpoints.md").read_text()
    rows = {line for line in text.splitlines() if line.startswith("|")}
    for source, arch, file, top1, _ in converters.published_models():
        row = [r for r in rows if f"`{file}`" in r and f"`{arch.name}`" in r]
        assert row, (source, file)
        assert top1 is None or re.search(rf"\b{re.escape(top1)}\b", row[0]), (file, top1)
