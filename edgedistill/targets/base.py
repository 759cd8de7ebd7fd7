"""The Target interface, the ``Measurement`` it returns, and the helpers every target shares.

A target is one place a model can be measured: open a session, deploy the model, measure,
close. Each target is registered under the scheme users type (``local``, ``ssh://...``,
``adb``, ``qemu-aarch64``, ``tflm``) in :data:`edgedistill.targets.TARGETS`.

Every target follows one protocol (that of TFLite's ``benchmark_model``): warmup runs, then at
least ``num_runs`` timed invokes (and at least ``min_secs`` seconds); init time, first
inference, latency statistics, raw samples, peak resident memory of the measuring process.
"""

from __future__ import annotations

import dataclasses
import datetime as _datetime
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from edgedistill._version import __version__
from edgedistill.config import MeasureConfig
from edgedistill.errors import EdgeDistillError

logger = logging.getLogger(__name__)
RUNNER_PATH = Path(__file__).resolve().parent.parent / "_runner.py"


@dataclass(frozen=True)
class BenchConfig(MeasureConfig):
    """How to measure: the names are those of TFLite's ``benchmark_model`` flags.

    The fields, their defaults, help texts and checks are :class:`edgedistill.config.MeasureConfig`'s (also the
    options of ``edgedistill bench``); ``profile`` is benchmark_model's --enable_op_profiling
    (see edgedistill.profiles).
    """

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if not self.profile:
            # Absent when off: records (and --resume keys) of measurements without a profile stay as they were.
            del values["profile"]
        return values

    def key_fields(self) -> dict[str, Any]:
        """The settings that change a figure (a pair measured with other settings is not 'done')."""
        return {k: v for k, v in self.to_dict().items() if k not in ("timeout_s",)}


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float | None]:
    """mean / std / min / p50 / p90 / p99 / max of raw samples, in the samples' unit.

    Percentiles interpolate linearly between the two nearest ranks (numpy's default
    ``method="linear"``, as ``benchmark_model`` users expect); ``std`` is the population standard
    deviation (``ddof=0``). All None when there is no sample.
    """
    keys = ("mean", "std", "min", "p50", "p90", "p99", "max")
    if len(samples_ms) == 0:
        return {key: None for key in keys}
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99], method="linear")
    figures = (values.mean(), values.std(), values.min(), p50, p90, p99, values.max())
    return {key: float(value) for key, value in zip(keys, figures)}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def utc_timestamp() -> str:
    return _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Measurement:
    """One model measured on one target: every figure, and where and how it was measured.

    ``kind`` is ``"measured"`` (a real device or the host) or ``"emulated"`` (QEMU, TFLM on the
    host): an emulated latency is never a device time. ``status`` is ``"failed"`` with
    ``error`` set when the pair could not finish; samples measured before the failure are kept.

    Example::

        m = run_benchmark("student_int8.tflite", target="local", num_runs=100)
        print(m.latency_ms["p50"], m.peak_rss_bytes)
    """

    model: str
    model_size_bytes: int | None
    target: dict[str, Any]
    runtime: str | None = None
    runtime_version: str | None = None
    kind: str = "measured"
    num_threads: int = 1
    num_runs: int = 0
    warmup_runs: int = 0
    init_ms: float | None = None
    first_inference_ms: float | None = None
    latency_ms: dict[str, float | None] = field(default_factory=lambda: latency_stats([]))
    samples_ms: list[float] = field(default_factory=list)
    warmup_ms: list[float] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    rss_init_growth_bytes: int | None = None
    tool_version: str = __version__
    timestamp: str = field(default_factory=utc_timestamp)
    status: str = "ok"
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    model_sha256: str | None = None
    wall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1
    # The library error that failed this pair; never written, so a single-pair caller can
    # re-raise it with its own type and exit code (2 for bad input).
    exception: EdgeDistillError | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON line of this measurement (every field but ``exception``)."""
        from edgedistill.fileio import to_jsonable

        return to_jsonable({name: getattr(self, name) for name in _serialised_fields()})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measurement":
        names = set(_serialised_fields())
        known = {k: v for k, v in data.items() if k in names}
        unknown = {k: v for k, v in data.items() if k not in names}
        measurement = cls(**known)
        if unknown:
            measurement.extra = {**measurement.extra, **unknown}
        return measurement

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def pair_key(self) -> str:
        return pair_key(self.model, self.model_sha256, self.target.get("spec", self.target.get("name")), self.config)


def _serialised_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Measurement) if f.name != "exception"]


def pair_key(model: str, model_sha256: str | None, target_spec: str | None, config: dict[str, Any]) -> str:
    """Identity of one (model file and bytes, target, settings) pair, used by ``--resume``."""
    settings = {k: v for k, v in sorted(config.items()) if k != "timeout_s"}
    return json.dumps([os.path.abspath(model), model_sha256, target_spec, settings], sort_keys=True, default=str)


class Target:
    """Base of every target: open a session, deploy, measure, close.

    Subclasses set ``scheme`` and ``kind`` and implement :meth:`measure`; :meth:`open` and
    :meth:`close` default to nothing. ``device_key`` names the device, so a grid never runs two
    pairs on one device at once. A target is a context manager::

        with LocalTarget() as target:
            m = target.measure(Path("model.tflite"), BenchConfig(num_runs=100))
    """

    scheme: ClassVar[str] = ""
    kind: str = "measured"  # a class default: a session may label itself (the ssh target on an emulated Pi)
    # Whether measure() gives a per-operator profile when BenchConfig.profile is set.
    can_profile: ClassVar[bool] = False

    def __init__(self, spec: str) -> None:
        self.spec = spec

    @property
    def device_key(self) -> str:
        return self.spec

    def open(self) -> None:
        """Start a session (connect, create a temporary folder on the device...)."""

    def close(self) -> None:
        """End the session and remove whatever was put on the device."""

    def describe(self) -> dict[str, Any]:
        """Target description recorded with every result (device facts are added on measuring)."""
        return {"name": self.scheme, "spec": self.spec, "kind": self.kind}

    def measure(self, model: Path, config: BenchConfig) -> Measurement:
        raise NotImplementedError

    def __enter__(self) -> "Target":
        self.open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- helpers shared by the targets that run edgedistill/_runner.py -----------------------

    def new_measurement(self, model: Path, config: BenchConfig) -> Measurement:
        return Measurement(
            model=str(model),
            model_size_bytes=model.stat().st_size,
            model_sha256=file_sha256(model),
            target=self.describe(),
            kind=self.kind,
            num_threads=config.num_threads,
            num_runs=config.num_runs,
            warmup_runs=config.warmup_runs,
            config=config.to_dict(),
        )


def runner_arguments(model_path: str, config: BenchConfig, *, inputs_path: str | None = None) -> list[str]:
    """Command-line arguments of ``_runner.py`` for one measurement."""
    arguments = [
        "--model",
        model_path,
        "--num-runs",
        str(config.num_runs),
        "--warmup-runs",
        str(config.warmup_runs),
        "--num-threads",
        str(config.num_threads),
        "--min-secs",
        repr(float(config.min_secs)),
        "--use-xnnpack",
        "true" if config.use_xnnpack else "false",
        "--seed",
        str(config.seed),
    ]
    if inputs_path:
        arguments += ["--inputs", inputs_path]
    if config.profile:
        arguments.append("--profile")
    return arguments


class RunnerOutput:
    """Collects the JSON lines of ``_runner.py`` as they arrive (samples survive a lost device)."""

    def __init__(self) -> None:
        self.device: dict[str, Any] = {}
        self.init: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.profile: dict[str, Any] | None = None
        self.samples_ms: list[float] = []
        self.other_lines: list[str] = []

    def feed(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        try:
            record = json.loads(text)
        except ValueError:
            self.other_lines.append(text)
            return
        if not isinstance(record, dict):
            self.other_lines.append(text)
            return
        event = record.pop("event", None)
        if event == "device":
            self.device = record
        elif event == "init":
            self.init = record
        elif event == "samples":
            self.samples_ms.extend(float(v) for v in record.get("samples_ms", []))
        elif event == "result":
            self.result = record
        elif event == "error":
            self.error = record
        elif event == "profile":
            self.profile = record
        else:
            self.other_lines.append(text)

    def fill(self, measurement: Measurement) -> Measurement:
        """Copy what arrived into ``measurement`` (also for a failed run: partial samples kept)."""
        measurement.target = {**measurement.target, "device": self.device} if self.device else measurement.target
        measurement.runtime = self.init.get("runtime", measurement.runtime)
        measurement.runtime_version = self.init.get("runtime_version", measurement.runtime_version)
        measurement.init_ms = self.init.get("init_ms")
        before, after = self.init.get("rss_before_init_bytes"), self.init.get("rss_after_init_bytes")
        if before is not None and after is not None:
            measurement.rss_init_growth_bytes = after - before
        standard = {
            "runtime",
            "runtime_version",
            "init_ms",
            "rss_before_init_bytes",
            "rss_after_init_bytes",
            "first_inference_ms",
            "warmup_ms",
            "peak_rss_bytes",
            "num_samples",
        }
        if self.init:
            measurement.extra.update({k: v for k, v in self.init.items() if k not in standard})
        measurement.samples_ms = list(self.samples_ms)
        measurement.latency_ms = latency_stats(self.samples_ms)
        if self.result:
            measurement.first_inference_ms = self.result.get("first_inference_ms")
            measurement.warmup_ms = self.result.get("warmup_ms", [])
            measurement.peak_rss_bytes = self.result.get("peak_rss_bytes")
            measurement.extra.update({k: v for k, v in self.result.items() if k not in standard})
        if self.profile is not None:
            # The raw per-operator record; edgedistill.bench turns it into a Profile (and its files).
            measurement.extra["profile"] = self.profile
        return measurement


def _wait_for_exit(process: subprocess.Popen, usage: dict[str, Any] | None) -> None:
    """Reap ``process``, setting its return code; ``usage`` (when given) receives its ``max_rss_bytes``."""
    try:
        # wait4 also gives the child's peak RSS (ru_maxrss, KiB on Linux), e.g. of a QEMU process.
        _, status, rusage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if usage is not None:
            usage["max_rss_bytes"] = rusage.ru_maxrss * 1024
    except ChildProcessError:
        process.wait()


def run_streaming(
    command: Sequence[str],
    *,
    timeout_s: float | None,
    on_line: Callable[[str], None],
    env: dict[str, str] | None = None,
    stdin: int | None = subprocess.DEVNULL,
    cwd: str | None = None,
    usage: dict[str, Any] | None = None,
) -> tuple[int | None, str, bool]:
    """Run ``command``, feed each stdout line to ``on_line`` as it arrives.

    Returns ``(exit code, stderr text, timed_out)``; ``usage`` (a dict) receives the child's
    ``max_rss_bytes``. On timeout the process group is killed
    (so an ssh or qemu child does not linger) and the exit code is None.
    """
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=stdin,
        env=env,
        cwd=cwd,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None  # both PIPE
    stdout, stderr = process.stdout, process.stderr
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    stderr_chunks: list[str] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(stderr.read()), daemon=True)
    reader.start()
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        logger.debug("%s: no end after %g s; killing its process group", command[0], timeout_s)
        kill_process_group(process)

    timer = threading.Timer(timeout_s, kill_on_timeout) if timeout_s else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        for line in stdout:
            on_line(line)
        _wait_for_exit(process, usage)
    finally:
        if timer:
            timer.cancel()
        if process.poll() is None:
            kill_process_group(process)
        reader.join(timeout=5)
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
    return (None if timed_out.is_set() else process.returncode), "".join(stderr_chunks), timed_out.is_set()


# Measuring processes run in their own session (a terminal's Ctrl-C does not reach them): on an
# interrupt, the grid stops them through this set, so worker threads end at once.
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


def stop_running_measurements() -> None:
    """Kill the process group of every measuring process still running (Ctrl-C during a grid)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        kill_process_group(process)


def kill_process_group(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # LiteRT prints INFO lines on stderr; they explain nothing about a failure.
    lines = [line for line in lines if not line.startswith("INFO: ")]
    return " | ".join(lines[-count:])


def finish_from_runner(
    measurement: Measurement,
    output: RunnerOutput,
    exit_code: int | None,
    stderr: str,
    timed_out: bool,
    *,
    where: str,
    started: float,
    timeout_s: float | None,
    hint_no_interpreter: str = "",
) -> Measurement:
    """Turn the runner's lines and exit status into a finished Measurement (ok or failed)."""
    output.fill(measurement)
    measurement.wall_s = time.monotonic() - started
    if timed_out:
        measurement.status = "failed"
        measurement.error = (
            f"{where}: timed out after {timeout_s:g} s ({len(output.samples_ms)} samples kept). "
            "Raise --timeout or lower --num-runs / --min-secs."
        )
    elif output.error:
        measurement.status = "failed"
        message = output.error.get("message", "")
        if output.error.get("code") in ("no_interpreter", "no_numpy") and hint_no_interpreter:
            message += " " + hint_no_interpreter
        measurement.error = f"{where}: {message}"
    elif exit_code != 0 or output.result is None:
        measurement.status = "failed"
        detail = last_lines(stderr) or "no output"
        measurement.error = (
            f"{where}: the measurement stopped (exit code {exit_code}) after {len(output.samples_ms)} samples: {detail}"
        )
    return measurement


def require_model(model: str | os.PathLike) -> Path:
    """``model`` as a Path, checked to be a readable, complete TFLite flatbuffer (InputError otherwise):
    :func:`edgedistill.tflite_model.read_model_bytes` with the whole flatbuffer parsed."""
    from edgedistill.tflite_model import read_model_bytes

    read_model_bytes(model, whole=True)
    return Path(model).expanduser()


__all__ = [
    "BenchConfig",
    "Measurement",
    "Target",
    "RunnerOutput",
    "latency_stats",
    "runner_arguments",
    "run_streaming",
    "finish_from_runner",
    "require_model",
    "stop_running_measurements",
    "pair_key",
    "file_sha256",
    "RUNNER_PATH",
]
