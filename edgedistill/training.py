"""Training loops shared by the teacher, distillation and QAT stages.

One :func:`fit` gives every stage the same behaviour: Keras progress bars, early stopping
on validation accuracy (best weights restored), TensorBoard logs, and a clear error when
the loss becomes NaN instead of a silently broken model.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from edgedistill._keras import keras
from edgedistill.config import STRATEGIES, DataConfig, DistillConfig, TrainingConfig
from edgedistill.errors import InputError, StageError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one training stage trains. ``patience=0`` disables early stopping.

    The defaults are those of the run's options (:class:`edgedistill.config.TrainingConfig`),
    so Python callers and the command line train alike.
    """

    epochs: int = DistillConfig.epochs
    batch_size: int = TrainingConfig.batch_size
    learning_rate: float = TrainingConfig.learning_rate
    patience: int = TrainingConfig.patience
    seed: int = DataConfig.seed
    verbose: int = TrainingConfig.verbose


class _NaNGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.where: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"batch {batch + 1} of epoch {self._epoch + 1}"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


_STRATEGIES: dict[str, object] = {}


def strategy_scope(name: str = "none"):
    """The scope of the ``tf.distribute`` strategy ``name`` (see :data:`edgedistill.config.STRATEGIES`).

    Models built and compiled inside it train on every replica of the strategy: ``mirrored``
    mirrors variables over the local GPUs (the CPU when there is none); ``multi_worker`` over the
    workers listed in ``TF_CONFIG`` (a single worker without it). One strategy object per name
    and process (TensorFlow configures collective ops once). The Distiller divides its loss by
    the number of replicas, so results do not depend on it.

    Example::

        with strategy_scope("mirrored"):
            student = build_model("dscnn", (8, 8, 1), 10)
            distill(teacher, student, data)
    """
    import contextlib

    if name not in STRATEGIES:
        raise InputError(f"Unknown strategy {name!r}. Expected one of: {', '.join(STRATEGIES)}.")
    if name == "none":
        return contextlib.nullcontext()
    if name not in _STRATEGIES:
        from edgedistill._keras import tf

        _STRATEGIES[name] = (
            tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.MultiWorkerMirroredStrategy()
        )
    return _STRATEGIES[name].scope()


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def fit(
    model: keras.Model,
    x: np.ndarray,
    y,
    *,
    validation_data: tuple | None,
    config: TrainConfig,
    stage: str,
    log_dir: str | Path | None = None,
    augmentation=None,
    views=None,
) -> dict[str, list[float]]:
    """Fit a compiled model; return its history. Raises :class:`StageError` on a NaN loss.

    ``augmentation`` (:class:`edgedistill.augment.Augmentation`) augments every training batch;
    ``views`` (:class:`edgedistill.augment.ViewCache`) trains on cached augmented views and the
    teacher's outputs on them. Either, or memory-mapped ``x``, feeds Keras batch by batch.
    """
    from edgedistill.augment import Batches, streams

    if augmentation is not None or views is not None or streams(x, y):
        x = Batches(x, y, batch_size=config.batch_size, seed=config.seed, augmentation=augmentation, views=views)
        y = None
    guard = _NaNGuard()
    callbacks: list = [guard]
    if config.patience and validation_data is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=config.patience, restore_best_weights=True
            )
        )
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(Path(log_dir) / stage), profile_batch=0))
    history = model.fit(
        x,
        y,
        validation_data=validation_data,
        epochs=config.epochs,
        batch_size=config.batch_size if y is not None else None,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=y is not None,  # Batches shuffles samples itself, every epoch
    )
    if guard.where is not None:
        raise StageError(
            f"{stage}: the training loss became NaN at {guard.where}; training stopped. "
            f"Lower the learning rate (was {config.learning_rate}) or check the data for extreme values."
        )
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def compile_classifier(model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def train_classifier(
    model: keras.Model, data, *, config: TrainConfig, stage: str = "teacher", log_dir=None, augmentation=None
) -> dict:
    """Supervised training on hard labels (the teacher, or a student trained from scratch)."""
    set_seed(config.seed)
    compile_classifier(model, config.learning_rate)
    return fit(
        model, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), config=config, stage=stage,
        log_dir=log_dir, augmentation=augmentation,
    )


def accuracy(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of a Keras model (or anything with ``predict``)."""
    predictions = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return float(np.mean(predictions.argmax(axis=-1) == y) * 100.0)


__all__ = ["TrainConfig", "fit", "train_classifier", "compile_classifier", "accuracy", "set_seed"]
