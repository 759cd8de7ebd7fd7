"""Parsing the firmware's result block and checking outputs against the export."""

from __future__ import annotations

import struct

import pytest

from edgedistill.errors import StageError
from edgedistill.micro import load_micro_export, parse_c_array_rows
from edgedistill.firmware.result import compare_outputs, parse_result_block
from firmware_helpers import write_micro_export

BLOCK = """boot noise
EDGEDISTILL_RESULT_BEGIN
format_version=1
board=qemu-mps2-an386
pointer_bytes=4
arena_used_bytes=8016
num_test_samples=2
sample=0 label=1 argmax=1 match=1 output=-128,127,0
sample=1 label=2 argmax=2 match=1 output=5,-5,10
num_timed_invokes=10
ticks_total=123450
ticks_per_second=25000000
tick_source=systick
status=pass
EDGEDISTILL_RESULT_END
"""


def test_parse_block_fields_and_samples():
    result = parse_result_block(BLOCK)
    assert result.status == "pass"
    assert result.arena_used_bytes == 8016
    assert result.integer("pointer_bytes") == 4
    assert result.ticks_per_invoke == pytest.approx(12345.0)
    assert [s["output"] for s in result.samples] == [[-128, 127, 0], [5, -5, 10]]
    assert result.samples[1]["argmax"] == 2


def test_missing_block_and_truncated_block_are_errors():
    with pytest.raises(StageError, match="printed no EDGEDISTILL_RESULT_BEGIN"):
        parse_result_block("Hard fault\n")
    with pytest.raises(StageError, match="no EDGEDISTILL_RESULT_END"):
        parse_result_block(BLOCK.split("num_timed_invokes")[0])


def test_float_outputs_are_decoded_from_their_bits():
    bits = ",".join(hex(struct.unpack("<I", struct.pack("<f", value))[0]) for value in (0.25, -1.5))
    text = BLOCK.replace("output=-128,127,0", f"output={bits}")
    assert parse_result_block(text).samples[0]["output"] == [0.25, -1.5]


def test_outputs_are_compared_with_the_exports_expected_outputs(tmp_path):
    write_micro_export(tmp_path, expected_outputs=[[-128, 127, 0], [5, -5, 10]])
    expected = load_micro_export(tmp_path).expected_outputs()
    assert expected == [[-128, 127, 0], [5, -5, 10]]
    checks = compare_outputs(parse_result_block(BLOCK), expected)
    assert all(check["match"] for check in checks)

    # One step off in one element: caught, even if the firmware claims it matched.
    off = parse_result_block(BLOCK.replace("output=5,-5,10", "output=5,-4,10"))
    checks = compare_outputs(off, expected)
    assert [check["match"] for check in checks] == [True, False]
    assert checks[1]["max_abs_diff"] == 1
    assert compare_outputs(off, expected, tolerance=1)[1]["match"]


def test_sample_count_mismatch_is_an_error(tmp_path):
    write_micro_export(tmp_path, expected_outputs=[[1, 2, 3]])
    with pytest.raises(StageError, match="reported 2 test samples, the export has 1"):
        compare_outputs(parse_result_block(BLOCK), load_micro_export(tmp_path).expected_outputs())


def test_parse_c_array_rows_handles_the_exporters_layout(tmp_path):
    source = tmp_path / "t.cc"
    source.write_text(
        "const int8_t g_test_expected_outputs[kNumTestSamples][kOutputSize] = {\n"
        "    {-128, -127, 12},\n    {0, 1, 2}\n};\nconst int g_test_labels[kNumTestSamples] = {7, 9};\n"
    )
    assert parse_c_array_rows(source, "g_test_expected_outputs") == [[-128, -127, 12], [0, 1, 2]]
    assert parse_c_array_rows(source, "g_test_labels", nested=False) == [[7, 9]]
