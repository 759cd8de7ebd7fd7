"""Per-operator profiles: one :class:`Profile` record from every target, its writers and its parsers.

Each target says which operator costs the time in its own way; they all end in one record:

- ``local`` / ``ssh`` / ``qemu-aarch64`` (LiteRT through ``_runner.py --profile``): LiteRT's Python API has
  no profiler, so each operator is timed as its own one-operator model (the flatbuffer sliced: the
  operator, its constant tensors, its activations as model inputs), in rounds interleaved with the whole
  model, with the fixed cost of an invoke (T(a) + T(b) - T(a, b) of two-operator slices, else an empty
  model's invoke) taken off each and shown once as the ``(invoke call)`` row (index -1), which every
  invoke of the whole model pays once (source ``litert one-op models``);
- ``tflm`` (PyPI ``tflite-micro``): its Python binding exposes no profiler either; the same slicing and
  protocol run on the TFLM interpreter (source ``tflm one-op models``);
- the QEMU firmware: TFLM's ``MicroProfilerInterface`` in ``firmware/src/main.cc`` printing
  ``MicroProfiler::LogCsv``'s format (ticks; under ``-icount`` a tick is an instruction count, not time);
- ``adb`` (and ``ssh`` with ``benchmark_model``): ``benchmark_model --enable_op_profiling=true`` parsed.

Writers: :func:`write_csv` (``benchmark_model``'s run-order columns plus MACs and instructions) and
:func:`write_chrome_trace` (Chrome-trace JSON that Perfetto / ``chrome://tracing`` open).

Example::

    profile = parse_benchmark_model_profile(text)
    write_csv(profile, "bench.m.profile.csv"); write_chrome_trace(profile, "bench.m.trace.json")
    profile.share_ratio   # sum of the operators' time / the measured invoke p50
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgedistill.errors import InputError

# The issue's check: the operators' times must add up to the measured invoke time within this.
SHARE_TOLERANCE = 0.02
# Targets that can give a per-op profile (named in the error for the others).
PROFILING_TARGETS = ("local", "ssh://... (runner)", "qemu-aarch64", "tflm", "adb (benchmark_model)")


@dataclass
class OpProfile:
    """One operator: ``avg`` is per call, in the profile's ``unit``; its share is ``avg * calls`` of the total."""

    index: int
    name: str
    node_type: str
    avg: float
    first: float | None = None
    calls: int = 1
    macs: int | None = None
    instructions: int | None = None

    @property
    def total(self) -> float:
        return self.avg * self.calls


@dataclass
class Profile:
    """Per-operator cost of one model on one target.

    ``unit`` is ``"us"`` (time) or ``"ticks"`` (the firmware; ``ticks_are`` says what a tick is, e.g.
    instructions under QEMU ``-icount``). ``invoke`` is the measured whole-invoke time (p50) in the same unit,
    so :attr:`share_ratio` checks that the operators add up to it.
    """

    ops: list[OpProfile]
    unit: str = "us"
    source: str = ""
    invoke: float | None = None
    ticks_are: str | None = None
    ticks_per_second: int | None = None
    notes: list[str] = field(default_factory=list)
    # What else the profiler said (e.g. ``empty_invoke_us``, the cost taken off each one-operator time).
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(op.total for op in self.ops))

    @property
    def share_ratio(self) -> float | None:
        """Sum of the operators' time over the measured invoke p50 (1.0: they account for all of it)."""
        if not self.invoke or not self.ops:
            return None
        return self.total / self.invoke

    @property
    def share_ratio_cpu(self) -> float | None:
        """Sum of the operators' time over the invoke's CPU time (p50), where the runner measured it: on a
        machine other processes load, the wall-clock p50 of a long invoke counts their time too."""
        cpu = self.details.get("invoke_cpu_us")
        return self.total / cpu if cpu and self.ops and self.unit == "us" else None

    @property
    def shares_add_up(self) -> bool | None:
        ratio = self.share_ratio
        return None if ratio is None else abs(ratio - 1.0) <= SHARE_TOLERANCE

    def shares(self) -> list[float]:
        """Percent of the operators' total per operator (benchmark_model's ``%`` column)."""
        total = self.total
        return [100.0 * op.total / total if total else 0.0 for op in self.ops]

    def top(self, count: int = 5) -> list[tuple[OpProfile, float]]:
        """The ``count`` costliest operators with their share (%), costliest first."""
        pairs = sorted(zip(self.ops, self.shares()), key=lambda pair: pair[0].total, reverse=True)
        return pairs[:count]

    def summary(self) -> dict[str, Any]:
        """What the result record keeps: source, unit, totals, the ratio check and the top five."""
        return {
            "source": self.source,
            "unit": self.unit,
            "ticks_are": self.ticks_are,
            "num_ops": len(self.ops),
            "ops_total": self.total,
            "invoke_p50": self.invoke,
            "share_ratio": self.share_ratio,
            "shares_add_up": self.shares_add_up,
            "tolerance": SHARE_TOLERANCE,
            "notes": list(self.notes),
            "share_ratio_cpu": self.share_ratio_cpu,
            "invoke_cpu": self.details.get("invoke_cpu_us"),
            "top": [
                {
                    "index": op.index,
                    "name": op.name,
                    "node_type": op.node_type,
                    "avg": op.avg,
                    "calls": op.calls,
                    "share_percent": share,
                    "macs": op.macs,
                }
                for op, share in self.top(5)
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "share_ratio": self.share_ratio}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        others = {k: v for k, v in data.items() if k not in names and k not in ("share_ratio", "event")}
        values["details"] = {**values.get("details", {}), **others}
        op_names = {f.name for f in dataclasses.fields(OpProfile)}
        values["ops"] = [OpProfile(**{k: v for k, v in op.items() if k in op_names}) for op in data.get("ops", [])]
        return cls(**values)


# ---------------------------------------------------------------------------------------
# Writers

CSV_COLUMNS = ("node type", "first", "avg", "%", "cdf %", "times called", "name", "index", "MACs", "instructions")


def write_csv(profile: Profile, path: str | os.PathLike) -> Path:
    """``benchmark_model``'s run-order table as CSV, plus MACs and instructions; the time columns' header
    names the unit (``avg (us)``, or ``avg (ticks)`` from the firmware). Written whole, then renamed."""
    path = Path(path)
    unit = profile.unit
    header = [f"{c} ({unit})" if c in ("first", "avg") else c for c in CSV_COLUMNS]
    cumulative = 0.0
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for op, share in zip(profile.ops, profile.shares()):
            cumulative += share
            writer.writerow(
                [
                    op.node_type,
                    _number(op.first),
                    _number(op.avg),
                    f"{share:.3f}",
                    f"{cumulative:.3f}",
                    op.calls,
                    op.name,
                    op.index,
                    "" if op.macs is None else op.macs,
                    "" if op.instructions is None else op.instructions,
                ]
            )
    partial.replace(path)
    return path


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def chrome_trace(profile: Profile, *, label: str = "model") -> dict[str, Any]:
    """Chrome-trace JSON (``traceEvents``, complete events ``ph: "X"``, ``ts``/``dur`` in microseconds).

    One invoke laid out in run order on one track. A profile in ticks is converted with
    ``ticks_per_second`` when known (the ticks stay in ``args``); else one tick is drawn as 1 us, said in
    ``otherData``.
    """
    scale = 1.0
    if profile.unit == "ticks":
        scale = 1e6 / profile.ticks_per_second if profile.ticks_per_second else 1.0
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": label}},
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": f"ops ({profile.source})"}},
    ]
    start = 0.0
    for op, share in zip(profile.ops, profile.shares()):
        duration = op.total * scale
        args = {
            "index": op.index,
            "node_type": op.node_type,
            "calls": op.calls,
            f"avg_{profile.unit}": op.avg,
            "share_percent": round(share, 3),
            "macs": op.macs,
            "instructions": op.instructions,
        }
        events.append(
            {
                "name": op.name or op.node_type,
                "cat": op.node_type,
                "ph": "X",
                "pid": 1,
                "tid": 1,
                "ts": round(start, 3),
                "dur": round(duration, 3),
                "args": args,
            }
        )
        start += duration
    other = {"source": profile.source, "unit": profile.unit, "share_ratio": profile.share_ratio, "ticks_are": profile.ticks_are}
    if profile.unit == "ticks" and not profile.ticks_per_second:
        other["time_axis"] = "1 tick drawn as 1 us (no tick rate known)"
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def write_chrome_trace(profile: Profile, path: str | os.PathLike, *, label: str = "model") -> Path:
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(chrome_trace(profile, label=label), indent=1) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def profile_paths(results_path: str | os.PathLike, model: str | os.PathLike, target_spec: str) -> tuple[Path, Path]:
    """``<results stem>.<model stem>.<target>.profile.csv`` and ``.trace.json``, beside the results file."""
    results = Path(results_path)
    target = re.sub(r"[^A-Za-z0-9_.-]+", "_", target_spec).strip("_") or "target"
    stem = f"{results.stem}.{Path(model).stem}.{target}"
    return results.with_name(stem + ".profile.csv"), results.with_name(stem + ".trace.json")


def write_profile_files(
    profile: Profile, results_path: str | os.PathLike, model: str | os.PathLike, target_spec: str
) -> dict[str, str]:
    csv_path, trace_path = profile_paths(results_path, model, target_spec)
    csv_path.parent.mkdir(parents=True, exist_ok=True)  # as the results file's writer does: --results may name a new folder
    write_csv(profile, csv_path)
    write_chrome_trace(profile, trace_path, label=f"{Path(model).name} @ {target_spec}")
    return {"csv": str(csv_path), "trace": str(trace_path)}


# ---------------------------------------------------------------------------------------
# Parsers

_RUN_ORDER = "Operator-wise Profiling Info for Regular Benchmark Runs:"
_SECTION = re.compile(r"^=+ (.+?) =+$")
_NAME_INDEX = re.compile(r"^\[?(.*?)\]?:(\d+)$")


def parse_benchmark_model_profile(text: str, *, invoke_us: float | None = None) -> Profile:
    """The run-order table ``benchmark_model --enable_op_profiling=true`` prints after its run.

    Columns by header (older builds add ``[start]``): ``[node type] [first] [avg ms] [%] [cdf%] [mem KB]
    [times called] [Name]``, tab-separated, lines maybe prefixed with ``INFO: ``. Raises ValueError
    when the table is absent.
    """
    lines = [re.sub(r"^(?:INFO: |I tflite\s*: )", "", line) for line in text.splitlines()]
    try:
        start = max(k for k, line in enumerate(lines) if _RUN_ORDER in line)
    except ValueError:
        raise ValueError(
            f"no '{_RUN_ORDER}' table in the benchmark_model output (was it run with --enable_op_profiling=true?)"
        ) from None
    header: list[str] | None = None
    ops: list[OpProfile] = []
    for line in lines[start + 1 :]:
        section = _SECTION.match(line.strip())
        if section and section.group(1) != "Run Order":
            break
        cells = [cell.strip() for cell in re.split(r"\t|\s{2,}", line.strip()) if cell.strip()]
        if cells and cells[0].startswith("["):
            header = [cell.strip("[]").lower() for cell in cells]
        elif header and len(cells) == len(header):
            ops.append(_benchmark_model_row(dict(zip(header, cells)), len(ops)))
    if not ops:
        raise ValueError("the benchmark_model op-profiling table has no rows")
    return Profile(ops=ops, unit="us", source="benchmark_model --enable_op_profiling", invoke=invoke_us)


def _benchmark_model_row(row: dict[str, str], position: int) -> OpProfile:
    name_cell = row.get("name", "")
    match = _NAME_INDEX.match(name_cell)
    name, index = (match.group(1), int(match.group(2))) if match else (name_cell, position)
    first = row.get("first")
    return OpProfile(
        index=index,
        name=name,
        node_type=row.get("node type", "?"),
        first=float(first) * 1000.0 if first is not None else None,
        avg=float(row["avg ms"]) * 1000.0,
        calls=int(float(row.get("times called", "1"))),
    )


_MICRO_CSV_HEADER = '"Event","Tag","Ticks"'
_MICRO_CSV_ROW = re.compile(r"^(\d+),(.*),(\d+)$")


def parse_micro_profiler(
    text: str,
    *,
    ticks_are: str | None = None,
    ticks_per_second: int | None = None,
    invoke_ticks: float | None = None,
    runs: int = 1,
    instructions_per_tick: float | None = None,
) -> Profile:
    """TFLM ``MicroProfiler::LogCsv`` output (``"Event","Tag","Ticks"`` then ``i,TAG,ticks``) of ``runs`` invokes.

    The same tag in run order over several invokes is one operator called per invoke: the table has
    as many rows as operators in one invoke (events ``i % ops_per_invoke``), their ticks averaged.
    ``instructions_per_tick`` (QEMU ``-icount``: 1e9 / the tick rate) fills the instructions column.
    """
    lines = [line.strip() for line in text.splitlines()]
    if _MICRO_CSV_HEADER not in lines:
        raise ValueError(f"no MicroProfiler CSV ({_MICRO_CSV_HEADER}) in the output")
    events = []
    for line in lines[lines.index(_MICRO_CSV_HEADER) + 1 :]:
        match = _MICRO_CSV_ROW.match(line)
        if not match:
            break
        events.append((match.group(2), int(match.group(3))))
    if not events or len(events) % runs:
        raise ValueError(f"MicroProfiler printed {len(events)} events, not a whole number of {runs} invoke(s)")
    per_invoke = len(events) // runs
    ops = []
    for index in range(per_invoke):
        ticks = [events[run * per_invoke + index][1] for run in range(runs)]
        tag = events[index][0]
        average = sum(ticks) / len(ticks)
        ops.append(
            OpProfile(
                index=index,
                name=f"{tag}:{index}",
                node_type=tag,
                first=float(ticks[0]),
                avg=average,
                instructions=round(average * instructions_per_tick) if instructions_per_tick else None,
            )
        )
    return Profile(
        ops=ops,
        unit="ticks",
        source="TFLM MicroProfilerInterface (firmware)",
        invoke=invoke_ticks,
        ticks_are=ticks_are,
        ticks_per_second=ticks_per_second,
    )


# ---------------------------------------------------------------------------------------
# MACs from the model (conv / depthwise / fully connected), keyed by operator index


def operator_macs(model_path: str | os.PathLike) -> dict[int, int]:
    """Multiply-accumulates per operator of subgraph 0, for the ops where they are defined by the shapes."""
    from edgedistill.tflite_model import operator_names, schema_module

    schema = schema_module()
    data = Path(model_path).read_bytes()
    names = operator_names(schema.Model.GetRootAs(data, 0), schema)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    subgraph = model.subgraphs[0]
    macs: dict[int, int] = {}
    for index, op in enumerate(subgraph.operators or []):
        kind = names[op.opcodeIndex]
        shapes = [[int(size) for size in subgraph.tensors[t].shape] if t >= 0 else [] for t in op.inputs]
        output = [int(size) for size in subgraph.tensors[op.outputs[0]].shape] if len(op.outputs) else []
        value = _macs(kind, shapes, output)
        if value is not None:
            macs[index] = value
    return macs


def _macs(kind: str, inputs: Sequence[list[int]], output: list[int]) -> int | None:
    import math

    if len(inputs) < 2 or not output:
        return None
    weights = inputs[1]
    if kind == "CONV_2D" and len(weights) == 4:  # weights [out, kh, kw, in]
        return math.prod(output) * weights[1] * weights[2] * weights[3]
    if kind == "DEPTHWISE_CONV_2D" and len(weights) == 4:  # weights [1, kh, kw, out]
        return math.prod(output) * weights[1] * weights[2]
    if kind == "FULLY_CONNECTED" and len(weights) == 2:  # weights [out, in]
        return math.prod(output) * weights[1]
    return None


def add_macs(profile: Profile, model_path: str | os.PathLike) -> Profile:
    """Fill ``macs`` from the model where the operator indices are those of subgraph 0."""
    try:
        macs = operator_macs(model_path)
    except (OSError, ValueError, IndexError, AttributeError, InputError):
        return profile  # a model the host cannot read back: the profile stays without MACs
    for op in profile.ops:
        if op.macs is None and op.index in macs:
            op.macs = macs[op.index]
    return profile


__all__ = [
    "OpProfile",
    "Profile",
    "CSV_COLUMNS",
    "SHARE_TOLERANCE",
    "PROFILING_TARGETS",
    "write_csv",
    "read_csv",
    "chrome_trace",
    "write_chrome_trace",
    "profile_paths",
    "write_profile_files",
    "parse_benchmark_model_profile",
    "parse_micro_profiler",
    "operator_macs",
    "add_macs",
]
