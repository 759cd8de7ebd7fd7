"""Flash of the model array: the ``.tflite`` as converted against the micro export's compacted copy.

    nice -n 10 .venv/bin/python benchmarks/flash_compaction.py [--no-external]

For the student presets (int8 after post-training quantization, and after QAT, whose tensor names
are long), and every ``.tflite`` under benchmarks/.external/tflm/ (git-ignored; TFLM's own example
models, fetched for benchmarks/memory_plan.py): bytes before and after
:func:`edgedistill.micro.compact.compact_model`, what each step saved, the smallest arena of both on
the TFLM interpreter (bisection) and whether every output is identical on 16 random inputs.
Models TFLM cannot run here (e.g. the Vela-compiled one) are reported with TFLM's reason.
Writes benchmarks/results/flash_compaction.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "flash_compaction.json"
# (preset, width, input shape, classes): the students the README and the benchmarks use
STUDENTS = (
    ("dscnn_kws_temporal", 0.75, (49, 20, 1), 10),
    ("dscnn_kws", 0.5, (49, 20, 1), 10),
    ("resnet8", 0.35, (32, 32, 3), 10),
    ("mobilenet_v1", 0.25, (96, 96, 3), 2),
    ("dscnn", 1.0, (28, 28, 1), 10),
)


def student_models() -> list[tuple[str, str, bytes]]:
    """(name, kind, int8 flatbuffer): each student after post-training quantization and after QAT."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from edgedistill._keras import keras
    from edgedistill.convert import convert_keras_model
    from edgedistill.models import build_model
    from edgedistill.quantize import quantize_model

    models = []
    for preset, width, shape, classes in STUDENTS:
        keras.utils.set_random_seed(0)
        model = build_model(preset, shape, classes, width=width, name="student")
        x = np.random.default_rng(0).random((16, *shape), dtype=np.float32)
        name = f"{preset} w{width:g} {'x'.join(map(str, shape))}"
        models.append((name, "PTQ", convert_keras_model(model, representative_data=x)))
        models.append((name, "QAT", convert_keras_model(quantize_model(model), representative_data=x)))
    return models


def external_models(folder: Path) -> list[tuple[str, str, bytes]]:
    return [(path.name, "TFLM example", path.read_bytes()) for path in sorted(folder.rglob("*.tflite"))]


def measure(name: str, kind: str, data: bytes) -> dict:
    from edgedistill.errors import EdgeDistillError
    from edgedistill.micro.compact import compact_model
    from edgedistill.micro.memory_plan import default_test_inputs
    from edgedistill.tflm import smallest_arena, tflm_outputs

    row = {"model": name, "kind": kind, "original_bytes": len(data)}
    try:
        compacted = compact_model(data, source=name)
        row.update(
            compacted_bytes=compacted.size_bytes,
            saved_bytes=compacted.saved_bytes,
            ratio=round(compacted.size_bytes / len(data), 4),
        )
        arena = smallest_arena(data, source=name).arena_bytes
        row["arena_bytes"] = arena
        row["compacted_arena_bytes"] = smallest_arena(compacted.model_bytes, source=name).arena_bytes
        inputs = default_test_inputs(data, num_samples=16)
        before = tflm_outputs(data, inputs, arena_bytes=arena, source=name)
        after = tflm_outputs(compacted.model_bytes, inputs, arena_bytes=arena, source=name)
        row["outputs_identical"] = bool(before.dtype == after.dtype and np.array_equal(before, after))
    except EdgeDistillError as error:  # e.g. an op TFLM lacks: the sizes stand, the run does not
        row["tflm"] = str(error)
    print(
        f"{name} ({kind}): {row['original_bytes']:,} -> {row.get('compacted_bytes', 0):,} bytes, "
        f"arena {row.get('arena_bytes')} / {row.get('compacted_arena_bytes')}, identical {row.get('outputs_identical')}",
        flush=True,
    )
    return row


STEP_COLUMNS = ("names", "signatures", "shape_signatures", "converter_metadata", "zero_points")


def table(rows: list[dict]) -> str:
    steps = " | ".join(step.replace("_", " ") for step in STEP_COLUMNS)
    lines = [
        f"| model | kind | as converted | compacted | ratio | saved: {steps} | arena (both) | outputs |",
        "|---|---|---|---|---|" + "---|" * len(STEP_COLUMNS) + "---|---|",
    ]
    for row in rows:
        saved = row.get("saved_bytes", {})
        arena = (
            f"{row['arena_bytes']:,} / {row['compacted_arena_bytes']:,}"
            if "compacted_arena_bytes" in row
            else "not run: " + row.get("tflm", "")[:60]
        )
        outputs = {True: "identical", False: "DIFFERENT", None: "-"}[row.get("outputs_identical")]
        lines.append(
            f"| {row['model']} | {row['kind']} | {row['original_bytes']:,} | {row.get('compacted_bytes', 0):,} | "
            f"{row.get('ratio', 0):.3f} | "
            + " | ".join(f"{saved.get(step, 0):,}" for step in STEP_COLUMNS)
            + f" | {arena} | {outputs} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    ran = [row for row in rows if "outputs_identical" in row]
    return {
        "models": len(rows),
        "run_on_tflm": len(ran),
        "all_outputs_identical": all(row["outputs_identical"] for row in ran),
        "all_arenas_equal": all(row["arena_bytes"] == row["compacted_arena_bytes"] for row in ran),
        "median_ratio_students": statistics.median(row["ratio"] for row in rows if row["kind"] in ("PTQ", "QAT")),
        "median_ratio_external": statistics.median([row["ratio"] for row in rows if row["kind"] == "TFLM example"] or [1.0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--external", type=Path, default=HERE / ".external" / "tflm")
    parser.add_argument("--no-external", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    from edgedistill._version import __version__
    from edgedistill.fileio import write_json_atomic
    from edgedistill.tflite_model import runtime_versions

    started = time.monotonic()
    models = student_models()
    if not args.no_external and args.external.is_dir():
        models += external_models(args.external)
    rows = [measure(name, kind, data) for name, kind, data in models]
    print(table(rows))
    result = summary(rows)
    print(result)
    write_json_atomic(
        args.output,
        {
            "benchmark": "flash_compaction",
            "command": "python benchmarks/flash_compaction.py " + " ".join(sys.argv[1:]),
            "tool_version": __version__,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"uname": " ".join(platform.uname()), "num_cores": os.cpu_count()},
            "versions": runtime_versions(),
            "wall_s": round(time.monotonic() - started, 1),
            "models": rows,
            "summary": result,
        },
    )
    print(f"wrote {args.output} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
