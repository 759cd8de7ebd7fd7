"""Benchmark .tflite models on targets: one pair (:func:`run_benchmark`) or a grid (:func:`run_grid`).

Every result is appended to a JSON-lines file as soon as it is measured (one line per pair,
flushed), so a crash or a lost device loses nothing already measured; ``resume=True`` skips
pairs already measured with the same settings.

Example::

    from edgedistill.bench import run_benchmark
    m = run_benchmark("run/student_int8.tflite", target="local", num_runs=100, warmup_runs=10,
                      num_threads=1, results_path="run/bench.jsonl")
    m.latency_ms["p50"], m.peak_rss_bytes, m.to_dict()

Progress goes to the ``edgedistill.bench`` logger: one line when a grid starts, one per pair measured.

With ``profile=True`` (``BenchConfig.profile``) each pair also gets a per-operator profile
(:mod:`edgedistill.profiles`): kept in the result record (``extra["profile"]``, with its summary in
``extra["profile_summary"]``) and written beside the results file as ``<results stem>.<model stem>.<target>``
``.profile.csv`` and ``.trace.json``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from edgedistill.errors import EdgeDistillError, InputError, StageError
from edgedistill.targets import TargetOptions, make_target
from edgedistill.targets.base import (
    BenchConfig,
    Measurement,
    Target,
    file_sha256,
    pair_key,
    require_model,
    stop_running_measurements,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One model on one target."""

    model: Path
    target_spec: str


def run_benchmark(
    model: str | os.PathLike,
    target: str | Target = "local",
    *,
    num_runs: int = BenchConfig.num_runs,
    warmup_runs: int = BenchConfig.warmup_runs,
    num_threads: int = BenchConfig.num_threads,
    min_secs: float = BenchConfig.min_secs,
    use_xnnpack: bool = BenchConfig.use_xnnpack,
    timeout_s: float | None = BenchConfig.timeout_s,
    inputs: str | os.PathLike | None = None,
    results_path: str | os.PathLike | None = None,
    target_options: TargetOptions | None = None,
    raise_on_failure: bool = True,
    profile: bool = False,
) -> Measurement:
    """Measure one ``.tflite`` model on one target and return its :class:`Measurement`.

    The result is appended to ``results_path`` (JSON lines) when given, also when it failed.
    A failed measurement raises :class:`~edgedistill.errors.StageError` unless
    ``raise_on_failure=False`` (then it is returned with ``status="failed"``).
    """
    config = BenchConfig(
        num_runs=num_runs,
        warmup_runs=warmup_runs,
        num_threads=num_threads,
        min_secs=min_secs,
        use_xnnpack=use_xnnpack,
        timeout_s=timeout_s,
        inputs=os.fspath(inputs) if inputs is not None else None,
        profile=profile,
    )
    if config.inputs is not None and not Path(config.inputs).is_file():
        raise InputError(f"Inputs file not found: {config.inputs!r}. Pass a .npy or .npz file, or omit it for random inputs.")
    model_path = require_model(model)
    target_object = target if isinstance(target, Target) else make_target(target, target_options)
    require_profiling([target_object], config)
    if results_path is not None:
        prepare_results_file(results_path)
    measurement = _measure_on_session(
        target_object, [model_path], config, results_path=results_path, on_result=_Progress(total=1)
    )[0]
    if raise_on_failure and not measurement.ok:
        if measurement.exception is not None:
            raise measurement.exception
        raise StageError(measurement.error or "benchmark failed")
    return measurement


class _Progress:
    """Logs one line per pair measured (``[3/8] model @ target: p50 ...``); thread-safe via the grid's lock."""

    def __init__(self, total: int, then: Callable[[Measurement], None] | None = None) -> None:
        self.total = total
        self.done = 0
        self.then = then

    def __call__(self, measurement: Measurement) -> None:
        from edgedistill.results import target_label

        self.done += 1
        where = f"[{self.done}/{self.total}] {Path(measurement.model).name} @ {target_label(measurement)}"
        latency = measurement.latency_ms or {}
        if not measurement.ok:
            logger.warning("%s: FAILED: %s", where, measurement.error)
        elif latency.get("p50") is not None:
            note = " (emulated, not device time)" if measurement.kind == "emulated" else ""
            logger.info("%s: p50 %.3f ms over %d runs%s", where, latency["p50"], len(measurement.samples_ms), note)
        else:  # benchmark_model builds that print no median
            logger.info("%s: mean %s ms (no raw samples)", where, latency.get("mean"))
        if self.then is not None:
            self.then(measurement)


def _failed(target: Target, model: Path, config: BenchConfig, error: EdgeDistillError, started: float) -> Measurement:
    try:
        measurement = target.new_measurement(model, config)
    except OSError:
        measurement = Measurement(
            model=str(model),
            model_size_bytes=None,
            target=target.describe(),
            kind=target.kind,
            num_threads=config.num_threads,
            num_runs=config.num_runs,
            warmup_runs=config.warmup_runs,
            config=config.to_dict(),
        )
    measurement.status = "failed"
    measurement.error = str(error)
    measurement.wall_s = time.monotonic() - started
    measurement.exception = error
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
            if config.profile and measurement.ok:
                attach_profile(measurement, model, target.spec, results_path)
            record(measurement)
    finally:
        try:
            target.close()
        except EdgeDistillError as error:
            logger.debug("Closing the session on %s failed: %s", target.spec, error)
    return measurements


def require_profiling(targets: Sequence[Target], config: BenchConfig) -> None:
    """InputError, before anything is measured, when a profile is asked of a target that cannot give one."""
    if not config.profile:
        return
    unable = [target.spec for target in targets if not target.can_profile]
    if unable:
        from edgedistill.profiles import PROFILING_TARGETS

        raise InputError(
            f"--profile: target {', '.join(unable)} cannot give a per-operator profile. Targets that "
            f"can: {', '.join(PROFILING_TARGETS)}. Drop --profile or choose one of those."
        )


def attach_profile(measurement: Measurement, model: Path, target_spec: str, results_path: str | os.PathLike | None) -> None:
    """Turn the target's raw profile into a Profile (MACs added), its summary and files; a missing or
    failed profile fails the pair (the user asked for it), its latency figures kept."""
    from edgedistill.profiles import Profile, add_macs, write_profile_files

    raw = measurement.extra.get("profile")
    if not isinstance(raw, dict) or raw.get("error") or not raw.get("ops"):
        reason = raw.get("error") if isinstance(raw, dict) and raw.get("error") else "the target returned none"
        measurement.status = "failed"
        measurement.error = f"{target_spec}: no per-operator profile: {reason}."
        return
    raw = {key: value for key, value in raw.items() if key != "event"}
    profile = add_macs(Profile.from_dict(raw), model)
    measurement.extra["profile"] = profile.to_dict()
    measurement.extra["profile_summary"] = profile.summary()
    if results_path is not None:
        measurement.extra["profile_files"] = write_profile_files(profile, results_path, model, target_spec)


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
    _check_grid_arguments(models, targets, jobs=jobs, resume=resume, results_path=results_path)
    options = target_options or TargetOptions()
    target_objects = [make_target(spec, options) for spec in targets]
    require_profiling(target_objects, config)
    model_paths, unreadable = _readable_models(models)
    if results_path is not None:
        prepare_results_file(results_path)
    done = read_done_keys(results_path) if resume and results_path is not None else set()  # resume needs one: checked
    queues, skipped = _device_queues(model_paths, target_objects, config, done, on_skip)
    total = sum(len(paths) for queue in queues for _, paths in queue) + len(unreadable) * len(target_objects)
    logger.info(
        "Benchmarking %d pair(s) (%d model(s) x %d target(s), %d already measured)%s",
        total,
        len(models),
        len(target_objects),
        skipped,
        f"; results -> {results_path}" if results_path else "",
    )
    lock = threading.Lock()
    progress = _Progress(total, then=on_result)
    results: list[Measurement] = []
    # An unreadable model fails its pairs, recorded like any failure; the other models are measured.
    for path, error in unreadable:
        for target in target_objects:
            results.append(_record(_failed(target, path, config, error, time.monotonic()), results_path, progress))
    return results + _run_queues(queues, config, jobs=jobs, results_path=results_path, on_result=progress, lock=lock)


def _check_grid_arguments(
    models: Sequence[str | os.PathLike],
    targets: Sequence[str],
    *,
    jobs: int,
    resume: bool,
    results_path: str | os.PathLike | None,
) -> None:
    """InputError, before any target is made, for a grid that cannot run as asked."""
    if jobs < 1:
        raise InputError(f"`jobs` must be >= 1. Received: jobs={jobs}.")
    if not models:
        raise InputError("No model given. Pass one or more .tflite files, or --suite FILE.")
    if not targets:
        raise InputError("No target given. Pass --target local (or ssh://user@host, adb, qemu-aarch64, tflm).")
    if resume and results_path is None:
        raise InputError("--resume needs a results file: pass --results FILE.")


def _run_queues(
    queues: list[list[tuple[Target, list[Path]]]],
    config: BenchConfig,
    *,
    jobs: int,
    results_path: str | os.PathLike | None,
    on_result: Callable[[Measurement], None],
    lock: threading.Lock,
) -> list[Measurement]:
    """Measure every device queue: up to ``jobs`` devices at once, each queue's pairs one after another."""

    def run_queue(queue: list[tuple[Target, list[Path]]]) -> list[Measurement]:
        out = []
        for target, paths in queue:
            out += _measure_on_session(target, paths, config, results_path=results_path, on_result=on_result, lock=lock)
        return out

    results: list[Measurement] = []
    if jobs == 1 or len(queues) <= 1:
        for queue in queues:
            results += run_queue(queue)
    else:
        with ThreadPoolExecutor(max_workers=min(jobs, len(queues))) as pool:
            try:
                for measured in pool.map(run_queue, queues):
                    results += measured
            except KeyboardInterrupt:
                stop_running_measurements()  # else leaving the pool waits for every running pair to end
                raise
    return results


def _readable_models(models: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, InputError]]]:
    """The models that are readable .tflite files, and the others with their error."""
    readable, unreadable = [], []
    for model in models:
        try:
            readable.append(require_model(model))
        except InputError as error:
            unreadable.append((Path(model), error))
    return readable, unreadable


def _record(
    measurement: Measurement, results_path: str | os.PathLike | None, on_result: Callable[[Measurement], None]
) -> Measurement:
    from edgedistill.fileio import append_jsonl

    if results_path is not None:
        append_jsonl(results_path, measurement.to_dict())
    on_result(measurement)
    return measurement


def prepare_results_file(results_path: str | os.PathLike) -> None:
    """Before the first append: a results file that can be written, whose cut last line (if any) is set aside."""
    from edgedistill.fileio import ensure_writable_dir
    from edgedistill.results import set_aside_cut_line

    path = Path(results_path)
    if path.is_dir():
        raise InputError(f"--results {str(path)!r} is a folder. Pass a file name, e.g. {str(path / 'bench.jsonl')!r}.")
    ensure_writable_dir(path.parent, what="the folder of --results")
    set_aside_cut_line(path)


def _device_queues(
    model_paths: Sequence[Path],
    target_objects: Sequence[Target],
    config: BenchConfig,
    done: set[str],
    on_skip: Callable[[Pair], None] | None,
) -> tuple[list[list[tuple[Target, list[Path]]]], int]:
    """One queue per device, in the order the user gave (a device never runs two pairs at once),
    without the pairs in ``done``; and how many pairs were skipped."""
    digests = {path: file_sha256(path) for path in model_paths}
    key_config = config.to_dict()
    queues_by_device: dict[str, list[tuple[Target, list[Path]]]] = {}
    skipped = 0
    for target in target_objects:
        paths = []
        for path in model_paths:
            if pair_key(str(path), digests[path], target.spec, key_config) in done:
                skipped += 1
                if on_skip is not None:
                    on_skip(Pair(path, target.spec))
                continue
            paths.append(path)
        if paths:
            queues_by_device.setdefault(target.device_key, []).append((target, paths))
    return list(queues_by_device.values()), skipped


__all__ = [
    "run_benchmark",
    "run_grid",
    "require_profiling",
    "attach_profile",
    "read_done_keys",
    "prepare_results_file",
    "Pair",
    "BenchConfig",
    "Measurement",
    "TargetOptions",
]
