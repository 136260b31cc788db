"""Checkpoints: atomic writes, keep-last-K, newest lookup, weights_only loading, RNG round trip."""
import os
import pickle
import random

import numpy as np
import pytest
import torch

from nlnet.engine.checkpoint import (CheckpointManager, atomic_save, checkpoint_run_dir, load_checkpoint,
                                     read_checkpoint_config)
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
    best = manager.mark_best(manager.latest())
    assert load_checkpoint(best)["iteration"] == 15
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
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_tampered_checkpoint_cannot_run_code(tmp_path):
    path = str(tmp_path / "evil.pt")
    torch.save({"model": {}, "payload": _RunsCode()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    atomic_save({"model": {}}, str(tmp_path / "noconfig.pt"))
    with pytest.raises(ValueError, match="no training config"):
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
