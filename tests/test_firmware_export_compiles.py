"""The exporter's C++ compiles for the target (real arm-none-eabi-g++, no TFLM needed):
model_data.cc, model_settings.h and test_data.cc are plain C++."""

from __future__ import annotations

import subprocess

import numpy as np

from firmware_helpers import needs_cross_toolchain

pytestmark = needs_cross_toolchain


def _compile(folder, *sources):
    for source in sources:
        completed = subprocess.run(
            [
                "arm-none-eabi-g++",
                "-std=c++17",
                "-mcpu=cortex-m4",
                "-mthumb",
                "-fsyntax-only",
                "-Wall",
                "-Werror",
                f"-I{folder}",
                str(folder / source),
            ],
            capture_output=True,
            text=True,
        )
        assert completed.returncode == 0, completed.stderr


def _render(tmp_path, inputs, expected, c_type):
    from edgedistill.micro import render_model_data, render_settings, render_test_data

    header = "// test\n"
    model_h, model_cc = render_model_data(bytes(range(40)), header=header)
    (tmp_path / "model_data.h").write_text(model_h)
    (tmp_path / "model_data.cc").write_text(model_cc)
    settings = render_settings(
        arena_size=4096,
        arena_host=4000,
        margin=96,
        input_size=inputs.shape[1],
        output_size=expected.shape[1],
        num_classes=expected.shape[1],
        header=header,
    )
    (tmp_path / "model_settings.h").write_text(settings)
    test_h, test_cc = render_test_data(inputs, expected, np.array([0, 1]), input_type=c_type, output_type=c_type, header=header)
    (tmp_path / "test_data.h").write_text(test_h)
    (tmp_path / "test_data.cc").write_text(test_cc)


def test_int8_export_sources_compile(tmp_path):
    inputs = np.array([[-128, 0, 127], [1, 2, 3]], dtype=np.int8)
    expected = np.array([[-128, 127], [0, 5]], dtype=np.int8)
    _render(tmp_path, inputs, expected, "int8_t")
    _compile(tmp_path, "model_data.cc", "test_data.cc")


def test_float_export_sources_compile_with_whole_numbers(tmp_path):
    # Image pixels of exactly 0.0 and softmax outputs of exactly 1.0 are common.
    inputs = np.array([[0.0, 0.5, 1.0], [0.25, 0.0, 0.0]], dtype=np.float32)
    expected = np.array([[1.0, 0.0], [0.75, 0.25]], dtype=np.float32)
    _render(tmp_path, inputs, expected, "float")
    _compile(tmp_path, "test_data.cc")
