"""Checkpoints: atomic writes, keep-last-K, newest lookup, weights_only loading, RNG round trip, and
damaged files (flipped bytes anywhere, truncated, empty, text, another model's) refused with one line."""
import os
import random

import numpy as np
import pytest
import torch

from nlnet.checkpoint.files import (CheckpointManager, atomic_save, checkpoint_run_dir, load_checkpoint,
                                     load_model_state, read_checkpoint_config)
from nlnet.utils.errors import CheckpointError
from nlnet.utils.seeding import get_rng_state, seed_everything, set_rng_state


def test_manager_keeps_last_k_and_finds_newest(tmp_path):
    manager = CheckpointManager(directory=str(tmp_path / "checkpoints"), keep_last=2)
    assert manager.latest() is None
    for it in (5, 10, 15):
        manager.save({"iteration": it}, it)
    assert [it for it, _ in manager.list()] == [10, 15]
    assert manager.latest().endswith("checkpoint_0000015.pt")
    # a stray temporary file of an interrupted write is ignored
    (tmp_path / "checkpoints" / ".tmp_abc.pt").write_bytes(b"partial")
    assert manager.latest().endswith("checkpoint_0000015.pt")
    assert load_checkpoint(manager.latest())["iteration"] == 15
    assert checkpoint_run_dir(manager.latest()) == str(tmp_path)


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = str(tmp_path / "c.pt")
    atomic_save({"x": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"x": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(2))
    assert os.listdir(tmp_path) == ["c.pt"]


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_tampered_checkpoint_cannot_run_code(tmp_path):
    path, marker = str(tmp_path / "evil.pt"), tmp_path / "pwned"
    torch.save({"model": {}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} holds objects other than tensors .*could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    atomic_save({"model": {}}, str(tmp_path / "noconfig.pt"))
    with pytest.raises(CheckpointError, match="no training config"):
        read_checkpoint_config(str(tmp_path / "noconfig.pt"))


def test_rng_states_survive_weights_only_round_trip(tmp_path):
    seed_everything(3)
    random.random(), np.random.rand(), torch.rand(1)
    path = str(tmp_path / "rng.pt")
    atomic_save({"rng": get_rng_state()}, path)
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    seed_everything(99)
    set_rng_state(load_checkpoint(path)["rng"])
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def small_state():
    g = torch.Generator().manual_seed(0)
    return {"model": {"conv.weight": torch.randn(4, 3, generator=g), "bn.running_var": torch.rand(4, generator=g) + 0.5,
                      "bn.num_batches_tracked": torch.tensor(7)},
            "iteration": 12, "config": {"data": {"root": "/d", "num_frames": 8}, "lr": 0.01}, "class_names": ["a", "b"],
            "rng_states": [{"torch": torch.ByteTensor([1, 2, 3])}]}


def same_content(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same_content(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_content(x, y) for x, y in zip(a, b))
    return a == b


def test_no_flipped_byte_anywhere_in_a_checkpoint_loads_silently(tmp_path):
    # torch's per-record CRC-32 misses damage to the archive's directory (a flipped "directory" attribute
    # makes a tensor load as uninitialised memory): the payload checksum catches what was loaded
    good = str(tmp_path / "good.pt")
    atomic_save(small_state(), good)
    assert same_content(load_checkpoint(good), small_state())
    data = open(good, "rb").read()
    tail = len(data) - 700  # the zip directory and end record: every byte
    positions = list(range(0, tail, 11)) + list(range(tail, len(data)))
    refused = 0
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path = str(tmp_path / "damaged.pt")
        open(path, "wb").write(damaged)
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            assert path in str(e) and "\n" not in str(e)
            refused += 1
            continue
        assert same_content(state, small_state()), f"byte {position} flipped and loaded silently"
    assert refused > len(positions) // 2  # the others hit bytes that do not matter (timestamps, padding)


@pytest.mark.parametrize("kind, expected", [
    ("empty", "is empty"),
    ("text", "cannot be loaded: truncated, damaged or not a checkpoint"),
    ("truncated_half", "cannot be loaded: truncated, damaged or not a checkpoint"),
    ("truncated_end", "cannot be loaded: truncated, damaged or not a checkpoint"),
    ("flipped_tensor_bytes", "is damaged"),
])
def test_damaged_checkpoints_are_refused_with_one_line_naming_them(tmp_path, kind, expected):
    good = str(tmp_path / "good.pt")
    atomic_save(small_state(), good)
    data = open(good, "rb").read()
    damaged = {"empty": b"", "text": b"iteration: 12\n", "truncated_half": data[: len(data) // 2],
               "truncated_end": data[:-10], "flipped_tensor_bytes": data[:1000] + bytes(64) + data[1064:]}[kind]
    path = str(tmp_path / f"{kind}.pt")
    open(path, "wb").write(damaged)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} ") and expected in message and "\n" not in message


def test_checkpoints_without_a_payload_checksum_still_load(tmp_path):
    # written by earlier versions (torch.save of the plain dict), or in torch's legacy format
    state = small_state()
    torch.save(state, tmp_path / "old.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("old.pt", "legacy.pt"):
        assert same_content(load_checkpoint(str(tmp_path / name)), state)
    atomic_save(state, str(tmp_path / "new.pt"))
    raw = torch.load(tmp_path / "new.pt", weights_only=True)
    assert raw["checksum"].startswith("sha256:") and same_content({k: raw[k] for k in state}, state)
    assert "checksum" not in load_checkpoint(str(tmp_path / "new.pt"))  # the keys callers see are unchanged


def test_another_models_checkpoint_is_refused_naming_the_difference(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))
    other = torch.nn.Sequential(torch.nn.Conv3d(3, 8, 1), torch.nn.BatchNorm3d(8), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"checkpoint x.pt does not fit the model .*2 unexpected keys \(e.g. 3.weight\)"
                                              r", .*tensors of another shape"):
        load_model_state(model, {"model": other.state_dict()}, "x.pt")
    with pytest.raises(CheckpointError, match="checkpoint y.pt has no 'model' entry"):
        load_model_state(model, {"weights": {}}, "y.pt")
    load_model_state(model, {"model": model.state_dict()}, "z.pt")


def test_newest_intact_checkpoint_and_stale_temporaries(tmp_path):
    manager = CheckpointManager(directory=str(tmp_path), keep_last=5)
    for it in (1, 2, 3):
        manager.save({**small_state(), "iteration": it}, it)
    data = open(manager.path(3), "rb").read()
    open(manager.path(3), "wb").write(data[: len(data) // 3])  # the newest: truncated
    path, state, skipped = manager.load_latest()
    assert path == manager.path(2) and state["iteration"] == 2
    assert len(skipped) == 1 and skipped[0].startswith(f"checkpoint {manager.path(3)} ")
    for it in (1, 2):
        open(manager.path(it), "wb").write(b"")
    assert manager.load_latest()[:2] == (None, None) and len(manager.load_latest()[2]) == 3
    (tmp_path / ".tmp-abc123.pt").write_bytes(b"partial")  # an interrupted atomic_save
    assert manager.remove_temporaries() == [str(tmp_path / ".tmp-abc123.pt")]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_0000001.pt", "checkpoint_0000002.pt", "checkpoint_0000003.pt"]
