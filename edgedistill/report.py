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
BASELINE_INT8_FILE = "baseline_int8.tflite"  # the scratch baseline's int8 model, in the run folder


def _memory_plan_lines(plan: dict[str, Any] | None) -> list[str]:
    """One line on the tensor placement: greedy vs planned head, lower bound, solver status, and whether it was used."""
    if not plan:
        return []
    if "greedy_head_bytes" not in plan:
        return [f"Memory plan: {plan.get('memory_plan', 'greedy')} ({plan.get('reason', '')})."]
    return [
        f"Memory plan: {'offline plan written into the model' if plan.get('used_plan') else 'TFLM greedy planner kept'}; "
        f"head {plan.get('greedy_head_bytes')} bytes greedy, {plan.get('planned_head_bytes')} planned, lower bound "
        f"{plan.get('lower_bound_bytes')} ({plan.get('solver_status')}, {_fmt(plan.get('solver_seconds'))} s): "
        f"{plan.get('reason', '')}."
    ]


def _compaction_lines(compaction: dict[str, Any] | None) -> list[str]:
    """One line on the flash the exported model takes: compacted or as converted, and why."""
    if not compaction:
        return []
    if not compaction.get("compacted"):
        return [f"Model flash: as converted ({compaction.get('reason', '')})."]
    saved = ", ".join(
        f"{name.replace('_', ' ')} {size:,}" for name, size in compaction.get("saved_bytes", {}).items() if size > 0
    )
    return [
        f"Model flash: {compaction['compacted_size_bytes']:,} bytes, compacted from {compaction['original_size_bytes']:,} "
        f"(saved: {saved}; TFLM outputs identical)."
    ]


def load_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / REPORT_FILE
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def write_report(run_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report.json`` and ``report.md`` (atomically) and return the JSON path."""
    report = {"schema_version": SCHEMA_VERSION, **{k: v for k, v in report.items() if k != "schema_version"}}
    path = write_json_atomic(Path(run_dir) / REPORT_FILE, report)
    write_profile_charts(run_dir, report)
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


def _chosen_config(config: dict[str, Any], probe: dict[str, Any] | None) -> dict[str, Any]:
    """The run's options as trained: with ``--distillation-loss auto``, the loss options its probe chose."""
    if not config or not probe:
        return config
    chosen = probe["candidates"][probe["chosen"]]
    options = {key: chosen[key] for key in ("distillation_loss", "temperature", "student_loss_weight")}
    return {**config, "final_temperature": None, **options}


def _loss_probe_line(report: dict[str, Any], probe: dict[str, Any]) -> str:
    """What ``--distillation-loss auto`` measured and chose, and its share of the distill stage's wall time."""
    scores = ", ".join(f"{name} {entry['val_accuracy']:.2f}%" for name, entry in probe["candidates"].items())
    stage_seconds = ((report.get("stages") or {}).get("distill") or {}).get("seconds")
    share = f" ({100.0 * probe['seconds'] / stage_seconds:.0f} % of the distill stage)" if stage_seconds else ""
    return (
        f"Loss chosen by `--distillation-loss auto`: {probe['chosen']}, the best validation accuracy after "
        f"{probe['epochs']} epochs each ({scores}); the probe took {probe['seconds']:.0f} s{share}."
    )


def _method_lines(report: dict[str, Any]) -> list[str]:
    """How the student was made: loss, scheme, calibration, pruning, budget, synthesis, the chain."""
    student = report.get("student") or {}
    probe = student.get("loss_probe")
    config = _chosen_config(report.get("config") or {}, probe)
    if not config:
        return []
    loss = config.get("distillation_loss", "logits")
    if loss == "logits":
        schedule = f" -> {config['final_temperature']:g}" if config.get("final_temperature") else ""
        loss = f"logits (T = {config.get('temperature', 0):g}{schedule}, T^2-scaled KL)"
    parts = [
        f"Method: scheme `{config.get('scheme', 'standard')}`"
        + (f" ({config['scheme_options']})" if config.get("scheme_options") else "")
        + f", loss {loss}, hard-label weight {config.get('student_loss_weight')}"
        + (", learning rate with a cosine decay over the epochs" if config.get("lr_schedule") == "cosine" else "")
        + (f", strategy {config['strategy']}" if config.get("strategy", "none") != "none" else "")
        + "."
    ]
    if probe:
        parts.append(_loss_probe_line(report, probe))
    calibration = (report.get("teacher") or {}).get("calibration")
    if calibration:
        parts.append(
            f"Teacher calibrated by temperature scaling on {calibration['num_samples']} validation samples: "
            f"T = {calibration['temperature']:g}, ECE {calibration['ece_before_percent']:.2f}% -> "
            f"{calibration['ece_after_percent']:.2f}%, NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}."
        )
    if config.get("prune_sparsity"):
        after_qat = (report.get("qat") or {}).get("sparsity")
        parts.append(
            f"Pruned to target sparsity {config['prune_sparsity']:g}: kernels {_fmt(student.get('sparsity'), 3)} zero after "
            f"distillation" + (f", {_fmt(after_qat, 3)} after QAT" if after_qat is not None else "") + "."
        )
    budget = report.get("budget")
    if budget:
        chosen = budget.get("chosen") or {}
        parts.append(
            f"Budget {budget.get('budget')}: width {budget.get('width')} chosen from {len(budget.get('measurements', []))} "
            f"measured widths ({_fmt(chosen.get('flash_bytes'), 0)} bytes int8"
            + (f", arena {chosen['arena_bytes']} bytes" if chosen.get("arena_bytes") else "")
            + ")."
        )
    synthesis = student.get("synthesis")
    if synthesis:
        parts.append(
            f"Data-free: {synthesis.get('num_samples')} inputs synthesised from the teacher in {synthesis.get('steps')} steps "
            f"(teacher agrees with the target class on {_fmt(synthesis.get('teacher_agrees_with_target_percent'), 1)}%); "
            f"QAT and int8 calibration used `{(report.get('qat') or {}).get('data', '?')}`."
        )
    chain = student.get("chain")
    if chain:
        steps = " -> ".join(
            f"{step['model']} ({step['parameters']} params, val {step['best_val_accuracy']:.2f}%)" for step in chain
        )
        parts.append(f"Teacher-assistant chain: {steps}.")
    return [" ".join(parts), ""]


def _firmware_lines(firmware: dict[str, Any]) -> list[str]:
    if not firmware:
        return []
    lines = [
        "## Firmware",
        "",
        "| board / kernels | outputs | arena used on target | kTensorArenaSize (source) | flash bytes | RAM bytes | per invoke |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in firmware.items():
        run = entry.get("run") or {}
        build = entry.get("build") or {}
        sizes = build.get("sizes") or {}
        arena = build.get("arena") or {}
        if run.get("instructions_per_invoke") is not None:
            per_invoke = f"{run['instructions_per_invoke']:,} instructions (QEMU)"
        elif run.get("latency_ms") is not None:
            per_invoke = f"{run['latency_ms']:.3f} ms"
        else:
            per_invoke = "-"
        matched = sum(1 for sample in run.get("samples", []) if sample.get("match"))
        lines.append(
            f"| {name} | {run.get('status', '-')} ({matched}/{len(run.get('samples', []))} match host TFLM) | "
            f"{_fmt(run.get('arena_used_bytes'), 0)} "
            f"| {_fmt(build.get('kTensorArenaSize'), 0)} ({arena.get('source', 'export')}) | "
            f"{_fmt(sizes.get('flash_bytes'), 0)} | {_fmt(sizes.get('ram_bytes'), 0)} | {per_invoke} |"
        )
    return lines + [""]


def _input_lines(report: dict[str, Any]) -> list[str]:
    """The input contract: the raw values, each model's preprocessing, what the int8 model takes; the teacher gate."""
    lines = []
    values = (report.get("data") or {}).get("values")
    convention = report.get("input_convention") or {}
    teacher = report.get("teacher") or {}
    if values:
        lines.append(f"Values: {values.get('description')}.")
    preprocessing = teacher.get("preprocessing")
    if preprocessing:
        detection = preprocessing.get("detection")
        found = (
            " (validation accuracy per convention: " + ", ".join(f"{k} {_fmt(v, 1)}%" for k, v in detection.items()) + ")"
            if detection
            else ""
        )
        lines.append(
            f"Teacher preprocessing: {preprocessing.get('name')} `{preprocessing.get('formula')}`, "
            f"{preprocessing.get('how')}{found}; teacher validation accuracy {_fmt(teacher.get('val_accuracy'))}% "
            f"(chance {_fmt(teacher.get('chance_accuracy'))}%)."
        )
    student = convention.get("student_preprocessing")
    if student:
        lines.append(f"Student preprocessing: `{student.get('formula')}` inside the model.")
    if convention.get("int8_input"):
        lines.append(f"int8 model input: {convention['int8_input']}.")
    return lines + [""] if lines else []


def _status_lines(report: dict[str, Any]) -> list[str]:
    """The title, and how to continue an interrupted run or why a run failed."""
    lines = [f"# edgedistill run: {report.get('status', 'unknown')}", ""]
    if report.get("status") == "interrupted":
        lines += [
            f"**Interrupted** in stage `{report['error'].get('stage')}`. Continue from the last completed stage: "
            f"`edgedistill run --resume {report.get('run_dir')}`",
            "",
        ]
    elif report.get("error"):
        lines += [f"**Failed** in stage `{report['error'].get('stage')}`: {report['error'].get('message')}", ""]
    return lines


def _data_lines(data: dict[str, Any] | None) -> list[str]:
    if not data:
        return []
    return [
        f"Data `{data['name']}`: {data['num_train']} train / {data['num_val']} validation / {data['num_test']} test, "
        f"input {tuple(data['input_shape'])}, {data['num_classes']} classes.",
        "",
    ]


def _accuracy_lines(report: dict[str, Any]) -> list[str]:
    """The table of every model's parameters, TFLite bytes and test accuracy, float to int8 on TFLM."""
    accuracy = (report.get("verify") or {}).get("accuracy", {})
    tflite = report.get("tflite", {})
    parameters = {
        "teacher": (report.get("teacher") or {}).get("parameters"),
        "student": (report.get("student") or {}).get("parameters"),
    }
    rows = [
        (
            "teacher (Keras float)",
            parameters["teacher"],
            tflite.get("teacher_float32.tflite", {}).get("size_bytes"),
            accuracy.get("teacher"),
        ),
        (
            "student (Keras float)",
            parameters["student"],
            tflite.get("student_float32.tflite", {}).get("size_bytes"),
            accuracy.get("float_student"),
        ),
        ("student QAT (Keras fake-quant)", parameters["student"], None, accuracy.get("qat_student")),
        (
            "student int8 on LiteRT",
            parameters["student"],
            tflite.get("student_int8.tflite", {}).get("size_bytes"),
            accuracy.get("int8_litert"),
        ),
        (
            "student int8 on TFLM",
            parameters["student"],
            tflite.get("student_int8.tflite", {}).get("size_bytes"),
            accuracy.get("int8_tflm"),
        ),
    ]
    if not (accuracy or tflite):
        return []
    lines = ["| model | parameters | TFLite bytes | test accuracy % |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {_fmt(p)} | {_fmt(b)} | {_fmt(a)} |" for name, p, b, a in rows]
    return lines + [""]


def _verify_lines(verify: dict[str, Any] | None) -> list[str]:
    """The parity gate's verdict and how closely the runtimes agree."""
    if not verify:
        return []
    agreement = ", ".join(f"{pair.replace('~', ' vs ')} {value:.1f}%" for pair, value in verify.get("agreement", {}).items())
    return [
        f"Parity gate: int8 drop {_fmt(verify.get('int8_drop'))} points vs {verify.get('reference')} "
        f"(limit {verify.get('max_int8_drop')}): **{'pass' if verify.get('passed') else 'FAIL'}**. "
        f"Agreement on the predicted class: {agreement}. Largest int8 output difference from TFLM: "
        f"{_fmt(verify.get('max_int8_output_difference_steps'))} quantization steps for LiteRT's builtin kernels, "
        f"{_fmt(verify.get('max_int8_output_difference_steps_xnnpack'))} with its default XNNPACK delegate.",
        "",
    ]


def _baseline_lines(report: dict[str, Any]) -> list[str]:
    """Did distillation help: the distilled student against the same student trained from scratch."""
    baseline = report.get("baseline")
    if not baseline:
        return []
    if baseline.get("skipped"):
        return [f"Scratch baseline: skipped ({baseline['skipped']}).", ""]
    form = baseline.get("int8_form", "int8_tflm")
    scratch, gains = baseline.get("accuracy", {}), baseline.get("gain_points", {})
    distilled = (report.get("verify") or {}).get("accuracy", {})
    stages = report.get("stages", {})
    distill_seconds = sum((stages.get(name) or {}).get("seconds", 0.0) for name in ("distill", "qat", "convert"))
    cost = ((stages.get("baseline") or {}).get("seconds", 0.0) / distill_seconds) if distill_seconds else None
    verdict = "**distillation helped**" if baseline.get("distillation_helped") else "**distillation did not help**"
    if baseline.get("paired_test"):  # the sign alone is not the verdict: the paired test's sentence gives it
        verdict = (
            "the distilled student is ahead" if baseline.get("distillation_helped") else "the distilled student is not ahead"
        )
    return [
        f"Did distillation help? The same student trained from scratch (hard labels, same schedule, QAT and conversion): "
        f"{form} {_fmt(scratch.get(form))} % vs distilled {_fmt(distilled.get(form))} % ({_fmt(gains.get(form))} points; "
        f"float {_fmt(scratch.get('float_student'))} % vs {_fmt(distilled.get('float_student'))} %): {verdict}."
        + _paired_test_sentence(baseline.get("paired_test"), (report.get("student") or {}).get("loss_probe"))
        + (f" The baseline cost {cost:.2f}x the distill, QAT and convert stages." if cost is not None else ""),
        "",
    ]


def _paired_test_sentence(paired: dict[str, Any] | None, loss_probe: dict[str, Any] | None = None) -> str:
    """Whether the test split resolves the difference (McNemar's exact test on the two int8 models' predictions).

    ``loss_probe``: the ``--distillation-loss auto`` probe's record when one ran (then suggesting auto is no help).
    """
    if not paired:
        return ""  # a report written before the paired test existed
    counts = (
        f"on the {paired['samples']:,} test samples (int8, LiteRT) the distilled student alone is right on "
        f"{paired['only_distilled_right']:,}, the scratch one alone on {paired['only_scratch_right']:,} "
        f"(McNemar's exact p = {paired['p_value']:.3g})"
    )
    if paired["verdict"] == "not resolved":
        return f" Paired, {counts}: **not resolved** by this test split; another seed may reverse it."
    sentence = f" Paired, {counts}: distillation **{paired['verdict']}** beyond this split's noise."
    if paired["verdict"] == "hurt":  # what the user can do instead: both ways out are already in their hands
        sentence += (
            f" The scratch student is saved as {BASELINE_INT8_FILE} in this run folder (`edgedistill micro` exports it"
            " for TFLite Micro); "
            + (
                f"`--distillation-loss auto` chose {loss_probe['chosen']} on the validation split already: ship the "
                "scratch student, or bring a stronger teacher."
                if loss_probe
                else "`--distillation-loss auto` lets the validation split choose the loss."
            )
        )
    return sentence


def _micro_lines(micro: dict[str, Any] | None) -> list[str]:
    if not micro:
        return []
    return [
        f"TFLite Micro: ops {', '.join(micro['ops'])}; smallest host arena {micro['arena_bytes_host']} bytes "
        f"(bisection, {micro.get('arena_probes')} probes), kTensorArenaSize {micro['kTensorArenaSize']} "
        f"(margin {micro['arena_margin_bytes']} bytes).",
        *_memory_plan_lines(micro.get("memory_plan")),
        *_compaction_lines(micro.get("compaction")),
        "",
    ]


def _bench_lines(bench: dict[str, Any] | None) -> list[str]:
    """One table row per benchmarked model and target: start-up times, latency percentiles, peak memory."""
    if not bench:
        return []
    lines = [
        "| model | target | init ms | first ms | mean ms | p50 ms | p90 ms | p99 ms | std ms | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in bench.items():
        latency = m.get("latency_ms") or {}
        target = m.get("target")
        target_name = target.get("name") if isinstance(target, dict) else target
        rss = m.get("peak_rss_bytes")
        lines.append(
            f"| {name} | {target_name} ({m.get('kind', 'measured')}) | {_fmt(m.get('init_ms'), 3)} "
            f"| {_fmt(m.get('first_inference_ms'), 3)} | "
            f"{_fmt(latency.get('mean'), 4)} | {_fmt(latency.get('p50'), 4)} | {_fmt(latency.get('p90'), 4)} | "
            f"{_fmt(latency.get('p99'), 4)} | {_fmt(latency.get('std'), 4)} | {_fmt(rss / 2**20 if rss else None, 1)} |"
        )
    return lines + [""]


def _bench_profiles(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(model name, profile record) of every benchmarked model that has a per-operator profile."""
    found = []
    for name, measurement in (report.get("bench") or {}).items():
        profile = (measurement.get("extra") or {}).get("profile") if isinstance(measurement, dict) else None
        if isinstance(profile, dict) and profile.get("ops"):
            found.append((name, profile))
    return found


def profile_chart_name(model_name: str) -> str:
    import re

    return "profile_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model_name).stem) + ".png"


def write_profile_charts(run_dir: str | Path, report: dict[str, Any]) -> list[Path]:
    """A bar chart of the five costliest operators per profiled model (matplotlib's object API, no pyplot)."""
    from edgedistill.profiles import Profile

    written = []
    for name, record in _bench_profiles(report):
        profile = Profile.from_dict(record)
        path = Path(run_dir) / profile_chart_name(name)
        _draw_top_ops(profile, f"{name}: five costliest operators ({profile.source})", path)
        written.append(path)
    return written


def _draw_top_ops(profile: Any, title: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = profile.top(5)
    labels = [f"{op.node_type} #{op.index}" for op, _ in reversed(top)]
    figure = Figure(figsize=(7, 0.5 * len(top) + 1.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bars = axes.barh(labels, [share for _, share in reversed(top)], color="#4c72b0")
    for bar, (op, share) in zip(bars, reversed(top)):
        axes.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {op.total:,.1f} {profile.unit} ({share:.1f} %)",
            va="center",
            fontsize=8,
        )
    axes.set_xlabel(f"share of the operators' total {'ticks' if profile.unit == 'ticks' else 'time'} (%)")
    axes.set_xlim(0, max((share for _, share in top), default=1.0) * 1.35 or 1.0)  # room for the labels
    axes.set_title(title, fontsize=9)
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial, dpi=110)
    partial.replace(path)


def _profile_lines(report: dict[str, Any]) -> list[str]:
    """Per profiled model: how the profile was taken, whether the shares add up, the top five, the chart."""
    from edgedistill.profiles import Profile

    lines: list[str] = []
    for name, record in _bench_profiles(report):
        profile = Profile.from_dict(record)
        ratio = profile.share_ratio
        check = (
            ""
            if ratio is None
            else (
                f" The operators add up to {100 * ratio:.1f} % of the measured invoke p50 "
                f"({'within' if profile.shares_add_up else 'outside'} 100 % +- 2 %)"
            )
        )
        cpu = profile.share_ratio_cpu
        check += "" if ratio is None else (f", {100 * cpu:.1f} % of its CPU time." if cpu else ".")
        lines += [
            f"Per-operator profile of {name} ({profile.source}, {profile.unit}).{check}",
            "",
            f"| # | operator | type | avg {profile.unit} | calls | share % | MACs |",
            "|---:|---|---|---:|---:|---:|---:|",
        ]
        for op, share in profile.top(5):
            lines.append(
                f"| {op.index} | {op.name} | {op.node_type} | {_fmt(op.avg, 2)} | {op.calls} | {share:.1f} | "
                f"{'' if op.macs is None else f'{op.macs:,}'} |"
            )
        lines += ["", f"![five costliest operators of {name}]({profile_chart_name(name)})", ""]
    return lines


def _timing_and_version_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    stages = report.get("stages")
    if stages:
        timing = ", ".join(f"{name} {info['seconds']:.1f}s" for name, info in stages.items())
        lines += [f"Stage wall times: {timing}; total {_fmt(report.get('total_seconds'), 1)} s.", ""]
    versions = report.get("versions")
    if versions:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v), ""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the sections of ``report`` people read, in the order the run made them."""
    lines = _status_lines(report)
    lines += _data_lines(report.get("data"))
    lines += _input_lines(report)
    lines += _method_lines(report)
    lines += _accuracy_lines(report)
    lines += _verify_lines(report.get("verify"))
    lines += _baseline_lines(report)
    lines += _micro_lines(report.get("micro"))
    lines += _bench_lines(report.get("bench"))
    lines += _profile_lines(report)
    lines += _firmware_lines(report.get("firmware") or {})
    lines += _timing_and_version_lines(report)
    return "\n".join(lines)


__all__ = ["SCHEMA_VERSION", "write_report", "load_report", "add_section", "render_markdown", "write_profile_charts"]
