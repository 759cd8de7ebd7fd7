"""Benchmark .tflite models on targets: one pair (:func:`run_benchmark`) or a grid (:func:`run_grid`).

Every result is appended to a JSON-lines file as soon as it is measured (one line per pair,
flushed), so a crash or a lost device loses nothing already measured; ``resume=True`` skips
pairs already measured with the same settings.

Example::

    from edgedistill.bench import run_benchmark
    m = run_benchmark("run/student_int8.tflite", target="local", num_runs=100, warmup_runs=10,
                      num_threads=1, results_path="run/bench.jsonl")
    m.latency_ms["p50"], m.peak_rss_bytes, m.to_dict()
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from edgedistill.errors import EdgeDistillError, InputError, StageError
from edgedistill.targets import TargetOptions, make_target
from edgedistill.targets.base import BenchConfig, Measurement, Target, file_sha256, pair_key, require_model


@dataclass(frozen=True)
class Pair:
    """One model on one target."""

    model: Path
    target_spec: str


def run_benchmark(
    model: str | os.PathLike,
    target: str | Target = "local",
    *,
    num_runs: int = 50,
    warmup_runs: int = 1,
    num_threads: int = 1,
    min_secs: float = 0.0,
    use_xnnpack: bool = True,
    timeout_s: float | None = 600.0,
    inputs: str | os.PathLike | None = None,
    results_path: str | os.PathLike | None = None,
    target_options: TargetOptions | None = None,
    raise_on_failure: bool = True,
) -> Measurement:
    """Measure one ``.tflite`` model on one target and return its :class:`Measurement`.

    The result is appended to ``results_path`` (JSON lines) when given, also when it failed.
    A failed measurement raises :class:`~edgedistill.errors.StageError` unless
    ``raise_on_failure=False`` (then it is returned with ``status="failed"``).
    """
    config = BenchConfig(num_runs=num_runs, warmup_runs=warmup_runs, num_threads=num_threads, min_secs=min_secs,
                         use_xnnpack=use_xnnpack, timeout_s=timeout_s,
                         inputs=os.fspath(inputs) if inputs is not None else None)
    if config.inputs is not None and not Path(config.inputs).is_file():
        raise InputError(f"Inputs file not found: {config.inputs!r}. Pass a .npy or .npz file, or omit it "
                         "for random inputs.")
    model_path = require_model(model)
    target_object = target if isinstance(target, Target) else make_target(target, target_options)
    measurement = _measure_on_session(target_object, [model_path], config, results_path=results_path)[0]
    if raise_on_failure and not measurement.ok:
        error = measurement.__dict__.get("exception")
        if isinstance(error, EdgeDistillError):
            raise error
        raise StageError(measurement.error or "benchmark failed")
    return measurement


def _failed(target: Target, model: Path, config: BenchConfig, error: EdgeDistillError, started: float) -> Measurement:
    try:
        measurement = target.new_measurement(model, config)
    except OSError:
        measurement = Measurement(model=str(model), model_size_bytes=None, target=target.describe(), kind=target.kind,
                                  num_threads=config.num_threads, num_runs=config.num_runs,
                                  warmup_runs=config.warmup_runs, config=config.to_dict())
    measurement.status = "failed"
    measurement.error = str(error)
    measurement.wall_s = time.monotonic() - started
    # Kept (not serialised) so a single-pair caller can re-raise it with its own type and exit code.
    measurement.__dict__["exception"] = error
    return measurement


def _measure_on_session(
    target: Target,
    models: Sequence[Path],
    config: BenchConfig,
    *,
    results_path: str | os.PathLike | None,
    on_result: Callable[[Measurement], None] | None = None,
    lock: threading.Lock | None = None,
) -> list[Measurement]:
    """Open one session on ``target``, measure ``models`` one after another, close it.

    Failures become failed Measurements (never exceptions), so the rest of a grid goes on.
    """
    from edgedistill.fileio import append_jsonl

    lock = lock or threading.Lock()
    measurements: list[Measurement] = []

    def record(measurement: Measurement) -> None:
        with lock:
            if results_path is not None:
                append_jsonl(results_path, measurement.to_dict())
            if on_result is not None:
                on_result(measurement)
        measurements.append(measurement)

    started = time.monotonic()
    try:
        target.open()
    except EdgeDistillError as error:
        for model in models:
            record(_failed(target, model, config, error, started))
        return measurements
    try:
        for model in models:
            started = time.monotonic()
            try:
                measurement = target.measure(model, config)
            except EdgeDistillError as error:
                measurement = _failed(target, model, config, error, started)
            record(measurement)
    finally:
        try:
            target.close()
        except EdgeDistillError:
            pass
    return measurements


def read_done_keys(results_path: str | os.PathLike) -> set[str]:
    """Pair keys of the successful lines in a results file (for ``--resume``)."""
    from edgedistill.results import read_results

    path = Path(results_path)
    if not path.exists():
        return set()
    return {m.pair_key for m in read_results(path) if m.ok}


def run_grid(
    models: Sequence[str | os.PathLike],
    targets: Sequence[str],
    config: BenchConfig,
    *,
    results_path: str | os.PathLike | None = None,
    jobs: int = 1,
    resume: bool = False,
    target_options: TargetOptions | None = None,
    on_result: Callable[[Measurement], None] | None = None,
    on_skip: Callable[[Pair], None] | None = None,
) -> list[Measurement]:
    """Measure every model on every target.

    Pairs on different devices run concurrently (up to ``jobs`` devices at once); pairs on the
    same device always run one after another. Each result is appended to ``results_path`` as
    soon as it is measured. With ``resume=True``, pairs already measured successfully with the
    same settings (same model bytes, target and config) are skipped.
    """
    if jobs < 1:
        raise InputError(f"`jobs` must be >= 1. Received: jobs={jobs}.")
    if not models:
        raise InputError("No model given. Pass one or more .tflite files, or --suite FILE.")
    if not targets:
        raise InputError("No target given. Pass --target local (or ssh://user@host, adb, qemu-aarch64, tflm).")
    if resume and results_path is None:
        raise InputError("--resume needs a results file: pass --results FILE.")
    model_paths = [require_model(m) for m in models]
    options = target_options or TargetOptions()
    target_objects = [make_target(spec, options) for spec in targets]
    done = read_done_keys(results_path) if resume else set()
    digests = {path: file_sha256(path) for path in model_paths}
    key_config = config.to_dict()

    # One queue per device, in the order the user gave: a device never runs two pairs at once.
    queues_by_device: dict[str, list[tuple[Target, list[Path]]]] = {}
    for target in target_objects:
        paths = []
        for path in model_paths:
            if pair_key(str(path), digests[path], target.spec, key_config) in done:
                if on_skip is not None:
                    on_skip(Pair(path, target.spec))
                continue
            paths.append(path)
        if paths:
            queues_by_device.setdefault(target.device_key, []).append((target, paths))
    queues = list(queues_by_device.values())
    lock = threading.Lock()
    results: list[Measurement] = []

    def run_queue(queue: list[tuple[Target, list[Path]]]) -> list[Measurement]:
        out = []
        for target, paths in queue:
            out += _measure_on_session(target, paths, config, results_path=results_path, on_result=on_result,
                                       lock=lock)
        return out

    if jobs == 1 or len(queues) <= 1:
        for queue in queues:
            results += run_queue(queue)
    else:
        with ThreadPoolExecutor(max_workers=min(jobs, len(queues))) as pool:
            for measured in pool.map(run_queue, queues):
                results += measured
    return results


__all__ = ["run_benchmark", "run_grid", "read_done_keys", "Pair", "BenchConfig", "Measurement", "TargetOptions"]
