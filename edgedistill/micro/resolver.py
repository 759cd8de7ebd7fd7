"""Which TFLite ops TFLite Micro has, and the ``MicroMutableOpResolver`` method that registers each.

Builtin ops and the custom ops TFLM itself provides (its audio ``Signal*`` kernels, :data:`TFLM_CUSTOM_OPS`).

The method names follow TFLM's own rule (``ParseString`` in TFLM's
``tensorflow/lite/micro/tools/gen_micro_mutable_op_resolver/generate_micro_mutable_op_resolver_from_model.py``):
split the op name on ``_``, capitalise each part that starts with a letter, keep other parts in
upper case, prefix ``Add``, then TFLM's edge cases (``Lstm`` -> ``LSTM``, ``BatchMatmul`` ->
``BatchMatMul``). Two ops are spelt otherwise in ``micro_mutable_op_resolver.h`` than that rule
gives (:data:`METHOD_EXCEPTIONS`). ``tests/test_micro.py`` checks every generated name against the
header of the pinned TFLM (``firmware/tflm.env``) when ``TFLM_DIR`` points at a checkout.
"""

from __future__ import annotations

import re

from edgedistill.errors import InputError
from edgedistill.tflite_model import ModelInfo

# The TFLite builtin ops TFLM's MicroMutableOpResolver can register (micro_mutable_op_resolver.h).
# An op missing here is one TFLM cannot run.
TFLM_BUILTIN_OPS: tuple[str, ...] = (
    "ABS",
    "ADD",
    "ADD_N",
    "ARG_MAX",
    "ARG_MIN",
    "ASSIGN_VARIABLE",
    "AVERAGE_POOL_2D",
    "BATCH_MATMUL",
    "BATCH_TO_SPACE_ND",
    "BROADCAST_ARGS",
    "BROADCAST_TO",
    "CALL_ONCE",
    "CAST",
    "CEIL",
    "CONCATENATION",
    "CONV_2D",
    "COS",
    "CUMSUM",
    "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D",
    "DEQUANTIZE",
    "DIV",
    "ELU",
    "EMBEDDING_LOOKUP",
    "EQUAL",
    "EXP",
    "EXPAND_DIMS",
    "FILL",
    "FLOOR",
    "FLOOR_DIV",
    "FLOOR_MOD",
    "FULLY_CONNECTED",
    "GATHER",
    "GATHER_ND",
    "GREATER",
    "GREATER_EQUAL",
    "HARD_SWISH",
    "IF",
    "L2_NORMALIZATION",
    "L2_POOL_2D",
    "LEAKY_RELU",
    "LESS",
    "LESS_EQUAL",
    "LOG",
    "LOG_SOFTMAX",
    "LOGICAL_AND",
    "LOGICAL_NOT",
    "LOGICAL_OR",
    "LOGISTIC",
    "MAX_POOL_2D",
    "MAXIMUM",
    "MEAN",
    "MINIMUM",
    "MIRROR_PAD",
    "MUL",
    "NEG",
    "NOT_EQUAL",
    "PACK",
    "PAD",
    "PADV2",
    "PRELU",
    "QUANTIZE",
    "READ_VARIABLE",
    "REDUCE_MAX",
    "REDUCE_MIN",
    "RELU",
    "RELU6",
    "RESHAPE",
    "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR",
    "REVERSE_V2",
    "ROUND",
    "RSQRT",
    "SELECT_V2",
    "SHAPE",
    "SIN",
    "SLICE",
    "SOFTMAX",
    "SPACE_TO_BATCH_ND",
    "SPACE_TO_DEPTH",
    "SPLIT",
    "SPLIT_V",
    "SQRT",
    "SQUARE",
    "SQUARED_DIFFERENCE",
    "SQUEEZE",
    "STRIDED_SLICE",
    "SUB",
    "SUM",
    "SVDF",
    "TANH",
    "TRANSPOSE",
    "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "UNPACK",
    "VAR_HANDLE",
    "WHILE",
    "ZEROS_LIKE",
)

# Where the header's method name differs from what TFLM's rule gives (the rule says AddCumsum, AddPadv2).
METHOD_EXCEPTIONS: dict[str, str] = {"CUMSUM": "AddCumSum", "PADV2": "AddPadV2"}

# TFLM's rule applies these after joining the parts.
_EDGE_CASES = (("Lstm", "LSTM"), ("BatchMatmul", "BatchMatMul"))


def tflm_rule_method(op: str) -> str:
    """TFLM's naming rule: ``CONV_2D`` -> ``AddConv2D``, ``L2_POOL_2D`` -> ``AddL2Pool2D``, ``ADD_N`` -> ``AddAddN``."""
    parts = re.split("_|-", op.replace("TFLite", ""))
    name = "".join(part[0].upper() + part[1:].lower() if len(part) > 1 and part[0].isalpha() else part.upper() for part in parts)
    for old, new in _EDGE_CASES:
        name = name.replace(old, new)
    return "Add" + name


def resolver_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers the builtin ``op``."""
    return METHOD_EXCEPTIONS.get(op) or tflm_rule_method(op)


# The custom ops TFLM itself provides: its audio Signal library (signal/micro/kernels), registered by
# these MicroMutableOpResolver methods under these custom codes (micro_mutable_op_resolver.h,
# AddCustom("SignalWindow", ...) in AddWindow() and so on). micro_speech's audio preprocessor uses them.
TFLM_CUSTOM_OPS: dict[str, str] = {
    "SignalDelay": "AddDelay",
    "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft",
    "SignalOverlapAdd": "AddOverlapAdd",
    "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker",
    "SignalWindow": "AddWindow",
}

# Op name as edgedistill.tflite_model reads it (``CONV_2D``, ``CUSTOM:SignalWindow``) -> the
# MicroMutableOpResolver method that registers it.
TFLM_RESOLVER_METHODS: dict[str, str] = {
    **{op: resolver_method(op) for op in TFLM_BUILTIN_OPS},
    **{f"CUSTOM:{code}": method for code, method in TFLM_CUSTOM_OPS.items()},
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
            "Change the layers that produce them (see `edgedistill info`) before exporting "
            f"(TFLM's own custom ops are {', '.join(sorted(TFLM_CUSTOM_OPS))})."
        )
    return [TFLM_RESOLVER_METHODS[op] for op in info.ops]


__all__ = [
    "TFLM_BUILTIN_OPS",
    "TFLM_CUSTOM_OPS",
    "METHOD_EXCEPTIONS",
    "TFLM_RESOLVER_METHODS",
    "tflm_rule_method",
    "resolver_method",
    "check_micro_compatible",
]
