"""The offline GPU machine's wheel set: the offline check (dev.wheels) and dev/gpu_wheels.sh."""
import socket
import subprocess
import zipfile

import pytest

from helpers import PYTHON, ROOT, tool_env
from dev.wheels import DEVICE_WHEELS, check_wheels, read_package_list


def make_wheel(folder, filename, requires=(), requires_python=None):
    """A wheel file holding only its METADATA (what the check reads)."""
    name, version = filename.split("-")[:2]
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Python: {requires_python}"] if requires_python else []
    lines += [f"Requires-Dist: {r}" for r in requires]
    with zipfile.ZipFile(folder / filename, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")


WANTED = ["alpha==1.0", "beta==2.0"]


def good_set(folder):
    make_wheel(folder, "alpha-1.0-py3-none-any.whl", ["beta>=2", "numpy", "gamma; extra == 'dev'",
                                                      "typing; python_version < '3.5'"], ">=3.8")
    make_wheel(folder, "beta-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")


def test_a_consistent_set_has_no_problems(tmp_path):
    good_set(tmp_path)
    assert check_wheels(tmp_path, wanted=WANTED) == []


@pytest.mark.parametrize("extra, problem", [
    (("beta-2.1-py3-none-any.whl", []), "beta: two versions, 2.0 and 2.1 (keep one)"),
    (("delta-1.0-cp311-cp311-win_amd64.whl", []), "delta-1.0-cp311-cp311-win_amd64.whl: no tag CPython 3.12"),
    (("delta-1.0-py3-none-any.whl", ["epsilon>=1"]), "delta needs epsilon>=1, which neither the folder nor"),
    (("delta-1.0-py3-none-any.whl", ["beta<2"]), "delta needs beta<2, the folder has 2.0"),
])
def test_problems_are_named(tmp_path, extra, problem):
    good_set(tmp_path)
    make_wheel(tmp_path, extra[0], extra[1])
    problems = check_wheels(tmp_path, wanted=WANTED)
    assert any(p.startswith(problem) for p in problems), problems


def test_missing_and_wrong_python_are_named(tmp_path):
    make_wheel(tmp_path, "alpha-1.0-py3-none-any.whl", requires_python=">=3.13")
    problems = check_wheels(tmp_path, wanted=WANTED)
    assert "alpha-1.0-py3-none-any.whl: Requires-Python >=3.13 excludes 3.12" in problems
    assert "beta==2.0: missing (have none)" in problems


def test_the_machine_packages_come_from_a_pip_freeze(tmp_path):
    good_set(tmp_path)
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# the GPU machine\nnumpy==2.4.6\ntorch @ file:///wheels/torch.whl\n")
    assert read_package_list(freeze) == {"numpy", "torch"}
    assert check_wheels(tmp_path, wanted=WANTED, device_has=read_package_list(freeze)) == []
    freeze.write_text("Package Version\n------- -------\ntorch   2.14.1\n")
    assert read_package_list(freeze) == {"torch"}
    problems = check_wheels(tmp_path, wanted=WANTED, device_has=read_package_list(freeze))
    assert problems == ["alpha needs numpy, which neither the folder nor the machine has"]


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable")
def test_gpu_wheels_script_downloads_an_installable_set(tmp_path):
    folder = tmp_path / "wheels"
    proc = subprocess.run(["bash", str(ROOT / "dev" / "gpu_wheels.sh"), str(folder)], cwd=ROOT,
                          env=dict(tool_env(), PYTHON=PYTHON), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert check_wheels(folder) == []
    assert len(list(folder.glob("*.whl"))) == len(DEVICE_WHEELS)
    assert sum(p.stat().st_size for p in folder.glob("*.whl")) < 48 * 2 ** 20  # the device carries 64 MiB in all
    assert f"--target /tmp/site {folder}/*.whl && export PYTHONPATH=/tmp/site" in proc.stdout
