"""Plain-text logging: console and a log file in the run directory, from rank 0 only. While a progress
bar runs, console lines are written above it (``tqdm.contrib.logging.logging_redirect_tqdm``, entered
by the progress-bar hook)."""
from __future__ import annotations

import logging
import os
import sys

LOGGER_NAME = "nlnet"


def setup_logging(run_dir: str | None = None, *, rank: int = 0, filename: str = "log.txt") -> logging.Logger:
    """Configure the ``nlnet`` logger once per process.

    Args:
        run_dir: where ``filename`` is appended to (rank 0 only); None for console only.
        rank: distributed rank; other ranks log warnings and errors to the console only.
        filename: the log file's name inside ``run_dir``.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter(
        "[%(asctime)s %(levelname)s]" + (f" [rank {rank}]" if rank else "") + " %(message)s", "%H:%M:%S"
    )
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if run_dir is not None and rank == 0:
        os.makedirs(run_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(run_dir, filename))
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


def get_logger() -> logging.Logger:
    """The ``nlnet`` logger (configured by :func:`setup_logging`)."""
    return logging.getLogger(LOGGER_NAME)
