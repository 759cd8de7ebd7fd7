"""Harness overhead of the `local` target, and run-to-run spread of its medians.

In one run, alternating 5 times: the local target (`run_benchmark(..., target="local")`, a subprocess
running edgedistill/_runner.py) and a bare LiteRT loop in this process (build the interpreter, set
inputs once, time `invoke()` with perf_counter_ns). Same model, same num_runs / warmup_runs / threads.

Targets (issue 3): harness overhead on the p50 < 5 %; spread of the local target's medians over the
5 repetitions, (max - min) / median, <= 5 %.

    python benchmarks/harness_overhead.py            # prints a table, writes benchmarks/results/harness_overhead.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgedistill._version import __version__
from edgedistill.bench import run_benchmark
from edgedistill.fileio import write_json_atomic

MAKE_MODEL = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, tensorflow as tf, tf_keras as keras
keras.utils.set_random_seed(0)
# A small image classifier (~1 ms per invoke here): enough work that timings are not clock noise.
m = keras.Sequential([keras.layers.Input((64, 64, 3)), keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
    keras.layers.DepthwiseConv2D(3, activation="relu"), keras.layers.Conv2D(64, 1, activation="relu"),
    keras.layers.DepthwiseConv2D(3, strides=2, activation="relu"), keras.layers.Conv2D(128, 1, activation="relu"),
    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
c = tf.lite.TFLiteConverter.from_keras_model(m)
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = lambda: ([np.random.rand(1, 64, 64, 3).astype("float32")] for _ in range(16))
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
c.inference_input_type = tf.int8; c.inference_output_type = tf.int8
open(sys.argv[1], "wb").write(c.convert())
"""


def bare_loop(model: Path, num_runs: int, warmup_runs: int, num_threads: int) -> list[float]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        info = np.iinfo(detail["dtype"])
        interpreter.set_tensor(
            detail["index"], rng.integers(info.min, int(info.max) + 1, size=detail["shape"], dtype=detail["dtype"])
        )
    for _ in range(warmup_runs):
        interpreter.invoke()
    samples = []
    for _ in range(num_runs):
        start = time.perf_counter_ns()
        interpreter.invoke()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .tflite model (default: a small int8 CNN built here)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--num-runs", type=int, default=300)
    parser.add_argument("--warmup-runs", type=int, default=30)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "harness_overhead.json"))
    args = parser.parse_args()

    model = Path(args.model) if args.model else Path(tempfile.mkdtemp()) / "cnn_int8.tflite"
    if not model.exists():
        subprocess.run([sys.executable, "-c", MAKE_MODEL, str(model)], check=True, capture_output=True)
    rows = []
    for repetition in range(args.repetitions):
        started = time.monotonic()
        m = run_benchmark(
            model, target="local", num_runs=args.num_runs, warmup_runs=args.warmup_runs, num_threads=args.num_threads
        )
        local_wall_s = time.monotonic() - started
        bare = bare_loop(model, args.num_runs, args.warmup_runs, args.num_threads)
        rows.append(
            {
                "repetition": repetition + 1,
                "local_p50_ms": m.latency_ms["p50"],
                "local_mean_ms": m.latency_ms["mean"],
                "bare_p50_ms": float(np.percentile(bare, 50)),
                "bare_mean_ms": float(np.mean(bare)),
                "local_pair_wall_s": local_wall_s,
                "local_init_ms": m.init_ms,
            }
        )
    local_medians = [r["local_p50_ms"] for r in rows]
    bare_medians = [r["bare_p50_ms"] for r in rows]
    overhead = statistics.median(local_medians) / statistics.median(bare_medians) - 1.0
    spread = (max(local_medians) - min(local_medians)) / statistics.median(local_medians)
    bare_spread = (max(bare_medians) - min(bare_medians)) / statistics.median(bare_medians)
    summary = {
        "harness_overhead_p50": overhead,
        "target_overhead_below": 0.05,
        "overhead_ok": abs(overhead) < 0.05,
        "spread_of_local_medians": spread,
        "spread_of_bare_medians": bare_spread,
        "target_spread_at_most": 0.05,
        "spread_ok": spread <= 0.05,
        "median_local_pair_wall_s": statistics.median(r["local_pair_wall_s"] for r in rows),
    }
    print(
        f"model {model.name} ({model.stat().st_size} bytes), num_runs={args.num_runs}, "
        f"warmup_runs={args.warmup_runs}, num_threads={args.num_threads}"
    )
    print(f"{'rep':>3}  {'local p50 ms':>12}  {'bare p50 ms':>11}  {'ratio':>6}  {'pair wall s':>11}")
    for r in rows:
        print(
            f"{r['repetition']:>3}  {r['local_p50_ms']:>12.4f}  {r['bare_p50_ms']:>11.4f}  "
            f"{r['local_p50_ms'] / r['bare_p50_ms']:>6.3f}  {r['local_pair_wall_s']:>11.2f}"
        )
    print(
        f"harness overhead on p50 (median of {args.repetitions}): {overhead * 100:+.2f} % (target < 5 %: "
        f"{'met' if summary['overhead_ok'] else 'NOT met'})"
    )
    print(
        f"spread of local medians (max-min)/median: {spread * 100:.2f} % (target <= 5 %: "
        f"{'met' if summary['spread_ok'] else 'NOT met'}); bare loop: {bare_spread * 100:.2f} %"
    )
    write_json_atomic(
        args.output,
        {
            "benchmark": "harness_overhead",
            "command": "python benchmarks/harness_overhead.py " + " ".join(sys.argv[1:]),
            "tool_version": __version__,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"uname": " ".join(platform.uname()), "num_cores": os.cpu_count()},
            "config": vars(args) | {"model": str(model), "model_size_bytes": model.stat().st_size},
            "repetitions": rows,
            "summary": summary,
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
