"""``report.json`` (for tools; versioned schema) and ``report.md`` (for people) of a run folder.

The fields of ``report.json`` are documented in the README ("report.json"). Add a field:
keep ``SCHEMA_VERSION``. Rename or remove one: bump it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedistill.fileio import write_json_atomic, write_text_atomic

SCHEMA_VERSION = 1
REPORT_FILE = "report.json"
REPORT_MARKDOWN = "report.md"


def load_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / REPORT_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def write_report(run_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` and ``report.md`` (atomically) and return the JSON path."""
    report = {"schema_version": SCHEMA_VERSION, **{k: v for k, v in report.items() if k != "schema_version"}}
    path = write_json_atomic(Path(run_dir) / REPORT_FILE, report)
    write_text_atomic(Path(run_dir) / REPORT_MARKDOWN, render_markdown(report))
    return path


def add_section(run_dir: str | Path, name: str, data: Any) -> Path:
    """Set ``report[name] = data`` in ``run_dir/report.json`` (atomically), keeping the rest.

    Later stages (firmware run, benchmarks on devices) use this to add their figures to
    the report of the run they belong to; ``report.md`` is re-rendered.
    """
    report = load_report(run_dir)
    report[name] = data
    return write_report(run_dir, report)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# edgedistill run: {report.get('status', 'unknown')}", ""]
    if report.get("error"):
        lines += [f"**Failed** in stage `{report['error'].get('stage')}`: {report['error'].get('message')}", ""]
    data = report.get("data")
    if data:
        lines += [
            f"Data `{data['name']}`: {data['num_train']} train / {data['num_val']} validation / {data['num_test']} test, "
            f"input {tuple(data['input_shape'])}, {data['num_classes']} classes.",
            "",
        ]

    accuracy = (report.get("verify") or {}).get("accuracy", {})
    tflite = report.get("tflite", {})
    parameters = {"teacher": (report.get("teacher") or {}).get("parameters"), "student": (report.get("student") or {}).get("parameters")}
    rows = [
        ("teacher (Keras float)", parameters["teacher"], tflite.get("teacher_float32.tflite", {}).get("size_bytes"), accuracy.get("teacher")),
        ("student (Keras float)", parameters["student"], tflite.get("student_float32.tflite", {}).get("size_bytes"), accuracy.get("float_student")),
        ("student QAT (Keras fake-quant)", parameters["student"], None, accuracy.get("qat_student")),
        ("student int8 on LiteRT", parameters["student"], tflite.get("student_int8.tflite", {}).get("size_bytes"), accuracy.get("int8_litert")),
        ("student int8 on TFLM", parameters["student"], tflite.get("student_int8.tflite", {}).get("size_bytes"), accuracy.get("int8_tflm")),
    ]
    if accuracy or tflite:
        lines += ["| model | parameters | TFLite bytes | test accuracy % |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {_fmt(p)} | {_fmt(b)} | {_fmt(a)} |" for name, p, b, a in rows]
        lines.append("")
    verify = report.get("verify")
    if verify:
        agreement = ", ".join(f"{pair.replace('~', ' vs ')} {value:.1f}%" for pair, value in verify.get("agreement", {}).items())
        lines += [
            f"Parity gate: int8 drop {_fmt(verify.get('int8_drop'))} points vs {verify.get('reference')} "
            f"(limit {verify.get('max_int8_drop')}): **{'pass' if verify.get('passed') else 'FAIL'}**. "
            f"Agreement on the predicted class: {agreement}. Largest int8 output difference from TFLM: "
            f"{_fmt(verify.get('max_int8_output_difference_steps'))} quantization steps for LiteRT's builtin kernels, "
            f"{_fmt(verify.get('max_int8_output_difference_steps_xnnpack'))} with its default XNNPACK delegate.",
            "",
        ]
    micro = report.get("micro")
    if micro:
        lines += [
            f"TFLite Micro: ops {', '.join(micro['ops'])}; smallest host arena {micro['arena_bytes_host']} bytes "
            f"(bisection, {micro.get('arena_probes')} probes), kTensorArenaSize {micro['kTensorArenaSize']} "
            f"(margin {micro['arena_margin_bytes']} bytes).",
            "",
        ]
    bench = report.get("bench")
    if bench:
        lines += [
            "| model | target | init ms | first ms | mean ms | p50 ms | p90 ms | p99 ms | std ms | peak RSS MiB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, m in bench.items():
            latency = m.get("latency_ms") or {}
            target = m.get("target")
            target_name = target.get("name") if isinstance(target, dict) else target
            rss = m.get("peak_rss_bytes")
            lines.append(
                f"| {name} | {target_name} ({m.get('kind', 'measured')}) | {_fmt(m.get('init_ms'), 3)} | {_fmt(m.get('first_inference_ms'), 3)} | "
                f"{_fmt(latency.get('mean'), 4)} | {_fmt(latency.get('p50'), 4)} | {_fmt(latency.get('p90'), 4)} | "
                f"{_fmt(latency.get('p99'), 4)} | {_fmt(latency.get('std'), 4)} | {_fmt(rss / 2**20 if rss else None, 1)} |"
            )
        lines.append("")
    for section in ("firmware",):
        if report.get(section):
            lines += [f"## {section}", "", "```json", json.dumps(report[section], indent=2)[:4000], "```", ""]
    stages = report.get("stages")
    if stages:
        timing = ", ".join(f"{name} {info['seconds']:.1f}s" for name, info in stages.items())
        lines += [f"Stage wall times: {timing}; total {_fmt(report.get('total_seconds'), 1)} s.", ""]
    versions = report.get("versions")
    if versions:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v), ""]
    return "\n".join(lines)


__all__ = ["SCHEMA_VERSION", "write_report", "load_report", "add_section", "render_markdown"]
