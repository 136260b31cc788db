"""Atomic file writes (nothing a crash interrupts is ever left half-written under its final name), the
clean-up of what interrupted writes leave behind, and a folder lock for one writer."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator

from nlnet.utils.errors import ConfigError, UserError


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
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX, suffix=os.path.splitext(path)[1])
    except OSError as e:  # name the file the user asked for, not the temporary one
        if e.errno == errno.EEXIST:  # makedirs: a file has the folder's name
            raise NotADirectoryError(errno.ENOTDIR, f"cannot write {path}: {directory} is a file, not a folder") \
                from None
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}") from None
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make every result readable by its owner only
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


TEMPORARY_PREFIX = ".tmp-"


def require_folder(path: str | os.PathLike, *, key: str) -> None:
    """Refuse with one line naming the config key when ``path`` exists and is not a folder.

    Raises:
        ConfigError: ``path`` is a file (or another non-folder).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{key}={os.fspath(path)}: is a file, not a folder; pass a folder (created if missing)")


def _umask() -> int:
    """The process's file-creation mask: from /proc (Linux) without touching it, else by setting and
    restoring it."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Delete the temporary files ``atomic_path`` left in ``directory`` when a write was interrupted
    (a killed process). Call it only while no other process writes there (see ``exclusive_lock``)."""
    removed: list[str] = []
    with contextlib.suppress(FileNotFoundError), os.scandir(os.fspath(directory)) as entries:
        for entry in entries:
            if entry.name.startswith(TEMPORARY_PREFIX) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)
                    removed.append(entry.path)
    return sorted(removed)


@contextlib.contextmanager
def exclusive_lock(directory: str | os.PathLike) -> Iterator[str | None]:
    """Hold ``<directory>/.lock`` so that a second process cannot write into the same folder.

    The lock is a kernel lock (``flock``) on the file, released however the holder ends (even by
    SIGKILL); the file names the holder (pid and host) for the message a second process gets. A
    lock file left by a holder that is gone is taken over: the context yields its text (else None).

    Raises:
        UserError: another live process holds the folder (the message names it and the folder).
    """
    path = os.path.join(os.fspath(directory), ".lock")
    os.makedirs(os.fspath(directory), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{directory} is in use by {holder} (lock file {path}); wait for it to finish, stop "
                            "it, or write somewhere else") from None
        if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
            break  # else the holder removed the file while we waited for it: lock the new one
        os.close(fd)
    previous = os.read(fd, 200).decode(errors="replace").strip() or None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    try:
        yield previous
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        os.close(fd)
