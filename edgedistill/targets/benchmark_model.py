"""TFLite's ``benchmark_model`` tool: its command line and a parser for its output.

The tool prints aggregate statistics only (no per-run samples), in lines such as::

    count=50 first=207897 curr=225553 min=206675 max=231957 avg=220000 std=6795
    Inference timings in us: Init: 1430, First inference: 247583, Warmup (avg): 222136, Inference (avg): 220000
    Memory footprint delta from the start of the tool (MB): init=5.66016 overall=140.508

Newer builds prefix lines with ``INFO: `` (or logcat's ``I tflite  : ``), add ``p5= median= p95=``
to the ``count=`` lines, and with ``--report_peak_memory_footprint`` print
``Overall peak memory footprint (MB) via periodic monitoring: X``. Times are microseconds.
With ``--enable_op_profiling=true`` (``BenchConfig.profile``) it also prints the per-operator tables,
parsed by :func:`edgedistill.profiles.parse_benchmark_model_profile`.
"""

from __future__ import annotations

import re
from typing import Any

from edgedistill.targets.base import BenchConfig, Measurement

_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: {_NUMBER}, First inference: {_NUMBER}, "
    rf"Warmup \(avg\): {_NUMBER}, Inference \(avg\): {_NUMBER}"
)
_COUNT = re.compile(r"count=(\d+)((?: \w+=" + _NUMBER + r")*)")
_FIELD = re.compile(r"(\w+)=" + _NUMBER)
_MEMORY = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init={_NUMBER} overall={_NUMBER}"
)
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUMBER}")
_INIT_SESSION = re.compile(rf"Initialized session in {_NUMBER}\s*ms")
_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): {_NUMBER}")
_ERROR = re.compile(r"^(?:ERROR: |E tflite\s*: )(.+)$", re.MULTILINE)
MIB = 2**20


def benchmark_model_arguments(graph: str, config: BenchConfig) -> list[str]:
    """Flags of ``benchmark_model`` for one measurement (the same names as our options)."""
    arguments = [
        f"--graph={graph}",
        f"--num_runs={config.num_runs}",
        f"--warmup_runs={config.warmup_runs}",
        f"--num_threads={config.num_threads}",
        f"--use_xnnpack={'true' if config.use_xnnpack else 'false'}",
        "--report_peak_memory_footprint=true",
    ]
    if config.min_secs:
        arguments.append(f"--min_secs={config.min_secs:g}")
    if config.profile:
        arguments.append("--enable_op_profiling=true")
    return arguments


def parse_benchmark_model_output(text: str) -> dict[str, Any]:
    """Figures from ``benchmark_model`` output, in ms and bytes; ``errors`` lists its ERROR lines.

    Raises ValueError when the summary line (``Inference timings in us: ...``) is absent.
    """
    errors = [match.strip() for match in _ERROR.findall(text)]
    if "Benchmarking failed" in text and not any("Benchmarking failed" in e for e in errors):
        errors.append("Benchmarking failed.")
    timings = _TIMINGS.search(text)
    if not timings:
        detail = "; ".join(errors) if errors else "no 'Inference timings in us' line"
        raise ValueError(f"benchmark_model did not finish: {detail}")
    init_us, first_us, warmup_us, inference_us = (float(v) for v in timings.groups())
    result: dict[str, Any] = {
        "init_ms": init_us / 1000.0,
        "first_inference_ms": first_us / 1000.0,
        "warmup_avg_ms": warmup_us / 1000.0,
        "inference_avg_ms": inference_us / 1000.0,
        "errors": errors,
    }
    result.update(_count_line_figures(text[: timings.start()], inference_us))
    memory = _MEMORY.search(text)
    if memory:
        result["memory_init_delta_bytes"] = int(float(memory.group(1)) * MIB)
        result["memory_overall_delta_bytes"] = int(float(memory.group(2)) * MIB)
    peak = _PEAK.search(text)
    if peak:
        result["peak_memory_bytes"] = int(float(peak.group(1)) * MIB)
    session = _INIT_SESSION.search(text)
    if session:
        result["initialized_session_ms"] = float(session.group(1))
    size = _MODEL_SIZE.search(text)
    if size:
        result["model_size_mb"] = float(size.group(1))
    delegated = _REPLACING.findall(text)
    if delegated:
        result["delegated_nodes"] = [{"replaced": int(a), "of": int(b), "delegate": c} for a, b, c in delegated]
    if "Operator-wise Profiling Info" in text:
        result["profile"] = _op_profile(text, result["latency_ms"])
    return result


def _op_profile(text: str, latency_ms: dict[str, Any]) -> dict[str, Any]:
    """The op-profiling table as a Profile dict (invoke: the median when printed, else the mean), or its error."""
    from edgedistill.profiles import parse_benchmark_model_profile

    invoke_ms = latency_ms.get("p50") if latency_ms.get("p50") is not None else latency_ms.get("mean")
    try:
        profile = parse_benchmark_model_profile(text, invoke_us=invoke_ms * 1000.0 if invoke_ms else None)
    except ValueError as error:
        return {"error": str(error)}
    return profile.to_dict()


def _count_line_figures(text: str, inference_us: float) -> dict[str, Any]:
    """Latency statistics (ms) from the ``count=`` lines before the summary line."""
    # The last `count=` line before the summary is the timed run; the one before it the warmup.
    count_lines = []
    for match in _COUNT.finditer(text):
        fields = {name: float(value) for name, value in _FIELD.findall(match.group(2))}
        fields["count"] = int(match.group(1))
        count_lines.append(fields)
    if not count_lines:
        return {
            "latency_ms": {
                "mean": inference_us / 1000.0,
                "std": None,
                "min": None,
                "p50": None,
                "p90": None,
                "p99": None,
                "max": None,
            }
        }
    timed = count_lines[-1]
    result: dict[str, Any] = {"num_runs_done": timed["count"]}
    result["latency_ms"] = {
        "mean": timed.get("avg", inference_us) / 1000.0,
        "std": timed["std"] / 1000.0 if "std" in timed else None,
        "min": timed["min"] / 1000.0 if "min" in timed else None,
        "p50": timed["median"] / 1000.0 if "median" in timed else None,
        "p90": None,
        "p99": None,
        "max": timed["max"] / 1000.0 if "max" in timed else None,
    }
    if "p5" in timed:
        result["p5_ms"] = timed["p5"] / 1000.0
    if "p95" in timed:
        result["p95_ms"] = timed["p95"] / 1000.0
    if len(count_lines) >= 2:
        result["num_warmup_runs_done"] = count_lines[-2]["count"]
    return result


def fill_from_benchmark_model(measurement: Measurement, parsed: dict[str, Any]) -> Measurement:
    """Copy parsed ``benchmark_model`` figures into a Measurement (no raw samples: the tool prints none)."""
    measurement.runtime = "benchmark_model"
    measurement.init_ms = parsed["init_ms"]
    measurement.first_inference_ms = parsed["first_inference_ms"]
    measurement.latency_ms = parsed["latency_ms"]
    measurement.samples_ms = []
    measurement.peak_rss_bytes = parsed.get("peak_memory_bytes")
    measurement.rss_init_growth_bytes = parsed.get("memory_init_delta_bytes")
    measurement.extra.update({k: v for k, v in parsed.items() if k not in ("init_ms", "first_inference_ms", "latency_ms")})
    return measurement


__all__ = ["benchmark_model_arguments", "parse_benchmark_model_output", "fill_from_benchmark_model"]
