"""Rebuilding a checkpoint's network and its test protocol; one-line refusals of what cannot be used."""
from __future__ import annotations

import pytest
import torch

from nlnet.checkpoint.files import atomic_save
from nlnet.inference import ViewProtocol, load_trained_model, resolve_device
from nlnet.utils.errors import ConfigError, UserError
from tiny_trained import trained_checkpoint  # noqa: F401  (fixture)


def test_model_weights_names_and_protocol_come_from_the_checkpoint(trained_checkpoint):
    state = torch.load(trained_checkpoint, weights_only=True)
    trained = load_trained_model(trained_checkpoint)
    assert not trained.model.training
    assert all(torch.equal(v, state["model"][k]) for k, v in trained.model.state_dict().items())
    assert trained.class_names == ["moving down", "moving up"] == state["class_names"]
    val = state["config"]["data"]["val"]
    assert trained.protocol == ViewProtocol(
        num_frames=val["num_frames"], sampling_rate=val["sampling_rate"], short_side=val["test_scale"],
        crop_size=val["test_crop_size"], num_clips=val["num_clips"], num_crops=val["num_crops"],
        mean=val["mean"], std=val["std"], decode_resize=val["decode_resize"])
    assert trained.iteration == state["iteration"]


def test_views_override_the_stored_protocol(trained_checkpoint):
    stored = load_trained_model(trained_checkpoint).protocol
    trained = load_trained_model(trained_checkpoint, views={"num_clips": 5, "num_crops": None, "crop_size": 24})
    assert (trained.protocol.num_clips, trained.protocol.num_crops, trained.protocol.crop_size) == \
        (5, stored.num_crops, 24)
    with pytest.raises(ConfigError, match=r"views\.clips: unknown key; valid keys: num_frames, sampling_rate"):
        load_trained_model(trained_checkpoint, views={"clips": 3})
    with pytest.raises(ConfigError, match=r"views\.crop_size=64 exceeds views\.short_side=32"):
        load_trained_model(trained_checkpoint, views={"crop_size": 64})
    with pytest.raises(ConfigError, match=r"views\.num_clips=0: must be a positive integer"):
        load_trained_model(trained_checkpoint, views={"num_clips": 0})
    with pytest.raises(ConfigError, match=r"views\.mean=\[0\.5, 0\.5\], views\.std=.*: need 3 values each"):
        load_trained_model(trained_checkpoint, views={"mean": [0.5, 0.5]})


def _rewritten(trained_checkpoint, tmp_path, change) -> str:
    state = torch.load(trained_checkpoint, weights_only=True)
    change(state)
    path = str(tmp_path / "changed.pt")
    atomic_save(state, str(path))  # with the payload checksum of the changed content
    return path


def test_a_stored_pretrained_path_is_not_loaded_again(trained_checkpoint, tmp_path):
    """Older configs name the 2D ImageNet file under model.net; the weights are the checkpoint's."""
    path = _rewritten(trained_checkpoint, tmp_path,
                      lambda s: s["config"]["model"]["net"].update(pretrained=str(tmp_path / "gone.pth")))
    trained = load_trained_model(path)
    reference = load_trained_model(trained_checkpoint)
    assert all(torch.equal(v, reference.model.state_dict()[k]) for k, v in trained.model.state_dict().items())


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("config"), "not an nlnet checkpoint (it needs the keys 'model' and 'config'"),
    (lambda s: s["config"].pop("model"), "its stored config has no model.net node"),
    (lambda s: s["config"]["model"]["net"].pop("_target_"), "its stored config has no model.net node"),
    (lambda s: s["config"]["data"].pop("val"), "no data.val test protocol; pass views.num_frames=T"),
    (lambda s: s["config"]["model"]["net"].update(num_classes=5), "does not fit the model"),
    (lambda s: s["config"]["model"]["net"].update(depth=19), "depth=19 is not supported; valid depths"),
    (lambda s: s.update(class_names=["a", "b", "c"]), "3 class names for a model with 2 outputs"),
])
def test_unusable_checkpoints_are_refused_in_one_line(trained_checkpoint, tmp_path, change, message):
    path = _rewritten(trained_checkpoint, tmp_path, change)
    with pytest.raises(UserError) as error:  # ConfigError, or CheckpointError for the weights
        load_trained_model(path)
    assert message in str(error.value) and path in str(error.value) and "\n" not in str(error.value)


def test_damaged_checkpoint(trained_checkpoint, tmp_path):
    data = bytearray(open(trained_checkpoint, "rb").read())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "damaged.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=f"checkpoint {path} "):
        load_trained_model(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint: file not found: "):
        load_trained_model(tmp_path / "nope.pt")


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device=tpu: valid choices are cpu, cuda, cuda:N, auto"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda: CUDA is not available on this machine; use device=cpu"):
            resolve_device("cuda")
