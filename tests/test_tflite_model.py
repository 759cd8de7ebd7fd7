"""Reading flatbuffers; LiteRT and TFLM agree on int8 outputs."""

import json

import numpy as np
import pytest

from edgedistill.errors import InputError
from edgedistill.tflite_model import LiteRTModel, read_model_info, tensor_type_names
from edgedistill.tflm import TFLMModel

from conftest import invoke


def test_info_reads_ops_from_the_flatbuffer(int8_bytes):
    info = read_model_info(int8_bytes)
    assert info.is_int8
    assert "CONV_2D" in info.ops and "FULLY_CONNECTED" in info.ops
    assert "DELEGATE" not in info.ops
    assert info.inputs[0].dtype == "int8" and info.inputs[0].shape == [1, 8, 8, 1]
    assert info.inputs[0].quantization["scale"] > 0


def test_tensor_types_come_from_the_schema():
    names = tensor_type_names()
    assert (names[0], names[1], names[9], names[13], names[17]) == ("float32", "float16", "int8", "resource", "int4")
    assert len(names) >= 18 and all(name == name.lower() for name in names.values())


def test_float_model_is_not_int8(float_bytes):
    assert not read_model_info(float_bytes).is_int8


def test_litert_and_tflm_agree_within_two_quantization_steps(int8_bytes, digits):
    """TFLM's reference kernels and LiteRT's builtin kernels may round differently by 1-2 steps.

    Like for like: LiteRT without its default XNNPACK delegate (which rounds differently again).
    """
    x = digits.x_test[:100]
    litert = LiteRTModel(int8_bytes, kernels="builtin").raw_outputs(x).astype(np.int32)
    tflm = TFLMModel(int8_bytes, arena_size=256 * 1024).raw_outputs(x).astype(np.int32)
    assert np.max(np.abs(litert - tflm)) <= 2
    assert np.mean(litert.argmax(1) == tflm.argmax(1)) >= 0.98


def test_info_command_table_and_json(int8_file):
    result = invoke("info", int8_file)
    assert result.exit_code == 0, result.output
    assert "CONV_2D" in result.output and "int8" in result.output
    result = invoke("info", int8_file, "--json")
    details = json.loads(result.output)
    assert details["is_int8"] and details["size_bytes"] == int8_file.stat().st_size


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x00" * 64])
def test_corrupt_tflite_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    result = invoke("info", path)
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "not a TFLite flatbuffer" in result.output
    assert "Traceback" not in result.output


def test_truncated_tflite_is_reported(int8_bytes, tmp_path):
    path = tmp_path / "truncated.tflite"
    path.write_bytes(int8_bytes[: len(int8_bytes) // 3])
    with pytest.raises(InputError):
        read_model_info(path.read_bytes())
