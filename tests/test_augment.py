"""Augmentation with consistent teaching: teacher and student see the same augmented batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgedistill.augment import Augmentation, Batches, ViewCache, augmentation_for
from edgedistill.data import Dataset


def rgb_data(count: int = 96, size: int = 8) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    y = np.arange(count) % 3
    return Dataset(
        name="npz:rgb",
        x_train=x,
        y_train=y,
        x_val=x[:16],
        y_val=y[:16],
        x_test=x[:16],
        y_test=y[:16],
        num_classes=3,
        value_range=(0.0, 255.0),
    )


def test_sensible_defaults():
    assert augmentation_for(rgb_data(size=32)) == Augmentation(pad=4, flip=True)
    digits = Dataset(
        name="digits",
        x_train=np.zeros((2, 8, 8, 1), np.uint8),
        y_train=np.zeros(2),
        x_val=None,
        y_val=None,
        x_test=None,
        y_test=None,
        num_classes=10,
    )
    assert augmentation_for(digits) == Augmentation(pad=1, flip=False)  # a flipped digit is another symbol
    mnist = dataclasses.replace(digits, name="mnist:/data/mnist", x_train=np.zeros((2, 28, 28, 1), np.uint8))
    assert augmentation_for(mnist) == Augmentation(pad=4, flip=False)
    features = Dataset(
        name="npz:f",
        x_train=np.zeros((2, 1, 20, 1), np.float32),
        y_train=np.zeros(2),
        x_val=None,
        y_val=None,
        x_test=None,
        y_test=None,
        num_classes=2,
    )
    assert augmentation_for(features) is None


def test_crop_and_flip_move_pixels_without_changing_them():
    x = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    augmentation = Augmentation(pad=1, flip=True)
    out = augmentation.apply(x, np.array([[1, 1, 1], [0, 2, 0]]))
    np.testing.assert_array_equal(out[0], x[0][:, ::-1])  # centred crop, flipped
    np.testing.assert_array_equal(out[1, 1:, :2], x[1, :3, 1:3])  # offsets (0, 2): padding row on top, one column left
    assert out.dtype == np.uint8 and (out[1, 0] == 0).all()  # zero padding came in


def _twins():
    """A teacher and a student with identical weights and no batch norm: equal outputs on equal inputs."""
    from edgedistill._keras import keras
    from edgedistill.models import build_model

    keras.utils.set_random_seed(0)
    teacher = build_model("mlp", (8, 8, 3), 3, width=0.25, name="teacher")
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    return teacher, student


@pytest.mark.parametrize("views", [0, 3])
def test_teacher_and_student_see_the_same_augmented_batch(views):
    """The distillation loss of identical twins is 0 only if both saw exactly the same (augmented) inputs."""
    from edgedistill.distill import distill
    from edgedistill.training import TrainConfig

    teacher, student = _twins()
    config = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-12, patience=0, verbose=0)
    _, history = distill(
        teacher,
        student,
        rgb_data(),
        student_loss_weight=0.0,
        config=config,
        augmentation=Augmentation(pad=2, flip=True),
        augment_views=views,
    )
    assert max(history["distillation_loss"]) < 1e-5


def test_the_check_above_would_see_a_teacher_on_other_inputs():
    """Negative control: teacher outputs of the un-augmented images while the student sees augmented ones."""
    from edgedistill._keras import keras
    from edgedistill.distill import Distiller, teacher_targets

    teacher, student = _twins()
    data = rgb_data()
    distiller = Distiller(teacher, student, student_loss_weight=0.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-12))
    targets = teacher_targets(teacher, data.x_train, data.y_train)  # un-augmented outputs
    batches = Batches(data.x_train, targets, batch_size=16, augmentation=Augmentation(pad=2, flip=True))
    history = distiller.fit(batches, epochs=1, verbose=0)
    assert history.history["distillation_loss"][0] > 1e-3


def test_cached_views_are_the_teachers_outputs_on_exactly_those_views():
    teacher, _ = _twins()
    data = rgb_data(40)
    augmentation = Augmentation(pad=2, flip=True)
    cache = ViewCache.build(teacher, data.x_train, augmentation, num_views=2, seed=5)
    assert cache.outputs.shape == (2, 40, 3)
    batches = Batches(data.x_train, {"labels": data.y_train}, batch_size=8, views=cache)
    x, targets = batches[0]
    # Logits near 100 computed over a batch of 8 here and of 40 in the cache: float sums in another order differ in
    # the 7th digit, a wrong view (another crop or flip) by whole units.
    np.testing.assert_allclose(teacher.predict(x, verbose=0), targets["teacher_outputs"], rtol=1e-5, atol=1e-5)


def test_memory_mapped_data_streams_batch_by_batch(tmp_path):
    """A memory-mapped split is read batch by batch (Keras never copies it whole)."""
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig, train_classifier

    data = rgb_data()
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=data.x_train.shape)
    mapped[:] = data.x_train
    data.x_train = mapped
    model = build_model("mlp", (8, 8, 3), 3, width=0.25)
    history = train_classifier(model, data, config=TrainConfig(epochs=1, batch_size=32, patience=0, verbose=0))
    assert len(history["loss"]) == 1


def test_large_teacher_outputs_are_memory_mapped_and_streamed(monkeypatch):
    import edgedistill.augment as augment
    from edgedistill.distill import distill
    from edgedistill.training import TrainConfig

    teacher, student = _twins()
    data = rgb_data()
    monkeypatch.setattr(augment, "MAX_IN_MEMORY_BYTES", 64)  # any cache counts as large here
    outputs = augment.cached_outputs(teacher, data.x_train, chunk=40)
    assert isinstance(outputs, np.memmap) and outputs.shape == (96, 3)
    # Chunks of 40 against one predict of 96: the same logits (up to ~150) summed in another order.
    np.testing.assert_allclose(outputs, teacher.predict(data.x_train, verbose=0), rtol=1e-5, atol=1e-5)
    assert augment.streams(data.x_train, {"labels": data.y_train, "teacher_outputs": outputs})
    config = TrainConfig(epochs=1, batch_size=32, patience=0, verbose=0)
    _, history = distill(teacher, student, data, config=config, teacher_outputs={"train": outputs})
    assert len(history["loss"]) == 1
