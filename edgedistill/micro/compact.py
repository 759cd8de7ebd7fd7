"""The model as the microcontroller stores it: without what TFLite Micro never reads.

A ``.tflite`` from the converter carries, besides operators, tensors and weights, things only
desktop tools use: tensor and subgraph names (a quantization-aware model's names are long:
``student/quant_block1_dw/depthwise;student/quant_block1_dw/LastValueQuant/...``), signature
definitions, shape signatures, the converter's metadata notes, and the ``min``/``max`` of
quantization parameters. And each per-channel quantized tensor stores one int64 zero point per
channel, all 0 for int8 weights and int32 biases. TFLM's allocator reads a single zero point for all channels when the array is
shorter than the scales (``micro_allocator.cc`` at the pin of ``firmware/tflm.env``: "As a
space-saving optimization, zero point arrays for weights can be reduced to a single value"),
and copies the zero points into the arena per channel either way, so the arena does not change.

:func:`compact_model` drops those; on a small keyword spotting student that is ~30 % of its
flash. The compacted model is checked on the TFLM interpreter by the export (outputs identical
to the model as converted), and the ``.tflite`` with its names stays in the run folder for tools.
LiteRT on a desktop needs the full zero point arrays, so only the micro export is compacted.

TFLM ships a transform of its own: ``tensorflow/lite/micro/tools/tflm_model_transforms_lib.py``
(``run_all_transformations``), whose ``remove_extraneous_quantization_data`` in
``tensorflow/lite/micro/tools/model_transforms_utils.py`` (at the commit of ``firmware/tflm.env``,
90b983c2) clears min/max and shortens all-zero per-channel zero points, as :func:`_shorten_zero_points`
does. It is not called because it lives in the TFLM source tree (not in the ``tflite-micro`` wheel the
export runs with), raises on a non-zero per-channel zero point instead of keeping the array, drops no
names, signatures or converter metadata, and needs its own flatbuffer-align step (a compiled wrapper).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CompactedModel:
    """The compacted flatbuffer and the bytes each step saved (``saved_bytes``, in the order applied)."""

    model_bytes: bytes
    original_size_bytes: int
    saved_bytes: dict[str, int]

    @property
    def size_bytes(self) -> int:
        return len(self.model_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_size_bytes": self.original_size_bytes,
            "compacted_size_bytes": self.size_bytes,
            "saved_bytes": dict(self.saved_bytes),
        }


def _drop_names(model: Any) -> None:
    """Tensor and subgraph names: TFLM finds tensors by index. (The description stays: an audio front end keeps
    its parameters there, and a converter's is a few bytes.)"""
    for subgraph in model.subgraphs or []:
        subgraph.name = None
        for tensor in subgraph.tensors or []:
            tensor.name = None


def _drop_signatures(model: Any) -> None:
    """Signature definitions: name-to-index maps for desktop interpreters; TFLM runs subgraph 0 by index."""
    model.signatureDefs = None


def _shorten_zero_points(model: Any) -> None:
    """One zero point for a per-channel tensor whose zero points are all the same (TFLM repeats it per channel);
    the ``min``/``max`` TFLM never reads."""
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            quantization = tensor.quantization
            if quantization is None:
                continue
            quantization.min = quantization.max = None
            zero_points = quantization.zeroPoint
            scales = quantization.scale
            if zero_points is None or scales is None or len(zero_points) < 2 or len(zero_points) != len(scales):
                continue
            if np.all(np.asarray(zero_points) == zero_points[0]):
                quantization.zeroPoint = [int(zero_points[0])]


def _drop_shape_signatures(model: Any) -> None:
    """``shape_signature`` (the converter's -1 for the dynamic batch): TFLM allocates from ``shape``."""
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            tensor.shapeSignature = None


def _metadata_name(entry: Any) -> str:
    return entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name or "")


def _drop_converter_metadata(model: Any) -> None:
    """The converter's ``min_runtime_version`` and ``CONVERSION_METADATA`` (TFLM reads only its offline memory plan
    and compression metadata); their buffers are emptied, not removed, so no buffer index changes."""
    kept = []
    for entry in model.metadata or []:
        if _metadata_name(entry) in CONVERTER_METADATA:
            model.buffers[entry.buffer].data = None
        else:
            kept.append(entry)
    model.metadata = kept or None


CONVERTER_METADATA = ("min_runtime_version", "CONVERSION_METADATA")
STEPS = (
    ("names", _drop_names),
    ("signatures", _drop_signatures),
    ("shape_signatures", _drop_shape_signatures),
    ("converter_metadata", _drop_converter_metadata),
    ("zero_points", _shorten_zero_points),
)


def compact_model(tflite_bytes: bytes, *, source: str = "model") -> CompactedModel:
    """The model without names, signatures, shape signatures, the converter's metadata, min/max and repeated
    per-channel zero points; every constant, operator, tensor index, scale and other metadata
    entry (an ``OfflineMemoryAllocation`` plan too) kept.

    Raises ``InputError`` for a model that cannot be rewritten (weights stored after the flatbuffer).
    """
    from edgedistill.tflite_model import pack_model, unpack_model

    schema, model = unpack_model(tflite_bytes, source=source, fix="Export it with --no-compact.")
    size = len(pack_model(schema, model))  # re-serialising alone changes the size a little: counted apart
    saved = {"reserialising": len(tflite_bytes) - size}
    for name, step in STEPS:
        step(model)
        packed = pack_model(schema, model)
        saved[name], size = size - len(packed), len(packed)
    logger.debug("compacted %s: %d -> %d bytes (%s)", source, len(tflite_bytes), size, saved)
    return CompactedModel(model_bytes=packed, original_size_bytes=len(tflite_bytes), saved_bytes=saved)


__all__ = ["CompactedModel", "compact_model"]
