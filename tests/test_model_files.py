"""Teachers from other formats: a Keras 3 .keras file and a plain TensorFlow SavedModel."""

import numpy as np
import pytest

from edgedistill.models import ExternalTeacher, load_model_file, predict_logits


@pytest.fixture(scope="module")
def keras3_teacher_file(tmp_path_factory, digits):
    import keras  # Keras 3: independent of TF_USE_LEGACY_KERAS

    assert keras.__version__.startswith("3")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=digits.input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(digits.num_classes, activation="softmax"),  # probabilities, not logits
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=5, verbose=0)
    path = tmp_path_factory.mktemp("keras3") / "teacher.keras"
    model.save(path)
    return path, model


def test_keras3_teacher_loads_and_distills(keras3_teacher_file, digits):
    from edgedistill.distill import LogitsDistillation, distill
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig

    path, original = keras3_teacher_file
    teacher = load_model_file(path)
    assert isinstance(teacher, ExternalTeacher) and "Keras 3" in teacher.description
    logits = predict_logits(teacher, digits.x_test)
    # softmax outputs become log-probabilities: same class order, same softmax
    np.testing.assert_array_equal(logits.argmax(1), np.asarray(original.predict(digits.x_test, verbose=0)).argmax(1))
    student = build_model("mlp", digits.input_shape, digits.num_classes, width=0.25)
    student, history = distill(
        teacher,
        student,
        digits,
        distillation_losses=[LogitsDistillation(2.0)],
        config=TrainConfig(epochs=2, patience=0, verbose=0),
    )
    assert np.isfinite(history["loss"]).all()


def test_savedmodel_teacher(tiny_teacher, digits, tmp_path):
    path = tmp_path / "exported"
    tiny_teacher.export(str(path))  # a plain SavedModel with a serving signature, no Keras metadata
    teacher = load_model_file(path)
    expected = tiny_teacher.predict(digits.x_test[:20], verbose=0)
    got = teacher.predict(digits.x_test[:20])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
