"""Self-contained benchmark runner, copied as one file to the device that measures.

It runs LiteRT, not TFLM: the TFLM bench runner is :mod:`edgedistill.tflm` (run by path the same way),
which loads this file for the one-operator profile protocol they share (:func:`time_interleaved`,
:func:`fixed_slice_cost`, :func:`profile_rows`).

It needs only the standard library, numpy and one TFLite interpreter on the device
(``ai_edge_litert``, else ``tflite_runtime``, else ``tensorflow.lite``). It must not import
edgedistill: the ssh and emulator targets run it where edgedistill is not installed.

Protocol: it prints JSON lines on stdout, flushed as it goes, so a device that disappears
mid-run still leaves the samples measured so far on the host side::

    {"event": "device", ...facts...}
    {"event": "init", "init_ms": ..., ...}
    {"event": "samples", "samples_ms": [...]}        (in chunks, about once a second)
    {"event": "profile", ...}                         (with --profile: per-operator times)
    {"event": "result", ...}                          (last line on success)
    {"event": "error", "code": "no_interpreter", "message": ...}   (exit code 3)

Timing follows TFLite's ``benchmark_model``: ``init_ms`` covers building the interpreter and
allocating tensors; the first invoke is reported as ``first_inference_ms`` and is the first of
``warmup_runs``; then at least ``num_runs`` timed invokes (and at least ``min_secs`` seconds).
Inputs are set once before the loop, as ``benchmark_model`` does.

``--profile``: LiteRT's Python API has no profiler (no hook on ``Interpreter``), so per-operator time
is measured by the documented fallback "one-operator models": the flatbuffer is sliced into one model
per operator of subgraph 0 (the operator, its constant tensors, its activation inputs as model
inputs, fed the values the whole model computed, kept with ``experimental_preserve_all_tensors``;
random data where the interpreter cannot keep them), all timed in rounds interleaved with the whole model
(so a change of machine load hits both alike); the p50 of an invoke of an empty model (the call's own cost,
paid once by the whole model but once per slice) is taken off each operator and listed once as the
``(invoke call)`` row. The ``profile`` event gives the whole model's p50 in the same rounds (``invoke``)
and the timing loop's (``invoke_loop_us``), so the rows' sum can be checked against both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

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
    facts: dict[str, Any] = {
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
                fail("bad_input", f"inputs file has {len(names)} arrays; the model has {len(details)} inputs", EXIT_BAD_INPUT)
            array = np.asarray(array)
            if tuple(array.shape) != tuple(detail["shape"]):
                if array.size == int(np.prod(detail["shape"])):
                    array = array.reshape(detail["shape"])
                else:
                    fail(
                        "bad_input",
                        f"input {detail['name']!r}: got shape {list(array.shape)}, expected {[int(s) for s in detail['shape']]}",
                        EXIT_BAD_INPUT,
                    )
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
    parser.add_argument("--profile", action="store_true", help="per-operator times (one-operator models)")
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
    emit(
        {
            "event": "init",
            "runtime": runtime,
            "runtime_version": runtime_version,
            "numpy_version": np.__version__,
            "init_ms": init_ms,
            "rss_before_init_bytes": rss_before_init,
            "rss_after_init_bytes": rss_after_init,
            "rss_start_bytes": rss_start,
            **op_summary(interpreter),
        }
    )
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


# ---------------------------------------------------------------------------------------
# --profile: one-operator models (shared with edgedistill/tflm.py, which loads this file by path)


def load_schema():
    """The TFLite flatbuffer schema module of whichever package is installed (object API, needs flatbuffers)."""
    for name in (
        "ai_edge_litert.schema_py_generated",
        "tflite_micro.tensorflow.lite.micro.python.schema_py_generated",
        "tensorflow.lite.python.schema_py_generated",
    ):
        try:
            import importlib

            return importlib.import_module(name)
        except Exception:
            continue
    return None


def builtin_names(schema) -> dict:
    return {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def _pack_aligned(model, builder) -> bytes:
    """Serialise a ModelT with every buffer 16-byte aligned, as the converter writes it (TFLM reads in place);
    the generated Python packs byte vectors unaligned."""
    import numpy as np

    schema = load_schema()
    originals = model.buffers
    aligned = []
    for buffer in originals or []:
        copy = _AlignedBuffer(schema)
        copy.data = None if buffer.data is None or not len(buffer.data) else np.asarray(buffer.data, dtype=np.uint8)
        copy.offset, copy.size = buffer.offset, buffer.size
        aligned.append(copy)
    model.buffers = aligned
    try:
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    finally:
        model.buffers = originals
    return bytes(builder.Output())


def _AlignedBuffer(schema):
    # The device-side twin of tflite_model.py's aligned buffer: this file runs where edgedistill is not installed.
    buffer_base: Any = schema.BufferT  # a class of the flatbuffers schema module loaded at run time

    class AlignedBuffer(buffer_base):
        def Pack(self, builder):
            data = None
            if self.data is not None:
                payload = self.data.tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head = builder.head - len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer()


def one_op_models(model_content: bytes):
    """``(schema error or None, [(index, op type, op name, model bytes, input tensors)], empty model bytes)``
    for subgraph 0; ``input tensors``: the tensors of the whole model the slice takes as inputs, in order.

    Each slice keeps every tensor and subgraph (indices stay valid, control flow keeps its bodies), only
    the buffers the operator reads (when there is one subgraph), and drops the signatures.
    """
    schema = load_schema()
    if schema is None:
        return "no TFLite schema module (ai_edge_litert, tflite_micro or tensorflow) to slice the model", [], b""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_content, 0))
    names = builtin_names(schema)
    subgraph = model.subgraphs[0]
    operators = list(subgraph.operators or [])
    inputs, outputs = subgraph.inputs, subgraph.outputs
    model.signatureDefs = None
    slices = []
    for index, op in enumerate(operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        kind = names.get(builtin, f"BUILTIN_{builtin}")
        if kind == "CUSTOM" and code.customCode:
            custom = code.customCode
            kind = custom.decode() if isinstance(custom, bytes) else bytes(custom).decode("utf-8", "replace")
        name = subgraph.tensors[op.outputs[0]].name if len(op.outputs) else b""
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        slices.append((index, kind, name, *_pack_slice(model, schema, [op])))
    first_input = inputs[0] if len(inputs) else 0
    subgraph.operators, subgraph.inputs, subgraph.outputs = [], [first_input], [first_input]
    empty = _pack_aligned(model, _builder())
    subgraph.operators, subgraph.inputs, subgraph.outputs = operators, inputs, outputs
    return None, slices, empty


def _pack_slice(model, schema, ops: list) -> tuple[bytes, list]:
    """(model bytes, input tensors) of subgraph 0 cut down to ``ops`` (in order): its inputs are the activations
    the ops read that none of them writes, its outputs what the last op writes and what the others write that
    no later op of the slice reads. The model's subgraph 0 and buffers are left as they were."""
    subgraph = model.subgraphs[0]
    operators, inputs, outputs, buffers = subgraph.operators, subgraph.inputs, subgraph.outputs, model.buffers
    written = {t for op in ops for t in op.outputs if t >= 0}
    read = [t for op in ops for t in op.inputs if t >= 0]
    # Each activation once (ADD(x, x) reads x twice), in the operators' order.
    subgraph.inputs = list(dict.fromkeys(t for t in read if t not in written and not _constant(buffers, subgraph.tensors[t])))
    later_reads = [{t for later in ops[k + 1 :] for t in later.inputs} for k in range(len(ops))]
    subgraph.outputs = [t for k, op in enumerate(ops) for t in op.outputs if t >= 0 and t not in later_reads[k]]
    subgraph.operators = list(ops)
    if len(model.subgraphs) == 1:
        keep = {subgraph.tensors[t].buffer for t in set(read) | written}
        model.buffers = [b if k in keep or k == 0 else _empty_buffer(schema) for k, b in enumerate(buffers)]
    try:
        return _pack_aligned(model, _builder()), list(subgraph.inputs)
    finally:
        subgraph.operators, subgraph.inputs, subgraph.outputs, model.buffers = operators, inputs, outputs, buffers


def pair_models(model_content: bytes, count: int = 3) -> list:
    """``[(first index, model bytes, input tensors)]``: up to ``count`` two-operator slices of subgraph 0, each
    an operator and the next one that reads its output, the ones with the fewest tensor elements first.

    Timed beside the one-operator slices they measure the fixed cost of one invoke of a slice: T(a) + T(b) -
    T(a, b) is what a slice pays once whatever its operators (the call, the interpreter's entry, and a
    delegate's own invoke: XNNPACK takes each slice as its own partition, the whole model as one)."""
    schema = load_schema()
    if schema is None:
        return []
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_content, 0))
    model.signatureDefs = None
    subgraph = model.subgraphs[0]
    operators = list(subgraph.operators or [])

    def elements(op) -> int:
        total = 0
        for t in [t for t in list(op.inputs) + list(op.outputs) if t >= 0]:
            size = 1
            for dimension in subgraph.tensors[t].shape if subgraph.tensors[t].shape is not None else []:
                size *= max(1, int(dimension))
            total += size
        return total

    chained = [
        k for k in range(len(operators) - 1) if any(t >= 0 and t in list(operators[k + 1].inputs) for t in operators[k].outputs)
    ]
    chosen = sorted(chained, key=lambda k: elements(operators[k]) + elements(operators[k + 1]))[:count]
    return [(k, *_pack_slice(model, schema, operators[k : k + 2])) for k in sorted(chosen)]


def _builder():
    import flatbuffers

    return flatbuffers.Builder(1024)


def _empty_buffer(schema):
    return schema.BufferT()


def _constant(buffers, tensor) -> bool:
    buffer = buffers[tensor.buffer] if tensor.buffer < len(buffers) else None
    return bool(tensor.isVariable) or (buffer is not None and buffer.data is not None and len(buffer.data) > 0)


def time_calls(invoke, runs: int) -> tuple[float, list[float]]:
    """(first call us, the next ``runs`` calls us)."""
    clock = time.perf_counter_ns
    start = clock()
    invoke()
    first = (clock() - start) / 1e3
    samples = []
    for _ in range(runs):
        start = clock()
        invoke()
        samples.append((clock() - start) / 1e3)
    return first, samples


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# Slices timed together in one interleaved group hold their interpreters at once: a bound on their bytes keeps
# a large model's profile from holding every slice in memory (a model with one subgraph fits in one group).
GROUP_BYTES = 64 * 1024 * 1024
INVOKE_CALL = "(invoke call)"


def interleaved_rounds(calls: list, runs: int) -> tuple[list[float], list[list[float]]]:
    """Each ``(refresh, invoke)`` pair's invoke called once (its first call), then ``runs`` rounds calling
    each once, in order, its ``refresh`` (untimed) just before. Returns (first call us, samples us) per pair.

    Interleaved, the whole model and its operators are timed under the same machine load: timed one after
    another, a load change in between (other processes; a host slowing an emulator down) skews their sum.
    ``refresh`` writes the inputs again: in the whole model an operator reads what the previous one has just
    written (in cache, in an emulator's TLB); an interleaved slice's inputs were last touched a round ago."""
    clock = time.perf_counter_ns
    firsts = []
    for refresh, call in calls:
        refresh()
        start = clock()
        call()
        firsts.append((clock() - start) / 1e3)
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for (refresh, call), kept in zip(calls, samples):
            refresh()
            start = clock()
            call()
            kept.append((clock() - start) / 1e3)
    return firsts, samples


def slice_groups(slices: list, budget: int = GROUP_BYTES) -> list[list]:
    """Consecutive slices in groups of at most ``budget`` model bytes (at least one slice each)."""
    groups: list[list] = [[]]
    size = 0
    for entry in slices:
        if groups[-1] and size + len(entry[3]) > budget:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += len(entry[3])
    return groups


def time_interleaved(prepare, slices: list, whole_model, runs: int, references: dict):
    """One-operator models timed in rounds interleaved with the whole model and ``references`` (name -> model
    bytes: the empty model, the two-operator slices), which are timed with the first group.

    ``prepare(model_bytes, tensors) -> (refresh, invoke)`` builds a slice's interpreter with its inputs set
    (``refresh`` sets them again); ``whole_model`` is the whole model's (refresh, invoke). Returns
    (ops with their raw median ``slice_us``, whole-model samples us, {reference name: samples us}, error or
    None); a reference an interpreter refuses (TFLM refuses an empty graph) is left out."""
    prepared = {}
    for name, (model_bytes, tensors) in references.items():
        try:
            prepared[name] = prepare(model_bytes, tensors)
        except Exception:
            continue
    ops: list[dict] = []
    whole: list[float] = []
    reference_samples: dict[str, list[float]] = {name: [] for name in prepared}
    for number, group in enumerate(slice_groups(slices)):
        invokes = []
        for index, kind, _name, model_bytes, tensors in group:
            try:
                invokes.append(prepare(model_bytes, tensors))
            except Exception as failure:
                return ops, whole, reference_samples, f"operator {index} ({kind}) cannot run alone: {failure}"
        extra = list(prepared.items()) if number == 0 else []
        firsts, samples = interleaved_rounds([whole_model, *(call for _, call in extra), *invokes], runs)
        whole += samples[0]
        for position, (name, _call) in enumerate(extra, start=1):
            reference_samples[name] += samples[position]
        for position, (index, kind, name, _bytes, _tensors) in enumerate(group, start=1 + len(extra)):
            ops.append(
                {
                    "index": index,
                    "name": name,
                    "node_type": kind,
                    "calls": 1,
                    "first_us": firsts[position],
                    "slice_us": median(samples[position]),
                }
            )
        del invokes  # the group's interpreters go before the next group's are built
    return ops, whole, reference_samples, None


def fixed_slice_cost(ops: list, reference_samples: dict) -> tuple[float, str]:
    """(us, how measured): what every one-operator slice pays once beyond its operator, which the whole model
    pays once per invoke. The median over the two-operator slices of T(a) + T(b) - T(a, b) where there are
    some; else an empty model's invoke (the call and the interpreter's entry, no delegate's own cost)."""
    by_index = {op["index"]: op["slice_us"] for op in ops}
    estimates = [
        by_index[int(name.split()[1])] + by_index[int(name.split()[1]) + 1] - median(samples)
        for name, samples in reference_samples.items()
        if name.startswith("pair ") and samples
    ]
    if estimates:
        return max(0.0, median(estimates)), f"T(a) + T(b) - T(a, b) of {len(estimates)} two-operator slice(s)"
    if reference_samples.get("empty"):
        return median(reference_samples["empty"]), "an empty model's invoke"
    return 0.0, "nothing (no reference model ran)"


def profile_rows(ops: list, fixed_us: float, how: str) -> list:
    """The profile's rows: the invoke call's own (index -1), then each operator less the fixed cost."""
    rows = [
        {
            "index": -1,
            "name": f"fixed cost of an invoke: call, interpreter and delegate entry ({how})",
            "node_type": INVOKE_CALL,
            "calls": 1,
            "first": None,
            "avg": fixed_us,
        }
    ]
    for op in ops:
        rows.append(
            {
                "index": op["index"],
                "name": op["name"],
                "node_type": op["node_type"],
                "calls": 1,
                "first": max(0.0, op["first_us"] - fixed_us),
                "avg": max(0.0, op["slice_us"] - fixed_us),
            }
        )
    return rows


def profile_with_litert(args: argparse.Namespace, np, inputs: list, samples_ms: list[float], interpreter) -> dict:
    """The ``profile`` event: each one-operator model loaded as the whole model was, fed the activations the
    whole model computed from ``inputs`` (kernel time can depend on the data), and timed interleaved with
    the whole model (:func:`time_interleaved`)."""
    with open(args.model, "rb") as handle:
        content = handle.read()
    error, slices, empty = one_op_models(content)
    if error:
        return {"event": "profile", "error": error}
    runs = max(1, args.num_runs)
    invoke_cpu_us = cpu_time_p50(interpreter.invoke, min(runs, 50))
    activations = litert_activations(args, content, inputs, {t for s in slices for t in s[4]})

    def prepare(model_bytes: bytes, tensors: list):
        sliced = build_slice_interpreter(args, model_bytes)
        arrays = make_inputs(sliced, np, None, args.seed)
        known = [activations.get(tensors[k]) if k < len(tensors) else None for k in range(len(arrays))]
        return litert_setter(sliced, [array if value is None else value for array, value in zip(arrays, known)]), sliced.invoke

    references = {"empty": (empty, []), **{f"pair {k}": (data, tensors) for k, data, tensors in pair_models(content)}}
    whole_model = (litert_setter(interpreter, inputs), interpreter.invoke)
    ops, whole, reference_samples, error = time_interleaved(prepare, slices, whole_model, runs, references)
    if error:
        return {"event": "profile", "error": error}
    fixed_us, how = fixed_slice_cost(ops, reference_samples)
    empty_us = median(reference_samples["empty"]) if reference_samples.get("empty") else None
    fed = "the whole model's own activations" if activations else "random inputs"
    rows = profile_rows(ops, fixed_us, how)
    return {
        "event": "profile",
        "source": "litert one-op models",
        "unit": "us",
        "ops": rows,
        "fixed_cost_us": fixed_us,
        "fixed_cost_from": how,
        "empty_invoke_us": empty_us,
        "invoke": median(whole),
        "invoke_loop_us": median(samples_ms) * 1000.0 if samples_ms else None,
        "ops_only_us": sum(row["avg"] for row in rows[1:]),
        "rounds": runs,
        "inputs": "activations" if activations else "random",
        "invoke_cpu_us": invoke_cpu_us,
        "notes": [
            "LiteRT's Python API has no profiler: each operator timed as its own one-operator model "
            f"({fed}), {runs} rounds interleaved with the whole model; avg is the median, the invoke "
            "it adds up to the whole model's median in the same rounds. The fixed cost of an invoke "
            f"({fixed_us:.3f} us, from {how}) is taken off each operator and shown once as the "
            f"{INVOKE_CALL} row, which each invoke of the whole model pays once"
        ],
    }


def setter(set_input, arrays: list):
    """A call that sets each input ``position`` to ``arrays[position]`` with ``set_input(position, array)`` (set
    once now, and again at each call): LiteRT's and TFLM's interpreters set an input each their own way."""

    def refresh() -> None:
        for position, array in enumerate(arrays):
            set_input(position, array)

    refresh()
    return refresh


def litert_setter(interpreter, arrays: list):
    details = interpreter.get_input_details()
    return setter(lambda position, array: interpreter.set_tensor(details[position]["index"], array), arrays)


def cpu_time_p50(invoke, runs: int) -> float | None:
    """p50 of this thread's CPU time per call (us): on a loaded machine the wall time of a long invoke
    includes time other processes ran, which the short one-operator invokes mostly escape."""
    if not hasattr(time, "thread_time_ns"):
        return None
    samples = []
    for _ in range(runs):
        start = time.thread_time_ns()
        invoke()
        samples.append((time.thread_time_ns() - start) / 1e3)
    return median(samples)


def litert_activations(args: argparse.Namespace, content: bytes, inputs: list, wanted: set) -> dict:
    """Tensor index -> value after one invoke of the whole model with every tensor kept
    (``experimental_preserve_all_tensors``); {} when this interpreter cannot keep them."""
    interpreter_class, _, _, _ = load_interpreter_class(args.runtime)
    try:
        interpreter = interpreter_class(model_content=content, experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        for detail, array in zip(interpreter.get_input_details(), inputs):
            interpreter.set_tensor(detail["index"], array)
        interpreter.invoke()
        return {t: interpreter.get_tensor(t).copy() for t in wanted}
    except Exception:
        return {}


def build_slice_interpreter(args: argparse.Namespace, model_bytes: bytes):
    interpreter_class, _, _, module = load_interpreter_class(args.runtime)
    options = {"num_threads": args.num_threads}
    if args.use_xnnpack == "false":
        resolver = getattr(getattr(module, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
        if resolver is not None:
            options["experimental_op_resolver_type"] = resolver
    interpreter = interpreter_class(model_content=model_bytes, **options)
    interpreter.allocate_tensors()
    return interpreter


def output_record(interpreter, np, max_values: int = 4096) -> dict:
    """Digest of the inputs and the outputs' values, so the host can check them (emulated Pi).

    The values are sent only for outputs of at most ``max_values`` elements in all.
    """
    import hashlib

    digest = hashlib.sha256()
    for detail in interpreter.get_input_details():
        digest.update(np.ascontiguousarray(interpreter.get_tensor(detail["index"])).tobytes())
    outputs = [interpreter.get_tensor(detail["index"]) for detail in interpreter.get_output_details()]
    small = sum(int(output.size) for output in outputs) <= max_values
    return {
        "input_sha256": digest.hexdigest(),
        "output_values": [output.reshape(-1).tolist() for output in outputs] if small else None,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    emit({"event": "device", **device_facts()})
    rss_start = read_status_bytes("VmRSS")
    try:
        import numpy as np
    except Exception as error:
        fail(
            "no_numpy",
            f"Python {platform.python_version()} at {sys.executable} has no numpy ({error}). "
            f"Install it there: `{sys.executable} -m pip install numpy`.",
            EXIT_NO_INTERPRETER,
        )
    interpreter = build_interpreter(args, np, rss_start)
    inputs = make_inputs(interpreter, np, args.inputs, args.seed)
    for detail, array in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], array)

    first_inference_ms, warmup_ms, samples_ms = time_invokes(interpreter.invoke, args.warmup_runs, args.num_runs, args.min_secs)
    if args.profile:
        emit(profile_with_litert(args, np, inputs, samples_ms, interpreter))
    output_details = interpreter.get_output_details()
    emit(
        {
            "event": "result",
            "first_inference_ms": first_inference_ms,
            "warmup_ms": warmup_ms,
            "num_samples": len(samples_ms),
            "peak_rss_bytes": read_status_bytes("VmHWM"),
            "rss_end_bytes": read_status_bytes("VmRSS"),
            "inputs": [
                {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                for d in interpreter.get_input_details()
            ],
            "outputs": [
                {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                for d in output_details
            ],
            **output_record(interpreter, np),
        }
    )


if __name__ == "__main__":
    main()
