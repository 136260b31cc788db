"""Loading checkpoint files of other projects without running their code.

* Caffe2 ``.pkl`` files (the official release, PySlowFast's Caffe2 model zoo) are Python 2 pickles of
  a dict of numpy arrays. :func:`load_numpy_pickle` unpickles them with an allow-list of globals
  (numpy's array and dtype reconstructors, ``OrderedDict``): any other global, e.g. ``os.system`` in
  a tampered file, is refused when the unpickler meets it, before anything is called.
* PyTorch files (PySlowFast ``.pyth``, mmaction2 ``.pth``, pytorchvideo ``.pyth``) load with
  ``torch.load(weights_only=True)``. Their metadata may hold objects of the training framework
  (mmengine's ``HistoryBuffer`` in ``message_hub``, numpy scalars, ...); :func:`load_torch_file`
  loads those as inert placeholders (:class:`Inert`) when they come from an allow-listed namespace,
  and refuses any other global with one line naming it.
"""
from __future__ import annotations

import codecs
import collections
import io
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from nlnet.utils.errors import CheckpointError

__all__ = ["UnsafeFileError", "Inert", "load_numpy_pickle", "load_torch_file", "is_zip_file"]


class UnsafeFileError(CheckpointError):
    """A checkpoint file that is damaged, truncated or would run code when loaded (one line)."""


def _numpy_global(module: str, name: str) -> Any:
    """numpy's reconstructors, wherever a pickle's numpy version put them (numpy 1.x ``numpy.core``,
    numpy 2.x ``numpy._core``)."""
    core = getattr(np, "_core", None) or np.core
    return {"_reconstruct": core.multiarray._reconstruct, "scalar": core.multiarray.scalar,
            "_frombuffer": getattr(core.numeric, "_frombuffer", None)}.get(name)


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")
_PLAIN = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
# OrderedDict, and bytes as Python 3 writes them at protocol 2 (a pure function of str and codec name)
_CONTAINERS = {("collections", "OrderedDict"): collections.OrderedDict, ("_codecs", "encode"): codecs.encode}


class _NumpyUnpickler(pickle.Unpickler):
    """Resolves only numpy array/dtype reconstructors, ``OrderedDict`` and ``codecs.encode``; refuses every
    other global."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and _numpy_global(module, name) is not None:
            return _numpy_global(module, name)
        if (module, name) in _PLAIN:
            return _PLAIN[(module, name)]
        if (module, name) in _CONTAINERS:
            return _CONTAINERS[(module, name)]
        raise UnsafeFileError(f"refused to load: it asks for the Python global {module}.{name}, which could "
                              "run code (a Caffe2 checkpoint holds only numpy arrays and plain containers)")


def _read(path: str | os.PathLike) -> bytes:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        return f.read()


def load_numpy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a (Python 2 or 3) pickle of numpy arrays and plain containers, refusing anything else.

    Raises:
        UnsafeFileError: the file asks for a global outside the allow-list (nothing was executed), is
            truncated or is not a pickle, or holds object arrays.
    """
    data = _read(path)
    try:
        obj = _NumpyUnpickler(io.BytesIO(data), encoding="latin1").load()  # latin1: Python 2 str -> bytes
    except UnsafeFileError as exc:
        raise UnsafeFileError(f"{path}: {exc}") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise UnsafeFileError(f"{path}: truncated or not a pickle of numpy arrays "
                              f"({type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'})") from None
    _refuse_object_arrays(obj, str(path))
    return obj


def _refuse_object_arrays(obj: Any, path: str) -> None:
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else [obj]
    for value in values:
        if isinstance(value, np.ndarray) and value.dtype == object:
            raise UnsafeFileError(f"{path}: holds an array of Python objects, not numbers")
        if isinstance(value, (dict, list, tuple)):
            _refuse_object_arrays(value, path)


class Inert:
    """Placeholder for a metadata object of another framework: accepts any arguments and state,
    runs nothing, keeps nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "Inert()"


# Namespaces whose objects may appear in a checkpoint's metadata (never in its weights).
METADATA_NAMESPACES = ("mmengine.", "mmcv.", "mmaction.", "numpy.", "fvcore.", "yacs.", "iopath.", "collections.",
                       "argparse.", "builtins.set", "builtins.slice", "_codecs.encode")
_UNSUPPORTED = re.compile(r"GLOBAL ([\w.]+) (?:was not an allowed global|whose module)")


def is_zip_file(path: str | os.PathLike) -> bool:
    """True for PyTorch's zip checkpoint format (``torch.save`` since 1.6)."""
    return zipfile.is_zipfile(os.fspath(path))


def load_torch_file(path: str | os.PathLike, *, max_placeholders: int = 64) -> Any:
    """``torch.load(path, weights_only=True)``, with allow-listed metadata globals loaded as :class:`Inert`.

    Raises:
        UnsafeFileError: the file is truncated/damaged, or needs a global outside the metadata
            namespaces (named in the message).
    """
    _read(path)  # FileNotFoundError naming the path
    placeholders: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = []
    for _ in range(max_placeholders + 1):
        try:
            with torch.serialization.safe_globals(placeholders):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            match = _UNSUPPORTED.search(str(exc))
            if match is None:
                raise UnsafeFileError(f"{path}: cannot be loaded safely ({_first_line(exc)})") from None
            name = match.group(1)
            if not name.startswith(METADATA_NAMESPACES):
                raise UnsafeFileError(f"{path}: refused to load: it asks for the Python global {name}, which could "
                                      "run code (checkpoints hold tensors and plain containers)") from None
            placeholders.append((type(name, (Inert,), {}), name))
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise UnsafeFileError(f"{path}: truncated or not a PyTorch checkpoint ({_first_line(exc)})") from None
    raise UnsafeFileError(f"{path}: more than {max_placeholders} framework objects in its metadata")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
