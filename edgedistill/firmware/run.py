"""Run a built firmware in QEMU (or natively for ``host``), check it, and record the result.

``run_firmware`` parses the firmware's result block, compares every test-sample output with
the host TFLM output the export wrote, and records three things: ``run.json`` next to the image
(everything), the ``firmware`` section of ``report.json`` (per board and kernels), and one line
in ``firmware.jsonl`` in the run folder. Outputs that differ raise :class:`GateFailed` after
everything is written.

``firmware.jsonl`` holds firmware results only (benchmark ``Measurement`` lines stay in
``bench.jsonl``): one JSON object per line, every line with the same keys (``null`` where a
figure does not apply), so ``pandas.read_json("firmware.jsonl", lines=True)`` reads it as a table.
Fields (:class:`FirmwareRunRecord`, ``schema_version`` 1):

- ``schema_version`` (int): 1.
- ``model`` (str): the ``.tflite`` file the firmware was built from.
- ``board`` (str), ``kernels`` (str): e.g. ``qemu-mps2-an386``, ``reference`` / ``cmsis_nn``.
- ``kind`` (str): ``emulated`` (QEMU: no device time) or ``host`` (native Linux build).
- ``status`` (str): ``pass`` or ``fail`` (outputs differ from host TFLM, or the firmware says so).
- ``outputs_match_host_tflm`` (bool).
- ``num_runs`` (int | null): timed invokes the firmware ran.
- ``instructions_per_invoke`` (int | null): QEMU boards (``-icount``: instructions, not cycles).
- ``latency_ms`` (float | null): ``host`` board only, wall clock per invoke.
- ``arena_used_bytes``, ``flash_bytes``, ``ram_bytes`` (int | null): measured on the target / from the image.
- ``versions`` (object): edgedistill, TFLM commit and export version, compiler, Python.
- ``timestamp`` (str): ISO 8601, UTC.

(Versions before this file existed appended a differently shaped line to ``bench.jsonl``;
:func:`edgedistill.results.read_results` skips those.) Firmware figures are not ``Measurement``
lines on purpose: QEMU gives instructions per invoke, not milliseconds or raw samples, and the
arena/flash/RAM figures and the output check have no place in a latency measurement.
"""

from __future__ import annotations

import dataclasses
import datetime as _datetime
import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.errors import GateFailed, InputError, StageError
from edgedistill.fileio import append_jsonl, write_json_atomic
from edgedistill.firmware import arena as arena_module
from edgedistill.firmware.boards import Board, get_board
from edgedistill.firmware.build import BuildResult, build_dir_for, build_firmware, load_build
from edgedistill.firmware.options import FirmwareOptions
from edgedistill.micro import load_micro_export
from edgedistill.firmware.qemu import instructions_per_invoke, qemu_command, run_command
from edgedistill.firmware.result import FirmwareResult, compare_outputs, parse_result_block
from edgedistill.firmware.toolchain import qemu_binary
from edgedistill.report import add_section, load_report

logger = logging.getLogger(__name__)

FIRMWARE_RESULTS_FILE = "firmware.jsonl"
FLOAT_RELATIVE_TOLERANCE = 1e-5  # float outputs: same code, same inputs; only the FPU's rounding may differ


@dataclass(frozen=True)
class FirmwareRunRecord:
    """One line of ``firmware.jsonl`` (fields documented in this module's docstring)."""

    model: str
    board: str
    kernels: str
    kind: str
    status: str
    outputs_match_host_tflm: bool
    num_runs: int | None
    instructions_per_invoke: int | None
    latency_ms: float | None
    arena_used_bytes: int | None
    flash_bytes: int | None
    ram_bytes: int | None
    versions: dict[str, Any]
    timestamp: str
    schema_version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def append_firmware_record(run_dir: str | Path, record: FirmwareRunRecord) -> Path:
    """Append ``record`` to the run folder's ``firmware.jsonl`` (flushed at once) and return its path."""
    path = Path(run_dir) / FIRMWARE_RESULTS_FILE
    append_jsonl(path, record.to_dict())
    return path


def _versions(build_info: dict[str, Any]) -> dict[str, Any]:
    from edgedistill._version import __version__

    return {
        "edgedistill": __version__,
        "tflm_commit": build_info.get("tflm_commit"),
        "tflm_export": (build_info.get("micro_export") or {}).get("tflm_version"),
        "compiler": build_info.get("compiler"),
        "python": platform.python_version(),
    }


def _built_arena_differs(build_info: Path, arena: str | None) -> bool:
    """True when ``arena`` asks for another arena source than the existing build used (None: any)."""
    if arena is None:
        return False
    try:
        info = json.loads(build_info.read_text())
        source = (info.get("arena") or {}).get("source", "export")
    except (OSError, ValueError, AttributeError):
        return True  # a damaged build.json: build again
    return source != arena


def run_firmware(
    run_dir: str | Path,
    *,
    board: str,
    kernels: str = FirmwareOptions.kernels,
    timeout_seconds: float = FirmwareOptions.timeout_seconds,
    build: bool = True,
    tflm_dir: str | None = None,
    jobs: int = FirmwareOptions.jobs,
    arena: str | None = None,
) -> dict[str, Any]:
    """Run the firmware of ``run_dir`` on ``board`` (QEMU or host) and check its outputs.

    ``arena``: ``"measured"`` or ``"export"`` (see :func:`build_firmware`); None keeps an existing
    build as it is and measures the arena when it builds.

    Example::

        result = run_firmware("runs/20250101-120000", board="qemu-mps2-an386")
        result["instructions_per_invoke"], result["arena_used_bytes"]
    """
    board_spec = get_board(board)
    if board_spec.kind == "board":
        raise InputError(
            f"Board {board!r} is real hardware; `firmware run` runs QEMU boards and host. "
            f"Flash it instead: edgedistill flash {run_dir} --board {board}"
        )
    if timeout_seconds <= 0:
        raise InputError(f"--timeout must be > 0 seconds. Received: {timeout_seconds}.")
    export = load_micro_export(run_dir)
    build_info = build_dir_for(export.run_dir, board, kernels) / "build.json"
    if build and (not build_info.is_file() or _built_arena_differs(build_info, arena)):
        build_firmware(export.run_dir, board=board, kernels=kernels, tflm_dir=tflm_dir, jobs=jobs, arena=arena or "measured")
    built = load_build(export.run_dir, board=board, kernels=kernels)
    logger.info("Running the firmware on %s (%s kernels)", board, kernels)
    parsed, command, wall_seconds = _run_and_parse(board_spec, built, run_dir=run_dir, timeout_seconds=timeout_seconds)

    expected = export.expected_outputs()
    is_float = export.output_dtype.startswith("float")
    checks = compare_outputs(parsed, expected, tolerance=FLOAT_RELATIVE_TOLERANCE if is_float else 0, relative=is_float)
    outputs_match = all(check["match"] for check in checks)
    result = _result(
        board_spec, built, parsed, checks, arena=_arena_truth(export, built, parsed), command=command, wall_seconds=wall_seconds
    )
    result["profile"] = _firmware_profile(board_spec, built, parsed, model=str(export.model_path))
    _write_results(export, built, result)
    logger.info("Firmware on %s (%s): %s", board, kernels, result["status"])

    if not (outputs_match and parsed.status == "pass"):
        worst = max((check["max_abs_diff"] for check in checks), default=0)
        raise GateFailed(
            f"The firmware's outputs on {board} ({kernels}) differ from the host TFLM outputs "
            f"(largest difference {worst}; firmware status {parsed.status}). Results were written to "
            f"{built.build_dir / 'run.json'}."
        )
    return result


def _run_and_parse(
    board_spec: Board, built: BuildResult, *, run_dir: str | Path, timeout_seconds: float
) -> tuple[FirmwareResult, list[str], float]:
    """Run the image, keep its log as ``run.log``, and parse its result block (errors raise StageError)."""
    board, kernels = built.board, built.kernels
    if board_spec.kind == "qemu":
        command = qemu_command(board_spec, built.elf, qemu=qemu_binary())
        what = f"QEMU ({board_spec.qemu_machine})"
    else:
        command = [str(built.elf)]
        what = "The host firmware"
    ran = run_command(command, timeout_seconds=timeout_seconds, what=what)
    (built.build_dir / "run.log").write_text(ran.output)
    parsed = parse_result_block(ran.output)
    if parsed.status == "error" and parsed.fields.get("error") == "allocate_tensors_failed":
        compiled = built.info.get("kTensorArenaSize")
        source = (built.info.get("arena") or {}).get("source", "export")
        raise StageError(
            f"The firmware's tensor arena ({compiled} bytes, source: {source}) is too small on {board} with "
            f"kernels={kernels}. Rebuild with the arena measured on the target: "
            f"edgedistill firmware build {run_dir} --board {board} --kernels {kernels} --arena measured"
        )
    if parsed.status == "error":
        raise StageError(
            f"The firmware stopped with error={parsed.fields.get('error', '?')} on {board}. Log: {built.build_dir / 'run.log'}"
        )
    return parsed, command, ran.seconds


def _firmware_profile(board_spec: Board, built: BuildResult, parsed: FirmwareResult, *, model: str) -> dict[str, Any] | None:
    """The per-operator ticks the firmware's profiler printed (main.cc, MicroProfiler::LogCsv format) as a
    Profile dict, MACs added, written as ``profile.csv`` / ``trace.json`` beside ``run.json``; None for an
    image built without it."""
    from edgedistill.profiles import add_macs, parse_micro_profiler, write_chrome_trace, write_csv

    runs, total = parsed.integer("profile_runs"), parsed.integer("profile_ticks_total")
    ticks_per_second = parsed.integer("ticks_per_second")
    if not runs or total is None:
        return None
    qemu = board_spec.kind == "qemu"
    per_tick = 1e9 / ticks_per_second if qemu and ticks_per_second else None  # -icount shift=0: 1 instruction = 1 ns
    ticks_are = (
        "SysTick ticks of QEMU's -icount virtual clock: instruction counts, not time"
        if qemu
        else f"{parsed.fields.get('tick_source')} ticks ({ticks_per_second}/s)"
    )
    try:
        profile = parse_micro_profiler(
            (built.build_dir / "run.log").read_text(),
            runs=runs,
            ticks_are=ticks_are,
            ticks_per_second=ticks_per_second,
            invoke_ticks=total / runs,
            instructions_per_tick=per_tick,
        )
    except (OSError, ValueError) as error:
        logger.warning("The firmware's per-operator profile could not be read: %s", error)
        return None
    add_macs(profile, model)
    write_csv(profile, built.build_dir / "profile.csv")
    write_chrome_trace(profile, built.build_dir / "trace.json", label=f"{Path(model).name} @ {built.board}")
    return {**profile.to_dict(), "summary": profile.summary()}


def _arena_truth(export: Any, built: BuildResult, parsed: FirmwareResult) -> dict[str, Any]:
    """The arena the target used, set against the host's estimate and the compiled size."""
    truth = arena_module.arena_truth(
        export,
        arena_used_bytes=parsed.arena_used_bytes,
        pointer_bytes=parsed.integer("pointer_bytes"),
        compiled_arena_bytes=built.info.get("kTensorArenaSize"),
    )
    truth["source"] = (built.info.get("arena") or {}).get("source", "export")
    if built.kernels != "reference":
        # The host accounting runs TFLM's reference kernels: optimized kernels' scratch buffers are not in it.
        truth["estimate_basis"] = f"host reference kernels; {built.kernels} scratch buffers are not included"
    return truth


def _front_end_result(board_spec: Board, parsed: FirmwareResult) -> dict[str, Any] | None:
    """An audio export's chain on the target (raw audio -> front end -> model): features and class
    scores against the host TFLM interpreter's, and the front end's own cost per clip (None otherwise)."""
    ticks, clips = parsed.integer("frontend_ticks_total"), parsed.integer("frontend_num_timed_clips")
    ticks_per_second = parsed.integer("ticks_per_second")
    if ticks is None or not clips or not ticks_per_second:
        return None
    per_clip = ticks / clips
    qemu = board_spec.kind == "qemu"
    return {
        "num_clips": parsed.integer("audio_num_clips"),
        "feature_mismatches": parsed.integer("audio_num_feature_mismatches"),
        "output_mismatches": parsed.integer("audio_num_output_mismatches"),
        "invokes_per_clip": parsed.integer("frontend_invokes_per_clip"),
        "arena_used_bytes": parsed.integer("frontend_arena_used_bytes"),
        "arena_size_bytes": parsed.integer("frontend_arena_size_bytes"),
        "ticks_per_clip": per_clip,
        "instructions_per_clip": round(instructions_per_invoke(per_clip, ticks_per_second)) if qemu else None,
        "latency_ms_per_clip": None if qemu else per_clip / ticks_per_second * 1e3,
    }


def _result(
    board_spec: Board,
    built: BuildResult,
    parsed: FirmwareResult,
    checks: list[dict[str, Any]],
    *,
    arena: dict[str, Any],
    command: list[str],
    wall_seconds: float,
) -> dict[str, Any]:
    """The ``run.json`` content: outputs checked, timing, arena, sizes and versions."""
    outputs_match = all(check["match"] for check in checks)
    ticks_per_invoke = parsed.ticks_per_invoke
    ticks_per_second = parsed.integer("ticks_per_second")
    instructions = None
    latency_ms = None
    if board_spec.kind == "qemu" and ticks_per_invoke is not None and ticks_per_second:
        instructions = round(instructions_per_invoke(ticks_per_invoke, ticks_per_second))
    elif ticks_per_invoke is not None and ticks_per_second:
        latency_ms = ticks_per_invoke / ticks_per_second * 1e3
    return {
        "board": built.board,
        "kernels": built.kernels,
        "kind": "emulated" if board_spec.kind == "qemu" else "host",
        "status": "pass" if outputs_match and parsed.status == "pass" else "fail",
        "outputs_match_host_tflm": outputs_match,
        "firmware_status": parsed.status,
        "samples": [
            {**check, "label": sample.get("label"), "argmax": sample.get("argmax")}
            for check, sample in zip(checks, parsed.samples)
        ],
        "num_timed_invokes": parsed.integer("num_timed_invokes"),
        "ticks_per_invoke": ticks_per_invoke,
        "ticks_per_second": ticks_per_second,
        "tick_source": parsed.fields.get("tick_source"),
        "instructions_per_invoke": instructions,
        "latency_ms": latency_ms,
        "arena": arena,
        "arena_used_bytes": parsed.arena_used_bytes,
        "front_end": _front_end_result(board_spec, parsed),
        "sizes": built.info.get("sizes"),
        "command": command,
        "wall_seconds": round(wall_seconds, 3),
        "versions": _versions(built.info),
        "timestamp": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def firmware_record(result: dict[str, Any], *, model: str) -> FirmwareRunRecord:
    """The ``firmware.jsonl`` line of one :func:`run_firmware` result."""
    sizes = result.get("sizes") or {}
    return FirmwareRunRecord(
        model=model,
        board=result["board"],
        kernels=result["kernels"],
        kind=result["kind"],
        status=result["status"],
        outputs_match_host_tflm=result["outputs_match_host_tflm"],
        num_runs=result["num_timed_invokes"],
        instructions_per_invoke=result["instructions_per_invoke"],
        latency_ms=result["latency_ms"],
        arena_used_bytes=result["arena_used_bytes"],
        flash_bytes=sizes.get("flash_bytes"),
        ram_bytes=sizes.get("ram_bytes"),
        versions=result["versions"],
        timestamp=result["timestamp"],
    )


def _write_results(export: Any, built: BuildResult, result: dict[str, Any]) -> None:
    """``run.json`` next to the image, the report's ``firmware`` section, a line in ``firmware.jsonl``."""
    write_json_atomic(built.build_dir / "run.json", result)
    section = load_report(export.run_dir).get("firmware") or {}
    section[f"{built.board}/{built.kernels}"] = {
        "build": {key: built.info.get(key) for key in ("sizes", "tflm_commit", "compiler", "elf", "kTensorArenaSize", "arena")},
        "run": {key: value for key, value in result.items() if key not in ("command",)},
    }
    add_section(export.run_dir, "firmware", section)
    append_firmware_record(export.run_dir, firmware_record(result, model=str(export.model_path)))


__all__ = ["run_firmware", "FirmwareRunRecord", "firmware_record", "append_firmware_record", "FIRMWARE_RESULTS_FILE"]
