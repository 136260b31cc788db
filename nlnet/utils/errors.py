"""Errors a user can fix. Each message is one line that names the config key, file or value at fault
and what would be valid; ``nlnet.utils.cli`` prints it as ``error: ...`` (the one place where
exceptions become what a user sees)."""
from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input or environment, not in nlnet; its message is one line."""


class ConfigError(UserError, ValueError):
    """A config value or path the run cannot use; the message names the key."""


class DataError(UserError, ValueError):
    """An annotation file or dataset the run cannot use; the message names the file."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used (missing, damaged, truncated, another model's); the message names it."""


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (whitespace, including newlines, collapsed)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a ``raise ... from ...`` chain (e.g. under Hydra's wrappers)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc
