"""Firmware footprint: flash and RAM per board, instructions per invoke (reference vs CMSIS-NN) on QEMU.

Needs a TFLite Micro checkout in TFLM_DIR, the arm-none-eabi toolchain and qemu-system-arm.

    TFLM_DIR=/path/to/tflite-micro python benchmarks/firmware_footprint.py --student-run runs/<id>

Models: the spine's student (the micro export of --student-run; without it, a quick
`edgedistill run` is made first) and one bigger CNN (random weights, same input shape) exported
with edgedistill.micro.export_micro. For every model: build for each board and kernels; run
the QEMU boards (outputs must match the host TFLM outputs); record flash (text + data), RAM
(data + bss, the arena included), the arena used on the 32-bit target and instructions per
invoke (QEMU -icount shift=0: instructions, not cycles). Writes
benchmarks/results/firmware_footprint.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "firmware_footprint.json"
PLAN = [
    # (board, kernels, run it?)
    ("qemu-mps2-an386", "reference", True),
    ("qemu-mps2-an386", "cmsis_nn", True),
    ("qemu-mps3-an547", "reference", True),
    ("qemu-mps3-an547", "cmsis_nn", True),
    ("nucleo-f446re", "reference", False),
    ("nucleo-f446re", "cmsis_nn", False),
]


def make_student_run(work: Path) -> Path:
    from click.testing import CliRunner

    from edgedistill.cli import cli

    result = CliRunner().invoke(cli, ["run", "--output-dir", str(work), "--run-name", "student", "--verbose", "0"])
    if result.exit_code != 0:
        sys.exit(f"edgedistill run failed: {result.output}")
    return work / "student"


def make_bigger_run(student_run: Path, work: Path) -> Path:
    """A wider CNN on the student's input shape, int8, exported like the student (random weights: size and speed only)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import numpy as np

    from edgedistill.convert import convert_keras_model
    from edgedistill.micro import export_micro
    from edgedistill.models import build_model

    export = json.loads((student_run / "micro" / "micro_export.json").read_text())
    input_shape = tuple(export["input_shape"][1:])
    num_classes = int(export["output_shape"][-1])
    model = build_model("cnn", input_shape, num_classes, width=2.0, name="bigger")
    rng = np.random.default_rng(0)
    data = rng.random((64, *input_shape), dtype=np.float32)
    tflite = convert_keras_model(model, quantization="int8", representative_data=data, num_calibration_samples=32)
    run_dir = work / "bigger"
    (run_dir / "micro").mkdir(parents=True, exist_ok=True)
    (run_dir / "bigger_int8.tflite").write_bytes(tflite)
    export_micro(
        tflite,
        run_dir / "micro",
        test_inputs=data[:3],
        test_labels=np.zeros(3, dtype=int),
        model_name="bigger_int8.tflite",
        memory_plan="greedy",  # the figures of benchmarks/README.md were measured with TFLM's greedy planner
    )
    return run_dir


def cached_only(plan: list[tuple[str, str, bool]], tflm_dir: str) -> list[tuple[str, str, bool]]:
    """The entries whose TFLM library is already built (the others would first build it: 10-30 min each)."""
    from pathlib import Path as _Path

    from edgedistill.firmware.boards import get_board
    from edgedistill.firmware.tflm_checkout import library_for, tflm_commit

    commit = tflm_commit(_Path(tflm_dir))
    kept = []
    for board, kernels, emulate in plan:
        spec = get_board(board)
        if library_for(commit, spec.tflm_target, spec.tflm_target_arch, kernels).exists:
            kept.append((board, kernels, emulate))
        else:
            print(f"skipped {board} {kernels}: its TFLM library is not built yet (--cached-only)", flush=True)
    return kept


def measure(run_dir: Path, name: str, tflm_dir: str, timeout: float, plan: list[tuple[str, str, bool]] = PLAN) -> list[dict]:
    from edgedistill.errors import EdgeDistillError
    from edgedistill.firmware.build import build_firmware
    from edgedistill.firmware.run import run_firmware

    export = json.loads((run_dir / "micro" / "micro_export.json").read_text())
    rows = []
    for board, kernels, emulate in plan:
        row = {
            "model": name,
            "board": board,
            "kernels": kernels,
            "model_size_bytes": export["model_size_bytes"],
            "export_kTensorArenaSize": export["kTensorArenaSize"],
            "arena_bytes_host": export["arena_bytes_host"],
        }
        try:
            built = build_firmware(run_dir, board=board, kernels=kernels, tflm_dir=tflm_dir)
            row.update(
                {
                    "flash_bytes": built.info["sizes"]["flash_bytes"],
                    "ram_bytes": built.info["sizes"]["ram_bytes"],
                    "text_bytes": built.info["sizes"]["text_bytes"],
                    "bss_bytes": built.info["sizes"]["bss_bytes"],
                    "kTensorArenaSize": built.info["kTensorArenaSize"],
                    "arena_source": built.info["arena"]["source"],
                    "arena_probe_board": built.info["arena"].get("probe_board"),
                    "tflm_commit": built.info["tflm_commit"],
                    "compiler": built.info["compiler"],
                }
            )
            if emulate:
                ran = run_firmware(run_dir, board=board, kernels=kernels, timeout_seconds=timeout, build=False)
                row.update(
                    {
                        "status": ran["status"],
                        "instructions_per_invoke": ran["instructions_per_invoke"],
                        "arena_used_bytes": ran["arena_used_bytes"],
                        "arena": ran["arena"],
                    }
                )
            else:
                row["status"] = "built (not run: real board, untested)"
        except EdgeDistillError as error:
            row["status"] = f"error: {error}"
        print(
            json.dumps(
                {
                    k: row.get(k)
                    for k in ("model", "board", "kernels", "status", "flash_bytes", "ram_bytes", "instructions_per_invoke")
                }
            ),
            flush=True,
        )
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | board | kernels | flash (text+data) | RAM (data+bss) | arena used (32-bit) / host 64-bit "
        "| arena compiled in (measured on) | instructions per invoke | outputs |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        arena = (
            f"{row['arena_used_bytes']} / {row['arena_bytes_host']}"
            if row.get("arena_used_bytes")
            else f"- / {row['arena_bytes_host']}"
        )
        instructions = f"{row['instructions_per_invoke']:,}" if row.get("instructions_per_invoke") else "-"
        compiled = (
            f"{row['kTensorArenaSize']} ({row.get('arena_probe_board') or row.get('arena_source')})"
            if row.get("kTensorArenaSize")
            else "-"
        )
        lines.append(
            f"| {row['model']} | {row['board']} | {row['kernels']} | {row.get('flash_bytes', '-')} "
            f"| {row.get('ram_bytes', '-')} | "
            f"{arena} | {compiled} | {instructions} | {row.get('status')} |"
        )
    speedups = []
    for row in rows:
        if row["kernels"] != "cmsis_nn" or not row.get("instructions_per_invoke"):
            continue
        reference = next(
            (r for r in rows if (r["model"], r["board"], r["kernels"]) == (row["model"], row["board"], "reference")), None
        )
        if reference and reference.get("instructions_per_invoke"):
            ratio = reference["instructions_per_invoke"] / row["instructions_per_invoke"]
            speedups.append(f"{row['model']} on {row['board']}: CMSIS-NN {ratio:.1f}x fewer instructions than reference")
    return "\n".join(lines + ([""] + speedups if speedups else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student-run", type=Path, default=None, help="run folder with a micro export (default: make one)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/firmware_footprint"))
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--no-bigger", action="store_true", help="only the student")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--cached-only", action="store_true", help="skip boards/kernels whose TFLM library is not built yet")
    args = parser.parse_args()
    tflm_dir = os.environ.get("TFLM_DIR")
    if not tflm_dir:
        sys.exit("benchmarks/firmware_footprint.py needs a TFLite Micro checkout: set TFLM_DIR=/path/to/tflite-micro")

    args.work_dir.mkdir(parents=True, exist_ok=True)
    student = args.student_run or make_student_run(args.work_dir)
    runs = [("student", student)]
    if not args.no_bigger:
        runs.append(("bigger-cnn", make_bigger_run(student, args.work_dir)))

    plan = cached_only(PLAN, tflm_dir) if args.cached_only else PLAN
    rows = []
    for name, run_dir in runs:
        rows += measure(run_dir, name, tflm_dir, args.timeout, plan)

    from edgedistill._version import __version__
    from edgedistill.fileio import write_json_atomic

    write_json_atomic(
        args.output,
        {
            "benchmark": "firmware_footprint",
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "edgedistill": __version__,
            "command": " ".join(sys.argv),
            "plan": [list(entry) for entry in plan],
            "notes": "instructions per invoke from QEMU -icount shift=0 (1 ns per instruction) and SysTick; not cycles",
            "rows": rows,
        },
    )
    print(table(rows))
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
