"""How the command line shows what the library logs, and quiets TensorFlow's own chatter.

Library modules log through ``logging.getLogger(__name__)`` and never configure logging;
only the CLI calls :func:`configure_cli_output` (a notebook or an application keeps its own
logging set-up, and importing edgedistill changes nothing process-wide).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# Loggers of libraries whose INFO/WARNING lines are noise in a command's output.
_FOREIGN_LOGGERS = ("tensorflow", "absl", "h5py", "tf_keras", "keras", "jax")


class _Handler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (click's test runner swaps it per invocation)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_cli_output(*, verbosity: int = 0, quiet: bool = False) -> None:
    """Log edgedistill's progress to stderr; hide TensorFlow's start-up and converter chatter.

    ``quiet``: warnings and errors only. ``verbosity`` 1: debug lines too; 2: also
    TensorFlow's own logs.
    """
    level = logging.WARNING if quiet else logging.DEBUG if verbosity >= 1 else logging.INFO
    package = logging.getLogger("edgedistill")
    if not any(isinstance(handler, _Handler) for handler in package.handlers):
        handler = _Handler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)
    package.setLevel(level)
    package.propagate = False
    if verbosity >= 2:
        return
    # Before TensorFlow is imported: its C++ logging reads this once (CUDA notices, converter lines).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in _FOREIGN_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # tf_keras warns that HDF5 is legacy on every QAT save; HDF5 is chosen on purpose (see pipeline).
    warnings.filterwarnings("ignore", message=r".*HDF5 file.*legacy.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


__all__ = ["configure_cli_output"]
