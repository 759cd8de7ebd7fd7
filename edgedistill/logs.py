"""How the command line shows what the library logs, and quiets TensorFlow's own chatter.

Library modules log through ``logging.getLogger(__name__)`` and never configure logging;
only the CLI calls :func:`configure_cli_output` (a notebook or an application keeps its own
logging set-up, and importing edgedistill changes nothing process-wide).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

# Loggers of libraries whose INFO/WARNING lines are noise in a command's output.
_FOREIGN_LOGGERS = ("tensorflow", "absl", "h5py", "tf_keras", "keras", "jax")


class _Handler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (click's test runner swaps it per invocation)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
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
    # The converter's note on an int8 model whose input statistics come from calibration, as intended.
    warnings.filterwarnings("ignore", message=r"Statistics for quantized inputs were expected")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


# Lines TensorFlow's native libraries write straight to file descriptor 2 before absl logging
# is set up (so TF_CPP_MIN_LOG_LEVEL cannot hide them): oneDNN and CUDA notices on a CPU-only
# machine, CPU-feature advice, converter statistics.
NATIVE_NOISE = re.compile(
    r"^(?:[IW]\d{4} \S+\s+\d+ \S+:\d+\]"  # absl/glog info and warning lines
    r"|E\d{4} \S+\s+\d+ cuda\w*\.cc:\d+\] failed call to cuInit"  # "no GPU" reported as an error
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions:"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU"
    r"|fully_quantize: \d+, inference_type: "  # the converter's calibration summary
    r")"
)


def filter_native_stderr() -> None:
    """Route file descriptor 2 through a filter that drops :data:`NATIVE_NOISE` lines.

    Used by the console entry point only (never on import, never under a test runner): a
    thread copies every other line to the real stderr; an exit handler drains it.
    """
    read_end, write_end = os.pipe()
    real_stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy() -> None:
        with os.fdopen(read_end, "rb") as source:
            for line in source:
                if not NATIVE_NOISE.match(line.decode("utf-8", "replace")):
                    os.write(real_stderr, line)

    thread = threading.Thread(target=copy, name="edgedistill-stderr-filter", daemon=True)
    thread.start()

    def drain() -> None:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # closes the pipe's last write end: the thread sees EOF
        thread.join(timeout=5)

    atexit.register(drain)


__all__ = ["configure_cli_output", "filter_native_stderr", "NATIVE_NOISE"]
