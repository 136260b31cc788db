"""Atomic writes, the clean-up of interrupted ones, and the folder lock."""
import os
import socket
import subprocess
import sys

import pytest

from nlnet.utils.errors import UserError
from nlnet.utils.io import atomic_path, exclusive_lock, remove_stale_temporaries


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


def test_a_folder_lock_refuses_a_second_writer_and_is_released(tmp_path):
    with exclusive_lock(tmp_path) as previous:
        assert previous is None
        holder = (tmp_path / ".lock").read_text()
        assert holder == f"pid {os.getpid()} on {socket.gethostname()}\n"
        # a second writer (another process in real use; another open file is enough for the kernel lock)
        with pytest.raises(UserError, match=f"{tmp_path} is in use by pid {os.getpid()} on .* \\(lock file"):
            with exclusive_lock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()
    with exclusive_lock(tmp_path):  # free again
        pass


@pytest.mark.slow
def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; from nlnet.utils.io import exclusive_lock\n"
                             f"with exclusive_lock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=f"in use by pid {proc.pid} on"):
        with exclusive_lock(tmp_path):
            pass
    proc.kill()  # SIGKILL: the lock file stays, the kernel lock goes
    proc.wait()
    assert (tmp_path / ".lock").exists()
    with exclusive_lock(tmp_path) as previous:
        assert previous == f"pid {proc.pid} on {socket.gethostname()}"


def test_stale_temporaries_of_interrupted_writes_are_removed(tmp_path):
    (tmp_path / ".tmp-a1b2.pt").write_bytes(b"half")
    (tmp_path / "keep.pt").write_bytes(b"whole")
    (tmp_path / ".tmp-dir").mkdir()
    assert remove_stale_temporaries(tmp_path) == [str(tmp_path / ".tmp-a1b2.pt")]
    assert sorted(os.listdir(tmp_path)) == [".tmp-dir", "keep.pt"]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_path_files_get_the_usual_permissions(tmp_path):
    # mkstemp creates 0600 files; results, checkpoints and videos must be as readable as any file
    # the process creates (0666 minus the umask), e.g. by a team sharing a run folder.
    target = tmp_path / "results.json"
    old = os.umask(0o022)
    try:
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("{}")
    finally:
        os.umask(old)
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
