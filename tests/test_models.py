"""Model presets (edgedistill/models.py): every registered preset builds, QAT-wraps, converts to
full int8 and runs on the real TFLite Micro interpreter; sizes grow with width; the MLPerf Tiny
reference architectures have their published sizes."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.errors import InputError
from edgedistill.models import PRESETS, build_model

# A tiny input each preset accepts (others: a small RGB image). MobileNetV2 needs >= 32x32.
TEST_INPUTS = {
    "mlp": (8, 8, 1),
    "dscnn_kws": (20, 10, 1),
    "dscnn_kws_large": (20, 10, 1),
    "dscnn_kws_temporal": (20, 10, 1),
    "mobilenet_v2": (32, 32, 3),
}
DEFAULT_INPUT = (12, 12, 3)
SLOW_PRESETS = {"mobilenet_v2"}  # ~150 layers: QAT wrapping and conversion take tens of seconds
NUM_CLASSES = 4


def _preset_params():
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_PRESETS else name for name in PRESETS.names()]


@pytest.mark.parametrize("preset", _preset_params())
def test_preset_quantizes_converts_to_int8_and_runs_on_tflm(preset):
    from edgedistill.convert import convert_keras_model
    from edgedistill.micro import check_micro_compatible
    from edgedistill.quantize import quantize_model
    from edgedistill.tflite_model import read_model_info
    from edgedistill.tflm import TFLMModel, smallest_arena

    input_shape = TEST_INPUTS.get(preset, DEFAULT_INPUT)
    x = np.random.default_rng(0).uniform(0, 1, size=(8, *input_shape)).astype(np.float32)
    model = build_model(preset, input_shape, NUM_CLASSES, width=0.25)
    assert model.output_shape == (None, NUM_CLASSES)
    assert np.isfinite(model(x, training=False).numpy()).all()
    batch_norms = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    assert all(layer.momentum == 0.9 for layer in batch_norms)  # BN_MOMENTUM: short trainings settle

    qat = quantize_model(model)
    assert qat(x, training=False).shape == (8, NUM_CLASSES)
    int8 = convert_keras_model(qat, quantization="int8", representative_data=x, num_calibration_samples=8)
    info = read_model_info(int8)
    assert check_micro_compatible(info, source=preset)  # int8 with ops TFLM has
    arena = smallest_arena(int8, source=preset).arena_bytes
    outputs = TFLMModel(int8, arena_size=arena, source=preset).raw_outputs(x)
    assert outputs.shape == (8, NUM_CLASSES) and outputs.dtype == np.int8


@pytest.mark.parametrize("preset", PRESETS.names())
def test_parameter_count_grows_with_width(preset):
    input_shape = TEST_INPUTS.get(preset, DEFAULT_INPUT)
    counts = [build_model(preset, input_shape, NUM_CLASSES, width=width).count_params() for width in (0.25, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2], counts


@pytest.mark.parametrize(
    "preset, input_shape, num_classes, width, expected",
    [
        ("resnet8", (32, 32, 3), 10, 1.0, 78_426),  # MLPerf Tiny IC v0.5: ~78 k parameters
        ("mobilenet_v1", (96, 96, 3), 2, 0.25, 219_058),  # MLPerf Tiny VWW: ~221 k (with conv biases)
        ("dscnn_kws", (49, 10, 1), 12, 1.0, 24_332),  # MLPerf Tiny KWS: ~25 k (with conv biases)
        ("dscnn_kws_large", (49, 10, 1), 12, 1.0, 419_808),  # Hello Edge DS-CNN-L: ~0.4 M
    ],
)
def test_reference_sizes(preset, input_shape, num_classes, width, expected):
    """Parameter counts (batch-norm statistics included) of the references at their published configuration."""
    assert build_model(preset, input_shape, num_classes, width=width).count_params() == expected


def test_kws_dscnn_reference_layout():
    """MLPerf Tiny KWS: conv 10x4 stride 2 with 64 filters, then 4 DW3x3 + PW1x1 blocks of 64, pooled over 25x5."""
    model = build_model("dscnn_kws", (49, 10, 1), 12)
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (10, 4) and stem.strides == (2, 2) and stem.filters == 64
    assert [model.get_layer(f"block{i}_pw_conv").filters for i in range(1, 5)] == [64] * 4
    assert tuple(model.get_layer("block4_pw_relu").output.shape[1:3]) == (25, 5)


def test_temporal_kws_dscnn_convolves_over_time_with_the_channels_as_input_channels():
    """49 frames x 20 filter bank channels: the stem sees 20 input channels, the blocks run on 25 frames."""
    model = build_model("dscnn_kws_temporal", (49, 20, 1), 10, width=0.75)
    stem = model.get_layer("stem_conv")
    assert stem.kernel_size == (10, 1) and stem.strides == (2, 1) and stem.filters == 48
    assert tuple(stem.input.shape[1:]) == (49, 1, 20)
    assert model.get_layer("block1_dw").kernel_size == (3, 1)
    assert tuple(model.get_layer("block4_pw_relu").output.shape[1:]) == (25, 1, 48)


def test_mobilenet_v2_refuses_inputs_below_32x32():
    with pytest.raises(InputError, match=r"at least 32x32 .* received 28x28.*--image-size"):
        build_model("mobilenet_v2", (28, 28, 1), 10)


@pytest.mark.parametrize(
    "preset", ["resnet8", "mobilenet_v1", "mobilenet_v2", "dscnn_kws", "dscnn_kws_large", "dscnn_kws_temporal"]
)
def test_image_presets_refuse_flat_inputs(preset):
    with pytest.raises(InputError, match="height x width x channels"):
        build_model(preset, (64,), 10)


def test_temporal_kws_dscnn_converts_without_dynamic_shape_ops():
    """The frames-as-channels step is one TRANSPOSE in the int8 model (a Reshape became SHAPE, STRIDED_SLICE, PACK,
    RESHAPE: four ops and ~1 KB of flash), and it is the reshape: the same values in the same order."""
    from edgedistill.convert import convert_keras_model
    from edgedistill.tflite_model import read_model_info

    model = build_model("dscnn_kws_temporal", (49, 20, 1), 10, width=0.25)
    x = np.random.default_rng(0).random((4, 49, 20, 1), dtype=np.float32)
    permuted = model.get_layer("frames_as_channels")(x).numpy()
    np.testing.assert_array_equal(permuted, x.reshape(4, 49, 1, 20))
    ops = read_model_info(convert_keras_model(model, representative_data=x)).ops
    assert ops[0] == "TRANSPOSE" and not {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"} & set(ops)
