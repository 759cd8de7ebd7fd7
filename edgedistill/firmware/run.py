"""Run a built firmware in QEMU (or natively for ``host``), check it, and record the result.

``run_firmware`` parses the firmware's result block, compares every test-sample output with
the host TFLM output the export wrote, and records: the ``firmware`` section of
``report.json`` (per board and kernels), one ``emulated`` line in ``bench.jsonl`` with
instructions per invoke (QEMU) and ``run.json`` next to the image. Outputs that differ raise
:class:`GateFailed` after everything is written.
"""

from __future__ import annotations

import datetime as _datetime
import json
import platform
from pathlib import Path
from typing import Any

from edgedistill.errors import GateFailed, InputError, StageError
from edgedistill.fileio import append_jsonl, write_json_atomic
from edgedistill.firmware import arena as arena_module
from edgedistill.firmware.boards import get_board
from edgedistill.firmware.build import build_firmware, build_dir_for, load_build
from edgedistill.firmware.export import load_micro_export
from edgedistill.firmware.qemu import instructions_per_invoke, qemu_command, run_command
from edgedistill.firmware.result import compare_outputs, parse_result_block
from edgedistill.firmware.toolchain import qemu_binary
from edgedistill.report import add_section, load_report

BENCH_FILE = "bench.jsonl"
FLOAT_RELATIVE_TOLERANCE = 1e-5  # float outputs: same code, same inputs; only the FPU's rounding may differ


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
    source = (json.loads(build_info.read_text()).get("arena") or {}).get("source", "export")
    return source != arena


def run_firmware(
    run_dir: str | Path,
    *,
    board: str,
    kernels: str = "reference",
    timeout_seconds: float = 120.0,
    build: bool = True,
    tflm_dir: str | None = None,
    jobs: int = 2,
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

    expected = export.expected_outputs()
    is_float = export.output_dtype.startswith("float")
    checks = compare_outputs(parsed, expected, tolerance=FLOAT_RELATIVE_TOLERANCE if is_float else 0, relative=is_float)
    outputs_match = all(check["match"] for check in checks)
    firmware_says_pass = parsed.status == "pass"

    ticks_per_invoke = parsed.ticks_per_invoke
    ticks_per_second = parsed.integer("ticks_per_second")
    instructions = None
    latency_ms = None
    if board_spec.kind == "qemu" and ticks_per_invoke is not None and ticks_per_second:
        instructions = round(instructions_per_invoke(ticks_per_invoke, ticks_per_second))
    elif ticks_per_invoke is not None and ticks_per_second:
        latency_ms = ticks_per_invoke / ticks_per_second * 1e3

    arena_used = parsed.arena_used_bytes
    pointer_bytes = parsed.integer("pointer_bytes")
    truth = arena_module.arena_truth(
        export,
        arena_used_bytes=arena_used,
        pointer_bytes=pointer_bytes,
        compiled_arena_bytes=built.info.get("kTensorArenaSize"),
    )
    truth["source"] = (built.info.get("arena") or {}).get("source", "export")
    if kernels != "reference":
        # The host accounting runs TFLM's reference kernels: optimized kernels' scratch buffers are not in it.
        truth["estimate_basis"] = f"host reference kernels; {kernels} scratch buffers are not included"

    timestamp = _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds")
    result: dict[str, Any] = {
        "board": board,
        "kernels": kernels,
        "kind": "emulated" if board_spec.kind == "qemu" else "host",
        "status": "pass" if outputs_match and firmware_says_pass else "fail",
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
        "arena": truth,
        "arena_used_bytes": arena_used,
        "sizes": built.info.get("sizes"),
        "command": command,
        "wall_seconds": round(ran.seconds, 3),
        "versions": _versions(built.info),
        "timestamp": timestamp,
    }
    write_json_atomic(built.build_dir / "run.json", result)

    section = load_report(export.run_dir).get("firmware") or {}
    section[f"{board}/{kernels}"] = {
        "build": {key: built.info.get(key) for key in ("sizes", "tflm_commit", "compiler", "elf", "kTensorArenaSize", "arena")},
        "run": {key: value for key, value in result.items() if key not in ("command",)},
    }
    add_section(export.run_dir, "firmware", section)

    record: dict[str, Any] = {
        "kind": result["kind"],
        "target": board,
        "model": str(export.model_path),
        "kernels": kernels,
        "num_runs": result["num_timed_invokes"],
        "arena_used_bytes": arena_used,
        "flash_bytes": (built.info.get("sizes") or {}).get("flash_bytes"),
        "ram_bytes": (built.info.get("sizes") or {}).get("ram_bytes"),
        "outputs_match_host_tflm": outputs_match,
        "versions": result["versions"],
        "timestamp": timestamp,
    }
    if instructions is not None:
        record["instructions_per_invoke"] = instructions
    if latency_ms is not None:
        record["latency_ms"] = latency_ms
    append_jsonl(export.run_dir / BENCH_FILE, record)

    if not (outputs_match and firmware_says_pass):
        worst = max((check["max_abs_diff"] for check in checks), default=0)
        raise GateFailed(
            f"The firmware's outputs on {board} ({kernels}) differ from the host TFLM outputs "
            f"(largest difference {worst}; firmware status {parsed.status}). Results were written to "
            f"{built.build_dir / 'run.json'}."
        )
    return result


__all__ = ["run_firmware"]
