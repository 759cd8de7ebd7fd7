"""TensorFlow Lite Micro artefacts: C array, op resolver, measured arena, test vectors.

``export_micro(tflite_bytes, output_dir, ...)`` writes, into ``output_dir``:

- ``model_data.h`` / ``model_data.cc``: the flatbuffer as a 16-byte aligned C array;
- ``model_op_resolver.h``: ``MicroMutableOpResolver<N>`` with exactly the model's ops;
- ``model_settings.h``: ``kTensorArenaSize`` (smallest arena the real TFLM interpreter
  accepts, found by bisection, plus a stated margin), input/output sizes;
- ``test_data.h`` / ``test_data.cc``: a few real test samples and the int8 outputs the host
  TFLM interpreter gives for them, so firmware can check itself;
- ``micro_export.json``: everything above as data.

Every problem (not an int8 model, an op TFLM lacks) is reported before anything is written.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.errors import InputError, StageError
from edgedistill.firmware.arena import ARENA_ALIGNMENT, arena_with_margin
from edgedistill.fileio import write_json_atomic, write_text_atomic
from edgedistill.tflite_model import ModelInfo, TFLMModel, quantize_input, read_model_info, runtime_versions

SCHEMA_VERSION = 1

# TFLite builtin op -> the MicroMutableOpResolver method that registers it (TFLM's
# micro_mutable_op_resolver.h). An op missing here is one TFLM cannot run.
TFLM_RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOG_SOFTMAX": "AddLogSoftmax", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D", "MAXIMUM": "AddMaximum", "MEAN": "AddMean", "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}  # fmt: skip


@dataclasses.dataclass
class MicroExport:
    """The result of :func:`export_micro`."""

    output_dir: Path
    ops: list[str]
    resolver_methods: list[str]
    arena_bytes_host: int
    arena_margin_bytes: int
    tensor_arena_size: int
    num_test_samples: int
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "ops": self.ops,
            "resolver_methods": self.resolver_methods,
            "arena_bytes_host": self.arena_bytes_host,
            "arena_margin_bytes": self.arena_margin_bytes,
            "kTensorArenaSize": self.tensor_arena_size,
            "num_test_samples": self.num_test_samples,
            "files": self.files,
        }


def check_micro_compatible(info: ModelInfo, *, source: str = "model") -> list[str]:
    """Resolver method names for the model's ops; raises if it is not an int8 model TFLM can run."""
    if not info.is_int8:
        floats = [t.name for t in info.tensors if t.is_constant and t.dtype in ("float32", "float16")][:3]
        raise InputError(
            f"{source} is not a full-integer int8 model (float weights: {', '.join(floats) or 'none'}; "
            f"input {info.inputs[0].dtype if info.inputs else '?'}). TFLite Micro export needs int8: convert with "
            "`edgedistill convert --quantization int8`."
        )
    unsupported = [op for op in info.ops if op not in TFLM_RESOLVER_METHODS]
    if unsupported:
        raise InputError(
            f"{source} uses op(s) TFLite Micro does not have: {', '.join(unsupported)}. "
            "Change the layers that produce them (see `edgedistill info`) before exporting."
        )
    return [TFLM_RESOLVER_METHODS[op] for op in info.ops]


# ---------------------------------------------------------------------------------------
# Arena measurement


_PROBE_WORKER = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    size = int(line)
    try:
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=size)
        detail = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
        interpreter.invoke()
        print("ok", flush=True)
    except Exception:
        print("fail", flush=True)
"""


class _ArenaProber:
    """Tries arena sizes in a worker process; a crash (too small an arena) counts as a failure.

    One long-lived worker answers many probes (starting Python and TFLM per probe would cost
    ~0.5 s each); when a probe crashes it, a new worker takes the next probe.
    """

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.process: subprocess.Popen | None = None
        self.num_probes = 0
        self.num_crashes = 0

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", _PROBE_WORKER, str(self.model_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # TFLM prints every failed allocation
            text=True,
        )

    def allocates(self, size: int) -> bool:
        self.num_probes += 1
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        try:
            self.process.stdin.write(f"{size}\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline().strip()
        except BrokenPipeError:
            answer = ""
        if answer == "ok":
            return True
        if answer != "fail":  # the worker died: a too-small arena crashed TFLM
            self.num_crashes += 1
            self.process.wait()
            self.process = None
        return False

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=10)


def measure_arena(tflite_bytes: bytes, *, max_bytes: int = 512 * 1024 * 1024) -> dict[str, int]:
    """Smallest tensor arena (bytes, multiple of 16) with which the real TFLM interpreter
    allocates and invokes the model, found by bisection; each probe runs in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="edgedistill-arena-") as folder:
        model_path = Path(folder) / "model.tflite"
        model_path.write_bytes(tflite_bytes)
        prober = _ArenaProber(model_path)
        try:
            high = max(4096, len(tflite_bytes))
            while not prober.allocates(high):
                if high >= max_bytes:
                    raise StageError(
                        f"TFLM could not allocate the model even with a {max_bytes}-byte arena; "
                        "the model is too large for a microcontroller or uses an op TFLM cannot prepare."
                    )
                high = min(high * 2, max_bytes)
            low = 0  # largest size known to fail (0 always fails)
            while high - low > ARENA_ALIGNMENT:
                middle = (low + high) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
                if middle <= low:
                    break
                if prober.allocates(middle):
                    high = middle
                else:
                    low = middle
        finally:
            prober.close()
    return {"arena_bytes": high, "num_probes": prober.num_probes, "num_crashes": prober.num_crashes}


# ---------------------------------------------------------------------------------------
# Source generation

_HEADER = "// Generated by edgedistill {version} from {model}. Do not edit.\n"
_C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float"}


def c_array_lines(data: bytes, *, per_line: int = 12) -> str:
    rows = []
    for start in range(0, len(data), per_line):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in data[start : start + per_line]) + ",")
    return "\n".join(rows)


def _float_literal(value: float) -> str:
    """A C++ float literal that round-trips a float32: ``0.0f``, ``1.5f``, ``3.0e-05f`` (``1f`` is not C++)."""
    text = f"{float(value):.9g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text + "f"


def _format_values(values: np.ndarray, c_type: str) -> str:
    if c_type == "float":
        return ", ".join(_float_literal(v) for v in values)
    return ", ".join(str(int(v)) for v in values)


def render_model_data(data: bytes, *, header: str) -> tuple[str, str]:
    h = header + (
        "#ifndef EDGEDISTILL_MODEL_DATA_H_\n#define EDGEDISTILL_MODEL_DATA_H_\n\n#include <cstdint>\n\n"
        "// The .tflite flatbuffer; TFLite Micro needs it 16-byte aligned.\n"
        "extern const unsigned char g_model_data[];\nextern const unsigned int g_model_data_len;\n\n"
        "#endif  // EDGEDISTILL_MODEL_DATA_H_\n"
    )
    cc = header + (
        '#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char g_model_data[] = {{\n{c_array_lines(data)}\n}};\n"
        f"const unsigned int g_model_data_len = {len(data)};\n"
    )
    return h, cc


def render_op_resolver(ops: list[str], methods: list[str], *, header: str) -> str:
    calls = "\n".join(f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;  // {op}" for op, method in zip(ops, methods))
    return header + (
        "#ifndef EDGEDISTILL_MODEL_OP_RESOLVER_H_\n#define EDGEDISTILL_MODEL_OP_RESOLVER_H_\n\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        "// Exactly the ops of the model, so the linker keeps no other kernel.\n"
        f"constexpr int kNumModelOps = {len(ops)};\n"
        "using ModelOpResolver = tflite::MicroMutableOpResolver<kNumModelOps>;\n\n"
        "inline TfLiteStatus RegisterModelOps(ModelOpResolver& resolver) {\n"
        f"{calls}\n  return kTfLiteOk;\n}}\n\n#endif  // EDGEDISTILL_MODEL_OP_RESOLVER_H_\n"
    )


def render_settings(*, arena_size: int, arena_host: int, margin: int, input_size: int, output_size: int, num_classes: int, header: str) -> str:
    return header + (
        "#ifndef EDGEDISTILL_MODEL_SETTINGS_H_\n#define EDGEDISTILL_MODEL_SETTINGS_H_\n\n"
        f"// Smallest arena the TFLM interpreter accepted on the 64-bit host: {arena_host} bytes;\n"
        f"// plus a margin of {margin} bytes (max(10 %, 1 KiB), rounded up to 16), measured with TFLM's\n"
        "// reference kernels. A 32-bit target needs less with the same kernels (smaller pointers);\n"
        "// optimized kernels (CMSIS-NN, above all on the Cortex-M55) may need more for their scratch\n"
        "// buffers. `edgedistill firmware build` measures the arena on the target and compiles that in.\n"
        f"constexpr int kTensorArenaSize = {arena_size};\n"
        f"constexpr int kTensorArenaHostBytes = {arena_host};\n"
        f"constexpr int kInputSize = {input_size};\n"
        f"constexpr int kOutputSize = {output_size};\n"
        f"constexpr int kNumClasses = {num_classes};\n\n"
        "#endif  // EDGEDISTILL_MODEL_SETTINGS_H_\n"
    )


def render_test_data(inputs: np.ndarray, expected: np.ndarray, labels: np.ndarray, *, input_type: str, output_type: str, header: str) -> tuple[str, str]:
    num = len(inputs)
    h = header + (
        "#ifndef EDGEDISTILL_TEST_DATA_H_\n#define EDGEDISTILL_TEST_DATA_H_\n\n#include <cstdint>\n\n"
        '#include "model_settings.h"\n\n'
        "// Real samples of the test split and the outputs the host TFLM interpreter gave for them.\n"
        f"constexpr int kNumTestSamples = {num};\n"
        f"using ModelInputType = {input_type};\nusing ModelOutputType = {output_type};\n\n"
        "extern const ModelInputType g_test_inputs[kNumTestSamples][kInputSize];\n"
        "extern const ModelOutputType g_test_expected_outputs[kNumTestSamples][kOutputSize];\n"
        "extern const int g_test_labels[kNumTestSamples];\n\n#endif  // EDGEDISTILL_TEST_DATA_H_\n"
    )
    input_rows = ",\n".join(f"    {{{_format_values(row.reshape(-1), input_type)}}}" for row in inputs)
    output_rows = ",\n".join(f"    {{{_format_values(row.reshape(-1), output_type)}}}" for row in expected)
    cc = header + (
        '#include "test_data.h"\n\n'
        f"const ModelInputType g_test_inputs[kNumTestSamples][kInputSize] = {{\n{input_rows}\n}};\n\n"
        f"const ModelOutputType g_test_expected_outputs[kNumTestSamples][kOutputSize] = {{\n{output_rows}\n}};\n\n"
        f"const int g_test_labels[kNumTestSamples] = {{{', '.join(str(int(v)) for v in labels)}}};\n"
    )
    return h, cc


def export_micro(
    tflite_bytes: bytes,
    output_dir: str | Path,
    *,
    test_inputs: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    num_test_samples: int = 5,
    margin_fraction: float = 0.10,
    model_name: str = "model.tflite",
    arena: dict[str, int] | None = None,
) -> MicroExport:
    """Write the TFLite Micro sources for an int8 model into ``output_dir``.

    Args:
        tflite_bytes: an int8 ``.tflite`` flatbuffer.
        test_inputs: float images (``[0, 1]``, NHWC) to embed as test vectors; their
            expected outputs come from the real TFLM interpreter on the host.
        arena: a result of :func:`measure_arena`, when already measured.
    """
    from edgedistill._version import __version__

    info = read_model_info(tflite_bytes)
    methods = check_micro_compatible(info, source=model_name)  # before anything is written
    arena = arena or measure_arena(tflite_bytes)
    arena_size, margin = arena_with_margin(arena["arena_bytes"], margin_fraction=margin_fraction)

    model = TFLMModel(tflite_bytes, arena_size=arena_size)
    input_detail, output_detail = model.input, model.output
    input_size = int(np.prod(input_detail["shape"]))
    output_size = int(np.prod(output_detail["shape"]))
    if test_inputs is None:
        rng = np.random.default_rng(0)
        test_inputs = rng.random((num_test_samples, *input_detail["shape"][1:]), dtype=np.float32)
        test_labels = np.full(num_test_samples, -1)
    test_inputs = np.asarray(test_inputs[:num_test_samples], dtype=np.float32)
    labels = np.asarray(test_labels[:num_test_samples] if test_labels is not None else np.full(len(test_inputs), -1))
    raw_inputs = quantize_input(test_inputs, input_detail)
    expected = model.raw_outputs(test_inputs)

    input_type = _C_TYPES[np.dtype(input_detail["dtype"]).name]
    output_type = _C_TYPES[np.dtype(output_detail["dtype"]).name]
    header = _HEADER.format(version=__version__, model=model_name)
    output_dir = Path(output_dir)
    data_h, data_cc = render_model_data(tflite_bytes, header=header)
    test_h, test_cc = render_test_data(raw_inputs, expected, labels, input_type=input_type, output_type=output_type, header=header)
    files = {
        "model_data.h": data_h,
        "model_data.cc": data_cc,
        "model_op_resolver.h": render_op_resolver(info.ops, methods, header=header),
        "model_settings.h": render_settings(
            arena_size=arena_size,
            arena_host=arena["arena_bytes"],
            margin=margin,
            input_size=input_size,
            output_size=output_size,
            num_classes=output_size,
            header=header,
        ),
        "test_data.h": test_h,
        "test_data.cc": test_cc,
    }
    for name, text in files.items():
        write_text_atomic(output_dir / name, text)

    def quantization(detail):
        parameters = detail["quantization_parameters"]
        if len(parameters["scales"]) == 0:
            return None
        return {"scale": float(parameters["scales"][0]), "zero_point": int(parameters["zero_points"][0])}

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "model_file": model_name,
        "model_size_bytes": len(tflite_bytes),
        "ops": info.ops,
        "resolver_methods": methods,
        "arena_bytes_host": arena["arena_bytes"],
        "arena_probes": arena.get("num_probes"),
        "arena_margin_bytes": margin,
        "arena_margin_rule": f"max({margin_fraction:.0%} of the measured arena, 1024 bytes), rounded up to 16",
        "kTensorArenaSize": arena_size,
        "input_shape": [int(d) for d in input_detail["shape"]],
        "input_dtype": np.dtype(input_detail["dtype"]).name,
        "output_shape": [int(d) for d in output_detail["shape"]],
        "output_dtype": np.dtype(output_detail["dtype"]).name,
        "input_quantization": quantization(input_detail),
        "output_quantization": quantization(output_detail),
        "num_test_samples": int(len(test_inputs)),
        "tflm_version": runtime_versions().get("tflite-micro"),
    }
    # The manifest is written last: its presence marks a complete export.
    write_json_atomic(output_dir / "micro_export.json", manifest)
    return MicroExport(
        output_dir=output_dir,
        ops=info.ops,
        resolver_methods=methods,
        arena_bytes_host=arena["arena_bytes"],
        arena_margin_bytes=margin,
        tensor_arena_size=arena_size,
        num_test_samples=int(len(test_inputs)),
        files=[*files, "micro_export.json"],
    )


__all__ = [
    "TFLM_RESOLVER_METHODS",
    "MicroExport",
    "export_micro",
    "measure_arena",
    "arena_with_margin",
    "check_micro_compatible",
    "c_array_lines",
]
