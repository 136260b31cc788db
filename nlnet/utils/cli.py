"""The one place where exceptions become what a user sees. Every tool runs its main function through
:func:`run_main`: an error the user can fix prints one line ``error: ...`` on stderr and exits with
status 2; any other error (a bug) keeps its traceback and exits with status 1."""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, NoReturn

from nlnet.utils.errors import UserError, one_line

# OSErrors about the machine, not nlnet: a full disk, a read-only or forbidden folder.
_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
_USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                FloatingPointError)  # a non-finite loss (nlnet.engine.trainer.NonFiniteLossError)


def user_message(exc: BaseException) -> str | None:
    """The one line shown for an error the user can fix; None for any other error."""
    if isinstance(exc, _USER_ERRORS):
        return one_line(exc)
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        return one_line(exc)
    from nlnet.config import describe_error  # Hydra's and OmegaConf's errors; imported only on an error

    return describe_error(exc)


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with status 2."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(2)


def quote_path_overrides(args: Sequence[str], keys: Sequence[str]) -> list[str]:
    """Command-line overrides with the values of path keys quoted for Hydra's grammar, so that a path
    with ``=`` or ``,`` (a run folder named after its overrides) needs no quoting by the user."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") in keys and value and value[0] not in "'\"" and re.search(r"[^\w./-]", value):
            value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)  # escape quotes
            value = "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value) + "'"
        out.append(key + sep + value)
    return out


def submit_plain_run(args: Sequence[str]) -> list[str]:
    """Command-line arguments with which a plain run that names a launcher (``hydra/launcher=slurm``)
    is submitted through it: Hydra uses a launcher for ``--multirun`` only, so the run becomes a
    one-row sweep whose run folder is the plain run's own (``hydra.run.dir``). Other arguments are
    returned unchanged."""
    if any(a in ("-m", "--multirun") for a in args) or not any(a.startswith("hydra/launcher=") for a in args):
        return list(args)
    return ["--multirun", "hydra.sweep.dir=${hydra.run.dir}", "hydra.sweep.subdir=.", *args]


class one_line_errors(contextlib.ContextDecorator):
    """Inside (or, as ``@one_line_errors()``, around a function): an error the user can fix ends the
    process with one line ``error: ...`` on stderr and exit status 2; other errors propagate.

    A ``@hydra.main`` function needs it around its body (Hydra reports a job's exceptions itself);
    :func:`run_main` applies it around everything else. ``NLNET_FULL_ERROR=1`` (or
    ``HYDRA_FULL_ERROR=1``) keeps every traceback. A class, not a generator, so that a decorated
    function can be pickled (a submitit job runs the tool's ``main``).
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if not isinstance(exc, Exception) or os.environ.get("NLNET_FULL_ERROR") == "1":
            return False
        message = user_message(exc)
        if message is None:
            return False
        fail(message)


def run_main(main: Callable[[], Any], *, path_keys: Sequence[str] = ()) -> None:
    """Run a tool's main function (``@hydra.main`` or plain) inside :func:`one_line_errors`; errors
    Hydra raises while composing the config (unknown key or option, unset ``???`` value) are one
    line too.

    Args:
        main: the tool's main function.
        path_keys: config keys that hold paths; their command-line values are quoted for Hydra
            (see :func:`quote_path_overrides`).
    """
    sys.argv[1:] = submit_plain_run(quote_path_overrides(sys.argv[1:], path_keys))
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["NLNET_FULL_ERROR"] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own multi-line report
    with one_line_errors():
        main()


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line through :func:`run_main` (not usage text plus a message)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (usage: {self.prog} --help)")

    def require(self, name: str, value: float, low: float, high: float | None = None) -> None:
        """Fail with one line naming the option unless ``low <= value <= high``."""
        if value < low or (high is not None and value > high):
            self.error(f"{name} {value}: must be at least {low}" + (f" and at most {high}" if high is not None else ""))
