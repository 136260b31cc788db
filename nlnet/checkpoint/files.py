"""Crash-proof checkpoints: atomic writes, keep the last K plus the best, verified and safe loading.

A checkpoint is a dict of tensors and plain containers only, so it loads with
``torch.load(weights_only=True)``: a tampered file cannot run code. Two checksums guard it: the
CRC-32 ``torch.save`` writes for every record of its zip archive (checked before unpickling), and a
SHA-256 of the whole payload that :func:`atomic_save` stores under ``"checksum"`` (checked against
what was loaded, which also catches damage to the archive's directory). A damaged, truncated, empty
or foreign file is refused with one line naming it; auto-resume falls back to the newest intact
checkpoint. Checkpoints written before the payload checksum existed load as before.
"""
from __future__ import annotations

import builtins
import hashlib
import os
import pickle
import re
import zipfile
from typing import Any

import torch
import torch.nn as nn

from nlnet.utils.errors import CheckpointError, one_line
from nlnet.utils.io import atomic_path, remove_stale_temporaries

_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")


CHECKSUM_KEY = "checksum"


def payload_checksum(obj: Any) -> str:
    """``sha256:<hex>`` of a checkpoint's content: every tensor's dtype, shape and bytes, every key and
    plain value, in order (what ``torch.load`` gives back, whatever the file's layout)."""
    digest = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().contiguous()
            digest.update(f"T{x.dtype}{tuple(x.shape)}".encode())
            digest.update(x.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, dict):
            digest.update(f"D{len(x)}".encode())
            for key, value in x.items():
                feed(key)
                feed(value)
        elif isinstance(x, (list, tuple)):
            digest.update(f"{type(x).__name__}{len(x)}".encode())
            for value in x:
                feed(value)
        else:
            digest.update(f"{type(x).__name__}:{x!r};".encode())

    feed(obj)
    return "sha256:" + digest.hexdigest()


def atomic_save(obj: Any, path: str) -> None:
    """Write ``obj`` with ``torch.save`` to a temporary file beside ``path``, then rename it over ``path``.
    A dict gets its :func:`payload_checksum` under ``"checksum"``."""
    if isinstance(obj, dict):
        payload = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
        obj = {**payload, CHECKSUM_KEY: payload_checksum(payload)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def verify_checkpoint(path: str) -> None:
    """Check that ``path`` is an intact ``torch.save`` archive: not empty, and every record matching its
    CRC-32. Files of torch's legacy (non-zip) format have no checksum and pass.

    Raises:
        FileNotFoundError: naming ``path``.
        CheckpointError: naming ``path`` and the damage.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted copy?)")
    try:
        if not zipfile.is_zipfile(path):
            return  # truncated, text, or torch's legacy format: torch.load decides
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0 and info.file_size > 0:
                    continue  # written with torch.serialization.set_crc32_options(False)
                with archive.open(info) as record:  # zipfile raises on a CRC mismatch at the end
                    while record.read(1 << 22):
                        pass
    except Exception as e:  # zipfile raises BadZipFile, NotImplementedError, RuntimeError, ... on damage
        raise CheckpointError(f"checkpoint {path} is damaged ({one_line(e)}); use another checkpoint") from None


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify (:func:`verify_checkpoint`) and load a checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: naming ``path`` when it does not exist.
        CheckpointError: naming ``path``: damaged, truncated, not a checkpoint, or holding objects
            other than tensors and plain containers (which could run code).
    """
    verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... on truncated or foreign files
        if isinstance(e, pickle.UnpicklingError) and zipfile.is_zipfile(path):  # an intact archive (checked above)
            raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain containers: "
                                  "refused, since loading it could run code") from e
        raise CheckpointError(f"checkpoint {path} cannot be loaded: truncated, damaged or not a checkpoint "
                              f"({type(e).__name__}: {_first_sentence(e)})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is not None and stored != payload_checksum(state):
        raise CheckpointError(f"checkpoint {path} is damaged (its content does not match the checksum stored "
                              "in it); use another checkpoint")
    return state


def require_training_state(state: dict[str, Any], path: str, *, entries: tuple[str, ...] = ("model", "iteration"),
                           use: str = "resume") -> dict[str, Any]:
    """``state`` when it holds ``entries`` (what nlnet's training writes), else one line naming ``path``.

    Raises:
        CheckpointError: a bare ``state_dict`` (tensors only) or another program's file.
    """
    missing = [key for key in entries if key not in state]
    if missing:
        bare = bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())
        found = f"a bare state_dict of {len(state)} tensors" if bare else \
            "no " + " or ".join(repr(key) for key in missing) + " entry"
        raise CheckpointError(f"{use}={path}: not a checkpoint of an nlnet run ({found}); pass a "
                              "checkpoints/checkpoint_*.pt or best.pt written by nlnet's training")
    return state


def _first_sentence(exc: BaseException) -> str:
    return one_line(exc).split(". ")[0]


def load_model_state(model: nn.Module, state: dict[str, Any], path: str) -> None:
    """``model.load_state_dict(state["model"])`` with one line naming ``path`` when it does not fit.

    Raises:
        CheckpointError: no ``model`` entry, or keys or shapes that differ from the model's.
    """
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {path} has no 'model' entry (not written by nlnet?)")
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    reshaped = [k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or reshaped:
        parts = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
                 ((missing, "missing keys"), (unexpected, "unexpected keys"), (reshaped, "tensors of another shape"))
                 if keys]
        raise CheckpointError(f"checkpoint {path} does not fit the model (another model's checkpoint?): "
                              + ", ".join(parts))
    model.load_state_dict(weights)


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

    def load_latest(
            self, map_location: str | torch.device = "cpu") -> tuple[str | None, dict | None, builtins.list[str]]:
        """The newest intact checkpoint: ``(path, state, skipped)``, ``skipped`` the messages of the newer
        ones that are damaged; ``(None, None, skipped)`` when there is none."""
        skipped: builtins.list[str] = []
        for _, path in reversed(self.list()):
            try:
                return path, load_checkpoint(path, map_location), skipped
            except CheckpointError as e:
                skipped.append(str(e))
        return None, None, skipped

    def remove_temporaries(self) -> builtins.list[str]:
        """Delete what interrupted writes left in the folder (only while this process owns it)."""
        return remove_stale_temporaries(self.directory)

    def save(self, state: dict[str, Any], iteration: int) -> str:
        """Write ``state`` as the checkpoint of ``iteration`` and prune older ones beyond ``keep_last``."""
        path = self.path(iteration)
        atomic_save(state, path)
        for _, old in self.list()[: -self.keep_last]:
            os.remove(old)
        return path


def read_checkpoint_config(path: str) -> dict[str, Any]:
    """The resolved training config stored in a checkpoint (plain containers)."""
    state = load_checkpoint(path)
    if not isinstance(state.get("config"), dict):
        raise CheckpointError(f"checkpoint {path} holds no training config (not written by nlnet?)")
    return state["config"]
