"""Self-contained TFLite Micro runner: the real TFLM interpreter (PyPI ``tflite-micro``) on the host.

Speaks the same JSON-lines protocol as ``_runner.py``. Run in a subprocess because a too-small
arena can crash the process. The arena actually used is read from TFLM's RecordingMicroAllocator
report (``print_allocations``, printed by C++ on stdout, so it is captured through a pipe).
TFLM's Python binding exposes no per-op profiler, so no per-op time is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def status_bytes(field: str):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def print_arena_report(interpreter) -> None:
    """TFLM's RecordingMicroAllocator report goes to stderr (MicroPrintf); the host parses its
    'Arena allocation total N bytes' line."""
    sys.stdout.flush()
    interpreter.print_allocations()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--num-runs", type=int, default=50)
    parser.add_argument("--warmup-runs", type=int, default=1)
    parser.add_argument("--min-secs", type=float, default=0.0)
    parser.add_argument("--arena-bytes", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args, _ = parser.parse_known_args()
    emit({"event": "device", "uname": " ".join(platform.uname()), "machine": platform.machine(),
          "num_cores": os.cpu_count(), "python_version": platform.python_version(),
          "emulates": "TFLite Micro interpreter on the host CPU (not a microcontroller)"})
    try:
        import numpy as np
        from importlib import metadata

        from tflite_micro.python.tflite_micro import runtime
        version = metadata.version("tflite-micro")
    except Exception as error:
        emit({"event": "error", "code": "no_interpreter",
              "message": f"the TFLite Micro Python package is not importable ({error}). Install it: "
                         "`pip install tflite-micro`."})
        sys.exit(3)
    with open(args.model, "rb") as handle:
        data = handle.read()
    arena = args.arena_bytes or len(data) * 10 + 16 * 1024
    rss_before = status_bytes("VmRSS")
    start = time.perf_counter_ns()
    try:
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena)
    except Exception as error:
        emit({"event": "error", "code": "bad_model", "message": f"TFLM cannot load the model with a {arena}-byte "
              f"arena: {str(error).strip().splitlines()[-1:]}. Pass a larger arena (--arena-bytes) or check "
              "the model's ops are in TFLM."})
        sys.exit(4)
    init_ms = (time.perf_counter_ns() - start) / 1e6
    emit({"event": "init", "runtime": "tflite_micro", "runtime_version": version, "init_ms": init_ms,
          "rss_before_init_bytes": rss_before, "rss_after_init_bytes": status_bytes("VmRSS"),
          "arena_size_bytes": arena})
    rng = np.random.default_rng(args.seed)
    index = 0
    while True:
        try:
            detail = interpreter.get_input_details(index)
        except Exception:
            break
        dtype = np.dtype(detail["dtype"])
        shape = [int(s) for s in detail["shape"]]
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            array = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
        else:
            array = rng.random(size=shape, dtype=np.float32).astype(dtype)
        interpreter.set_input(array, index)
        index += 1
    clock = time.perf_counter_ns
    start = clock()
    interpreter.invoke()
    first_ms = (clock() - start) / 1e6
    warmup = [first_ms]
    for _ in range(max(0, args.warmup_runs - 1)):
        start = clock()
        interpreter.invoke()
        warmup.append((clock() - start) / 1e6)
    samples = [] if args.warmup_runs > 0 else [first_ms]
    begin = last = time.monotonic()
    sent = 0
    while len(samples) < args.num_runs or time.monotonic() - begin < args.min_secs:
        start = clock()
        interpreter.invoke()
        samples.append((clock() - start) / 1e6)
        if time.monotonic() - last >= 1.0:
            emit({"event": "samples", "samples_ms": samples[sent:]})
            sent, last = len(samples), time.monotonic()
    emit({"event": "samples", "samples_ms": samples[sent:]})
    emit({"event": "result", "first_inference_ms": first_ms, "warmup_ms": warmup if args.warmup_runs > 0 else [],
          "peak_rss_bytes": status_bytes("VmHWM"), "per_op_ms": None})
    print_arena_report(interpreter)


if __name__ == "__main__":
    main()
