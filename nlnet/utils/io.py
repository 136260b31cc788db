"""Atomic file writes: nothing a crash interrupts is ever left half-written under its final name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    The temporary file keeps ``path``'s extension, so writers that pick a format from the name
    (matplotlib, PyAV, Pillow) work unchanged. Parent folders are created.

    Example::

        with atomic_path("results.json") as tmp:
            Path(tmp).write_text(text)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
