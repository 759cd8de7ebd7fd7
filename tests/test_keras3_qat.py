"""Keras 3 students: distillation, int8 QAT without tf_keras, full-int8 export to LiteRT and TFLM (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.errors import InputError


def _keras3():
    from edgedistill.keras3.backend import import_keras3

    return import_keras3()


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, axis=1) == labels))


@pytest.fixture(scope="module")
def digits_flow():
    """Teacher (Keras 3), float student distilled, QAT student distilled, converted: the whole flow, once."""
    from edgedistill.data import load_dataset
    from edgedistill.keras3 import convert, distiller, models, qat
    from edgedistill.preprocessing import BYTE_RANGE, student_preprocessing

    keras, _ = _keras3()
    data = load_dataset("digits")
    preprocessing = student_preprocessing(data.value_range, raw_bytes=True)
    teacher = models.build_model(
        "cnn", data.input_shape, data.num_classes, width=0.5, preprocessing=preprocessing, name="teacher"
    )
    teacher.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.utils.set_random_seed(0)
    teacher.fit(data.x_train.astype(np.float32), data.y_train, epochs=6, batch_size=64, verbose=0)
    student = models.build_model(
        "dscnn", data.input_shape, data.num_classes, width=0.5, preprocessing=preprocessing, name="student"
    )
    student, _ = distiller.distill(teacher, student, data, epochs=10, patience=0)
    qat_student = qat.quantize_model(student, input_range=BYTE_RANGE)
    qat_student, _ = distiller.distill(teacher, qat_student, data, epochs=3, learning_rate=5e-4, patience=0)
    return {"data": data, "student": student, "qat": qat_student, "tflite": convert.convert_qat_model(qat_student)}


@pytest.mark.slow
def test_whole_flow_on_digits_runs_int8_on_litert_and_tflm(digits_flow):
    from edgedistill.micro.arena import measure_arena
    from edgedistill.tflite_model import LiteRTModel, read_model_info
    from edgedistill.tflm import TFLMModel

    data, content = digits_flow["data"], digits_flow["tflite"]
    x_test = data.x_test.astype(np.float32)
    float_accuracy = _accuracy(digits_flow["student"].predict(x_test, verbose=0), data.y_test)
    qat_accuracy = _accuracy(digits_flow["qat"].predict(x_test, verbose=0), data.y_test)
    info = read_model_info(content)
    assert info.is_int8 and info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    # Byte data: the int8 input is the raw count - 128 (scale 1, zero point -128), as the tf_keras path makes it.
    assert info.inputs[0].quantization == {"scale": 1.0, "zero_point": -128}
    litert_accuracy = _accuracy(LiteRTModel(content, kernels="builtin").predict(data.x_test), data.y_test)
    arena = measure_arena(content, source="keras3 student")  # probed in a subprocess: a small arena may crash TFLM
    tflm_accuracy = _accuracy(TFLMModel(content, arena_size=arena["arena_bytes"] + 1024).predict(data.x_test), data.y_test)
    assert float_accuracy > 0.8, float_accuracy  # chance is 0.1
    # The fake-quant model computes what the int8 model computes, up to rounding: a few test images may flip.
    assert abs(qat_accuracy - tflm_accuracy) <= 0.02, (qat_accuracy, tflm_accuracy)
    assert abs(litert_accuracy - tflm_accuracy) <= 0.01, (litert_accuracy, tflm_accuracy)
    assert tflm_accuracy > 0.8, tflm_accuracy


@pytest.mark.slow
def test_converted_scales_are_the_trained_ranges(digits_flow):
    """Activations: scale = (max - min) / 255 of the trained moving ranges; weights: max|w| / 127 per channel.
    The converter was given only zeros as its representative set: calibrated scales could not match these."""
    from edgedistill.keras3.layers import QUANTIZED_LINEAR, kernel_scales
    from edgedistill.keras3.qat import activation_quantizers
    from edgedistill.tflite_model import read_model_info

    info = read_model_info(digits_flow["tflite"])
    tensor_scales = [t.scale for t in info.tensors if t.scale]
    per_tensor = [scales[0] for scales in tensor_scales if len(scales) == 1]
    quantizers = activation_quantizers(digits_flow["qat"])
    assert len(quantizers) >= 10
    for name, quantizer in quantizers.items():
        low, high = quantizer.current_range()
        expected = (high - low) / 255.0
        assert high > low and any(abs(scale - expected) <= 1e-6 * expected for scale in per_tensor), (name, expected)
    assert info.outputs[0].scale[0] == pytest.approx(
        np.subtract(*quantizers["logits_quant"].current_range()[::-1]) / 255, rel=1e-6
    )
    linear = [layer for layer in digits_flow["qat"].layers if isinstance(layer, tuple(QUANTIZED_LINEAR.values()))]
    per_channel = [np.asarray(scales) for scales in tensor_scales if len(scales) > 1]
    for layer in linear:
        expected = kernel_scales(layer.kernel.numpy(), layer.channel_axes)
        if len(expected) > 1:
            assert any(s.shape == expected.shape and np.allclose(s, expected, rtol=1e-5) for s in per_channel), layer.name


def _probe(*build, input_shape=(8, 8, 3)):
    keras, _ = _keras3()
    inputs = keras.Input(input_shape, name="input")
    return keras.Model(inputs, build[0](keras, inputs), name="probe")


def _conv_relu(keras, x):
    return keras.layers.ReLU()(keras.layers.Conv2D(4, 3, padding="same")(x))


def _conv_bn_relu6(keras, x):
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(x)
    return keras.layers.ReLU(max_value=6.0)(keras.layers.BatchNormalization()(x))


def _depthwise_bn_relu(keras, x):
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    return keras.layers.ReLU()(keras.layers.BatchNormalization()(x))


def _dense(keras, x):
    return keras.layers.Dense(5)(keras.layers.Flatten()(x))


def _dense_relu_activation(keras, x):
    return keras.layers.Dense(5, activation="relu")(keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x)))


def _residual_add(keras, x):
    x = keras.layers.Conv2D(3, 1)(x)
    y = keras.layers.BatchNormalization()(keras.layers.Conv2D(3, 3, padding="same", use_bias=False)(x))
    return keras.layers.ReLU()(keras.layers.Add()([x, y]))


def _concatenate(keras, x):
    a = keras.layers.Conv2D(2, 1, activation="relu")(x)
    b = keras.layers.MaxPooling2D(1)(keras.layers.Conv2D(3, 3, padding="same")(x))
    return keras.layers.Concatenate()([a, b])


def _pools(keras, x):
    x = keras.layers.AveragePooling2D(2)(keras.layers.ZeroPadding2D(1)(x))
    return keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))


def _rescaling_reshape(keras, x):
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(x)
    return keras.layers.Dense(4)(keras.layers.Reshape((8 * 8 * 3,))(keras.layers.Dropout(0.1)(x)))


LAYER_MODELS = {
    "conv2d_relu": _conv_relu,
    "conv2d_bn_relu6": _conv_bn_relu6,
    "depthwise_bn_relu": _depthwise_bn_relu,
    "dense": _dense,
    "dense_relu_maxpool": _dense_relu_activation,
    "residual_add": _residual_add,
    "concatenate": _concatenate,
    "pools_padding": _pools,
    "rescaling_reshape_dropout": _rescaling_reshape,
}


@pytest.mark.parametrize("kind", list(LAYER_MODELS))
def test_each_covered_layer_converts_to_full_int8(kind):
    """No float op, no QUANTIZE/DEQUANTIZE inside (convert_qat_model checks both), int8 I/O, LiteRT close to Keras."""
    from edgedistill.keras3 import convert, qat
    from edgedistill.tflite_model import LiteRTModel, read_model_info

    model = _probe(LAYER_MODELS[kind])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(32, 8, 8, 3)).astype(np.float32)
    model(x, training=True)  # batch-norm statistics move away from their initial values
    qat_model = qat.quantize_model(model)
    for _ in range(3):
        qat_model(x, training=True)  # the moving ranges start from the data
    content = convert.convert_qat_model(qat_model)
    assert convert.float_ops(content) == []
    info = read_model_info(content)
    assert not set(info.ops) & {"QUANTIZE", "DEQUANTIZE"}, info.ops
    assert info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    keras_outputs = np.asarray(qat_model(x[:8], training=False))
    litert_outputs = LiteRTModel(content, kernels="builtin").predict(x[:8])
    step = info.outputs[0].scale[0]
    # Int8 kernels round each layer's output where the fake-quant model rounds once per quantizer: a few steps apart.
    assert np.max(np.abs(keras_outputs - litert_outputs)) <= 4 * step + 1e-6, (
        kind,
        np.max(np.abs(keras_outputs - litert_outputs)) / step,
    )


def test_batch_norm_folding_matches_the_float_layers():
    from edgedistill.keras3.qat import folded_weights

    keras, tf = _keras3()
    for build in (_conv_bn_relu6, _depthwise_bn_relu):
        model = _probe(build)
        x = np.random.default_rng(1).normal(size=(16, 8, 8, 3)).astype(np.float32)
        model(x * 3 + 1, training=True)
        linear, bn = model.layers[1], model.layers[2]
        kernel, bias = folded_weights(linear, bn)
        reference = np.asarray(bn(linear(x), training=False))
        if type(linear).__name__ == "DepthwiseConv2D":
            folded = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME") + bias
        else:
            folded = tf.nn.conv2d(x, kernel, 1, "SAME") + bias
        np.testing.assert_allclose(np.asarray(folded), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "build, layer_name, reason",
    [
        (lambda keras, x: keras.layers.LayerNormalization(name="norm")(keras.layers.Conv2D(4, 3)(x)), "norm", "not covered"),
        (
            lambda keras, x: keras.layers.BatchNormalization(name="late_bn")(keras.layers.ReLU()(keras.layers.Conv2D(4, 3)(x))),
            "late_bn",
            "cannot be folded",
        ),
        (lambda keras, x: keras.layers.Conv2D(4, 3, activation="tanh", name="tanh_conv")(x), "tanh_conv", "cannot be fused"),
    ],
)
def test_uncovered_layer_is_an_input_error_naming_it_and_what_to_do(build, layer_name, reason):
    from edgedistill.keras3.qat import quantize_model, unsupported_layers

    model = _probe(build)
    assert [name for name, _, _ in unsupported_layers(model)] == [layer_name]
    with pytest.raises(InputError, match=rf"layer '{layer_name}' of type \w+: [^;]*{reason}.*PTQ.*--keras 2") as error:
        quantize_model(model)
    assert "\n" not in str(error.value)


def test_tf_keras_model_is_refused_with_a_pointer_to_keras_2():
    from edgedistill._keras import keras as tf_keras
    from edgedistill.keras3.qat import quantize_model

    inputs = tf_keras.Input((4,))
    with pytest.raises(InputError, match="Keras 3 model.*--keras 2"):
        quantize_model(tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs)))


def test_float_model_is_refused_by_the_int8_converter():
    from edgedistill.keras3.convert import convert_qat_model

    with pytest.raises(InputError, match="no fake-quant layers"):
        convert_qat_model(_probe(_dense))


def test_feature_losses_are_refused_for_keras3_students():
    from edgedistill.keras3.distiller import Distiller

    model = _probe(_dense)
    with pytest.raises(InputError, match="intermediate layers"):
        Distiller(model, model, distillation_losses="feature")


def test_resnet8_student_converts_to_the_ops_of_its_tfmot_twin():
    """The CIFAR-10 student of benchmarks/keras3_qat.py (resnet8 width 0.35: folded BatchNorms, fused ReLUs, residual
    Adds whose inputs have different scales, GlobalAveragePooling2D) gives the int8 op list tfmot's QAT gives."""
    from edgedistill.convert import convert_keras_model
    from edgedistill.keras3 import convert, models, qat
    from edgedistill.models import build_model
    from edgedistill.preprocessing import BYTE_RANGE, student_preprocessing, with_preprocessing
    from edgedistill.quantize import quantize_model
    from edgedistill.tflite_model import read_model_info

    preprocessing = student_preprocessing(BYTE_RANGE, raw_bytes=True)
    x = np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3)).astype(np.float32)
    keras3_student = models.build_model("resnet8", (32, 32, 3), 10, width=0.35, preprocessing=preprocessing)
    keras3_qat = qat.quantize_model(keras3_student, input_range=BYTE_RANGE)
    keras3_qat(x, training=True)  # the moving ranges start from the data
    keras3_info = read_model_info(convert.convert_qat_model(keras3_qat))
    tf_keras_student = with_preprocessing(build_model("resnet8", (32, 32, 3), 10, width=0.35), preprocessing)
    tfmot_qat = quantize_model(tf_keras_student, input_range=BYTE_RANGE)
    tfmot_info = read_model_info(convert_keras_model(tfmot_qat, representative_data=x, input_range=BYTE_RANGE))
    assert keras3_info.op_counts == tfmot_info.op_counts
    assert keras3_info.op_counts["ADD"] == 3 and keras3_info.op_counts["CONV_2D"] == 9, keras3_info.op_counts
