"""User-facing errors: one line that names the config key or path and the valid choices."""
from __future__ import annotations


class ConfigError(ValueError):
    """A config value or path the run cannot use; the message is one line naming the key."""


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace, including newlines, collapsed)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a ``raise ... from ...`` chain (e.g. under Hydra's wrappers)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc
