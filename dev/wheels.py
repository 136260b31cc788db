"""Wheels for a GPU machine without network (``dev/gpu_wheels.sh``), and an offline check that they install.

A machine that reaches no package index but has a CUDA build of PyTorch (with torchvision, numpy and
the usual scientific stack) still lacks what nlnet also imports: PyAV, Hydra/OmegaConf, pytorchvideo
and fvcore/iopath. :data:`DEVICE_WHEELS` are those and the dependencies of theirs such a machine
usually lacks, pinned as setup.py pins them (the transitive ones as this project's environment has
them). :func:`check_wheels` verifies a folder of wheels without network: one version per package,
every wheel installable on the target's CPython / manylinux x86-64, every requirement met by a wheel
of the folder or by a package the machine has (``--machine-has``: the output of ``pip freeze`` or
``pip list`` there, or one name per line; default :data:`ASSUMED_PRESENT`).

    python -m dev.wheels list binary|source                      # the requirements, for the shell script
    python -m dev.wheels check .whl [--machine-has FREEZE.txt]   # problems, one per line; exit 1 if any
"""
from __future__ import annotations

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

# Published as wheels (PyAV's bundles FFmpeg with libx264).
BINARY = ["av==18.1.0", "hydra-core==1.3.8", "omegaconf==2.3.1", "yacs==0.1.8", "termcolor==3.3.0",
          "parameterized==0.9.0"]
# Published only as source distributions: pure Python, built into py3-none-any wheels here.
SOURCE = ["antlr4-python3-runtime==4.9.3", "pytorchvideo==0.1.5", "fvcore==0.1.5.post20221221", "iopath==0.1.10"]
DEVICE_WHEELS = BINARY + SOURCE

PYTHON = (3, 12)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"]
MARKER_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}

# What the target machine is assumed to have when no list of its packages is given (--machine-has):
# PyTorch, and those of the packages CUDA PyTorch images commonly ship that the wheels above require.
ASSUMED_PRESENT = frozenset(canonicalize_name(n) for n in """
torch torchvision numpy pillow pyyaml tqdm tabulate typing-extensions portalocker networkx packaging filelock
sympy jinja2 fsspec matplotlib tensorboard pytest
""".split())


def read_package_list(path: str | Path) -> frozenset[str]:
    """Package names of a ``pip freeze`` / ``pip list`` output or of a one-name-per-line file."""
    names = set()
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "Package", "---")):
            continue
        names.add(canonicalize_name(line.replace(" @ ", "==").split("==")[0].split()[0]))
    return frozenset(names)


def supported_tags() -> set[Tag]:
    """Wheel tags CPython 3.12 accepts on manylinux x86-64 (cp312, abi3, py3-none-any...)."""
    return set(cpython_tags(PYTHON, platforms=PLATFORMS)) | set(compatible_tags(PYTHON, "cp312", PLATFORMS))


def metadata(path: Path) -> dict[str, list[str]]:
    """Requires-Python and Requires-Dist of a wheel (its .dist-info/METADATA)."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        message = Parser().parsestr(archive.read(name).decode("utf-8"))
    return {"requires_python": message.get_all("Requires-Python") or [],
            "requires": message.get_all("Requires-Dist") or []}


def check_wheels(directory: str | Path, *, wanted: list[str] = DEVICE_WHEELS,
                 device_has: frozenset[str] = ASSUMED_PRESENT) -> list[str]:
    """Problems that would stop ``pip install --no-index --no-deps *.whl`` from giving a working set."""
    directory = Path(directory)
    problems: list[str] = []
    found: dict[str, tuple[str, Path]] = {}
    tags = supported_tags()
    for path in sorted(directory.glob("*.whl")):
        name, version, _, wheel_tags = parse_wheel_filename(path.name)
        if name in found:
            problems.append(f"{name}: two versions, {found[name][0]} and {version} (keep one)")
        found[name] = (str(version), path)
        if not wheel_tags & tags:
            problems.append(f"{path.name}: no tag CPython 3.12 on manylinux x86-64 accepts")
    for requirement in map(Requirement, wanted):
        have = found.get(canonicalize_name(requirement.name))
        if have is None or have[0] not in requirement.specifier:
            problems.append(f"{requirement}: missing (have {have[0] if have else 'none'})")
    for name, (version, path) in sorted(found.items()):
        meta = metadata(path)
        for spec in meta["requires_python"]:
            if "3.12.3" not in SpecifierSet(spec):
                problems.append(f"{path.name}: Requires-Python {spec} excludes 3.12")
        for line in meta["requires"]:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(MARKER_ENV):
                continue  # an extra, or another Python / platform
            dep = canonicalize_name(requirement.name)
            if dep in found:
                if found[dep][0] not in requirement.specifier:
                    problems.append(f"{name} needs {requirement}, the folder has {found[dep][0]}")
            elif dep not in device_has:
                problems.append(f"{name} needs {requirement}, which neither the folder nor the machine has")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "list" and argv[1] in ("binary", "source"):
        print("\n".join(BINARY if argv[1] == "binary" else SOURCE))
        return 0
    if len(argv) in (2, 4) and argv[0] == "check" and (len(argv) == 2 or argv[2] == "--machine-has"):
        device_has = read_package_list(argv[3]) if len(argv) == 4 else ASSUMED_PRESENT
        problems = check_wheels(argv[1], device_has=device_has)
        wheels = sorted(Path(argv[1]).glob("*.whl"))
        size = sum(p.stat().st_size for p in wheels) / 2 ** 20
        for problem in problems:
            print(f"problem: {problem}")
        print(f"{len(wheels)} wheels, {size:.1f} MiB: {'installable' if not problems else 'NOT installable'} "
              f"on CPython 3.12 / manylinux x86-64 beside the machine's packages")
        return 1 if problems else 0
    print("usage: python -m dev.wheels list binary|source | check DIR [--machine-has FILE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
