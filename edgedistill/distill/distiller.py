"""The Distiller: a tf_keras Model that trains a student against a frozen teacher, and :func:`distill`."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgedistill._keras import keras, tf
from edgedistill.distill.losses import DistillationLoss, LogitsDistillation, get_loss, keras_loss, keras_loss_config
from edgedistill.errors import InputError, StageError
from edgedistill.models import model_output_classes, predict_logits

logger = logging.getLogger(__name__)

LABELS = "labels"
TEACHER_OUTPUTS = "teacher_outputs"
# Wrappers tfmot puts around layers keep the layer's name behind a prefix: a loss written for
# the float student ("block1_conv") also finds the layer in its QAT or pruned version.
WRAPPER_PREFIXES = ("quant_", "prune_low_magnitude_")


def find_layer_output(model, layer_name: str, *, role: str = "model"):
    """The symbolic output tensor of ``layer_name`` in a functional tf_keras model.

    ``"penultimate"`` is the input of the model's last layer (its embedding). Names also match
    through tfmot's wrappers (``quant_<name>``, ``prune_low_magnitude_<name>``). An unknown
    name raises :class:`InputError` listing the model's layers.
    """
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise InputError(
            f"Losses on intermediate layers need a functional tf_keras {role} (to read layer {layer_name!r}); "
            f"received {type(model).__name__}. Use a preset, a functional model, or a loss on final outputs such as `logits`."
        )
    if layer_name == DistillationLoss.PENULTIMATE:
        last = model.layers[-1]
        inputs = last.input
        if isinstance(inputs, (list, tuple)):
            raise InputError(
                f"The last layer of the {role} ({last.name!r}) has several inputs; name the embedding layer explicitly."
            )
        return inputs
    names = [layer.name for layer in model.layers]
    for candidate in (layer_name, *(prefix + layer_name for prefix in WRAPPER_PREFIXES)):
        if candidate in names:
            return model.get_layer(candidate).output
    raise InputError(f"The {role} {model.name!r} has no layer named {layer_name!r}. Its layers are: {', '.join(names)}.")


def feature_extractor(model, layer_names: Sequence[str], *, role: str):
    """A model sharing ``model``'s weights that returns ``[final output, *layer outputs]``."""
    outputs = [find_layer_output(model, name, role=role) for name in layer_names]
    return keras.Model(model.inputs, [model.outputs[0], *outputs], name=f"{model.name}_features")


def _check_arguments(teacher, student, distillation_losses, distillation_loss_weights, student_loss_weight):
    """The Distiller's losses (resolved with :func:`get_loss`) and their weights, after checking the arguments."""
    if distillation_losses is None:
        distillation_losses = [LogitsDistillation()]
    if isinstance(distillation_losses, (DistillationLoss, str, dict)):
        distillation_losses = [distillation_losses]
    losses = [get_loss(loss) for loss in distillation_losses]
    if distillation_loss_weights is None:
        distillation_loss_weights = [1.0] * len(losses)
    if len(distillation_loss_weights) != len(losses):
        raise InputError(
            f"`distillation_loss_weights` has {len(distillation_loss_weights)} entries for {len(losses)} losses; "
            "give one weight per distillation loss."
        )
    if isinstance(student_loss_weight, bool) or not 0.0 <= float(student_loss_weight) <= 1.0:
        raise InputError(f"`student_loss_weight` must be in [0, 1]. Received: student_loss_weight={student_loss_weight}.")
    teacher_classes, student_classes = model_output_classes(teacher), model_output_classes(student)
    if teacher_classes is not None and student_classes is not None and teacher_classes != student_classes:
        raise InputError(
            f"The teacher outputs {teacher_classes} classes and the student {student_classes}; "
            "they must match. Build the student with the teacher's number of classes."
        )
    return losses, [float(w) for w in distillation_loss_weights]


def _sparsity_masks(student) -> list:
    """``(kernel, its non-zero mask)`` for each partly-zero kernel (rank >= 2) of ``student``."""
    masks = []
    for variable in student.trainable_variables:
        if len(variable.shape) >= 2:
            mask = (variable.numpy() != 0).astype(np.float32)
            if mask.mean() < 1.0:
                masks.append((variable, tf.constant(mask)))
    return masks


def default_student_loss():
    """The student loss when none is given: the presets output logits."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class _Progress(keras.callbacks.Callback):
    """Sets the Distiller's training progress (0 at the first epoch, 1 at the last) for schedules."""

    def __init__(self, variable, epochs: int) -> None:
        super().__init__()
        self.variable = variable
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch / max(1, self.epochs - 1))


class Distiller(keras.Model):
    """Knowledge distillation, with the names and conventions of ``keras.distillation.Distiller``.

    ``total = a * L_student(labels, student) + (1 - a) * sum_i w_i * L_i(teacher, student)``
    with ``a = student_loss_weight``, ``L_i`` the distillation losses and ``w_i`` their
    ``distillation_loss_weights``.

    As in Keras, :meth:`compile` takes the student (hard-label) loss ``L_student`` as ``loss``
    (anything ``keras.losses.get`` accepts) and the user's ``metrics`` (computed on the
    student's outputs against the labels). Without ``loss`` it is
    ``SparseCategoricalCrossentropy(from_logits=True)``: the presets output logits. A loss
    given by name has its Keras meaning: ``"sparse_categorical_crossentropy"`` expects
    probabilities (``from_logits=False``), so pass a Loss instance for logits.

    The teacher is frozen. When the targets given to :meth:`fit` already hold the
    teacher's outputs (``{"labels": y, "teacher_outputs": t}``, see
    :func:`teacher_targets`), the teacher is not run at all: with un-augmented data its
    outputs never change, so computing them once makes a distillation epoch cost about
    what a plain epoch costs. Otherwise the teacher runs on every batch.

    Example::

        distiller = Distiller(teacher, student, distillation_losses=LogitsDistillation(temperature=4.0),
                              student_loss_weight=0.5)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        distiller.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        distiller.fit(x, teacher_targets(teacher, x, y), epochs=10)
        student = distiller.student
    """

    def __init__(
        self,
        teacher,
        student: keras.Model,
        distillation_losses: DistillationLoss | str | dict | Sequence | None = None,
        distillation_loss_weights: Sequence[float] | None = None,
        student_loss_weight: float = 0.5,
        name: str = "distiller",
        preserve_sparsity: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        losses, weights = _check_arguments(teacher, student, distillation_losses, distillation_loss_weights, student_loss_weight)
        self.student = student
        # A teacher that is not a tf_keras Model (Keras 3, SavedModel) is kept out of
        # Keras' tracking: it is only ever used through its cached outputs.
        if isinstance(teacher, keras.Model):
            self.teacher = teacher
            self.teacher.trainable = False
        else:
            self._external_teacher = [teacher]
            self.teacher = None
        self.distillation_losses = losses
        self.distillation_loss_weights = weights
        self.student_loss_weight = float(student_loss_weight)
        # Until compile(loss=...) says otherwise (keras_loss: reduction "none", the mean is taken
        # in _compute_losses, as tf.distribute strategies require inside a custom train_step).
        self._student_loss_spec = None
        self.student_loss_fn = keras_loss(default_student_loss(), role="student loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        # Training progress in [0, 1], set per epoch by fit(); losses with schedules read it.
        self.progress = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="progress")
        self._build_feature_extraction(teacher, student)
        # preserve_sparsity: a pruned student's zeros stay zero (e.g. during QAT after pruning):
        # each kernel is multiplied by its initial non-zero mask after every step.
        self._sparsity_masks = _sparsity_masks(student) if preserve_sparsity else []

    def _build_feature_extraction(self, teacher, student) -> None:
        """Sub-models returning the matched layers' outputs, and each loss's adapter."""
        self._teacher_layers: list[str] = []
        self._student_layers: list[str] = []
        for loss in self.distillation_losses:
            if loss.uses_final_outputs:
                continue
            for names, name in ((self._teacher_layers, loss.teacher_layer_name), (self._student_layers, loss.student_layer_name)):
                if name is None:
                    raise InputError(f"{type(loss).__name__} names a student layer and a teacher layer, or neither.")
                if name not in names:
                    names.append(name)
        self.adapters = []
        # Keras models of the matched layers' features; None when no loss reads features
        self.teacher_extractor: Any = None
        self.student_extractor: Any = None
        if not self._teacher_layers:
            return
        if self.teacher is None:
            raise InputError(
                "Losses on intermediate layers need a tf_keras teacher to run per batch; this teacher "
                f"({type(teacher).__name__}) only gives outputs. Use `logits`, or load the teacher as a tf_keras model."
            )
        self.teacher_extractor = feature_extractor(self.teacher, self._teacher_layers, role="teacher")
        self.teacher_extractor.trainable = False
        self.student_extractor = feature_extractor(student, self._student_layers, role="student")
        teacher_shapes = dict(zip(self._teacher_layers, [tuple(t.shape) for t in self.teacher_extractor.outputs[1:]]))
        student_shapes = dict(zip(self._student_layers, [tuple(t.shape) for t in self.student_extractor.outputs[1:]]))
        for loss in self.distillation_losses:
            if not loss.uses_final_outputs:
                self.adapters.extend(loss.build(teacher_shapes[loss.teacher_layer_name], student_shapes[loss.student_layer_name]))

    def fit(self, *args, epochs: int = 1, callbacks=None, **kwargs):
        callbacks = [*(callbacks or []), _Progress(self.progress, epochs)]
        if any(type(layer).__name__ == "PruneLowMagnitude" for layer in self.student.layers):
            # tfmot's pruning wrappers need their step counter advanced every batch.
            from edgedistill._keras import import_tfmot

            callbacks.append(import_tfmot().sparsity.keras.UpdatePruningStep())
        return super().fit(*args, epochs=epochs, callbacks=callbacks, **kwargs)

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configure training like ``keras.distillation.Distiller.compile``.

        ``loss`` is the student's hard-label loss: a name, a ``keras.losses.Loss`` or a callable
        (anything ``keras.losses.get`` accepts); ``None`` keeps
        ``SparseCategoricalCrossentropy(from_logits=True)``. ``metrics`` are the user's, computed
        on the student's outputs; ``loss``, ``student_loss`` and ``distillation_loss`` are always logged.
        """
        if loss is not None:
            self.student_loss_fn = keras_loss(loss, role="Distiller.compile `loss`")
            self._student_loss_spec = loss
        if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
            raise InputError(f"`metrics` must be a list of metrics (names or objects). Received: metrics={metrics!r}.")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    @property
    def trainable_weights_to_update(self) -> list:
        """The student's trainable weights and those of the losses' adapters."""
        variables = list(self.student.trainable_variables)
        for adapter in self.adapters:
            variables.extend(adapter.trainable_variables)
        return variables

    def _forward(self, x, cached, training: bool):
        """Student outputs, teacher outputs, and the matched layers' features of both."""
        if self.student_extractor is None:
            student_outputs = self.student(x, training=training)
            return student_outputs, {}, None, {}
        student_all = self.student_extractor(x, training=training)
        teacher_all = self.teacher_extractor(x, training=False)
        student_features = dict(zip(self._student_layers, student_all[1:]))
        teacher_features = {name: tf.stop_gradient(t) for name, t in zip(self._teacher_layers, teacher_all[1:])}
        teacher_outputs = cached if cached is not None else tf.stop_gradient(teacher_all[0])
        return student_all[0], student_features, teacher_outputs, teacher_features

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return [
            self.total_loss_tracker,
            self.student_loss_tracker,
            self.distillation_loss_tracker,
        ] + self.compiled_metrics.metrics

    def _split_targets(self, y):
        if isinstance(y, dict):
            return y[LABELS], y.get(TEACHER_OUTPUTS)
        return y, None

    def _teacher_outputs(self, x, cached):
        if cached is not None:
            return cached
        if self.teacher is None:
            raise StageError(
                "This teacher (Keras 3 or SavedModel) cannot run inside a tf_keras training step; "
                "pass its cached outputs (teacher_targets) or use a tf_keras teacher."
            )
        return tf.stop_gradient(self.teacher(x, training=False))

    def _loss_options(self, loss, labels=None) -> dict:
        """``progress`` (and the batch's ``labels``, e.g. for DKD's target class) for losses whose
        ``compute_loss`` accepts them (users' losses may not)."""
        parameters = inspect.signature(loss.compute_loss).parameters
        any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        options = {"progress": self.progress, "labels": labels}
        return {key: value for key, value in options.items() if key in parameters or any_keyword}

    def _compute_losses(self, labels, student_outputs, teacher_outputs, student_features=None, teacher_features=None):
        student_loss = tf.reduce_mean(tf.cast(self.student_loss_fn(labels, student_outputs), student_outputs.dtype))
        distillation_loss = tf.constant(0.0, dtype=student_outputs.dtype)
        for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights):
            if loss.uses_final_outputs:
                value = loss.compute_loss(teacher_outputs, student_outputs, **self._loss_options(loss, labels))
            else:
                value = loss.compute_loss(
                    teacher_features[loss.teacher_layer_name],
                    student_features[loss.student_layer_name],
                    **self._loss_options(loss, labels),
                )
            distillation_loss += weight * tf.cast(value, student_outputs.dtype)
        total = self.student_loss_weight * student_loss + (1.0 - self.student_loss_weight) * distillation_loss
        return total, student_loss, distillation_loss

    def _update(self, labels, student_outputs, total, student_loss, distillation_loss):
        self.total_loss_tracker.update_state(total)
        self.student_loss_tracker.update_state(student_loss)
        self.distillation_loss_tracker.update_state(distillation_loss)
        self.compiled_metrics.update_state(labels, student_outputs)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, cached = self._split_targets(y)
        with tf.GradientTape() as tape:
            student_outputs, student_features, teacher_outputs, teacher_features = self._forward(x, cached, training=True)
            if teacher_outputs is None:
                teacher_outputs = self._teacher_outputs(x, cached)
            total, student_loss, distillation_loss = self._compute_losses(
                labels, student_outputs, teacher_outputs, student_features, teacher_features
            )
            regularization = tf.add_n(self.student.losses) if self.student.losses else 0.0
            # Under a tf.distribute strategy the replicas' gradients are summed: each replica's
            # mean loss is divided by their number so the update is the global batch's mean.
            objective = (total + regularization) / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_weights_to_update
        gradients = tape.gradient(objective, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._after_train_step()
        return self._update(labels, student_outputs, total, student_loss, distillation_loss)

    def distillation_loss_value(self, x, teacher_outputs=None) -> float:
        """The weighted distillation loss (without the hard-label term) on inputs ``x``, in inference mode."""
        x = tf.convert_to_tensor(x, dtype=tf.float32)
        cached = None if teacher_outputs is None else tf.convert_to_tensor(teacher_outputs, dtype=tf.float32)
        student_outputs, student_features, teacher, teacher_features = self._forward(x, cached, training=False)
        if teacher is None:
            teacher = self._teacher_outputs(x, cached)
        labels = tf.argmax(teacher, axis=-1)
        _, _, distillation_loss = self._compute_losses(labels, student_outputs, teacher, student_features, teacher_features)
        return float(distillation_loss)

    def _after_train_step(self) -> None:
        """Runs after each optimizer step; schemes extend it (e.g. an EMA teacher)."""
        for variable, mask in self._sparsity_masks:
            variable.assign(variable * mask)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, cached = self._split_targets(y)
        student_outputs, student_features, teacher_outputs, teacher_features = self._forward(x, cached, training=False)
        if teacher_outputs is None:
            if cached is None and self.teacher is None:
                teacher_outputs = student_outputs  # no teacher available: report the supervised loss only
            else:
                teacher_outputs = self._teacher_outputs(x, cached)
        total, student_loss, distillation_loss = self._compute_losses(
            labels, student_outputs, teacher_outputs, student_features, teacher_features
        )
        return self._update(labels, student_outputs, total, student_loss, distillation_loss)

    def get_config(self):
        return {
            "distillation_losses": [{"kind": loss.name, **loss.get_config()} for loss in self.distillation_losses],
            "distillation_loss_weights": self.distillation_loss_weights,
            "student_loss_weight": self.student_loss_weight,
            "student_loss": keras_loss_config(self._student_loss_spec),
        }


def teacher_targets(teacher, x: np.ndarray, y: np.ndarray, *, teacher_outputs: np.ndarray | None = None) -> dict:
    """Targets for :meth:`Distiller.fit` with the teacher's outputs computed once (cached)."""
    if teacher_outputs is None:
        teacher_outputs = predict_logits(teacher, x)
    if len(teacher_outputs) != len(y):
        raise InputError(f"{len(teacher_outputs)} teacher outputs for {len(y)} labels; they must match.")
    # Memory-mapped outputs (large caches) stay mapped: training then reads them batch by batch.
    outputs = teacher_outputs if isinstance(teacher_outputs, np.memmap) else np.asarray(teacher_outputs, dtype=np.float32)
    return {LABELS: np.asarray(y), TEACHER_OUTPUTS: outputs}


def _compiled_distiller(
    teacher,
    student: keras.Model,
    *,
    distillation_losses,
    distillation_loss_weights,
    student_loss_weight: float,
    student_loss,
    preserve_sparsity: bool,
    learning_rate: float,
) -> Distiller:
    """A :class:`Distiller` of ``student`` against ``teacher``, compiled with Adam and an accuracy metric."""
    distiller = Distiller(
        teacher,
        student,
        distillation_losses=distillation_losses,
        distillation_loss_weights=distillation_loss_weights,
        student_loss_weight=student_loss_weight,
        preserve_sparsity=preserve_sparsity,
    )
    distiller.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=student_loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return distiller


def distill(
    teacher,
    student: keras.Model,
    data,
    *,
    distillation_losses=None,
    distillation_loss_weights=None,
    student_loss_weight: float = 0.5,
    student_loss=None,
    config=None,
    teacher_outputs: dict | None = None,
    stage: str = "distill",
    log_dir: str | Path | None = None,
    preserve_sparsity: bool = False,
    augmentation=None,
    augment_views: int = 0,
):
    """Train ``student`` against a frozen ``teacher`` on ``data``; return ``(student, history)``.

    ``teacher_outputs`` may hold the teacher's cached logits per split
    (``{"train": ..., "val": ...}``); they are computed here when absent, once.
    ``student_loss`` is the hard-label loss (see :meth:`Distiller.compile`).
    ``preserve_sparsity`` keeps a pruned student's zero weights at zero (QAT after pruning).
    ``augmentation`` (:mod:`edgedistill.augment`) augments the training batches; the teacher sees
    each augmented batch (``augment_views=0``: it runs in the training step) or its cached outputs on
    ``augment_views`` fixed views. The cached ``train`` outputs (of un-augmented images) are then unused.
    """
    from edgedistill.training import TrainConfig, fit, set_seed

    config = config or TrainConfig()
    set_seed(config.seed)
    distiller = _compiled_distiller(
        teacher,
        student,
        distillation_losses=distillation_losses,
        distillation_loss_weights=distillation_loss_weights,
        student_loss_weight=student_loss_weight,
        student_loss=student_loss,
        preserve_sparsity=preserve_sparsity,
        learning_rate=config.learning_rate,
    )
    cached = teacher_outputs or {}
    train_targets, views = _training_targets(distiller, teacher, data, cached, augmentation, augment_views, config.seed)
    val_targets = teacher_targets(teacher, data.x_val, data.y_val, teacher_outputs=cached.get("val"))
    teacher_name = getattr(teacher, "name", type(teacher).__name__)
    logger.info("%s: distilling %s from %s (%d epochs)", stage, student.name, teacher_name, config.epochs)
    history = fit(
        distiller,
        data.x_train,
        train_targets,
        validation_data=(data.x_val, val_targets),
        config=config,
        stage=stage,
        log_dir=log_dir,
        augmentation=augmentation if views is None else None,
        views=views,
    )
    return distiller.student, history


def _training_targets(distiller, teacher, data, cached: dict, augmentation, augment_views: int, seed: int):
    """The training targets, and the cache of augmented views when the teacher's outputs come from one.

    Without augmentation: labels and the teacher's outputs, computed once. With it: labels only
    (the teacher runs on each augmented batch in the training step), or a :class:`ViewCache`.
    """
    if augmentation is None:
        return teacher_targets(teacher, data.x_train, data.y_train, teacher_outputs=cached.get("train")), None
    if augment_views:
        from edgedistill.augment import ViewCache

        views = ViewCache.build(teacher, data.x_train, augmentation, num_views=augment_views, seed=seed)
        return {LABELS: np.asarray(data.y_train)}, views
    if distiller.teacher is None:
        raise InputError(
            f"Augmenting with this teacher ({type(teacher).__name__}: Keras 3 or SavedModel) needs its outputs cached: "
            "it cannot run inside a tf_keras training step. Pass --augment-views N (e.g. 4)."
        )
    return {LABELS: np.asarray(data.y_train)}, None


__all__ = ["Distiller", "distill", "teacher_targets", "find_layer_output", "feature_extractor"]
