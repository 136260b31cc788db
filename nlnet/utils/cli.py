"""What the thin tools share: user errors end the process with one line, not a traceback."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from nlnet.utils.errors import ConfigError, one_line, root_cause


def describe_config_error(exc: BaseException) -> str:
    """One line for an error raised while composing the config (Hydra/OmegaConf)."""
    cause = root_cause(exc)
    full_key = getattr(cause, "full_key", None)
    if str(exc).startswith("Could not override") and full_key and "not in struct" in str(cause):
        return f"unknown config key '{full_key}' (check its spelling; to add a new key write +{full_key}=VALUE)"
    return one_line(exc)


USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError, FloatingPointError)


def _exit(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Inside a tool's main function: a config error, a missing file or a non-finite loss prints one
    line (``error: ...``) on stderr and exits with status 2 (other errors keep their traceback)."""
    if os.environ.get("NLNET_FULL_ERROR") == "1":
        yield
        return
    try:
        yield
    except USER_ERRORS as exc:
        _exit(one_line(exc))


def run_main(main: Callable[[], Any]) -> None:
    """Call a ``@hydra.main`` function; an error while composing the config (unknown key, unknown
    group option) prints one line on stderr and exits with status 2. ``HYDRA_FULL_ERROR=1`` keeps
    Hydra's full report."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        os.environ["NLNET_FULL_ERROR"] = "1"
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let exceptions reach us instead of Hydra's multi-line report
    try:
        main()
    except USER_ERRORS as exc:
        _exit(one_line(exc))
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("hydra", "omegaconf"):
            _exit(describe_config_error(exc))
        raise
