"""Reading ``.tflite`` flatbuffers and running them on LiteRT (TFLite Micro: :mod:`edgedistill.tflm`).

Ops are read from the flatbuffer itself, not from an interpreter: LiteRT reports ops taken
by its default delegate (XNNPACK) as ``DELEGATE``, which hides what the model contains.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.errors import InputError


def schema_module():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - a device or image without LiteRT
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema


FLATBUFFER_ALIGNMENT = 16  # the schema's force_align on Buffer.data, as the converter writes it


def _aligned_buffer_class(schema: Any) -> type:
    """``BufferT`` packing its data 16-byte aligned, as the TFLite converter writes it (the schema's
    ``force_align: 16``): the generated Python packs byte vectors unaligned, and TFLM reads weights,
    biases and metadata in place, where a misaligned int32 can fault on a microcontroller."""

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder: Any) -> int:
            data = None
            if self.data is not None:
                payload = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(payload), FLATBUFFER_ALIGNMENT)
                builder.head = builder.head - len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def unpack_model(tflite_bytes: bytes, *, source: str = "model", fix: str = "") -> tuple[Any, Any]:
    """``(schema module, ModelT)``: the flatbuffer as an object model to rewrite and :func:`pack_model` again.

    Refuses models whose weights live after the flatbuffer (over 2 GB), which re-serialising would cut off;
    ``fix`` ends that message (what the caller can do instead).
    """
    check_flatbuffer(tflite_bytes, source=source)
    schema = schema_module()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite_bytes, 0))
    if any(buffer.offset > 1 for buffer in model.buffers or []):
        raise InputError(
            f"{source} keeps its weights outside the flatbuffer (buffer offsets: a model over 2 GB); only models "
            f"stored whole can be rewritten. {fix}".rstrip()
        )
    return schema, model


def pack_model(schema: Any, model: Any) -> bytes:
    """Serialise an object model of :func:`unpack_model` again: every buffer 16-byte aligned, ``TFL3`` identifier."""
    import flatbuffers

    aligned = _aligned_buffer_class(schema)
    for k, buffer in enumerate(model.buffers or []):
        copy = aligned()
        copy.data, copy.offset, copy.size = buffer.data, buffer.offset, buffer.size
        model.buffers[k] = copy
    builder = flatbuffers.Builder(1024 + sum(len(b.data) for b in model.buffers or [] if b.data is not None))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@functools.lru_cache(maxsize=None)
def tensor_type_names() -> dict[int, str]:
    """TFLite tensor type code -> numpy-style name (``9 -> "int8"``), from the schema module's ``TensorType``."""
    return {code: name.lower() for name, code in vars(schema_module().TensorType).items() if not name.startswith("_")}


@dataclasses.dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    is_constant: bool
    scale: list[float]
    zero_point: list[int]

    @property
    def quantization(self) -> dict[str, Any] | None:
        if not self.scale:
            return None
        if len(self.scale) == 1:
            return {"scale": self.scale[0], "zero_point": self.zero_point[0] if self.zero_point else 0}
        return {"scale": self.scale, "zero_point": self.zero_point, "per_channel": True}


@dataclasses.dataclass
class ModelInfo:
    """What a ``.tflite`` file holds: its ops (in order of first use), tensors, inputs and outputs."""

    size_bytes: int
    ops: list[str]
    op_versions: dict[str, int]
    op_counts: dict[str, int]
    tensors: list[TensorInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    num_subgraphs: int
    description: str

    @property
    def is_int8(self) -> bool:
        """Full-integer int8: no float constants (weights), int8 activations."""
        constant_floats = [t for t in self.tensors if t.is_constant and t.dtype in ("float32", "float16")]
        has_int8 = any(t.dtype == "int8" for t in self.tensors)
        return has_int8 and not constant_floats

    def to_dict(self) -> dict[str, Any]:
        def tensor(t: TensorInfo) -> dict[str, Any]:
            return {"name": t.name, "shape": t.shape, "dtype": t.dtype, "quantization": t.quantization}

        return {
            "size_bytes": self.size_bytes,
            "is_int8": self.is_int8,
            "ops": [{"name": op, "version": self.op_versions[op], "count": self.op_counts[op]} for op in self.ops],
            "inputs": [tensor(t) for t in self.inputs],
            "outputs": [tensor(t) for t in self.outputs],
            "num_tensors": len(self.tensors),
            "num_subgraphs": self.num_subgraphs,
            "description": self.description,
        }


def read_model_bytes(path: str | os.PathLike, *, whole: bool = False) -> bytes:
    """The bytes of a ``.tflite`` file, checked to be a TFLite flatbuffer: the one reader of model files
    (``InputError`` for a folder, a missing or unreadable file, or another format).

    ``whole=True`` also parses the whole flatbuffer (:func:`read_model_info`), so a truncated or corrupt file
    is one clear error here, not a crash in an interpreter or on a device (the benchmark targets ask for it).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.tflite"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise InputError(f"{path} is a folder{hint}, not a model file. Pass the path of a .tflite file.")
    if not path.is_file():
        raise InputError(f"Model file not found: {path}. Pass the path of a .tflite file.")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"Cannot read model file {path}: {error.strerror}. Check its permissions.") from None
    check_flatbuffer(data, source=str(path))
    if whole:
        read_model_info(data, source=str(path))
    return data


def check_flatbuffer(data: bytes, *, source: str = "model") -> None:
    """The one flatbuffer header check: ``InputError`` unless ``data`` carries the ``TFL3`` identifier.

    ``data`` may be the first 8 bytes of a file only.
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InputError(
            f"{source} is not a TFLite flatbuffer ({len(data)} bytes, identifier {data[4:8]!r}; expected b'TFL3'). "
            "Give a .tflite file written by the TFLite converter (e.g. `edgedistill convert`)."
        )


def operator_names(model: Any, schema: Any) -> list[str]:
    """Name of every operator code: ``CONV_2D``, ``CUSTOM:<code>``."""
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    op_names: list[str] = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{code.CustomCode().decode()}"
        op_names.append(name)
    return op_names


def _op_usage(model: Any, op_names: list[str]) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Ops in order of first use over all subgraphs, their highest version and their count."""
    op_versions: dict[str, int] = {}
    op_counts: dict[str, int] = {}
    ordered: list[str] = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for j in range(subgraph.OperatorsLength()):
            index = subgraph.Operators(j).OpcodeIndex()
            name = op_names[index]
            op_versions[name] = max(op_versions.get(name, 0), model.OperatorCodes(index).Version())
            op_counts[name] = op_counts.get(name, 0) + 1
            if name not in ordered:
                ordered.append(name)
    return ordered, op_versions, op_counts


def _tensor(model: Any, subgraph: Any, k: int, tensor_types: dict[int, str]) -> TensorInfo:
    t = subgraph.Tensors(k)
    buffer = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
    q = t.Quantization()
    return TensorInfo(
        index=k,
        name=t.Name().decode() if t.Name() else f"tensor_{k}",
        shape=[int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
        dtype=tensor_types.get(t.Type(), f"type_{t.Type()}"),
        is_constant=buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1),
        scale=[float(v) for v in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else [],
        zero_point=[int(v) for v in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else [],
    )


def _parse_model(data: bytes) -> ModelInfo:
    schema = schema_module()
    model = schema.Model.GetRootAs(data, 0)
    ordered, op_versions, op_counts = _op_usage(model, operator_names(model, schema))
    subgraph = model.Subgraphs(0)
    tensor_types = tensor_type_names()
    tensors = [_tensor(model, subgraph, k, tensor_types) for k in range(subgraph.TensorsLength())]
    return ModelInfo(
        size_bytes=len(data),
        ops=ordered,
        op_versions=op_versions,
        op_counts=op_counts,
        tensors=tensors,
        inputs=[tensors[i] for i in subgraph.InputsAsNumpy()],
        outputs=[tensors[i] for i in subgraph.OutputsAsNumpy()],
        num_subgraphs=model.SubgraphsLength(),
        description=model.Description().decode() if model.Description() else "",
    )


def read_model_info(data: bytes, *, source: str = "model") -> ModelInfo:
    """Parse a TFLite flatbuffer (first subgraph for tensors; ops from all subgraphs)."""
    check_flatbuffer(data, source=source)
    try:
        return _parse_model(data)
    except Exception as error:  # a truncated or corrupt flatbuffer fails anywhere in parsing
        raise InputError(f"The {source} flatbuffer is corrupt ({type(error).__name__}: {error}). Re-export it.") from None


# ---------------------------------------------------------------------------------------
# Interpreters


def litert_interpreter_class():
    """The LiteRT ``Interpreter`` class: ai_edge_litert, else tflite_runtime, else tf.lite."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    from edgedistill._keras import tf

    return tf.lite.Interpreter


def runtime_versions() -> dict[str, str | None]:
    """Versions of the runtimes and libraries, for every result file (no TensorFlow import)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in (
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "tflite-runtime",
        "tflite-micro",
        "numpy",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    from edgedistill._version import __version__

    versions["edgedistill"] = __version__
    return versions


def _scale_zero_point(detail: dict) -> tuple[float, int]:
    """Per-tensor (scale, zero point) from LiteRT's or TFLM's tensor details; an integer tensor
    without quantization (an audio front end's int16 samples) holds raw values: (1.0, 0)."""
    if "quantization" in detail:
        scale, zero_point = detail["quantization"]
    else:
        parameters = detail["quantization_parameters"]  # TFLM's spelling
        if len(parameters["scales"]) == 0:
            return 1.0, 0
        scale, zero_point = parameters["scales"][0], parameters["zero_points"][0]
    return (float(scale), int(zero_point)) if scale else (1.0, 0)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float images -> the input tensor's dtype (int8 with its scale / zero point)."""
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero_point = _scale_zero_point(detail)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y
    scale, zero_point = _scale_zero_point(detail)
    return (y.astype(np.float32) - zero_point) * scale


KERNELS = ("default", "builtin", "reference")


def _resolver_option(kernels: str) -> dict:
    """Interpreter keyword for ``kernels``: ``default`` (XNNPACK delegate, as deployed),
    ``builtin`` (LiteRT's own optimised kernels, no delegate) or ``reference``."""
    if kernels == "default":
        return {}
    if kernels not in KERNELS:
        raise InputError(f"Unknown kernels {kernels!r}. Expected one of: {', '.join(KERNELS)}.")
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:  # tflite_runtime / tf.lite spell it the same way
        from edgedistill._keras import tf

        OpResolverType = tf.lite.experimental.OpResolverType
    value = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if kernels == "builtin" else OpResolverType.BUILTIN_REF
    return {"experimental_op_resolver_type": value}


class LiteRTModel:
    """A ``.tflite`` model on the host LiteRT interpreter, run one sample at a time.

    ``kernels="default"`` is what users deploy (LiteRT applies its XNNPACK delegate, whose
    int8 rounding differs from TFLM's by up to ~5 steps); ``"builtin"`` (no delegate) is the
    like-for-like comparison with TFLM's reference kernels (measured: at most 1 step apart).
    """

    def __init__(self, data: bytes, *, num_threads: int = 1, kernels: str = "default") -> None:
        Interpreter = litert_interpreter_class()
        try:
            self.interpreter = Interpreter(model_content=data, num_threads=num_threads, **_resolver_option(kernels))
            self.interpreter.allocate_tensors()
        except ValueError as error:
            raise InputError(f"LiteRT cannot load the model: {str(error).splitlines()[0]}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def raw_outputs(self, x: np.ndarray) -> np.ndarray:
        """Outputs in the model's output dtype (int8 for int8 models), one row per sample."""
        inputs = quantize_input(np.asarray(x, dtype=np.float32), self.input)
        rows = []
        for sample in inputs:
            self.interpreter.set_tensor(self.input["index"], sample[None, ...])
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self.output["index"])[0].copy())
        return np.stack(rows)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return dequantize_output(self.raw_outputs(x), self.output)


__all__ = [
    "ModelInfo",
    "TensorInfo",
    "read_model_bytes",
    "read_model_info",
    "check_flatbuffer",
    "tensor_type_names",
    "LiteRTModel",
    "litert_interpreter_class",
    "runtime_versions",
    "quantize_input",
    "dequantize_output",
]
