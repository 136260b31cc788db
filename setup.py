"""nlnet: Non-local Neural Networks for video action recognition (Wang et al., CVPR 2018)."""
from setuptools import find_namespace_packages, find_packages, setup

# Versions that were installed and tested together (Python 3.10+, Linux). torch/torchvision come
# from this machine's local cache; pytorchvideo 0.1.5 is its latest release (its `transforms`
# module is never imported: it is broken against torchvision >= 0.17).
INSTALL_REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "pytorchvideo==0.1.5",
    "hydra-core==1.3.8",
    "omegaconf==2.3.1",
    "PyYAML==6.0.4",  # already required by omegaconf; read directly by the PySlowFast converter (stored cfg)
    "tensorboard==2.21.0",
    "av==18.1.0",
    "fvcore==0.1.5.post20221221",
    "iopath==0.1.10",
    "tqdm==4.70.1",
    "numpy==2.4.6",
    "matplotlib==3.11.2",
    # hydra/launcher=slurm|local (Hydra's submitit launcher; nlnet's launchers in hydra_plugins/)
    "hydra-submitit-launcher==1.2.0",
    "submitit==1.5.4",
]

# tools/export.py format=onnx (and its check=true): the torch.onnx (dynamo) exporter needs onnx and
# onnxscript; onnxruntime runs the check. onnxruntime 1.32 has no Python 3.10 wheel: 3.10 gets 1.23.2,
# the last release with one (not tested here: this machine has Python 3.11).
EXPORT_REQUIRE = [
    "onnx==1.23.2",
    "onnxscript==0.7.2",
    "onnxruntime==1.32.0; python_version >= '3.11'",
    "onnxruntime==1.23.2; python_version < '3.11'",
]
# dev includes export: CI (scripts/test.sh installs .[dev]) then runs the ONNX round trips instead of
# skipping them (about 45 MB of wheels).
# ruff and mypy: scripts/lint.sh (configured in pyproject.toml), with mypy's own dependencies pinned.
LINT_REQUIRE = ["ruff==0.17.6", "mypy==2.4.1", "mypy_extensions==1.2.0", "pathspec==1.1.1", "librt==0.17.0",
                "ast-serialize==0.13.1"]
DEV_REQUIRE = ["pytest==9.2.0", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0", "execnet==2.1.2", *LINT_REQUIRE,
               *EXPORT_REQUIRE]

setup(
    name="nlnet",
    version="0.1.0",
    description="Video action recognition with Non-local Neural Networks (C2D/I3D ResNets, 4 pairwise functions)",
    # hydra_plugins/: Hydra finds launchers in that namespace package only (an editable install needs
    # --config-settings editable_mode=compat for Hydra to list it: scripts/env.sh)
    packages=(find_packages(include=["nlnet", "nlnet.*"])
              + find_namespace_packages(include=["hydra_plugins.nlnet_launchers"])),
    package_data={"nlnet.resources": ["*.txt"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": DEV_REQUIRE, "export": EXPORT_REQUIRE},
)
