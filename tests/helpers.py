"""Helpers the tests import (``from helpers import ...``): paths, the tiny dataset's size, tiny training
overrides, config composition and the environment for running tools/*.py in a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")

# Tiny synthetic dataset: 3 classes, 4 training and 2 validation clips each, 8 frames of 32x32.
TINY_DATASET = dict(num_classes=3, train_per_class=4, val_per_class=2, num_frames=8, size=32, seed=0)


def tiny_overrides(data_root: str, run_dir: str | None = None) -> list[str]:
    """Command-line overrides turning the demo experiment into a seconds-long run on ``data_root``."""
    overrides = [
        "experiment=demo",
        f"data.root={data_root}",
        f"model.net.num_classes={TINY_DATASET['num_classes']}",
        "model.net.base_width=4",
        "model.net.dropout=0.0",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.num_frames=4",
        "data.sampling_rate=2",
        "data.train.crop_size=32",
        "data.train.train_scale=[32,40]",
        "data.val.test_scale=32",
        "data.val.test_crop_size=32",
        "data.val.num_clips=2",
        "data.val.num_crops=1",
        "trainer.max_iter=2",
        "trainer.checkpoint_period=1",
        "trainer.precise_bn_iters=1",
        "trainer.log_period=1",
        "trainer.num_threads=1",
        "trainer.progress_bar=false",
        "schedule.warmup_iters=1",
    ]
    if run_dir is not None:
        overrides.append(f"run_dir={run_dir}")
    return overrides


def compose(config_name: str = "train", overrides: list[str] = (), **options):
    """``hydra.compose`` of configs/<config_name>.yaml (outside ``@hydra.main``); ``options``: those of
    ``compose_config`` (``return_hydra_config``)."""
    from nlnet.config import compose_config

    return compose_config(config_name, overrides, config_dir=CONFIGS, **options)


def tool_env(*extra_paths: str) -> dict[str, str]:
    """Environment for running tools/*.py in a subprocess (nlnet importable, few threads)."""
    env = dict(os.environ)
    paths = [str(ROOT), *extra_paths, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("HYDRA_FULL_ERROR", None)
    return env


PYTHON = sys.executable


def run_in_session(cmd: list[str], *, timeout: float, cwd: str | Path = ROOT, **kwargs) -> tuple[int, str, str]:
    """Run ``cmd`` in its own session and return (exit code, stdout, stderr); one still running after
    ``timeout`` seconds (a hang) is killed with its children and fails the test."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=cwd, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout}s (a hang):\n{out[-3000:]}\n{err[-3000:]}") from None
    return proc.returncode, out, err
