"""The one TensorFlow Lite Micro runner: the real TFLM interpreter (PyPI ``tflite-micro``) on the host.

Everything that runs TFLM goes through this module:

- :func:`smallest_arena`: the smallest tensor arena (multiple of 16 bytes) with which TFLM
  allocates and invokes a model, by bisection;
- :func:`tflm_outputs`: a model's outputs on given (raw, already quantized) inputs;
- :func:`allocation_report` / :func:`allocation_breakdown`: TFLM's RecordingMicroAllocator
  accounting (``print_allocations``);
- :class:`TFLMModel`: outputs in this process, for an arena known to be large enough;
- ``python tflm.py bench --model M ...``: the benchmark runner of ``bench --target tflm``
  (JSON lines: ``device`` / ``init`` / ``samples`` / ``result`` / ``error`` events, as ``_runner.py``).

A too-small arena can crash the process (a segmentation fault in TFLM), so every probe of an
arena that may be too small runs in a worker subprocess: this very file, run by path
(``python tflm.py serve MODEL``), reading one JSON request a line on stdin and answering one JSON
line on stdout. Run by path it needs only the standard library, numpy and tflite-micro (the bench
target may use another Python), so edgedistill modules are imported inside the host-side functions.

TFLM's C++ code prints its messages (``MicroPrintf``: errors such as "Node CONV_2D (number 0)
failed to prepare", and the ``print_allocations`` report) straight to file descriptor 2, i.e.
stderr, not stdout and not through Python's ``sys.stderr``; they are captured at that level
(:class:`_CapturedStderr`) so TFLM's own error text reaches the user.

The other TFLM rooms: :mod:`edgedistill.micro` writes the sources a TFLM application compiles (it
calls this module to measure and check), :mod:`edgedistill.firmware.tflm_checkout` finds the pinned
C++ checkout and caches the library built from it, and :mod:`edgedistill._runner` (the LiteRT runner
copied to devices) holds the one-operator timing loop this module's ``bench --profile`` reuses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - only the bench worker in a foreign Python; it reports it as an event
    np = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

ARENA_ALIGNMENT = 16  # TFLM aligns arena allocations to 16 bytes
SCRIPT_PATH = Path(__file__).resolve()
DEFAULT_MAX_ARENA_BYTES = 512 * 1024 * 1024
_ALLOCATOR_PREFIX = "[RecordingMicroAllocator]"
# Crashes at this many doubling arena sizes in a row: the model, not the arena, is the problem.
_MAX_CRASHES_IN_A_ROW = 4


# ---------------------------------------------------------------------------------------
# Shared by the worker and the host: running the interpreter, capturing TFLM's messages


class _CapturedStderr:
    """Captures what is written to file descriptor 2 (where TFLM's C++ ``MicroPrintf`` writes) in a block."""

    def __enter__(self) -> _CapturedStderr:
        sys.stderr.flush()
        self.text = ""
        self._sink = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._sink.fileno(), 2)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._sink.seek(0)
        self.text = self._sink.read().decode("utf-8", "replace")
        self._sink.close()


def tflm_error_text(messages: str, error: BaseException | None = None) -> str:
    """TFLM's own error lines (allocation report lines left out), in one line; else the exception text.

    TFLM prints one line per node it rejects, often the same one: each distinct line is said once,
    with how many times it came (``...not supported (x14)``), so a message stays short.
    """
    lines = [line.strip().rstrip(".") for line in messages.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_ALLOCATOR_PREFIX)]
    if lines:
        counts: dict[str, int] = {}
        for line in lines:
            counts[line] = counts.get(line, 0) + 1
        return "; ".join(line if count == 1 else f"{line} (x{count})" for line, count in counts.items())
    return str(error).strip().splitlines()[-1] if error is not None and str(error).strip() else "no message"


# "Too many buffers (max is N)": the planner's buffer table lives in the arena, so a larger arena helps.
_ARENA_FAILURE = re.compile(r"(?i)resize buffer|alloc|arena|missing: \d+|too many buffers")


def is_arena_failure(reason: str) -> bool:
    """Whether TFLM's reason says the arena is too small (a larger one may work), not that the model is unusable."""
    return bool(_ARENA_FAILURE.search(reason))


def _runtime():
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def _invoke_zeros(interpreter: Any) -> None:
    """One inference on an all-zero input: the arena probe (allocation alone misses invoke-time scratch)."""
    detail = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
    interpreter.invoke()


def _invoke_rows(interpreter: Any, raw_inputs: np.ndarray) -> np.ndarray:
    """Output 0 for every sample of ``raw_inputs`` (already in the input tensor's dtype), one row per sample
    (the batch dimension of an output ``[1, ...]`` dropped; an output without one, e.g. ``[40]``, kept whole)."""
    rows = []
    for sample in raw_inputs:
        interpreter.set_input(sample[None, ...], 0)
        interpreter.invoke()
        output = np.array(interpreter.get_output(0))
        rows.append((output[0] if output.ndim > 1 and output.shape[0] == 1 else output).copy())
    return np.stack(rows)


# ---------------------------------------------------------------------------------------
# TFLM's allocation report (RecordingMicroAllocator::PrintAllocations), on the host or a target

_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


@dataclasses.dataclass
class AllocationBreakdown:
    """TFLM's RecordingMicroAllocator accounting of one model on one build."""

    total_bytes: int
    head_bytes: int
    tail_bytes: int
    # category -> (used bytes, requested bytes, number of allocations)
    categories: dict[str, tuple[int, int, int]] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "head_bytes": self.head_bytes,
            "tail_bytes": self.tail_bytes,
            "categories": {
                name: {"used_bytes": u, "requested_bytes": r, "count": c} for name, (u, r, c) in self.categories.items()
            },
        }


def parse_allocations(text: str) -> AllocationBreakdown:
    """Parse RecordingMicroAllocator::PrintAllocations() output (host or firmware)."""
    totals = {kind: int(value) for kind, value in _TOTAL.findall(text)}
    if not {"total", "head", "tail"} <= set(totals):
        raise ValueError(f"No RecordingMicroAllocator totals in: {text.strip()[:200]!r}")
    categories = {name: (int(used), int(requested), int(count)) for name, used, requested, count in _CATEGORY.findall(text)}
    return AllocationBreakdown(totals["total"], totals["head"], totals["tail"], categories)


# ---------------------------------------------------------------------------------------
# The worker side: `python tflm.py serve MODEL`


def _handle(runtime: Any, data: bytes, request: dict[str, Any]) -> dict[str, Any]:
    """One request: load with ``arena_bytes``, invoke (zeros, or the samples of ``inputs``), maybe report."""
    answer: dict[str, Any] = {"status": "ok"}
    failure: BaseException | None = None
    with _CapturedStderr() as messages:
        try:
            interpreter = runtime.Interpreter.from_bytes(data, arena_size=int(request["arena_bytes"]))
            if request.get("inputs"):
                np.save(request["outputs"], _invoke_rows(interpreter, np.load(request["inputs"])))
            else:
                _invoke_zeros(interpreter)
            if request.get("allocations"):
                interpreter.print_allocations()
        except Exception as error:  # TFLM raises RuntimeError; its reason is in the captured messages
            failure = error
    if failure is not None:
        return {"status": "failed", "error": tflm_error_text(messages.text, failure)}
    if request.get("allocations"):
        answer["allocations"] = messages.text
    return answer


def serve(model_path: str) -> None:
    """Answer requests (one JSON object a line on stdin) for one model until stdin closes."""
    runtime = _runtime()
    data = Path(model_path).read_bytes()
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(_handle(runtime, data, json.loads(line))) + "\n")
            sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# The host side: a worker process per model


def _exit_description(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {-code}"
    return f"exit code {code}"


class TFLMWorker:
    """A worker subprocess for one model; a request that crashes it counts as failed, and the
    next request starts a new one. One worker answers many requests: starting Python and TFLM
    costs ~0.5 s each time.
    """

    def __init__(self, tflite_bytes: bytes, *, python: str | None = None, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        self.folder = tempfile.TemporaryDirectory(prefix="edgedistill-tflm-")
        self.model_path = Path(self.folder.name) / "model.tflite"
        self.model_path.write_bytes(tflite_bytes)
        self.python = python or sys.executable
        self.process: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()  # the worker's own errors, outside a request's capture
        self.stderr_offset = 0
        self.num_requests = 0
        self.num_crashes = 0

    def _start(self) -> subprocess.Popen:
        command = [self.python, str(SCRIPT_PATH), "serve", str(self.model_path)]
        return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    def request(self, arena_bytes: int, *, inputs: np.ndarray | None = None, allocations: bool = False) -> dict[str, Any]:
        """``{"status": "ok" | "failed" | "crashed", "error": ..., "outputs": ..., "allocations": ...}``; never raises."""
        self.num_requests += 1
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        self.stderr_offset = self.stderr.seek(0, os.SEEK_END)
        request: dict[str, Any] = {"arena_bytes": int(arena_bytes), "allocations": allocations}
        if inputs is not None:
            request["inputs"] = str(Path(self.folder.name) / "inputs.npy")
            request["outputs"] = str(Path(self.folder.name) / "outputs.npy")
            np.save(request["inputs"], inputs)
        assert self.process.stdin is not None  # stdin=PIPE
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self._answer_line()
        except BrokenPipeError:
            line = ""
        if line is None:
            return {"status": "failed", "error": f"TFLM did not answer within {self.timeout_s:g} s"}
        if not line:
            return self._crashed()
        answer = json.loads(line)
        if answer["status"] == "ok" and inputs is not None:
            answer["outputs"] = np.load(request["outputs"])
        return answer

    def _answer_line(self) -> str | None:
        """The worker's answer ("" if it died), or None after ``timeout_s`` (the worker is then stopped)."""
        assert self.process is not None and self.process.stdout is not None  # request() started it, stdout=PIPE
        stdout = self.process.stdout
        if self.timeout_s is not None and not select.select([stdout], [], [], self.timeout_s)[0]:
            self.process.kill()
            self.process.wait()
            self.process = None
            return None
        return stdout.readline()

    def _crashed(self) -> dict[str, Any]:
        """The worker died: a too-small arena (or a broken model) crashed TFLM."""
        self.num_crashes += 1
        assert self.process is not None  # request() started it
        code = self.process.wait()
        self.process = None
        self.stderr.seek(self.stderr_offset)
        tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-1:]
        detail = f": {tail[0]}" if tail else ""
        return {"status": "crashed", "error": f"the TFLM interpreter crashed ({_exit_description(code)}){detail}"}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            assert self.process.stdin is not None  # stdin=PIPE
            self.process.stdin.close()
            self.process.wait(timeout=10)
        self.process = None
        self.stderr.close()
        self.folder.cleanup()

    def __enter__(self) -> TFLMWorker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _checked_model(tflite_bytes: bytes, source: str) -> None:
    """A corrupt flatbuffer is one clear InputError here, not a crash in TFLM."""
    from edgedistill.tflite_model import read_model_info

    read_model_info(tflite_bytes, source=source)


# ---------------------------------------------------------------------------------------
# The smallest arena


@dataclasses.dataclass(frozen=True)
class ArenaSearch:
    """The smallest arena TFLM accepted on this host, and what finding it took."""

    arena_bytes: int
    num_probes: int
    num_crashes: int

    def to_dict(self) -> dict[str, int]:
        return {"arena_bytes": self.arena_bytes, "num_probes": self.num_probes, "num_crashes": self.num_crashes}


def _first_working_size(worker: TFLMWorker, start: int, max_bytes: int) -> int:
    """Double from ``start`` until TFLM allocates and invokes the model."""
    from edgedistill.errors import StageError

    size, crashes = start, 0
    while (answer := worker.request(size))["status"] != "ok":
        crashes = crashes + 1 if answer["status"] == "crashed" else 0
        if answer["status"] == "failed" and not is_arena_failure(answer["error"]):
            # Not a matter of size (an op TFLM cannot prepare, a hybrid model...): say TFLM's reason at once.
            raise StageError(
                f"TFLM cannot run the model: {answer['error']}. Check that it is a full-integer int8 "
                "model whose ops TFLM has (`edgedistill info MODEL`)."
            )
        if crashes >= _MAX_CRASHES_IN_A_ROW:
            raise StageError(
                f"The TFLM interpreter crashed with every arena from {start} to {size} bytes ({answer['error']}); "
                "the model is probably corrupt, or uses an op TFLM cannot run. Check it with `edgedistill info MODEL`."
            )
        if size >= max_bytes:
            raise StageError(
                f"TFLM could not allocate the model even with a {max_bytes}-byte arena; "
                "the model is too large for a microcontroller or uses an op TFLM cannot prepare. "
                f"TFLM said: {answer['error']}"
            )
        size = min(size * 2, max_bytes)
    return size


def smallest_arena(
    tflite_bytes: bytes, *, max_bytes: int = DEFAULT_MAX_ARENA_BYTES, python: str | None = None, source: str = "model"
) -> ArenaSearch:
    """Smallest tensor arena (bytes, multiple of 16) with which the real TFLM interpreter allocates
    and invokes the model, found by bisection; every probe runs in a worker subprocess."""
    _checked_model(tflite_bytes, source)
    logger.info("measuring the TFLM arena of %s (bisection, each probe in a subprocess) ...", source)
    started = time.monotonic()
    with TFLMWorker(tflite_bytes, python=python) as worker:
        high = _first_working_size(worker, max(4096, len(tflite_bytes)), max_bytes)
        low = 0  # largest size known to fail (0 always fails)
        while high - low > ARENA_ALIGNMENT:
            middle = (low + high) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
            if middle <= low:
                break
            if worker.request(middle)["status"] == "ok":
                high = middle
            else:
                low = middle
    result = ArenaSearch(arena_bytes=high, num_probes=worker.num_requests, num_crashes=worker.num_crashes)
    logger.info(
        "TFLM arena: %d bytes (%d probes, %d crashed, %.1f s)",
        result.arena_bytes,
        result.num_probes,
        result.num_crashes,
        time.monotonic() - started,
    )
    return result


# ---------------------------------------------------------------------------------------
# Outputs and the allocation report, in a subprocess


def _request_or_raise(
    tflite_bytes: bytes, arena_bytes: int, *, source: str, python: str | None, **options: Any
) -> dict[str, Any]:
    from edgedistill.errors import StageError

    _checked_model(tflite_bytes, source)
    with TFLMWorker(tflite_bytes, python=python, timeout_s=300) as worker:
        answer = worker.request(arena_bytes, **options)
    if answer["status"] != "ok":
        raise StageError(
            f"TFLM could not run {source} with a {arena_bytes}-byte arena: {answer['error']}. "
            "Give a larger arena (see `edgedistill micro`, which measures it) or check the model's ops are in TFLM."
        )
    return answer


def tflm_outputs(
    tflite_bytes: bytes, raw_inputs: np.ndarray, *, arena_bytes: int, python: str | None = None, source: str = "model"
) -> np.ndarray:
    """Output 0 of the model for every sample of ``raw_inputs`` (in the input tensor's dtype), run in a subprocess."""
    answer = _request_or_raise(tflite_bytes, arena_bytes, source=source, python=python, inputs=np.asarray(raw_inputs))
    return answer["outputs"]


def allocation_report(tflite_bytes: bytes, *, arena_bytes: int, python: str | None = None, source: str = "model") -> str:
    """TFLM's ``print_allocations`` text after one inference (on zeros), run in a subprocess."""
    return _request_or_raise(tflite_bytes, arena_bytes, source=source, python=python, allocations=True)["allocations"]


def allocation_breakdown(
    tflite_bytes: bytes, *, arena_bytes: int, python: str | None = None, source: str = "model"
) -> AllocationBreakdown:
    """The host (64-bit) TFLM interpreter's allocation accounting of the model."""
    return parse_allocations(allocation_report(tflite_bytes, arena_bytes=arena_bytes, python=python, source=source))


# ---------------------------------------------------------------------------------------
# In this process (an arena known to be large enough)


class TFLMModel:
    """A ``.tflite`` model on the real TFLite Micro interpreter (reference kernels), in this process.

    ``arena_size`` must be large enough (see :func:`smallest_arena`): a too small arena can
    crash the process. Use :func:`tflm_outputs` for an arena that may be too small.
    """

    def __init__(self, data: bytes, *, arena_size: int, source: str = "model") -> None:
        _checked_model(data, source)
        self.source = source
        self.arena_size = int(arena_size)
        self.interpreter = self._call(lambda: _runtime().Interpreter.from_bytes(data, arena_size=self.arena_size))
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)

    def _call(self, function: Any) -> Any:
        """``function()``, with TFLM's own message in the error when it fails."""
        from edgedistill.errors import StageError

        failure: BaseException | None = None
        with _CapturedStderr() as messages:
            try:
                return function()
            except (RuntimeError, ValueError) as error:  # TFLM raises RuntimeError; its reason is in the messages
                failure = error
        raise StageError(
            f"TFLM could not run {self.source} with a {self.arena_size}-byte arena: "
            f"{tflm_error_text(messages.text, failure)}. Check the model is int8 with ops TFLM has."
        ) from None

    def raw_outputs(self, x: np.ndarray) -> np.ndarray:
        """Outputs in the model's output dtype (int8 for int8 models), one row per sample."""
        from edgedistill.tflite_model import quantize_input

        inputs = quantize_input(np.asarray(x, dtype=np.float32), self.input)
        return self._call(lambda: _invoke_rows(self.interpreter, inputs))

    def predict(self, x: np.ndarray) -> np.ndarray:
        from edgedistill.tflite_model import dequantize_output

        return dequantize_output(self.raw_outputs(x), self.output)

    def raw_sequence_outputs(self, sequences: np.ndarray) -> np.ndarray:
        """Output 0 (its full shape) of every step of every sequence ``(N, steps, *input shape)``, raw.

        The interpreter is reset before each sequence, so a model with state (an audio front end's
        noise estimate) starts every sequence as the firmware does after ``MicroInterpreter::Reset()``.
        """

        def run() -> np.ndarray:
            results = []
            for sequence in sequences:
                self.interpreter.reset()
                steps = []
                for step in sequence:
                    self.interpreter.set_input(step, 0)
                    self.interpreter.invoke()
                    steps.append(np.array(self.interpreter.get_output(0)).copy())
                results.append(np.stack(steps))
            return np.stack(results)

        return self._call(run)


# ---------------------------------------------------------------------------------------
# The benchmark runner: `python tflm.py bench --model M ...` (JSON-lines protocol of _runner.py)


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _bench_arguments(argv: list[str]) -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog="tflm.py bench")
    parser.add_argument("--model", required=True)
    parser.add_argument("--num-runs", type=int, default=50)
    parser.add_argument("--warmup-runs", type=int, default=1)
    parser.add_argument("--min-secs", type=float, default=0.0)
    parser.add_argument("--arena-bytes", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    return parser.parse_known_args(argv)[0]


def _bench_runtime() -> tuple[Any, str]:
    """TFLM's runtime and version, or an ``error`` event and exit code 3."""
    try:
        from importlib import metadata

        if np is None:
            raise ImportError("numpy is not installed")
        return _runtime(), metadata.version("tflite-micro")
    except Exception as error:
        emit(
            {
                "event": "error",
                "code": "no_interpreter",
                "message": f"the TFLite Micro Python package is not importable ({error}). Install it: "
                "`pip install tflite-micro`.",
            }
        )
        sys.exit(3)


def _bench_load(runtime: Any, data: bytes, arena: int, *, grow: bool) -> tuple[Any, int]:
    """The interpreter and its arena, or an ``error`` event with TFLM's own reason and exit code 4.

    With ``grow`` (no arena given), an arena TFLM says is too small is doubled until the model fits
    (up to 512 MiB); any other reason (an op TFLM cannot prepare, a hybrid model) is reported as it is.
    """
    while True:
        failure: BaseException | None = None
        with _CapturedStderr() as messages:
            try:
                return runtime.Interpreter.from_bytes(data, arena_size=arena), arena
            except Exception as error:
                failure = error
        reason = tflm_error_text(messages.text, failure)
        if not is_arena_failure(reason):
            _bench_fail(
                "bad_model",
                f"TFLM cannot run the model: {reason}. Check that it is a full-integer int8 "
                "model whose ops TFLM has (`edgedistill info MODEL`).",
            )
        if not grow or arena >= DEFAULT_MAX_ARENA_BYTES:
            hint = (
                "Pass a larger --arena-bytes, or omit it to let bench grow the arena."
                if not grow
                else "The model is too large for TFLM."
            )
            _bench_fail("arena_too_small", f"TFLM cannot fit the model in a {arena}-byte arena: {reason}. {hint}")
        arena = min(arena * 2, DEFAULT_MAX_ARENA_BYTES)


def _bench_fail(code: str, message: str, exit_code: int = 4) -> None:
    emit({"event": "error", "code": code, "message": message})
    sys.exit(exit_code)


def _set_random_inputs(interpreter: Any, seed: int) -> list[Any]:
    """Sets each input to seeded random values; returns the arrays set."""
    rng = np.random.default_rng(seed)
    arrays = []
    index = 0
    while True:
        try:
            detail = interpreter.get_input_details(index)
        except Exception:
            break
        dtype = np.dtype(detail["dtype"])
        shape = [int(s) for s in detail["shape"]]
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            array = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
        else:
            array = rng.random(size=shape, dtype=np.float32).astype(dtype)
        interpreter.set_input(array, index)
        arrays.append(array)
        index += 1
    return arrays


def _timed_runs(interpreter: Any, args: Any) -> tuple[float, list[float], list[float]]:
    """First inference, warm-up and timed samples (ms); the samples stream out as ``samples`` events."""
    clock = time.perf_counter_ns
    start = clock()
    interpreter.invoke()
    first_ms = (clock() - start) / 1e6
    warmup = [first_ms]
    for _ in range(max(0, args.warmup_runs - 1)):
        start = clock()
        interpreter.invoke()
        warmup.append((clock() - start) / 1e6)
    samples = [] if args.warmup_runs > 0 else [first_ms]
    begin = last = time.monotonic()
    sent = 0
    while len(samples) < args.num_runs or time.monotonic() - begin < args.min_secs:
        start = clock()
        interpreter.invoke()
        samples.append((clock() - start) / 1e6)
        if time.monotonic() - last >= 1.0:
            emit({"event": "samples", "samples_ms": samples[sent:]})
            sent, last = len(samples), time.monotonic()
    emit({"event": "samples", "samples_ms": samples[sent:]})
    return first_ms, warmup if args.warmup_runs > 0 else [], samples


def _arena_used(interpreter: Any) -> dict[str, int]:
    """``arena_total_bytes`` / ``_head_`` / ``_tail_``: the arena TFLM really used (its allocation report)."""
    with _CapturedStderr() as messages:
        interpreter.print_allocations()
    try:
        breakdown = parse_allocations(messages.text)
    except ValueError:
        return {}
    return {
        "arena_total_bytes": breakdown.total_bytes,
        "arena_head_bytes": breakdown.head_bytes,
        "arena_tail_bytes": breakdown.tail_bytes,
    }


def _runner_module() -> Any:
    """``_runner.py`` (its one-operator slicing), loaded by path: this file may run where edgedistill is not installed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_edgedistill_runner", SCRIPT_PATH.with_name("_runner.py"))
    assert spec is not None and spec.loader is not None  # a .py file beside this one
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_profile(runtime: Any, data: bytes, arena: int, args: Any, samples_ms: list[float], whole: Any) -> dict[str, Any]:
    """The ``profile`` event: the tflite-micro Python binding exposes no MicroProfiler (its C++ interpreter
    takes one, the binding does not pass it), so each operator runs as its own one-operator model on TFLM
    (the fallback ``_runner.py --profile`` uses for LiteRT, with the same protocol: rounds interleaved with
    the whole model, the fixed cost of an invoke from two-operator slices), fed the activations the whole
    model computed."""
    runner = _runner_module()
    error, slices, empty = runner.one_op_models(data)
    if error:
        return {"event": "profile", "error": error}
    runs = max(1, args.num_runs)
    invoke_cpu_us = runner.cpu_time_p50(whole.invoke, min(runs, 50))
    activations = _tflm_activations(runtime, data, arena, args.seed, {t for s in slices for t in s[4]})
    # A slice's own plan can differ from the whole model's: each gets twice the model's arena, so a
    # slice's allocation fails with an exception (left out) instead of writing past a too-small arena.
    references = {"empty": (empty, []), **{f"pair {k}": (model, t) for k, model, t in runner.pair_models(data)}}

    def prepare(model_bytes: bytes, tensors: list[int]) -> tuple[Any, Any]:
        interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=2 * arena + 16 * 1024)
        arrays = _set_random_inputs(interpreter, args.seed)
        known = [activations.get(tensors[k]) if k < len(tensors) else None for k in range(len(arrays))]
        fed = [a if v is None else v for a, v in zip(arrays, known)]
        return runner.setter(lambda position, array: interpreter.set_input(array, position), fed), interpreter.invoke

    whole_inputs = _set_random_inputs(whole, args.seed)
    whole_model = (runner.setter(lambda position, array: whole.set_input(array, position), whole_inputs), whole.invoke)
    with _CapturedStderr():
        ops, timed_whole, reference_samples, error = runner.time_interleaved(prepare, slices, whole_model, runs, references)
    if error:
        return {"event": "profile", "error": f"{error} (on TFLM)"}
    fixed_us, how = runner.fixed_slice_cost(ops, reference_samples)
    rows = runner.profile_rows(ops, fixed_us, how)
    fed = "the whole model's own activations" if activations else "random inputs"
    return {
        "event": "profile",
        "source": "tflm one-op models",
        "unit": "us",
        "ops": rows,
        "fixed_cost_us": fixed_us,
        "fixed_cost_from": how,
        "empty_invoke_us": None,  # TFLM refuses a model without operators
        "invoke": runner.median(timed_whole),
        "invoke_loop_us": runner.median(samples_ms) * 1000.0 if samples_ms else None,
        "ops_only_us": sum(row["avg"] for row in rows[1:]),
        "rounds": runs,
        "inputs": "activations" if activations else "random",
        "invoke_cpu_us": invoke_cpu_us,
        "notes": [
            "the tflite-micro Python binding exposes no profiler: each operator timed as its own "
            f"one-operator model on TFLM ({fed}), {runs} rounds interleaved with the whole model; avg is the "
            f"median. The fixed cost of an invoke ({fixed_us:.3f} us, from {how}) is taken off each operator "
            f"and shown once as the {runner.INVOKE_CALL} row"
        ],
    }


def _tflm_activations(runtime: Any, data: bytes, arena: int, seed: int, wanted: set[int]) -> dict[int, Any]:
    """Tensor index -> value after one invoke of the whole model with every tensor kept (TFLM's
    kPreserveAllTensors), on the bench's random inputs; {} when TFLM refuses. The arena is the model's
    plus every tensor's bytes, so nothing is shared and a too-small arena cannot crash this process."""
    runner = _runner_module()
    schema = runner.load_schema()
    model = schema.Model.GetRootAs(data, 0)
    subgraph = model.Subgraphs(0)
    extra = sum(
        int(np.prod(subgraph.Tensors(k).ShapeAsNumpy() if subgraph.Tensors(k).ShapeLength() else [1])) * 8
        for k in range(subgraph.TensorsLength())
    )
    with _CapturedStderr():
        try:
            interpreter = runtime.Interpreter.from_bytes(
                data, arena_size=arena + extra + 16 * 1024, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors
            )
            _set_random_inputs(interpreter, seed)
            interpreter.invoke()
            # GetTensor answers {"dtype", "shape", "tensor_data"}.
            return {t: np.array(interpreter.GetTensor(t, 0)["tensor_data"]).copy() for t in wanted}
        except Exception:
            return {}


def bench(argv: list[str]) -> None:
    """Measure one model (and with ``--profile`` each operator, see :func:`_bench_profile`)."""
    args = _bench_arguments(argv)
    emit(
        {
            "event": "device",
            "uname": " ".join(platform.uname()),
            "machine": platform.machine(),
            "num_cores": os.cpu_count(),
            "python_version": platform.python_version(),
            "emulates": "TFLite Micro interpreter on the host CPU (not a microcontroller)",
        }
    )
    runtime, version = _bench_runtime()
    with open(args.model, "rb") as handle:
        data = handle.read()
    initial = args.arena_bytes or len(data) * 10 + 16 * 1024
    rss_before = status_bytes("VmRSS")
    start = time.perf_counter_ns()
    interpreter, arena = _bench_load(runtime, data, initial, grow=not args.arena_bytes)
    emit(
        {
            "event": "init",
            "runtime": "tflite_micro",
            "runtime_version": version,
            "init_ms": (time.perf_counter_ns() - start) / 1e6,
            "rss_before_init_bytes": rss_before,
            "rss_after_init_bytes": status_bytes("VmRSS"),
            "arena_size_bytes": arena,
            **({"arena_grown_from_bytes": initial} if arena != initial else {}),
        }
    )
    failure: BaseException | None = None
    with _CapturedStderr() as messages:
        try:
            _set_random_inputs(interpreter, args.seed)
            first_ms, warmup, samples = _timed_runs(interpreter, args)
        except Exception as error:  # TFLM raises RuntimeError on a failed invoke; its reason is in the messages
            failure = error
    if failure is not None:
        _bench_fail("invoke_failed", f"TFLM failed to run the model: {tflm_error_text(messages.text, failure)}.", 5)
    if args.profile:
        emit(_bench_profile(runtime, data, arena, args, samples, interpreter))
    emit(
        {
            "event": "result",
            "first_inference_ms": first_ms,
            "warmup_ms": warmup,
            "peak_rss_bytes": status_bytes("VmHWM"),
            **_arena_used(interpreter),
        }
    )


def main(argv: list[str] | None = None) -> None:
    """``serve MODEL`` (the request worker) or ``[bench] --model M ...`` (the benchmark runner)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"] and len(argv) == 2:
        serve(argv[1])
    else:
        bench(argv[1:] if argv[:1] == ["bench"] else argv)


if __name__ == "__main__":
    main()


__all__ = [
    "ARENA_ALIGNMENT",
    "SCRIPT_PATH",
    "AllocationBreakdown",
    "ArenaSearch",
    "TFLMModel",
    "TFLMWorker",
    "allocation_breakdown",
    "allocation_report",
    "parse_allocations",
    "smallest_arena",
    "is_arena_failure",
    "tflm_error_text",
    "tflm_outputs",
]
