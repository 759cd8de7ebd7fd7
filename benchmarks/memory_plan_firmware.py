"""The offline memory plan on the microcontroller: greedy vs planned model in the firmware, in QEMU (issue 13 item 5).

    TFLM_DIR=~/.cache/edgedistill/tflm-src/<commit> python benchmarks/memory_plan_firmware.py \
        --board qemu-mps2-an386 --kernels cmsis_nn --kernels reference

For each branched model of ``benchmarks/memory_plan.py`` (where TFLM's greedy planner leaves room),
``edgedistill micro --memory-plan offline`` and ``--memory-plan greedy`` write two exports of the
same int8 model; ``edgedistill firmware run`` builds each into the firmware, measures the arena on
the target (a probe run in QEMU) and checks every output against the host TFLM interpreter. Writes
``benchmarks/results/memory_plan_firmware.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "memory_plan_firmware.json"
EDGEDISTILL = str(Path(sys.executable).parent / "edgedistill")  # the console script of this environment
sys.path.insert(0, str(HERE))


def export(model_path: Path, run_dir: Path, mode: str) -> dict:
    """`edgedistill micro` into ``run_dir/micro`` with one memory plan; returns micro_export.json."""
    command = [EDGEDISTILL, "micro", str(model_path), "-o", str(run_dir / "micro"), "--memory-plan", mode]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads((run_dir / "micro" / "micro_export.json").read_text())


def run_firmware(run_dir: Path, board: str, kernels: str) -> dict:
    command = [EDGEDISTILL, "firmware", "run", str(run_dir), "--board", board, "--kernels", kernels, "--json"]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"status": "error", "error": completed.stderr.strip().splitlines()[-1:]}
    return json.loads(completed.stdout)


def measure(name: str, data: bytes, board: str, kernels: str, folder: Path) -> dict:
    model_path = folder / f"{name}.tflite"
    model_path.write_bytes(data)
    row: dict = {"model": name, "board": board, "kernels": kernels}
    for mode in ("greedy", "offline"):
        run_dir = folder / f"{name}-{mode}-{kernels}"
        manifest = export(model_path, run_dir, mode)
        result = run_firmware(run_dir, board, kernels)
        row[mode] = {
            "host_arena_bytes": manifest["arena_bytes_host"],
            "plan_used": bool(manifest.get("memory_plan", {}).get("used_plan")),
            "target_arena_used_bytes": result.get("arena_used_bytes"),
            "outputs_match_host_tflm": result.get("outputs_match_host_tflm"),
            "instructions_per_invoke": result.get("instructions_per_invoke"),
            "status": result.get("status"),
        }
    greedy, offline = row["greedy"]["target_arena_used_bytes"], row["offline"]["target_arena_used_bytes"]
    row["target_arena_ratio"] = round(offline / greedy, 4) if greedy and offline else None
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | board / kernels | host arena greedy -> planned | target arena used greedy -> planned | ratio | outputs exact "
        "| instructions greedy / planned |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        g, o = row["greedy"], row["offline"]
        lines.append(
            f"| {row['model']} | {row['board']} / {row['kernels']} | {g['host_arena_bytes']:,} -> {o['host_arena_bytes']:,} | "
            f"{g['target_arena_used_bytes'] or 0:,} -> {o['target_arena_used_bytes'] or 0:,} | {row['target_arena_ratio']} | "
            f"{g['outputs_match_host_tflm']} / {o['outputs_match_host_tflm']} | "
            f"{g['instructions_per_invoke'] or 0:,} / {o['instructions_per_invoke'] or 0:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="qemu-mps2-an386")
    parser.add_argument("--kernels", action="append", default=None, help="reference and/or cmsis_nn (repeat)")
    parser.add_argument("--models", default="residual,two_branch,inception_stack,dense_blocks")
    parser.add_argument("--work", type=Path, default=HERE / ".external" / "memory_plan_firmware")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    import memory_plan  # benchmarks/memory_plan.py: the branched models

    from edgedistill._keras import keras
    from edgedistill.convert import convert_keras_model

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        keras.utils.set_random_seed(0)
        model = getattr(memory_plan, name)(keras)
        x = np.random.default_rng(0).random((64, *model.input_shape[1:]), dtype=np.float32)
        data = convert_keras_model(model, quantization="int8", representative_data=x)
        for kernels in args.kernels or ["cmsis_nn"]:
            rows.append(measure(name, data, args.board, kernels, args.work))
            print(json.dumps(rows[-1]), flush=True)
    args.output.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
