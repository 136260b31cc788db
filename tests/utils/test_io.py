import os

import pytest

from nlnet.utils.io import atomic_path


def test_atomic_path_renames_on_success_and_keeps_the_extension(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.endswith(".json") and os.path.dirname(tmp) == str(target.parent)
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["out.json"]


def test_atomic_path_leaves_the_old_file_intact_when_the_writer_fails(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["ckpt.pt"]
