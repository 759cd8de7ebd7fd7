"""Training loops shared by the teacher, distillation and QAT stages.

One :func:`fit` gives every stage the same behaviour: Keras progress bars, early stopping
on validation accuracy (best weights restored), TensorBoard logs, and a clear error when
the loss becomes NaN instead of a silently broken model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill._keras import keras
from edgedistill.config import COSINE_FINAL_FRACTION, LR_SCHEDULES, STRATEGIES, DataConfig, DistillConfig, TrainingConfig
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
    lr_schedule: str = TrainingConfig.lr_schedule  # constant, or cosine (see cosine_rate)
    schedule_epochs: int | None = None  # the epochs the cosine spans (None: ``epochs``; more for a probe of its start)


def cosine_rate(start: float, epoch: int, epochs: int) -> float:
    """The learning rate of epoch ``epoch`` (from 0) of a cosine decay from ``start`` to
    :data:`~edgedistill.config.COSINE_FINAL_FRACTION` of it over ``epochs`` (reached at the last epoch)."""
    final = start * COSINE_FINAL_FRACTION
    progress = min(epoch, epochs - 1) / max(epochs - 1, 1)
    return final + (start - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _CosineSchedule(keras.callbacks.Callback):
    """Sets the optimizer's rate at each epoch's start: a fit resumed at epoch k continues on the same curve."""

    def __init__(self, start: float, epochs: int) -> None:
        super().__init__()
        self.start, self.epochs = start, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(cosine_rate(self.start, epoch, self.epochs))


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


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping whose counters and best weights survive an interruption (see :class:`_EpochCheckpoint`)."""

    def __init__(self, *args, resume_state: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_state = resume_state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters: the saved ones are put back after it
        if self.resume_state:
            self.wait, self.best, self.best_epoch = (self.resume_state[k] for k in ("wait", "best", "best_epoch"))
            self.best_weights = self.resume_state.get("best_weights")


class _EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: the model's variables and its optimizer's (tf.train.Checkpoint), the history so far and
    the early-stopping state, in ``directory``. ``fit`` on the same stage of the same run folder continues from
    there after an interruption (``run --resume``), instead of training the stage again from its first epoch."""

    STATE = "state.json"
    BEST = "best_weights.npz"

    def __init__(
        self, directory: Path, fingerprint: dict, early_stopping: _ResumableEarlyStopping | None, history: dict[str, list[float]]
    ) -> None:
        super().__init__()
        self.directory, self.fingerprint, self.early_stopping = directory, fingerprint, early_stopping
        self.history = {key: list(values) for key, values in history.items()}

    def on_train_begin(self, logs=None):
        self.manager = _checkpoint_manager(self.model, self.directory)

    def on_epoch_end(self, epoch, logs=None):
        from edgedistill.fileio import write_json_atomic

        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.manager.save(checkpoint_number=epoch)
        stopping = None
        if self.early_stopping is not None:
            stopping = {
                "wait": self.early_stopping.wait,
                "best": float(self.early_stopping.best),
                "best_epoch": self.early_stopping.best_epoch,
            }
            if self.early_stopping.best_weights is not None and self.early_stopping.best_epoch == epoch:
                _save_arrays(self.directory / self.BEST, self.early_stopping.best_weights)
        # Written last: a state file always names an epoch whose checkpoint is complete.
        write_json_atomic(
            self.directory / self.STATE,
            {"fingerprint": self.fingerprint, "epoch": epoch, "history": self.history, "early_stopping": stopping},
        )


def _checkpoint_manager(model: keras.Model, directory: Path):
    from edgedistill._keras import tf

    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    return tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1)  # the last epoch only


def _save_arrays(path: Path, arrays: list) -> None:
    import io

    from edgedistill.fileio import write_bytes_atomic

    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _fingerprint(model: keras.Model, config: TrainConfig, stage: str) -> dict:
    """What a checkpoint must match to be continued: the same stage, model and schedule."""
    # Variables, not count_params(): a Distiller (a subclassed model) is not "built" in Keras' sense before fit, and
    # a model holding an unbuilt one (the patient scheme's augmentation model) cannot list its weights at all.
    try:
        parameters: int | None = int(sum(np.prod(variable.shape) for variable in model.weights))
    except ValueError:
        parameters = None
    return {
        "stage": stage,
        "model": model.name,
        "parameters": parameters,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "lr_schedule": config.lr_schedule,
        "schedule_epochs": config.schedule_epochs,
        "seed": config.seed,
    }


def checkpoint_dir_of(log_dir: str | Path | None, stage: str) -> Path | None:
    """``RUN/checkpoints/<stage>`` for a stage logging to ``RUN/logs`` (None: not in a run folder, no checkpoints)."""
    return Path(log_dir).parent / "checkpoints" / stage if log_dir is not None else None


def _resume_state(directory: Path | None, model: keras.Model, fingerprint: dict) -> dict | None:
    """The saved state of an interrupted fit of this stage, with the model and optimizer restored; None: start afresh."""
    import json
    import logging

    if directory is None or not (directory / _EpochCheckpoint.STATE).is_file():
        return None
    logger = logging.getLogger(__name__)
    try:
        state = json.loads((directory / _EpochCheckpoint.STATE).read_text())
    except (OSError, ValueError):
        return None
    if state.get("fingerprint") != fingerprint:
        logger.warning(
            "%s: checkpoint of another model or schedule; training %s from its first epoch", directory, fingerprint["stage"]
        )
        return None
    manager = _checkpoint_manager(model, directory)
    if manager.latest_checkpoint is None:
        return None
    manager.checkpoint.restore(manager.latest_checkpoint)  # optimizer slots are restored when first created
    stopping = state.get("early_stopping")
    if stopping and (directory / _EpochCheckpoint.BEST).is_file():
        with np.load(directory / _EpochCheckpoint.BEST) as saved:
            stopping["best_weights"] = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    logger.info(
        "%s: continuing from the checkpoint of epoch %d of %d", fingerprint["stage"], state["epoch"] + 1, fingerprint["epochs"]
    )
    return state


_STRATEGIES: dict[str, Any] = {}  # tf.distribute.Strategy objects (TensorFlow has no type information)


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

        if name == "multi_worker":
            from edgedistill.strategy import wait_for_peers

            wait_for_peers()  # TF_CONFIG checked, peers reached with a deadline: TensorFlow's own wait has none

        _STRATEGIES[name] = (
            tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.MultiWorkerMirroredStrategy()
        )
    return _STRATEGIES[name].scope()


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def _callbacks(
    model: keras.Model,
    config: TrainConfig,
    stage: str,
    log_dir: str | Path | None,
    directory: Path | None,
    *,
    with_validation: bool,
) -> tuple[dict | None, list]:
    """(the state of an interrupted fit of this stage to continue, or None; early stopping, TensorBoard and the
    per-epoch checkpoint callbacks)."""
    fingerprint = _fingerprint(model, config, stage)
    resumed = _resume_state(directory, model, fingerprint)
    callbacks: list = []
    early_stopping = None
    if config.patience and with_validation:
        early_stopping = _ResumableEarlyStopping(
            monitor="val_accuracy",
            mode="max",
            patience=config.patience,
            restore_best_weights=True,
            resume_state=(resumed or {}).get("early_stopping"),
        )
        callbacks.append(early_stopping)
    if config.lr_schedule not in LR_SCHEDULES:
        raise InputError(f"Unknown learning-rate schedule {config.lr_schedule!r}. Expected one of: {', '.join(LR_SCHEDULES)}.")
    if config.lr_schedule == "cosine":
        callbacks.append(_CosineSchedule(float(config.learning_rate), config.schedule_epochs or config.epochs))
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(Path(log_dir) / stage), profile_batch=0))
    if directory is not None:  # in a run folder: log_dir is set
        callbacks.append(_EpochCheckpoint(directory, fingerprint, early_stopping, (resumed or {}).get("history", {})))
    return resumed, callbacks


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
    directory = checkpoint_dir_of(log_dir, stage)
    resumed, callbacks = _callbacks(model, config, stage, log_dir, directory, with_validation=validation_data is not None)
    history = model.fit(
        x,
        y,
        validation_data=validation_data,
        epochs=config.epochs,
        initial_epoch=resumed["epoch"] + 1 if resumed else 0,
        batch_size=config.batch_size if y is not None else None,
        callbacks=[guard, *callbacks],
        verbose=config.verbose,
        shuffle=y is not None,  # Batches shuffles samples itself, every epoch
    )
    if guard.where is not None:
        raise StageError(
            f"{stage}: the training loss became NaN at {guard.where}; training stopped. "
            f"Lower the learning rate (was {config.learning_rate}) or check the data for extreme values."
        )
    merged = {key: list(values) for key, values in ((resumed or {}).get("history") or {}).items()}
    for key, values in history.history.items():
        merged.setdefault(key, []).extend(float(v) for v in values)
    if directory is not None:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)  # the stage is complete: its files are the run folder's models
        with contextlib.suppress(OSError):
            directory.parent.rmdir()  # checkpoints/ itself, once no stage has one
    return merged


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
        model,
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        config=config,
        stage=stage,
        log_dir=log_dir,
        augmentation=augmentation,
    )


def accuracy(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent of a Keras model (or anything with ``predict``)."""
    predictions = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    return float(np.mean(predictions.argmax(axis=-1) == y) * 100.0)


__all__ = ["TrainConfig", "fit", "train_classifier", "compile_classifier", "accuracy", "set_seed"]
