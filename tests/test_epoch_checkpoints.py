"""Issue 21 item 3: a training stage continues from its last completed epoch after an interruption."""

from __future__ import annotations

import numpy as np
import pytest


def _model_and_data():
    from edgedistill._keras import keras
    from edgedistill.training import compile_classifier, set_seed

    set_seed(0)
    model = keras.Sequential(
        [keras.layers.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)], name="tiny"
    )
    compile_classifier(model, 1e-2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)
    return model, x, y


def test_an_interrupted_fit_continues_from_its_last_epoch(tmp_path, monkeypatch):
    from edgedistill import training

    run_dir = tmp_path / "run"
    config = training.TrainConfig(epochs=5, batch_size=32, patience=3, verbose=0)
    model, x, y = _model_and_data()
    saved_weights = {}
    original = training._EpochCheckpoint.on_epoch_end

    def interrupt_after_epoch_3(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 2:
            saved_weights["kernel"] = self.model.get_weights()[0].copy()
            raise KeyboardInterrupt  # Ctrl-C after the third epoch's checkpoint

    monkeypatch.setattr(training._EpochCheckpoint, "on_epoch_end", interrupt_after_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        training.fit(model, x, y, validation_data=(x, y), config=config, stage="distill", log_dir=run_dir / "logs")
    monkeypatch.setattr(training._EpochCheckpoint, "on_epoch_end", original)
    assert (run_dir / "checkpoints" / "distill" / "state.json").is_file()

    # A new process would build the same model afresh: its weights come from the checkpoint, not from training again.
    fresh, _, _ = _model_and_data()
    epochs_run: list[int] = []
    monkeypatch.setattr(
        training._NaNGuard,
        "on_epoch_begin",
        lambda self, epoch, logs=None: epochs_run.append(epoch) or setattr(self, "_epoch", epoch),
    )
    restored_kernel = {}
    original_train_begin = training._EpochCheckpoint.on_train_begin

    def capture(self, logs=None):
        restored_kernel["kernel"] = self.model.get_weights()[0].copy()
        original_train_begin(self, logs)

    monkeypatch.setattr(training._EpochCheckpoint, "on_train_begin", capture)
    history = training.fit(fresh, x, y, validation_data=(x, y), config=config, stage="distill", log_dir=run_dir / "logs")
    assert epochs_run == [3, 4]  # only the two epochs left
    np.testing.assert_array_equal(restored_kernel["kernel"], saved_weights["kernel"])
    assert len(history["loss"]) == 5 and len(history["val_accuracy"]) == 5  # the whole stage's history
    assert not (run_dir / "checkpoints" / "distill").exists()  # a completed stage leaves no checkpoint


def test_a_checkpoint_of_another_schedule_is_not_continued(tmp_path, monkeypatch):
    from edgedistill import training

    model, x, y = _model_and_data()
    directory = tmp_path / "checkpoints" / "distill"
    original = training._EpochCheckpoint.on_epoch_end

    def interrupt(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(training._EpochCheckpoint, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt):
        training.fit(
            model,
            x,
            y,
            validation_data=None,
            config=training.TrainConfig(epochs=4, verbose=0),
            stage="distill",
            log_dir=tmp_path / "logs",
        )
    monkeypatch.setattr(training._EpochCheckpoint, "on_epoch_end", original)
    assert directory.is_dir()
    history = training.fit(
        model,
        x,
        y,
        validation_data=None,
        config=training.TrainConfig(epochs=3, verbose=0),
        stage="distill",
        log_dir=tmp_path / "logs",
    )
    assert len(history["loss"]) == 3  # another number of epochs: trained from its first epoch
