"""``edgedistill bench`` and ``edgedistill results``: thin click commands over edgedistill.bench / .results.

Importing this module must not import TensorFlow (``edgedistill bench --help`` stays fast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgedistill.commands.options import config_options
from edgedistill.config import MeasureConfig, at_least, number_type, positive
from edgedistill.errors import InputError, StageError
from edgedistill.targets import TargetOptions

if TYPE_CHECKING:
    from edgedistill.targets.base import Measurement

COUNT = number_type(int, at_least(1), ">= 1")
SECONDS = number_type(float, positive, "a finite number > 0")

# Keys a suite file may hold -> the bench option they feed (command line > suite file > default).
SUITE_KEYS = {
    "models": "models",
    "targets": "targets",
    "num_runs": "num_runs",
    "warmup_runs": "warmup_runs",
    "num_threads": "num_threads",
    "min_secs": "min_secs",
    "use_xnnpack": "use_xnnpack",
    "timeout": "timeout_s",
    "inputs": "inputs",
    "jobs": "jobs",
    "results": "results_path",
    "ssh_config": "ssh_config",
    "remote_python": "remote_python",
    "accept_new_host_key": "accept_new_host_key",
    "serial": "serial",
    "benchmark_binary": "benchmark_binary",
    "taskset": "taskset",
    "rootfs": "rootfs",
    "connect_timeout": "connect_timeout",
    "arena_bytes": "arena_bytes",
    "profile": "profile",
}
_LIST = (list, "a list of text values (or one)")
_TEXT = (str, "a text value")


def _measure_suite_types() -> dict[str, tuple[Any, ...]]:
    """The suite keys of the measuring options: their type, expected text and check are MeasureConfig's fields."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(MeasureConfig)
    fields = {field.name: field for field in dataclasses.fields(MeasureConfig)}
    found: dict[str, tuple[Any, ...]] = {}
    for key, name in SUITE_KEYS.items():
        if name in fields:
            kind = next(k for k in (typing.get_args(hints[name]) or (hints[name],)) if k is not type(None))
            expected = {bool: "true or false", str: "a text value"}.get(kind) or fields[name].metadata["expected"]
            found[key] = (kind, expected, fields[name].metadata["check"]) if kind in (int, float) else (kind, expected)
    return found


# Suite key -> (type, what it must be, range check or None): checked when the file is read.
SUITE_TYPES: dict[str, tuple[Any, ...]] = {
    "models": _LIST,
    "targets": _LIST,
    "results": _TEXT,
    "ssh_config": _TEXT,
    "remote_python": _TEXT,
    "serial": _TEXT,
    "benchmark_binary": _TEXT,
    "taskset": _TEXT,
    "rootfs": _TEXT,
    "accept_new_host_key": (bool, "true or false"),
    "jobs": (int, "a whole number >= 1", at_least(1)),
    "arena_bytes": (int, "a whole number >= 1", at_least(1)),
    "connect_timeout": (float, "a finite number > 0", positive),
    **_measure_suite_types(),
}
PATH_KEYS = ("models", "inputs", "results", "ssh_config", "benchmark_binary", "rootfs")


def read_suite(path: str) -> dict[str, Any]:
    """A suite file: models x targets and settings; relative paths are relative to the file."""
    from edgedistill.config import load_yaml

    suite_path = Path(path)
    if suite_path.exists() and (not suite_path.is_file() or suite_path.stat().st_size > 1 << 20):
        raise InputError(
            f"Suite file {path!r} is not a regular file of at most 1 MiB (a device, FIFO or a huge file). "
            "Pass a YAML file with `models:` and `targets:` lists."
        )
    try:
        data = load_yaml(suite_path.read_text(encoding="utf-8"), source=f"Suite file {path!r}") or {}  # no alias bombs
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"Cannot read suite file {path!r}: {str(error).splitlines()[0]}. "
            "Pass a YAML file with `models:` and `targets:` lists."
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            f"Suite file {path!r} must hold a mapping (models:, targets:, num_runs: ...). Received: {type(data).__name__}."
        )
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise InputError(
            f"Unknown key(s) in suite file {path!r}: {', '.join(unknown)}. Expected any of: {', '.join(sorted(SUITE_KEYS))}."
        )
    for key in ("models", "targets"):
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    for key, value in data.items():
        _check_suite_value(path, key, value)
    base = suite_path.parent

    def resolve(value: str) -> str:
        value = str(value)
        return value if Path(value).is_absolute() else str(base / value)

    for key in PATH_KEYS:
        if key in data and data[key] is not None:
            data[key] = [resolve(v) for v in data[key]] if key == "models" else resolve(data[key])
    return data


def _check_suite_value(path: str, key: str, value: Any) -> None:
    kind, expected, *check = SUITE_TYPES[key]
    if value is None:
        return
    if kind is list:
        fits = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif kind is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        fits = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if fits and check:
        fits = check[0](value)
    if not fits:
        raise InputError(
            f"Suite file {path!r}: `{key}` must be {expected}. Received: {value!r} ({type(value).__name__}). Fix it in that file."
        )


def _merge_suite(ctx: click.Context, values: dict[str, Any], data: dict[str, Any]) -> None:
    """Fill ``values`` from a suite file: the command line wins over the file, the file over defaults."""
    for key, value in data.items():
        name = SUITE_KEYS[key]
        if name in ("models", "targets"):
            if not values[name]:
                values[name] = list(value or [])
        elif ctx.get_parameter_source(name) in (click.core.ParameterSource.DEFAULT, None):
            values[name] = value


def _check_paths(values: dict[str, Any], suite: str | None) -> None:
    """Before anything is measured: model paths that are files, and a results file that is none of the inputs."""
    from edgedistill.fileio import refuse_output_over_input

    for model in values["models"]:  # /dev/zero would be read until memory runs out, a FIFO blocks
        if Path(model).exists() and not Path(model).is_file() and not Path(model).is_dir():
            raise InputError(f"{model!r} is not a regular file (a device, FIFO or socket). Pass .tflite model files.")
    refuse_output_over_input(
        values["results_path"],
        {"model": values["models"], "--inputs file": values["inputs"], "--suite file": suite},
        what="--results",
    )


def _target_options(values: dict[str, Any]) -> TargetOptions:
    """How targets are reached (ssh, adb, qemu, tflm), from the merged command-line and suite values."""
    return TargetOptions(
        ssh_config=values["ssh_config"],
        remote_python=values["remote_python"],
        accept_new_host_key=values["accept_new_host_key"],
        connect_timeout_s=values["connect_timeout"],
        serial=values["serial"],
        benchmark_binary=values["benchmark_binary"],
        taskset=values["taskset"],
        rootfs=values["rootfs"],
        tflm_arena_bytes=values["arena_bytes"],
    )


def _report(measurements: list[Measurement], values: dict[str, Any], pairs: int) -> None:
    """Print the measurements (table or JSON lines); raise for failed pairs (one pair: its own error and exit code)."""
    from edgedistill.results import format_table

    if values["as_json"]:
        for measurement in measurements:
            click.echo(json.dumps(measurement.to_dict()))
    elif measurements:
        click.echo(format_table(measurements))
    failed = [m for m in measurements if not m.ok]
    if len(measurements) == 1 and failed:
        # One pair: its own error and exit code (2 for bad input); the result is in the results file.
        raise failed[0].exception if failed[0].exception is not None else StageError(failed[0].error or "failed")
    if failed and len(failed) == len(measurements) and all(isinstance(m.exception, InputError) for m in failed):
        raise InputError(f"all {len(failed)} pair(s) failed on bad input (first: {failed[0].error})")
    if failed:
        raise StageError(
            f"{len(failed)} of {pairs} pair(s) failed (first: {failed[0].error}); the others are in {values['results_path']}."
        )


@click.command("bench")
@click.argument("models", nargs=-1, type=click.Path())  # a folder is refused with its own message
@click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    metavar="SPEC",
    help="local | ssh://user@host[:port] | adb[:SERIAL] | qemu-aarch64 | tflm. Repeat for a grid. [default: local]",
)
@click.option("--suite", type=click.Path(dir_okay=False), help="YAML file of models x targets and settings.")
# How each pair is measured: MeasureConfig's fields (one definition, shared with the library's BenchConfig).
@config_options([MeasureConfig], exclude=("seed",), overrides={"inputs": {"type": click.Path(dir_okay=False)}})
@click.option(
    "--jobs", "-j", type=COUNT, default=1, show_default=True, help="Devices measured at once (never two pairs on one device)."
)
@click.option("--resume", is_flag=True, help="Skip pairs already measured with these settings in --results.")
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False),
    default="bench.jsonl",
    show_default=True,
    help="JSON-lines file each result is appended to as soon as it is measured.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON lines on stdout.")
@click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh: config file (passed as ssh -F).")
@click.option("--remote-python", default=TargetOptions.remote_python, show_default=True, help="ssh: Python on the device.")
@click.option(
    "--accept-new-host-key",
    is_flag=True,
    help="ssh: trust a host key seen for the first time "
    "(StrictHostKeyChecking=accept-new). Without it an unknown host is refused.",
)
@click.option(
    "--connect-timeout",
    type=SECONDS,
    default=TargetOptions.connect_timeout_s,
    show_default=True,
    help="ssh/adb: seconds to connect.",
)
@click.option("--serial", "-s", help="adb: device serial (needed when several devices are attached).")
@click.option(
    "--benchmark-binary",
    envvar="EDGEDISTILL_BENCHMARK_MODEL",
    type=click.Path(dir_okay=False),
    help="TFLite benchmark_model binary for the device (adb: required; ssh: optional). [env: EDGEDISTILL_BENCHMARK_MODEL]",
)
@click.option("--taskset", metavar="MASK", help="adb/ssh with benchmark_model: pin with `taskset MASK` (e.g. f0).")
@click.option(
    "--arena-bytes",
    type=COUNT,
    default=None,
    help="tflm: tensor arena in bytes [default: 10x the model + 16 KiB, grown until TFLM fits].",
)
@click.option(
    "--rootfs",
    envvar="EDGEDISTILL_ROOTFS",
    type=click.Path(file_okay=False),
    help="qemu-aarch64: arm64 root file system [env: EDGEDISTILL_ROOTFS; default: /var/cache/edgedistill/rootfs-arm64-bookworm].",
)
@click.pass_context
def bench(ctx: click.Context, models: tuple[str, ...], targets: tuple[str, ...], suite: str | None, **options: Any) -> None:
    """Benchmark .tflite MODELS on one or more targets; print a comparison table.

    \b
    edgedistill bench student_int8.tflite --target local
    edgedistill bench m.tflite --target ssh://pi@raspberrypi.local --num-threads 4
    edgedistill bench m.tflite --target adb --serial R58M123 --benchmark-binary ./benchmark_model
    edgedistill bench m.tflite --target qemu-aarch64
    edgedistill bench a.tflite b.tflite -t local -t ssh://pi@host --jobs 2
    edgedistill bench --suite benchmarks/suite.yaml
    """
    from edgedistill.bench import run_grid
    from edgedistill.targets.base import BenchConfig

    values: dict[str, Any] = {"models": list(models), "targets": list(targets), **options}
    if suite:
        _merge_suite(ctx, values, read_suite(suite))
    if not values["models"]:
        raise InputError("No model given. Pass one or more .tflite files, or --suite FILE with a `models:` list.")
    target_specs = values["targets"] or ["local"]
    _check_paths(values, suite)
    config = BenchConfig(**{name: values[name] for name in BenchConfig.option_names() if name in values})
    if config.inputs is not None and not Path(config.inputs).is_file():
        raise InputError(f"Inputs file not found: {config.inputs!r}. Pass a .npy or .npz file, or omit --inputs.")
    pairs = len(values["models"]) * len(target_specs)
    skipped: list[Any] = []  # the pairs already measured (bench.Pair)
    # Progress (one line per pair) goes through the edgedistill.bench logger.
    measurements = run_grid(
        values["models"],
        target_specs,
        config,
        results_path=values["results_path"],
        jobs=values["jobs"],
        resume=values["resume"],
        target_options=_target_options(values),
        on_skip=skipped.append,
    )
    if skipped:
        click.echo(f"Skipped {len(skipped)} pair(s) already in {values['results_path']} (--resume).", err=True)
    _report(measurements, values, pairs)


@click.group("results")
def results() -> None:
    """Compare and plot benchmark result files (bench.jsonl)."""


@results.command("compare")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print rows as JSON.")
def compare(files: tuple[str, ...], as_json: bool) -> None:
    """Side-by-side p50 / p99 / peak RSS of FILES with ratios to the first file.

    \b
    edgedistill results compare runs/x/bench.jsonl runs/y/bench.jsonl
    """
    from edgedistill.results import compare_results, format_comparison

    rows = compare_results(list(files))
    if as_json:
        click.echo(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    labels = _short_labels(files)
    click.echo(format_comparison(rows, labels))


def _short_labels(files: tuple[str, ...]) -> list[str]:
    """The shortest distinct path tails: runs/x/bench.jsonl, runs/y/bench.jsonl -> x/bench.jsonl, y/..."""
    parts = [Path(f).parts for f in files]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return list(files)


@results.command("plot")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="PNG path [default: FILE with .png].")
def plot(file: str, output: str | None) -> None:
    """Latency CDF and p50 bars of FILE as a PNG (emulated pairs hatched and labelled)."""
    from edgedistill.fileio import ensure_writable_dir
    from edgedistill.results import plot_results

    ensure_writable_dir(Path(output or file).expanduser().absolute().parent, what="the folder of the plot")
    click.echo(str(plot_results(file, output)))


__all__ = ["bench", "results"]
