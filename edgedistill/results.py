"""Benchmark result files (JSON lines): read, tabulate, compare with ratios, plot.

Each line is one :class:`~edgedistill.targets.base.Measurement` (one schema per file; the same
file reads as a table with ``pandas.read_json(path, lines=True)``). Emulated figures are labelled
``emulated`` in every table and plot, and are never presented as device time. Firmware results
(``edgedistill firmware run``) have their own file, ``firmware.jsonl``; the lines older versions
appended to ``bench.jsonl`` are skipped with a warning.

Example::

    from edgedistill.results import read_results, format_table, compare_results
    print(format_table(read_results("runs/x/bench.jsonl")))
    print(format_comparison(compare_results(["runs/x/bench.jsonl", "runs/y/bench.jsonl"])))
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgedistill.errors import InputError
from edgedistill.targets.base import Measurement

logger = logging.getLogger(__name__)


def read_results(path: str | os.PathLike) -> list[Measurement]:
    """Every measurement in a JSON-lines file, in file order.

    A last line cut short by a crash is skipped (everything before it was flushed whole); a
    broken line elsewhere, or a field of the wrong type, is an error naming the file and the line.
    ``firmware run`` lines that older versions appended to ``bench.jsonl`` are skipped with a
    warning; a file of nothing but firmware results (``firmware.jsonl``) is an error saying how to read it.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder. Pass a bench.jsonl file written by `edgedistill bench`.")
    if path.exists() and not path.is_file():  # /dev/zero would be read until memory runs out, a FIFO blocks
        raise InputError(
            f"{str(path)!r} is not a regular file (a device, FIFO or socket). Pass a bench.jsonl file "
            "written by `edgedistill bench`."
        )
    if not path.is_file():
        raise InputError(f"Results file not found: {str(path)!r}. Pass a bench.jsonl written by `edgedistill bench`.")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    measurements = []
    firmware_lines = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if _is_firmware_record(data):
                firmware_lines += 1
                continue
            measurements.append(Measurement.from_dict(check_record(data)))
        except (ValueError, TypeError) as error:
            if number == len(lines) and not line.endswith("}"):
                continue  # the line being written when the process died
            raise InputError(
                f"{str(path)!r} line {number} is not a benchmark result ({error}). "
                "Pass a bench.jsonl written by `edgedistill bench`."
            ) from None
    if firmware_lines and not measurements:
        raise InputError(
            f"{str(path)!r} holds firmware results (`edgedistill firmware run`), not benchmark "
            "results. Pass a bench.jsonl written by `edgedistill bench`; read firmware results with "
            "pandas.read_json(path, lines=True)."
        )
    if firmware_lines:
        logger.warning(
            "Skipped %d `firmware run` line(s) in %s: written by an older edgedistill; firmware "
            "results now go to firmware.jsonl.",
            firmware_lines,
            path,
        )
    return measurements


_NUMBER = (int, float)
# Field -> (accepted types, what to say); None is accepted where a figure may be missing.
_RECORD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a file name"),
    "target": ((dict,), "an object"),
    "model_size_bytes": ((int, type(None)), "a whole number or null"),
    "kind": ((str,), "a text value"),
    "status": ((str,), "a text value"),
    "num_threads": ((int,), "a whole number"),
    "num_runs": ((int,), "a whole number"),
    "latency_ms": ((dict,), "an object"),
    "samples_ms": ((list,), "a list of numbers"),
    "peak_rss_bytes": ((int, type(None)), "a whole number or null"),
    "init_ms": ((int, float, type(None)), "a number or null"),
    "first_inference_ms": ((int, float, type(None)), "a number or null"),
    "error": ((str, type(None)), "a text value or null"),
    "config": ((dict,), "an object"),
    "extra": ((dict,), "an object"),
}


def check_record(data: Any) -> dict[str, Any]:
    """``data`` if it is a measurement whose fields have the types tables and ratios rely on; else ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    missing = [name for name in ("model", "target", "model_size_bytes") if name not in data]
    if missing:
        raise ValueError(f"no {', '.join(repr(name) for name in missing)} field")
    for name, (types, expected) in _RECORD_TYPES.items():
        value = data.get(name)
        if name in data and (not isinstance(value, types) or isinstance(value, bool)):
            raise ValueError(f"field {name!r} must be {expected}, not {type(value).__name__} {value!r:.40}")
    numbers = list(data.get("samples_ms", [])) + list((data.get("latency_ms") or {}).values())
    if any(not isinstance(v, _NUMBER) or isinstance(v, bool) for v in numbers if v is not None):
        raise ValueError("samples_ms / latency_ms must hold numbers")
    # JSON readers accept NaN and Infinity; edgedistill never writes them (a missing figure is null): a table or
    # plot of them would be silently meaningless.
    if any(not math.isfinite(v) for v in numbers if v is not None):
        raise ValueError("samples_ms / latency_ms must hold finite numbers (NaN or Infinity found)")
    return data


# The longest first line read to recognise a results file (100,000 samples take ~2 MB of JSON).
MAX_RECORD_BYTES = 64 << 20


def check_results_file(path: str | os.PathLike) -> None:
    """An existing, non-empty file results are about to be appended to must be a results file: its first
    line a benchmark (or firmware) record. Anything else (a .tflite, a report.json, notes) is refused
    before a byte is written or cut, so ``bench m.tflite --results m.tflite`` never damages the model."""
    path = Path(path)
    if not path.is_file():
        return  # absent, or a device (/dev/null) / FIFO (not opened: it could block); writes report their own errors
    try:
        with open(path, "rb") as handle:
            # The first line whole (a record with every raw sample can be megabytes), bounded all the same.
            first = handle.readline(MAX_RECORD_BYTES).rstrip(b"\n")
    except OSError as error:
        raise InputError(f"Cannot read the results file {str(path)!r}: {error.strerror}.") from None
    if not first:
        return
    try:
        record = json.loads(first.decode("utf-8"))
        if not _is_firmware_record(record):
            check_record(record)
    except (UnicodeDecodeError, ValueError, TypeError):
        raise InputError(
            f"--results {str(path)!r} exists and is not a results file (its first line is not a benchmark "
            "result). Appending would damage it. Pass a new file name or a bench.jsonl written by "
            "`edgedistill bench`."
        ) from None


def set_aside_cut_line(path: str | os.PathLike) -> Path | None:
    """Before appending to a results file whose last line was cut short (a crash while writing it):
    move that fragment's bytes to a side file and end the file after its last complete line, so new
    records start on a line of their own. Complete lines are never rewritten. Returns the side file.

    A last line that is a whole record missing only its newline gets the newline instead.
    """
    from edgedistill.fileio import write_bytes_atomic

    path = Path(path)
    check_results_file(path)
    if path.exists() and not path.is_file():
        return None
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return None
    if size == 0:
        return None
    with open(path, "rb") as handle:
        start = size
        tail = b""
        while start > 0 and b"\n" not in tail:  # read backwards until the last line's start
            start = max(0, start - 65536)
            handle.seek(start)
            tail = handle.read(size - start)
    if tail.endswith(b"\n"):
        return None
    fragment = tail[tail.rfind(b"\n") + 1 :]
    try:
        json.loads(fragment.decode("utf-8"))
        whole = True
    except (UnicodeDecodeError, ValueError):
        whole = False
    if whole:
        with open(path, "ab") as handle:
            handle.write(b"\n")
        return None
    side = _free_name(path.with_name(path.name + ".cut"))
    write_bytes_atomic(side, fragment)
    os.truncate(path, size - len(fragment))
    logger.warning(
        "%s: its last line was cut short (%d bytes, probably a crash while it was written); those bytes "
        "are kept in %s and new results start on a new line.",
        path,
        len(fragment),
        side,
    )
    return side


def _free_name(path: Path) -> Path:
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _is_firmware_record(data: object) -> bool:
    """A ``firmware run`` record: it names ``kernels`` and its target is a board name, not a dict."""
    return isinstance(data, dict) and "kernels" in data and not isinstance(data.get("target"), dict)


def latest_per_pair(measurements: Sequence[Measurement]) -> list[Measurement]:
    """The last line of each (model, target, settings) pair, so a resumed re-run replaces a failure."""
    latest: dict[str, Measurement] = {}
    for measurement in measurements:
        latest.pop(measurement.pair_key, None)
        latest[measurement.pair_key] = measurement
    return list(latest.values())


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value < 1 else f"{value:.4g}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _model_name(measurement: Measurement) -> str:
    return Path(measurement.model).name


def target_label(measurement: Measurement) -> str:
    """The target's spec, with `` [emulated]`` when its times are not device times."""
    spec = measurement.target.get("spec") or measurement.target.get("name") or "?"
    return f"{spec} [emulated]" if measurement.kind == "emulated" else spec


def format_table(measurements: Sequence[Measurement]) -> str:
    """A plain-text table, one row per pair; emulated rows are labelled as such."""
    header = [
        "model",
        "target",
        "kind",
        "status",
        "threads",
        "runs",
        "p50 ms",
        "mean ms",
        "p90 ms",
        "p99 ms",
        "init ms",
        "first ms",
        "peak RSS MiB",
        "size KiB",
    ]
    rows = []
    for m in measurements:
        latency = m.latency_ms or {}
        rows.append(
            [
                _model_name(m),
                target_label(m),
                m.kind,
                m.status,
                str(m.num_threads),
                str(len(m.samples_ms)),
                _ms(latency.get("p50")),
                _ms(latency.get("mean")),
                _ms(latency.get("p90")),
                _ms(latency.get("p99")),
                _ms(m.init_ms),
                _ms(m.first_inference_ms),
                _mib(m.peak_rss_bytes),
                "-" if m.model_size_bytes is None else f"{m.model_size_bytes / 1024:.1f}",
            ]
        )
    text = _render(header, rows)
    failures = [f"  {_model_name(m)} on {target_label(m)}: {m.error}" for m in measurements if not m.ok]
    if failures:
        text += "\nFailed:\n" + "\n".join(failures)
    if any(m.kind == "emulated" for m in measurements):
        text += "\nRows marked [emulated] ran under an emulator: their times are not device times."
    return text


def _render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)] if rows else [len(h) for h in header]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


@dataclass
class ComparisonRow:
    """One (model, target, threads) pair across result files; ratios are other / baseline."""

    model: str
    target: str
    num_threads: int
    kinds: list[str | None]
    p50_ms: list[float | None]
    mean_ms: list[float | None]
    p99_ms: list[float | None]
    peak_rss_bytes: list[int | None]
    ratios_p50: list[float | None] = field(default_factory=list)
    ratios_peak_rss: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from edgedistill.fileio import to_jsonable

        return to_jsonable(self)


def _ratio_of(value: float | None, base: float | None) -> float | None:
    if value is None or base in (None, 0):
        return None
    return value / base


def compare_results(paths: Sequence[str | os.PathLike]) -> list[ComparisonRow]:
    """Match pairs by (model file name, target, num_threads) across files; the first file is the baseline."""
    if len(paths) < 2:
        raise InputError(
            f"compare needs at least 2 result files. Received: {len(paths)}. Pass e.g. runs/x/bench.jsonl runs/y/bench.jsonl."
        )
    tables = []
    for path in paths:
        by_key = {}
        measurements = read_results(path)
        if not measurements:
            raise InputError(
                f"{str(path)!r} holds no benchmark result ({_why_empty(Path(path))}). Pass a bench.jsonl "
                "written by `edgedistill bench`."
            )
        for m in latest_per_pair(measurements):
            if m.ok:
                by_key[(_model_name(m), m.target.get("spec") or m.target.get("name"), m.num_threads)] = m
        if not by_key:
            raise InputError(
                f"{str(path)!r} holds no successful measurement ({len(measurements)} failed), so there "
                "is nothing to compare. Re-run `edgedistill bench --resume --results FILE` to measure them."
            )
        tables.append(by_key)
    keys: list[tuple] = []
    for table in tables:
        keys += [key for key in table if key not in keys]
    rows = []
    for key in keys:
        found = [table.get(key) for table in tables]
        row = ComparisonRow(
            model=key[0],
            target=key[1],
            num_threads=key[2],
            kinds=[m.kind if m else None for m in found],
            p50_ms=[m.latency_ms.get("p50") if m else None for m in found],
            mean_ms=[m.latency_ms.get("mean") if m else None for m in found],
            p99_ms=[m.latency_ms.get("p99") if m else None for m in found],
            peak_rss_bytes=[m.peak_rss_bytes if m else None for m in found],
        )
        row.ratios_p50 = [_ratio_of(v, row.p50_ms[0]) for v in row.p50_ms[1:]]
        row.ratios_peak_rss = [_ratio_of(v, row.peak_rss_bytes[0]) for v in row.peak_rss_bytes[1:]]
        rows.append(row)
    return rows


def _why_empty(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return "the file is empty"
    return "its only line is not a complete JSON object"


def format_comparison(rows: Sequence[ComparisonRow], labels: Sequence[str]) -> str:
    """Side-by-side p50 / p99 / peak RSS per file, with ratios to the first file (baseline)."""
    header = ["model", "target", "threads"]
    for index, label in enumerate(labels):
        header += [f"p50 ms [{label}]", f"p99 ms [{label}]", f"RSS MiB [{label}]"]
        if index:
            header += [f"p50 ratio [{label}]", f"RSS ratio [{label}]"]
    body = []
    for row in rows:
        emulated = "emulated" in row.kinds
        cells = [row.model, f"{row.target} [emulated]" if emulated else row.target, str(row.num_threads)]
        for index in range(len(labels)):
            cells += [_ms(row.p50_ms[index]), _ms(row.p99_ms[index]), _mib(row.peak_rss_bytes[index])]
            if index:
                cells += [_ratio(row.ratios_p50[index - 1]), _ratio(row.ratios_peak_rss[index - 1])]
        body.append(cells)
    text = _render(header, body) + "\nRatios are file / first file (below 1.00x is faster or smaller)."
    if any("emulated" in row.kinds for row in rows):
        text += "\nRows marked [emulated] ran under an emulator: their times are not device times."
    return text


def plot_results(path: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Latency CDF and p50 bars (p90/p99 marks) of every ok pair in a results file, as one PNG.

    Draws on its own ``Figure`` and Agg canvas: pyplot and the process's backend are left alone.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError(
            "Plotting needs matplotlib, which is not installed. "
            "Install it: `pip install 'edgedistill[plot]'` (or `pip install matplotlib`)."
        ) from None
    from edgedistill.fileio import write_bytes_atomic

    measurements = [m for m in latest_per_pair(read_results(path)) if m.ok and m.samples_ms]
    if not measurements:
        raise InputError(f"{str(path)!r} has no successful measurement with samples to plot.")
    output = Path(output) if output else Path(path).with_suffix(".png")
    _check_plot_output(output, Path(path))
    figure = Figure(figsize=(12, 4.5))
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas: savefig renders with Agg, no pyplot
    cdf_axes, bar_axes = figure.subplots(1, 2)
    labels = [f"{_model_name(m)} @ {target_label(m)}" for m in measurements]
    _plot_cdf(cdf_axes, measurements, labels)
    _plot_percentile_bars(bar_axes, measurements, labels)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_bytes_atomic(output, buffer.getvalue())
    logger.debug("Wrote %s (%d pairs)", output, len(measurements))
    return output


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_plot_output(output: Path, source: Path) -> None:
    """The plot replaces ``output``: refused when it is the results file read, or an existing file that is not a PNG."""
    from edgedistill.fileio import check_output_name, refuse_output_over_input

    check_output_name(output, what="the plot (-o/--output)")
    refuse_output_over_input(output, {"results file": source}, what="the plot")
    if output.is_file() and output.stat().st_size:
        with open(output, "rb") as handle:
            if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise InputError(
                    f"The plot would replace {str(output)!r}, which exists and is not a PNG. Pass "
                    "another -o/--output (e.g. plot.png)."
                )


def _plot_cdf(axes: Any, measurements: Sequence[Measurement], labels: Sequence[str]) -> None:
    for m, label in zip(measurements, labels):
        values = sorted(m.samples_ms)
        fractions = [(i + 1) / len(values) for i in range(len(values))]
        axes.step(values, fractions, where="post", label=label, linestyle="--" if m.kind == "emulated" else "-")
    axes.set_xlabel("latency per invoke (ms)")
    axes.set_ylabel("fraction of runs")
    axes.set_title("Latency CDF")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)


def _percentile(measurement: Measurement, name: str) -> float:
    """``latency_ms[name]`` (p50, p90, p99), or computed from the samples when a hand-made file lacks it."""
    value = (measurement.latency_ms or {}).get(name)
    if value is None:
        import numpy as np

        value = float(np.percentile(measurement.samples_ms, float(name[1:])))
    return value


def _plot_percentile_bars(axes: Any, measurements: Sequence[Measurement], labels: Sequence[str]) -> None:
    positions = list(range(len(measurements)))
    p50 = [_percentile(m, "p50") for m in measurements]
    bars = axes.bar(positions, p50, color=["#bbbbbb" if m.kind == "emulated" else "#4477aa" for m in measurements])
    for bar, m in zip(bars, measurements):
        if m.kind == "emulated":
            bar.set_hatch("//")
    axes.scatter(positions, [_percentile(m, "p90") for m in measurements], marker="_", s=300, color="k", label="p90")
    axes.scatter(positions, [_percentile(m, "p99") for m in measurements], marker="x", color="r", label="p99")
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, rotation=20, ha="right", fontsize=7)
    axes.set_ylabel("p50 latency (ms)")
    axes.set_title("p50 per pair (hatched = emulated, not device time)")
    axes.legend(fontsize=7)


__all__ = [
    "read_results",
    "check_record",
    "check_results_file",
    "set_aside_cut_line",
    "latest_per_pair",
    "format_table",
    "compare_results",
    "format_comparison",
    "plot_results",
    "target_label",
    "ComparisonRow",
]
