"""Crash-proof checkpoints: atomic writes, keep the last K plus the best, safe loading.

A checkpoint is a dict of tensors and plain containers only, so it loads with
``torch.load(weights_only=True)``: a tampered file cannot run code.
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Any

import torch

from nlnet.utils.io import atomic_path

_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")


def atomic_save(obj: Any, path: str) -> None:
    """Write ``obj`` with ``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def checkpoint_run_dir(path: str) -> str:
    """The run directory a checkpoint belongs to (the parent of its ``checkpoints/`` folder)."""
    directory = os.path.dirname(os.path.abspath(path))
    return os.path.dirname(directory) if os.path.basename(directory) == "checkpoints" else directory


class CheckpointManager:
    """Numbered checkpoints in one folder: ``checkpoint_<iteration>.pt``, the last ``keep_last`` kept,
    plus ``best.pt`` (a copy of the best one so far).

    Args:
        directory: the folder (created on first save).
        keep_last: how many numbered checkpoints to keep (older ones are deleted after a save).
    """

    def __init__(self, *, directory: str, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"trainer.keep_last={keep_last}: must be at least 1")
        self.directory = directory
        self.keep_last = keep_last

    def path(self, iteration: int) -> str:
        return os.path.join(self.directory, f"checkpoint_{iteration:07d}.pt")

    @property
    def best_path(self) -> str:
        return os.path.join(self.directory, "best.pt")

    def list(self) -> list[tuple[int, str]]:
        """(iteration, path) of every numbered checkpoint, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.directory, name)))
        return sorted(found)

    def latest(self) -> str | None:
        """The newest numbered checkpoint, or None."""
        found = self.list()
        return found[-1][1] if found else None

    def save(self, state: dict[str, Any], iteration: int) -> str:
        """Write ``state`` as the checkpoint of ``iteration`` and prune older ones beyond ``keep_last``."""
        path = self.path(iteration)
        atomic_save(state, path)
        for _, old in self.list()[: -self.keep_last]:
            os.remove(old)
        return path

    def mark_best(self, path: str) -> str:
        """Copy ``path`` to ``best.pt`` (atomically)."""
        with atomic_path(self.best_path) as tmp:
            shutil.copyfile(path, tmp)
        return self.best_path


def read_checkpoint_config(path: str) -> dict[str, Any]:
    """The resolved training config stored in a checkpoint (plain containers)."""
    state = load_checkpoint(path)
    if not isinstance(state.get("config"), dict):
        raise ValueError(f"checkpoint {path} holds no training config (not written by nlnet?)")
    return state["config"]


def rebase_paths(config: Any, old_root: str, new_root: str) -> Any:
    """A copy of a stored (resolved) config in which every string path under ``old_root`` is moved
    under ``new_root`` (e.g. the annotation files when a test run overrides ``data.root``)."""
    if isinstance(config, dict):
        return {k: rebase_paths(v, old_root, new_root) for k, v in config.items()}
    if isinstance(config, list):
        return [rebase_paths(v, old_root, new_root) for v in config]
    if isinstance(config, str) and old_root and (config == old_root or config.startswith(old_root.rstrip("/") + "/")):
        return new_root.rstrip("/") + config[len(old_root.rstrip("/")):]
    return config
