"""The micro export's compacted model: what TFLM never reads is gone, everything it reads is the same, and TFLM
gives identical outputs in the same smallest arena."""

import json

import numpy as np
import pytest

from edgedistill.errors import InputError
from edgedistill.micro import export_micro
from edgedistill.micro.compact import CONVERTER_METADATA, compact_model
from edgedistill.micro.memory_plan import default_test_inputs, read_offline_plan
from edgedistill.tflite_model import unpack_model
from edgedistill.tflm import smallest_arena, tflm_outputs


def _model(tflite_bytes: bytes):
    return unpack_model(tflite_bytes)[1]


def _buffers(model) -> list[bytes]:
    return [b"" if buffer.data is None else np.asarray(buffer.data, dtype=np.uint8).tobytes() for buffer in model.buffers]


def _quantization(model) -> list:
    return [
        None
        if t.quantization is None or t.quantization.scale is None
        else (list(t.quantization.scale), t.quantization.quantizedDimension)
        for t in model.subgraphs[0].tensors
    ]


def test_compaction_drops_names_signatures_and_repeated_zero_points(int8_bytes):
    original, compacted = _model(int8_bytes), _model(compact_model(int8_bytes).model_bytes)
    assert any(t.name for t in original.subgraphs[0].tensors) and original.signatureDefs
    assert not any(t.name for t in compacted.subgraphs[0].tensors) and not compacted.signatureDefs
    per_channel = [
        t
        for t in original.subgraphs[0].tensors
        if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 1
    ]
    assert per_channel, "the fixture model should have per-channel quantized weights"
    for tensor in compacted.subgraphs[0].tensors:
        if tensor.quantization is not None and tensor.quantization.scale is not None and len(tensor.quantization.scale) > 1:
            assert list(tensor.quantization.zeroPoint) == [0]
    assert not any(t.shapeSignature is not None for t in compacted.subgraphs[0].tensors)
    dropped = {e.buffer for e in original.metadata if e.name.decode() in CONVERTER_METADATA}
    assert dropped and all(compacted.buffers[k].data is None for k in dropped)
    # everything TFLM reads is kept: constants (same buffer indices), operators, tensor shapes, scales, other metadata
    assert [data for k, data in enumerate(_buffers(compacted)) if k not in dropped] == [
        data for k, data in enumerate(_buffers(original)) if k not in dropped
    ]
    assert _quantization(compacted) == _quantization(original)
    assert [list(t.shape) for t in compacted.subgraphs[0].tensors] == [list(t.shape) for t in original.subgraphs[0].tensors]
    assert [(op.opcodeIndex, list(op.inputs), list(op.outputs)) for op in compacted.subgraphs[0].operators] == [
        (op.opcodeIndex, list(op.inputs), list(op.outputs)) for op in original.subgraphs[0].operators
    ]
    assert [m.name for m in compacted.metadata or []] == [
        m.name for m in original.metadata if m.name.decode() not in CONVERTER_METADATA
    ]


def test_compacted_model_runs_identically_on_tflm_in_the_same_smallest_arena(int8_bytes):
    compacted = compact_model(int8_bytes)
    assert compacted.size_bytes < len(int8_bytes)
    assert sum(compacted.saved_bytes.values()) == len(int8_bytes) - compacted.size_bytes
    arena = smallest_arena(int8_bytes).arena_bytes
    assert smallest_arena(compacted.model_bytes).arena_bytes == arena
    inputs = default_test_inputs(int8_bytes, num_samples=16)
    np.testing.assert_array_equal(
        tflm_outputs(compacted.model_bytes, inputs, arena_bytes=arena), tflm_outputs(int8_bytes, inputs, arena_bytes=arena)
    )


def test_unequal_zero_points_are_kept(int8_bytes):
    """Only a repeated zero point is shortened: a tensor with different zero points per channel keeps them all."""
    from edgedistill.micro.compact import _shorten_zero_points

    model = _model(int8_bytes)
    tensor = next(
        t
        for t in model.subgraphs[0].tensors
        if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) > 1
    )
    tensor.quantization.zeroPoint = list(range(len(tensor.quantization.scale)))
    _shorten_zero_points(model)
    assert list(tensor.quantization.zeroPoint) == list(range(len(tensor.quantization.scale)))


def test_an_offline_memory_plan_survives_compaction(int8_bytes):
    from edgedistill.micro.memory_plan import apply_plan, plan_memory

    planned = apply_plan(int8_bytes, plan_memory(int8_bytes))
    assert read_offline_plan(compact_model(planned).model_bytes)["offsets"] == read_offline_plan(planned)["offsets"]


def test_export_stores_the_compacted_model_and_says_so(int8_bytes, digits, tmp_path):
    export = export_micro(int8_bytes, tmp_path / "micro", test_inputs=digits.x_test, num_test_samples=2)
    manifest = json.loads((tmp_path / "micro" / "micro_export.json").read_text())
    compacted = compact_model(int8_bytes)
    assert manifest["compaction"]["compacted"] is True and manifest["compaction"]["verified_samples"] == 8
    assert export.model_size_bytes == compacted.size_bytes == manifest["compaction"]["compacted_size_bytes"]
    assert f"g_model_data_len = {compacted.size_bytes};" in (tmp_path / "micro" / "model_data.cc").read_text()
    plain = export_micro(int8_bytes, tmp_path / "plain", test_inputs=digits.x_test, num_test_samples=2, compact=False)
    assert plain.model_size_bytes == len(int8_bytes) and plain.metadata["compaction"] == {
        "compacted": False,
        "reason": "--no-compact",
    }
    assert plain.expected_outputs() == export.expected_outputs()


def test_a_compaction_that_changes_outputs_is_not_used(int8_bytes, digits, tmp_path, monkeypatch):
    """The guard: were the rewrite ever wrong, the export keeps the model as converted (here: a weight changed)."""
    import edgedistill.micro.compact as compact_module

    real = compact_module.compact_model

    def wrong(tflite_bytes, *, source="model"):
        result = real(tflite_bytes, source=source)
        schema, model = unpack_model(result.model_bytes)
        weights = next(b for b in model.buffers if b.data is not None and len(b.data) > 64)
        weights.data = (np.asarray(weights.data, dtype=np.uint8) ^ 0x55).astype(np.uint8)
        from edgedistill.tflite_model import pack_model

        return compact_module.CompactedModel(pack_model(schema, model), result.original_size_bytes, result.saved_bytes)

    monkeypatch.setattr(compact_module, "compact_model", wrong)
    export = export_micro(int8_bytes, tmp_path / "micro", test_inputs=digits.x_test, num_test_samples=2)
    assert export.model_size_bytes == len(int8_bytes)
    assert export.metadata["compaction"]["compacted"] is False and "differ" in export.metadata["compaction"]["reason"]


def test_a_model_that_is_not_a_flatbuffer_is_refused_in_one_line():
    with pytest.raises(InputError, match="not a TFLite flatbuffer|flatbuffer"):
        compact_model(b"not a model at all, just some bytes", source="junk.tflite")


def test_report_says_what_the_model_takes_in_flash():
    from edgedistill.report import _compaction_lines

    compacted = {
        "compacted": True,
        "original_size_bytes": 41464,
        "compacted_size_bytes": 30640,
        "saved_bytes": {"reserialising": -104, "names": 4048, "signatures": 112, "zero_points": 6768},
    }
    assert _compaction_lines(compacted) == [
        "Model flash: 30,640 bytes, compacted from 41,464 (saved: names 4,048, signatures 112, zero points 6,768; "
        "TFLM outputs identical)."
    ]
    assert _compaction_lines({"compacted": False, "reason": "--no-compact"}) == ["Model flash: as converted (--no-compact)."]
    assert _compaction_lines(None) == []


def test_micro_command_compacts_unless_told_not_to(int8_file, tmp_path):
    from tests.conftest import invoke

    result = invoke("micro", int8_file, "-o", tmp_path / "compact")
    assert result.exit_code == 0, result.output
    compact = json.loads((tmp_path / "compact/micro_export.json").read_text())
    result = invoke("micro", int8_file, "-o", tmp_path / "plain", "--no-compact")
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "plain/micro_export.json").read_text())
    assert compact["compaction"]["compacted"] and plain["compaction"] == {"compacted": False, "reason": "--no-compact"}
    assert compact["model_size_bytes"] < plain["model_size_bytes"] == int8_file.stat().st_size
