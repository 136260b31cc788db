"""Using a trained model imports no training code, Hydra or TensorBoard."""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import tool_env

HEAVY = ("nlnet.engine", "hydra", "omegaconf", "tensorboard", "torch.utils.tensorboard")


@pytest.mark.slow
@pytest.mark.parametrize("module", ["nlnet.inference", "nlnet.checkpoint.restore", "nlnet.models.convert"])
def test_importing_loads_no_training_code(module):
    code = (f"import sys, {module}\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m.startswith({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tool_env(), check=True)
    assert result.stdout.strip() == "[]", f"import {module} loaded {result.stdout.strip()}"
