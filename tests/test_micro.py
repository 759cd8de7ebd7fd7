"""TFLite Micro export: C array round trip, op resolver (TFLM's naming rule), arena, the one MicroExport."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from edgedistill.errors import InputError
from edgedistill.micro import (
    TFLM_RESOLVER_METHODS,
    arena_with_margin,
    c_array_lines,
    check_micro_compatible,
    export_micro,
    load_micro_export,
    measure_arena,
    resolver_method,
    tflm_rule_method,
)
from edgedistill.micro.compact import compact_model
from edgedistill.tflite_model import read_model_info
from edgedistill.tflm import TFLMModel, TFLMWorker


def _parse_c_array(text: str) -> bytes:
    body = text[text.index("{") + 1 : text.index("};")]
    return bytes(int(value, 16) for value in re.findall(r"0x([0-9a-f]{2})", body))


def test_c_array_round_trip():
    data = bytes(range(256)) * 3 + b"\x00\xff"
    assert _parse_c_array("x = {\n" + c_array_lines(data) + "\n};") == data


@pytest.fixture(scope="module")
def export(int8_bytes, digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("micro")
    return export_micro(int8_bytes, folder, test_inputs=digits.x_test, test_labels=digits.y_test, num_test_samples=3)


def test_export_writes_aligned_model_array(export, int8_bytes):
    source = (export.output_dir / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_data[]" in source
    stored = compact_model(int8_bytes).model_bytes  # the model as the device stores it (tests/test_compact.py)
    assert _parse_c_array(source) == stored
    assert f"g_model_data_len = {len(stored)};" in source


def test_op_resolver_holds_exactly_the_models_ops(export, int8_bytes):
    header = (export.output_dir / "model_op_resolver.h").read_text()
    ops = read_model_info(int8_bytes).ops
    calls = re.findall(r"resolver\.(Add\w+)\(\)", header)
    assert calls == [TFLM_RESOLVER_METHODS[op] for op in ops]
    assert "MicroMutableOpResolver<kNumModelOps>" in header
    assert f"kNumModelOps = {len(ops)};" in header


def test_arena_is_the_smallest_that_allocates(export, int8_bytes):
    """The reported arena works and 16 bytes less does not (probed in the worker subprocess: may crash)."""
    measured = export.arena_bytes_host
    with TFLMWorker(int8_bytes) as worker:
        assert worker.request(measured)["status"] == "ok"
        assert worker.request(measured - 16)["status"] in ("failed", "crashed")
    assert export.tensor_arena_size == arena_with_margin(measured)[0]
    assert export.tensor_arena_size % 16 == 0 and export.tensor_arena_size - measured >= 1024
    settings = (export.output_dir / "model_settings.h").read_text()
    assert f"kTensorArenaSize = {export.tensor_arena_size};" in settings


def test_test_vectors_match_the_tflm_interpreter(export, int8_bytes, digits):
    manifest = json.loads((export.output_dir / "micro_export.json").read_text())
    source = (export.output_dir / "test_data.cc").read_text()
    expected_block = source[source.index("g_test_expected_outputs") :]
    expected_rows = re.findall(r"\{([-\d, ]+)\}", expected_block)[:3]
    expected = np.array([[int(v) for v in row.split(",")] for row in expected_rows])
    outputs = TFLMModel(int8_bytes, arena_size=manifest["kTensorArenaSize"]).raw_outputs(digits.x_test[:3])
    np.testing.assert_array_equal(expected, outputs)
    assert manifest["num_test_samples"] == 3 and manifest["input_dtype"] == "int8"


def test_loaded_export_is_the_written_one(export, int8_bytes):
    """One MicroExport: what export_micro returns is what load_micro_export reads back (and the firmware uses)."""
    loaded = load_micro_export(export.output_dir)
    assert loaded == export
    assert loaded.metadata["kTensorArenaSize"] == loaded.tensor_arena_size
    assert loaded.metadata["arena_bytes_host"] == loaded.arena_bytes_host
    assert loaded.tensor_arena_size == loaded.arena_bytes_host + loaded.arena_margin_bytes
    assert loaded.run_dir == export.output_dir.parent and loaded.model_size_bytes == len(compact_model(int8_bytes).model_bytes)
    assert len(loaded.expected_outputs()) == loaded.num_test_samples == 3
    assert list(export.to_dict()) == [
        "output_dir",
        "ops",
        "resolver_methods",
        "arena_bytes_host",
        "arena_margin_bytes",
        "kTensorArenaSize",
        "num_test_samples",
        "files",
        "arena_probes",
    ]
    assert export.to_dict()["arena_probes"] == loaded.metadata["arena_probes"] > 3


def test_float_model_is_refused_before_anything_is_written(float_bytes, tmp_path):
    with pytest.raises(InputError, match="not a full-integer int8 model"):
        export_micro(float_bytes, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_op_tflm_lacks_is_named(int8_bytes):
    info = read_model_info(int8_bytes)
    info.ops = [*info.ops, "NON_MAX_SUPPRESSION_V5"]
    with pytest.raises(InputError, match="NON_MAX_SUPPRESSION_V5"):
        check_micro_compatible(info)


@pytest.mark.parametrize(
    "op, method",
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("ADD_N", "AddAddN"),
        ("BATCH_TO_SPACE_ND", "AddBatchToSpaceNd"),
        ("L2_POOL_2D", "AddL2Pool2D"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
        ("RELU6", "AddRelu6"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("BATCH_MATMUL", "AddBatchMatMul"),
        ("CUMSUM", "AddCumSum"),
        ("PADV2", "AddPadV2"),
    ],
)
def test_resolver_method_names_follow_tflms_rule(op, method):
    assert resolver_method(op) == method == TFLM_RESOLVER_METHODS[op]


def test_tflms_rule_itself():
    """TFLM's generator (ParseString) spells these two otherwise than its own header: hence the exceptions."""
    assert tflm_rule_method("CUMSUM") == "AddCumsum" and tflm_rule_method("PADV2") == "AddPadv2"
    assert tflm_rule_method("TFLite_Detection_PostProcess") == "AddDetectionPostprocess"


def _pinned_header() -> Path:
    folder = os.environ.get("TFLM_DIR")
    if not folder:
        pytest.skip("TFLM_DIR is not set: point it at a tflite-micro checkout (the commit of firmware/tflm.env)")
    header = Path(folder) / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
    assert header.is_file(), f"TFLM_DIR={folder!r} has no {header}"
    return header


@pytest.mark.tflm_source
def test_every_resolver_method_is_in_the_tflm_header():
    """Every generated method exists in micro_mutable_op_resolver.h and registers the op it is generated from."""
    text = _pinned_header().read_text()
    bodies = dict(re.findall(r"TfLiteStatus (Add\w+)\((.*?)\n  \}", text, re.S))
    missing = [method for method in TFLM_RESOLVER_METHODS.values() if method not in bodies]
    assert not missing, f"not in {_pinned_header()}: {missing}"
    registers = {
        op: f'AddCustom("{op[len("CUSTOM:") :]}"' if op.startswith("CUSTOM:") else f"BuiltinOperator_{op},"
        for op in TFLM_RESOLVER_METHODS
    }
    wrong = [op for op, method in TFLM_RESOLVER_METHODS.items() if registers[op] not in re.sub(r"\s", "", bodies[method])]
    assert not wrong, f"methods that register another op: {wrong}"


def test_measure_arena_reports_probes(int8_bytes):
    result = measure_arena(int8_bytes)
    assert result["arena_bytes"] % 16 == 0 and result["num_probes"] > 3


def test_float_io_int8_model_exports_float_test_vectors(tiny_teacher, digits, tmp_path):
    """--io-type float32: int8 inside, float input/output; the test vectors follow the I/O type."""
    from edgedistill.convert import convert_keras_model

    content = convert_keras_model(
        tiny_teacher, quantization="int8", io_type="float32", representative_data=digits.x_train, num_calibration_samples=50
    )
    info = read_model_info(content)
    assert info.is_int8 and info.inputs[0].dtype == "float32" and "QUANTIZE" in info.ops
    export = export_micro(content, tmp_path, test_inputs=digits.x_test, test_labels=digits.y_test, num_test_samples=2)
    header = (tmp_path / "test_data.h").read_text()
    assert "using ModelInputType = float;" in header and "using ModelOutputType = float;" in header
    assert "AddQuantize" in export.resolver_methods and "AddDequantize" in export.resolver_methods


def test_float_literals_are_valid_cpp_and_round_trip():
    from edgedistill.micro.sources import _float_literal

    values = np.array([0.0, 1.0, -2.0, 0.5, 1e-5, 123456.789, 3.4e38], dtype=np.float32)
    literals = [_float_literal(v) for v in values]
    assert literals[:3] == ["0.0f", "1.0f", "-2.0f"]
    assert all(re.fullmatch(r"-?\d+(\.\d*)?(e[-+]?\d+)?f", literal) for literal in literals), literals
    np.testing.assert_array_equal(np.array([float(literal[:-1]) for literal in literals], dtype=np.float32), values)


def test_atomic_writes_leave_no_partial_file_and_usual_permissions(tmp_path, monkeypatch):
    import os

    from edgedistill.fileio import write_bytes_atomic

    path = write_bytes_atomic(tmp_path / "a" / "file.bin", b"data")
    assert path.read_bytes() == b"data"
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(tmp_path / "a" / "other.bin", b"x")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["file.bin"]
