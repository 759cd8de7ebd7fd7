"""The input contract: raw values in the data, preprocessing in the models, raw bytes into the int8 model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgedistill.errors import InputError
from edgedistill.preprocessing import BYTE_RANGE, convention, parse_preprocessing, with_preprocessing

from conftest import invoke


def colour_images(count: int, *, size: int = 12, seed: int = 0):
    """uint8 RGB images whose class (0..2) is the brightest channel: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    x = rng.integers(0, 110, (count, size, size, 3))
    x[np.arange(count), :, :, labels] += rng.integers(100, 146, (count, size, size))
    return x.astype(np.uint8), labels


def test_named_conventions_and_scale_offset():
    pixels = (0.0, 255.0)
    assert convention("unit", value_range=pixels).formula() == "x / 255"
    assert convention("symmetric", value_range=pixels).formula() == "x / 127.5 - 1"
    assert convention("raw", value_range=pixels).is_identity
    assert convention("unit", value_range=(0.0, 16.0)).formula() == "x / 16"
    affine = parse_preprocessing("0.00392157,0", value_range=pixels)
    assert affine.name == "affine" and affine.scale == (0.00392157,)
    given = parse_preprocessing("standardize:mean=125|123|114,std=63|62|66", value_range=pixels)
    np.testing.assert_allclose(given.apply(np.array([[125.0, 123.0, 114.0]])), 0.0, atol=1e-6)
    measured = parse_preprocessing("standardize", value_range=pixels, statistics=lambda: ([10.0], [2.0]))
    assert measured.apply(np.array([[12.0]]))[0, 0] == pytest.approx(1.0)
    with pytest.raises(InputError, match="Unknown preprocessing 'unti'. Expected one of: unit, raw, symmetric, standardize"):
        parse_preprocessing("unti", value_range=pixels)
    with pytest.raises(InputError, match="SCALE,OFFSET must be two finite numbers"):
        parse_preprocessing("1,2,3", value_range=pixels)


def test_with_preprocessing_is_one_flat_graph_taking_raw_values():
    from edgedistill.models import build_model

    body = build_model("dscnn", (12, 12, 3), 3, width=0.25)
    model = with_preprocessing(body, convention("unit", value_range=BYTE_RANGE))
    assert model.layers[1].name == "preprocess" and "block2_pw_relu" in [layer.name for layer in model.layers]
    x, _ = colour_images(8)
    np.testing.assert_allclose(model.predict(x, verbose=0), body.predict(x / 255.0, verbose=0), atol=1e-5)


def _int8_classes_of_bytes(content: bytes, pixels: np.ndarray) -> np.ndarray:
    """Feed ``pixel - 128`` straight into the int8 interpreter (no quantization done by us)."""
    from edgedistill.tflite_model import LiteRTModel

    model = LiteRTModel(content)
    assert model.input["dtype"] == np.int8
    scale, zero_point = model.input["quantization"]
    assert (scale, zero_point) == (1.0, -128)
    classes = []
    for sample in pixels.astype(np.int16) - 128:
        model.interpreter.set_tensor(model.input["index"], sample.astype(np.int8)[None])
        model.interpreter.invoke()
        classes.append(int(model.interpreter.get_tensor(model.output["index"])[0].argmax()))
    return np.array(classes)


@pytest.fixture(scope="module")
def trained_student():
    from edgedistill._keras import keras
    from edgedistill.models import build_model
    from edgedistill.training import compile_classifier

    keras.utils.set_random_seed(0)
    body = build_model("cnn", (12, 12, 3), 3, width=0.25)
    student = with_preprocessing(body, convention("unit", value_range=BYTE_RANGE, how="project"))
    x, y = colour_images(300)
    compile_classifier(student, 3e-3).fit(x, y, epochs=4, batch_size=32, verbose=0)
    for layer in body.layers:  # the trained weights, in the model that takes preprocessed inputs
        layer.set_weights(student.get_layer(layer.name).get_weights())
    return body, student, x


def test_int8_student_takes_pixel_minus_128_and_agrees_with_the_float_model(trained_student):
    """Post-training quantization: int8(pixel - 128) gives the class the float model gives on preprocess(pixel)."""
    from edgedistill.convert import convert_keras_model

    body, student, x = trained_student
    content = convert_keras_model(student, representative_data=x[:64], num_calibration_samples=64, input_range=BYTE_RANGE)
    pixels, _ = colour_images(60, seed=1)
    float_classes = body.predict(pixels / 255.0, verbose=0).argmax(axis=1)  # the float model on preprocess(pixel)
    assert np.mean(_int8_classes_of_bytes(content, pixels) == float_classes) >= 0.95


def test_qat_student_takes_pixel_minus_128(trained_student):
    from edgedistill.convert import convert_keras_model
    from edgedistill.quantize import quantize_model
    from edgedistill.training import compile_classifier

    _, student, x = trained_student
    qat = quantize_model(student, input_range=BYTE_RANGE)
    assert qat.layers[2].name == "quant_preprocess"
    compile_classifier(qat, 1e-4).fit(x, np.arange(len(x)) % 3, epochs=1, batch_size=32, verbose=0)
    content = convert_keras_model(qat, representative_data=x[:32], num_calibration_samples=32, input_range=BYTE_RANGE)
    pixels, _ = colour_images(60, seed=2)
    assert np.mean(_int8_classes_of_bytes(content, pixels) == qat.predict(pixels, verbose=0).argmax(axis=1)) >= 0.95


@pytest.mark.slow
def test_a_run_on_rgb_images_records_the_input_convention_everywhere(tmp_path):
    """report.json, micro_export.json and test_data.h say the int8 model takes raw bytes - 128, and
    the embedded test vectors are exactly the test images' bytes minus 128."""
    from test_images import write_image

    from edgedistill.data import load_dataset

    x, y = colour_images(90, size=8)
    for index, (pixels, label) in enumerate(zip(x, y)):
        write_image(tmp_path / "imgs" / ("test" if index % 5 == 0 else "train") / f"class{label}" / f"{index}.png", pixels)
    root = tmp_path / "imgs"
    result = invoke(
        "run",
        "--data",
        f"images:{root}",
        "--teacher-epochs",
        "3",
        "--teacher-width",
        "0.25",
        "--epochs",
        "2",
        "--qat-epochs",
        "1",
        "--student-width",
        "0.25",
        "--no-bench",
        "--no-chance-gate",
        "--verbose",
        "0",
        "--output-dir",
        tmp_path / "runs",
        "--run-name",
        "rgb",
    )
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "rgb"
    report = json.loads((run_dir / "report.json").read_text())
    convention_ = report["input_convention"]
    assert convention_["raw_bytes"] and convention_["input_quantization"] == {"scale": 1.0, "zero_point": -128}
    assert convention_["student_preprocessing"]["formula"] == "x / 255" and "RGB pixels 0..255" in convention_["raw_values"]
    assert report["data"]["values"]["dtype"] == "uint8" and report["data"]["input_shape"] == [8, 8, 3]
    manifest = json.loads((run_dir / "micro" / "micro_export.json").read_text())
    assert manifest["input_convention"]["int8_input"].startswith("raw byte - 128")
    assert "Model input: raw byte - 128" in (run_dir / "micro" / "test_data.h").read_text()
    embedded = re.search(
        r"g_test_inputs\[kNumTestSamples\]\[kInputSize\] = \{(.*?)\};", (run_dir / "micro" / "test_data.cc").read_text(), re.S
    )
    first = [int(v) for v in re.search(r"\{([^{}]*)\}", embedded.group(1)).group(1).split(",")]
    data = load_dataset(f"images:{root}")
    assert first == (data.x_test[0].astype(int) - 128).reshape(-1).tolist()
