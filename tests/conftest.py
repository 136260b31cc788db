"""Shared fixtures: a tiny generated video dataset (helpers.py holds what tests import)."""
from __future__ import annotations

import pytest

from helpers import TINY_DATASET


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> str:
    """Root of a tiny synthetic dataset in the Kinetics layout (real H.264 files, written once)."""
    from nlnet.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_videos")
    make_synthetic_dataset(root, **TINY_DATASET)
    return str(root)
