"""quantize_model: the up-front layer check against tfmot's default 8-bit registry."""

from __future__ import annotations

import pytest

from edgedistill.errors import InputError, StageError


def _model(*layers, input_shape=(8, 8, 1)):
    from edgedistill._keras import keras

    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name="probe")


@pytest.mark.parametrize("preset", ["cnn", "dscnn", "mlp"])
def test_presets_pass_the_check_and_quantize(preset):
    """Batch norms after a linear conv are folded by tfmot's transforms: they pass."""
    from edgedistill.models import build_model
    from edgedistill.quantize import quantize_model, unsupported_layers

    model = build_model(preset, (8, 8, 1), 10, width=0.125)
    assert unsupported_layers(model) == []
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in quantize_model(model).layers)


def test_unsupported_layer_is_named_with_its_type():
    from edgedistill._keras import keras
    from edgedistill.quantize import quantize_model

    model = _model(
        keras.layers.Flatten(), keras.layers.Dense(8), keras.layers.LayerNormalization(name="norm"), keras.layers.Dense(10)
    )
    with pytest.raises(StageError, match=r"layer 'norm' of type LayerNormalization"):
        quantize_model(model)


def test_batch_norm_after_relu_is_not_folded():
    from edgedistill._keras import keras
    from edgedistill.quantize import unsupported_layers

    model = _model(keras.layers.Conv2D(4, 3), keras.layers.ReLU(), keras.layers.BatchNormalization(name="late_bn"))
    assert unsupported_layers(model) == [("late_bn", "BatchNormalization")]
    folded = _model(keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU())
    assert unsupported_layers(folded) == []


def test_annotated_layer_is_left_to_its_quantize_config():
    import tensorflow_model_optimization as tfmot

    from edgedistill._keras import keras
    from edgedistill.quantize import unsupported_layers

    class NoOpConfig(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    annotate = tfmot.quantization.keras.quantize_annotate_layer
    model = _model(keras.layers.Flatten(), annotate(keras.layers.LayerNormalization(name="norm"), quantize_config=NoOpConfig()))
    assert unsupported_layers(model) == []


def test_non_keras_model_is_an_input_error():
    from edgedistill.quantize import quantize_model

    with pytest.raises(InputError, match="tf_keras model"):
        quantize_model(object())
