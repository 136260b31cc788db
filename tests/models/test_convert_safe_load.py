"""Loading other projects' checkpoints without running their code (nlnet.models.convert.safe_load)."""
from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from nlnet.models.convert.safe_load import Inert, UnsafeFileError, load_numpy_pickle, load_torch_file


def _blobs():
    return {"blobs": {"conv1_w": np.arange(6, dtype=np.float32).reshape(2, 3), "lr": np.array(0.01, np.float32),
                      "model_iter": 400000, "conv1_w_momentum": np.zeros((2, 3), np.float32)}}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_pickle_loads_arrays(tmp_path, protocol):
    path = tmp_path / "model.pkl"
    data = pickle.dumps(_blobs(), protocol=protocol)
    if protocol == 2:  # as numpy 1.x / Python 2 wrote it: numpy.core.multiarray._reconstruct
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray" in data
    path.write_bytes(data)
    blobs = load_numpy_pickle(path)["blobs"]
    np.testing.assert_array_equal(blobs["conv1_w"], _blobs()["blobs"]["conv1_w"])
    assert blobs["conv1_w"].dtype == np.float32 and blobs["model_iter"] == 400000


class _WritesMarker:
    """A pickle payload whose unpickling would create a file (what a tampered checkpoint does)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_numpy_pickle_refuses_code_before_running_it(tmp_path):
    marker = tmp_path / "MARKER"
    payload = _blobs()
    payload["blobs"]["evil"] = _WritesMarker(str(marker))
    path = tmp_path / "tampered.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafeFileError, match=r"asks for the Python global (builtins|io)\.open"):
        load_numpy_pickle(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same bytes with a plain unpickler do run the payload
    assert marker.exists()


def test_numpy_pickle_refuses_truncated_and_non_pickles(tmp_path):
    data = pickle.dumps(_blobs(), protocol=2)
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeFileError, match="cut.pkl: truncated or not a pickle"):
        load_numpy_pickle(tmp_path / "cut.pkl")
    (tmp_path / "text.pkl").write_text("not a pickle\n")
    with pytest.raises(UnsafeFileError, match="text.pkl: truncated or not a pickle"):
        load_numpy_pickle(tmp_path / "text.pkl")
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        load_numpy_pickle(tmp_path / "missing.pkl")


def test_numpy_pickle_refuses_object_arrays(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"blobs": {"w": np.array([1, "a"], dtype=object)}}, protocol=2))
    with pytest.raises(UnsafeFileError, match="array of Python objects"):
        load_numpy_pickle(path)


@pytest.fixture
def fake_mmengine(monkeypatch):
    """A class saved under mmengine's module path, as mmengine checkpoints carry in ``message_hub``."""
    module = types.ModuleType("mmengine.logging.history_buffer")

    class HistoryBuffer:
        def __init__(self):
            self.history = np.arange(3.0)

    HistoryBuffer.__module__ = module.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    for name in ("mmengine", "mmengine.logging"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return HistoryBuffer


def test_torch_file_metadata_objects_become_inert(tmp_path, fake_mmengine):
    path = tmp_path / "mm.pth"
    torch.save({"meta": {"cfg": "model = dict()", "seed": np.int64(3)}, "state_dict": {"w": torch.ones(2)},
                "message_hub": {"log": fake_mmengine()}}, path)
    state = load_torch_file(path)
    assert torch.equal(state["state_dict"]["w"], torch.ones(2))
    assert state["meta"]["cfg"] == "model = dict()"
    assert isinstance(state["message_hub"]["log"], Inert)


def test_torch_file_refuses_other_globals_before_running_them(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": _WritesMarker(str(marker))}, path)
    with pytest.raises(UnsafeFileError, match=r"evil.pth: refused to load: it asks for the Python global"):
        load_torch_file(path)
    assert not marker.exists()


def test_torch_file_refuses_truncated(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"model_state": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UnsafeFileError, match="cut.pth: truncated or not a PyTorch checkpoint"):
        load_torch_file(path)
    assert os.path.getsize(path) == 300
