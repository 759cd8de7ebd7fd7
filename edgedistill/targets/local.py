"""``local``: the host's LiteRT interpreter, in a subprocess so peak RSS is the measured process's."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from edgedistill.targets.base import (
    RUNNER_PATH,
    BenchConfig,
    Measurement,
    RunnerOutput,
    Target,
    finish_from_runner,
    run_streaming,
    runner_arguments,
)

logger = logging.getLogger(__name__)


class LocalTarget(Target):
    """Runs ``edgedistill/_runner.py`` with this Python (or ``python``) on the host.

    Example::

        with LocalTarget() as target:
            m = target.measure(Path("student_int8.tflite"), BenchConfig(num_runs=100))
    """

    scheme = "local"
    kind = "measured"
    can_profile = True  # _runner.py --profile (one-operator models)

    def __init__(self, spec: str = "local", *, python: str | None = None) -> None:
        super().__init__(spec)
        self.python = python or sys.executable

    @property
    def device_key(self) -> str:
        return "local"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "host": "localhost", "python": self.python}

    def measure(self, model: Path, config: BenchConfig) -> Measurement:
        measurement = self.new_measurement(model, config)
        output = RunnerOutput()
        started = time.monotonic()
        command = [self.python, str(RUNNER_PATH), *runner_arguments(str(model), config, inputs_path=config.inputs)]
        # Keep TensorFlow's C++ logging quiet in the child; it is not part of what is measured.
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        logger.debug("local: %s", " ".join(command))
        exit_code, stderr, timed_out = run_streaming(command, timeout_s=config.timeout_s, on_line=output.feed, env=env)
        return finish_from_runner(
            measurement,
            output,
            exit_code,
            stderr,
            timed_out,
            where="local",
            started=started,
            timeout_s=config.timeout_s,
            hint_no_interpreter="Install it in this environment: `pip install ai-edge-litert`.",
        )


__all__ = ["LocalTarget"]
