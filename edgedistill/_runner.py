"""Self-contained benchmark runner, copied as one file to the device that measures.

It needs only the standard library, numpy and one TFLite interpreter on the device
(``ai_edge_litert``, else ``tflite_runtime``, else ``tensorflow.lite``). It must not import
edgedistill: the ssh and emulator targets run it where edgedistill is not installed.

Protocol: it prints JSON lines on stdout, flushed as it goes, so a device that disappears
mid-run still leaves the samples measured so far on the host side::

    {"event": "device", ...facts...}
    {"event": "init", "init_ms": ..., ...}
    {"event": "samples", "samples_ms": [...]}        (in chunks, about once a second)
    {"event": "result", ...}                          (last line on success)
    {"event": "error", "code": "no_interpreter", "message": ...}   (exit code 3)

Timing follows TFLite's ``benchmark_model``: ``init_ms`` covers building the interpreter and
allocating tensors; the first invoke is reported as ``first_inference_ms`` and is the first of
``warmup_runs``; then at least ``num_runs`` timed invokes (and at least ``min_secs`` seconds).
Inputs are set once before the loop, as ``benchmark_model`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

EXIT_NO_INTERPRETER = 3
EXIT_BAD_MODEL = 4
EXIT_BAD_INPUT = 5


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def fail(code: str, message: str, exit_code: int) -> None:
    emit({"event": "error", "code": code, "message": message})
    sys.exit(exit_code)


def read_status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes; None where /proc is absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip("\x00\n ")
    except OSError:
        return None


def device_facts() -> dict:
    """What the measuring machine is: uname, CPU model, cores, governor, temperature."""
    uname = platform.uname()
    facts = {
        "uname": " ".join([uname.system, uname.node, uname.release, uname.version, uname.machine]),
        "machine": uname.machine,
        "hostname": uname.node,
        "num_cores": os.cpu_count(),
        "python_version": platform.python_version(),
        "cpu_model": None,
        "board_model": read_text("/proc/device-tree/model"),
        "cpu_governor": read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_max_freq_khz": None,
        "temperature_c": None,
    }
    cpuinfo = read_text("/proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            facts["cpu_model"] = value.strip()
            break
    freq = read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if freq and freq.isdigit():
        facts["cpu_max_freq_khz"] = int(freq)
    temperature = read_text("/sys/class/thermal/thermal_zone0/temp")
    if temperature and temperature.lstrip("-").isdigit():
        facts["temperature_c"] = int(temperature) / 1000.0
    return facts


def load_interpreter_class(wanted: str):
    """(Interpreter class, runtime name, version, module) for the first interpreter found."""
    tried = []
    candidates = ["ai_edge_litert", "tflite_runtime", "tensorflow"] if wanted == "auto" else [wanted]
    for name in candidates:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert import interpreter as module
                from importlib import metadata

                version = metadata.version("ai-edge-litert")
                return module.Interpreter, name, version, module
            if name == "tflite_runtime":
                from tflite_runtime import interpreter as module
                import tflite_runtime

                return module.Interpreter, name, getattr(tflite_runtime, "__version__", "unknown"), module
            if name == "tensorflow":
                import tensorflow as tf

                return tf.lite.Interpreter, "tensorflow.lite", tf.__version__, tf.lite.experimental
        except Exception as error:  # ImportError, or a broken install that fails on import
            tried.append(f"{name} ({type(error).__name__}: {error})")
    fail(
        "no_interpreter",
        f"Python {platform.python_version()} at {sys.executable} has no TFLite interpreter "
        f"(tried {'; '.join(tried)}). Install one there: `{sys.executable} -m pip install ai-edge-litert` "
        "(or `tflite-runtime`).",
        EXIT_NO_INTERPRETER,
    )


def make_inputs(interpreter, np, inputs_path: str | None, seed: int) -> list:
    details = interpreter.get_input_details()
    if inputs_path:
        try:
            given = np.load(inputs_path)
        except Exception as error:
            fail("bad_input", f"cannot read inputs {inputs_path}: {error}", EXIT_BAD_INPUT)
        names = list(given.files) if hasattr(given, "files") else None
        arrays = []
        for index, detail in enumerate(details):
            if names is None:
                array = given
            elif detail["name"] in names:
                array = given[detail["name"]]
            elif index < len(names):
                array = given[names[index]]
            else:
                fail("bad_input", f"inputs file has {len(names)} arrays; the model has {len(details)} inputs",
                     EXIT_BAD_INPUT)
            array = np.asarray(array)
            if tuple(array.shape) != tuple(detail["shape"]):
                if array.size == int(np.prod(detail["shape"])):
                    array = array.reshape(detail["shape"])
                else:
                    fail("bad_input",
                         f"input {detail['name']!r}: got shape {list(array.shape)}, expected {[int(s) for s in detail['shape']]}",
                         EXIT_BAD_INPUT)
            arrays.append(array.astype(detail["dtype"]))
        return arrays
    rng = np.random.default_rng(seed)
    arrays = []
    for detail in details:
        dtype = np.dtype(detail["dtype"])
        shape = [max(1, int(size)) for size in detail["shape"]]
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            arrays.append(rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            arrays.append(rng.random(size=shape, dtype=np.float32).astype(dtype))
    return arrays


def op_summary(interpreter) -> dict:
    """Ops in the graph after delegation: LiteRT shows ops handed to a delegate as ``DELEGATE``."""
    try:
        ops = interpreter._get_ops_details()
    except Exception:
        return {"num_ops": None, "num_delegate_ops": None, "op_names": None}
    names = [op.get("op_name") for op in ops]
    return {"num_ops": len(names), "num_delegate_ops": names.count("DELEGATE"), "op_names": sorted(set(names))}


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--num-runs", type=int, default=50)
    parser.add_argument("--warmup-runs", type=int, default=1)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--min-secs", type=float, default=0.0)
    parser.add_argument("--use-xnnpack", choices=("true", "false"), default="true")
    parser.add_argument("--runtime", default="auto", choices=("auto", "ai_edge_litert", "tflite_runtime", "tensorflow"))
    parser.add_argument("--inputs", default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build_interpreter(args: argparse.Namespace, np, rss_start: int | None):
    """Load the model into the first interpreter found and allocate tensors; emits the ``init`` line."""
    interpreter_class, runtime, runtime_version, module = load_interpreter_class(args.runtime)
    try:
        with open(args.model, "rb") as handle:
            model_content = handle.read()
    except OSError as error:
        fail("bad_model", f"cannot read model {args.model}: {error}", EXIT_BAD_MODEL)

    options = {"num_threads": args.num_threads}
    if args.use_xnnpack == "false":
        resolver = getattr(getattr(module, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
        if resolver is not None:
            options["experimental_op_resolver_type"] = resolver
    rss_before_init = read_status_bytes("VmRSS")
    start = time.perf_counter_ns()
    try:
        interpreter = interpreter_class(model_content=model_content, **options)
        interpreter.allocate_tensors()
    except Exception as error:
        fail("bad_model", f"{runtime} cannot load {args.model}: {str(error).strip().splitlines()[-1:]}", EXIT_BAD_MODEL)
    init_ms = (time.perf_counter_ns() - start) / 1e6
    rss_after_init = read_status_bytes("VmRSS")
    emit({
        "event": "init",
        "runtime": runtime,
        "runtime_version": runtime_version,
        "numpy_version": np.__version__,
        "init_ms": init_ms,
        "rss_before_init_bytes": rss_before_init,
        "rss_after_init_bytes": rss_after_init,
        "rss_start_bytes": rss_start,
        **op_summary(interpreter),
    })
    return interpreter


def time_invokes(invoke, warmup_runs: int, num_runs: int, min_secs: float) -> tuple[float, list[float], list[float]]:
    """(first inference ms, warmup ms, timed samples ms); samples are emitted about once a second."""
    clock = time.perf_counter_ns
    start = clock()
    invoke()
    first_inference_ms = (clock() - start) / 1e6
    warmup_ms = [first_inference_ms]
    for _ in range(max(0, warmup_runs - 1)):
        start = clock()
        invoke()
        warmup_ms.append((clock() - start) / 1e6)
    if warmup_runs <= 0:
        warmup_ms = []

    samples_ms: list[float] = [] if warmup_runs > 0 else [first_inference_ms]
    sent = 0
    loop_start = last_flush = time.monotonic()
    min_secs = max(0.0, min_secs)
    while len(samples_ms) < num_runs or time.monotonic() - loop_start < min_secs:
        start = clock()
        invoke()
        samples_ms.append((clock() - start) / 1e6)
        now = time.monotonic()
        if now - last_flush >= 1.0:
            emit({"event": "samples", "samples_ms": samples_ms[sent:]})
            sent = len(samples_ms)
            last_flush = now
    emit({"event": "samples", "samples_ms": samples_ms[sent:]})
    return first_inference_ms, warmup_ms, samples_ms


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    emit({"event": "device", **device_facts()})
    rss_start = read_status_bytes("VmRSS")
    try:
        import numpy as np
    except Exception as error:
        fail("no_numpy", f"Python {platform.python_version()} at {sys.executable} has no numpy ({error}). "
             f"Install it there: `{sys.executable} -m pip install numpy`.", EXIT_NO_INTERPRETER)
    interpreter = build_interpreter(args, np, rss_start)
    for detail, array in zip(interpreter.get_input_details(), make_inputs(interpreter, np, args.inputs, args.seed)):
        interpreter.set_tensor(detail["index"], array)

    first_inference_ms, warmup_ms, samples_ms = time_invokes(interpreter.invoke, args.warmup_runs, args.num_runs,
                                                             args.min_secs)
    output_details = interpreter.get_output_details()
    emit({
        "event": "result",
        "first_inference_ms": first_inference_ms,
        "warmup_ms": warmup_ms,
        "num_samples": len(samples_ms),
        "peak_rss_bytes": read_status_bytes("VmHWM"),
        "rss_end_bytes": read_status_bytes("VmRSS"),
        "inputs": [{"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                   for d in interpreter.get_input_details()],
        "outputs": [{"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                    for d in output_details],
    })


if __name__ == "__main__":
    main()
