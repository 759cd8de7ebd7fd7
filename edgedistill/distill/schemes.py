"""Distillation *schemes*: who teaches whom, on what data, in which order.

A loss (``losses.py``) says how a student is pulled towards a teacher; a scheme arranges the
training around it. Every scheme returns ``(student, history)`` like :func:`edgedistill.distill.distill`
and is registered in ``SCHEMES`` under the name used by ``--scheme`` / YAML ``scheme:``:

==================  ======================================================================
``standard``        one frozen teacher, cached outputs (:func:`edgedistill.distill.distill`)
``multi_teacher``   several teachers, soft targets averaged (optionally weighted)
``self``            self-distillation: an EMA copy of the student (``mode=ema``) or its
                    previous generation (``mode=born_again``) is the teacher
``mutual``          deep mutual learning: two (or more) students teach each other, no teacher
``teacher_assistant``  teacher -> assistant(s) -> student
``patient``         "patient and consistent": teacher and student see the same mixup/
                    augmented batch every step, pure function matching, long schedules
``data_free``       DeepInversion-style synthetic inputs from the teacher, then distillation
==================  ======================================================================

Every scheme trains a tf_keras student, so each composes with QAT (``quantize_model`` on the
result, then :func:`edgedistill.quantize.quantize_distill` with the same losses) and pruning.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from edgedistill._keras import keras, tf
from edgedistill.distill.distiller import Distiller, teacher_targets
from edgedistill.distill.losses import LogitsDistillation, get_loss, parse_arguments
from edgedistill.errors import InputError
from edgedistill.models import model_output_classes, predict_logits
from edgedistill.registry import Registry

SCHEMES: Registry[Callable[..., Any]] = Registry("distillation scheme")


def _config(config):
    from edgedistill.training import TrainConfig

    return config or TrainConfig()


def _compile(model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def _temperature_of(distillation_losses) -> float:
    losses = distillation_losses if isinstance(distillation_losses, (list, tuple)) else [distillation_losses]
    for loss in losses:
        if loss is None:
            continue
        loss = get_loss(loss)
        if isinstance(loss, LogitsDistillation):
            return loss.temperature
    return 1.0


# ---------------------------------------------------------------------------------------
# Multi-teacher


def check_same_classes(models: Sequence, *, role: str = "teacher") -> int | None:
    """All models output the same number of classes; returns it (None when unknown)."""
    classes = [model_output_classes(model) for model in models]
    known = {c for c in classes if c is not None}
    if len(known) > 1:
        listing = ", ".join(f"{role} {index + 1}: {c}" for index, c in enumerate(classes))
        raise InputError(
            f"The {role}s output different numbers of classes ({listing}); every {role} must be trained on the same classes."
        )
    return known.pop() if known else None


def ensemble_logits(
    logits: Sequence[np.ndarray], *, weights: Sequence[float] | None = None, temperature: float = 1.0
) -> np.ndarray:
    """Soft targets of an ensemble, as logits.

    ``p = sum_i w_i softmax(z_i / T)`` (weights normalised to sum 1); returned as ``T * log p``
    so that :class:`LogitsDistillation` at the same ``T`` sees exactly ``p``
    (``softmax(T log p / T) = p``). Averaging probabilities, not logits, is the usual
    multi-teacher target (Hinton et al. 2015 section 3; You et al. 2017).
    """
    logits = [np.asarray(z, dtype=np.float64) for z in logits]
    shapes = {z.shape for z in logits}
    if len(shapes) != 1:
        raise InputError(
            f"The teachers' outputs have different shapes {sorted(shapes)}; they must classify the same samples into the same classes."
        )
    weights = np.ones(len(logits)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(logits) or np.any(weights < 0) or weights.sum() <= 0:
        raise InputError(f"`teacher_weights` must hold {len(logits)} non-negative numbers, not all 0. Received: {list(weights)}.")
    weights = weights / weights.sum()
    probabilities = np.zeros_like(logits[0])
    for weight, z in zip(weights, logits):
        shifted = z / temperature - (z / temperature).max(axis=-1, keepdims=True)
        probabilities += weight * np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    return (temperature * np.log(np.clip(probabilities, 1e-12, 1.0))).astype(np.float32)


class EnsembleTeacher(keras.Model):
    """Several tf_keras teachers as one: outputs ``T * log(sum_i w_i softmax(z_i / T))`` (see :func:`ensemble_logits`).

    Usable wherever a teacher runs per batch (e.g. the ``patient`` scheme).
    """

    def __init__(
        self,
        teachers: Sequence[keras.Model],
        *,
        weights: Sequence[float] | None = None,
        temperature: float = 1.0,
        name: str = "ensemble_teacher",
    ) -> None:
        super().__init__(name=name)
        if len(teachers) < 1:
            raise InputError("An ensemble needs at least one teacher.")
        self.num_classes = check_same_classes(teachers)
        self.teachers = list(teachers)
        for teacher in self.teachers:
            teacher.trainable = False
        weights = [1.0] * len(teachers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(teachers) or min(weights) < 0 or sum(weights) <= 0:
            raise InputError(f"`teacher_weights` must hold {len(teachers)} non-negative numbers, not all 0. Received: {weights}.")
        self.teacher_weights = [w / sum(weights) for w in weights]
        self.temperature = float(temperature)

    def call(self, inputs, training=False):
        probabilities = 0.0
        for weight, teacher in zip(self.teacher_weights, self.teachers):
            probabilities += weight * tf.nn.softmax(teacher(inputs, training=False) / self.temperature, axis=-1)
        return self.temperature * tf.math.log(tf.maximum(probabilities, 1e-12))

    @property
    def output_shape(self):
        return (None, self.num_classes)


@SCHEMES.register("multi_teacher")
def distill_multi_teacher(
    teachers: Sequence,
    student: keras.Model,
    data,
    *,
    teacher_weights: Sequence[float] | None = None,
    distillation_losses=None,
    student_loss_weight: float = 0.5,
    config=None,
    teacher_outputs: Sequence[dict] | None = None,
    stage: str = "distill",
    log_dir=None,
):
    """Distill from several teachers whose soft targets are averaged (weighted by ``teacher_weights``).

    The ensemble's targets are cached once (see :func:`ensemble_logits`); teachers may be
    any kind (tf_keras, Keras 3, SavedModel). All must output the same classes.

    Example::

        student, history = distill_multi_teacher([cnn_teacher, dscnn_teacher], student, data,
                                                 teacher_weights=[2, 1], distillation_losses=[LogitsDistillation(4)])
    """
    from edgedistill.distill import distill

    teachers = list(teachers) if isinstance(teachers, (list, tuple)) else [teachers]
    check_same_classes(teachers)
    distillation_losses = distillation_losses or [LogitsDistillation()]
    temperature = _temperature_of(distillation_losses)
    outputs = {}
    for split, x in (("train", data.x_train), ("val", data.x_val)):
        per_teacher = [
            (teacher_outputs[index][split] if teacher_outputs else predict_logits(teacher, x))
            for index, teacher in enumerate(teachers)
        ]
        classes = {z.shape[-1] for z in per_teacher}
        if len(classes) > 1:
            listing = ", ".join(f"teacher {index + 1}: {z.shape[-1]}" for index, z in enumerate(per_teacher))
            raise InputError(
                f"The teachers output different numbers of classes ({listing}); every teacher must be trained on the same classes."
            )
        outputs[split] = ensemble_logits(per_teacher, weights=teacher_weights, temperature=temperature)
    return distill(
        teachers[0],
        student,
        data,
        distillation_losses=distillation_losses,
        student_loss_weight=student_loss_weight,
        config=config,
        teacher_outputs=outputs,
        stage=stage,
        log_dir=log_dir,
    )


# ---------------------------------------------------------------------------------------
# Self-distillation


class EMADistiller(Distiller):
    """Self-distillation from an exponential moving average of the student (Mean Teacher:
    Tarvainen & Valpola 2017; as self-distillation e.g. Caron et al. 2021).

    After every step ``theta_t <- d * theta_t + (1 - d) * theta_s`` (all weights, batch-norm
    statistics included); the EMA teacher runs on every batch.
    """

    def __init__(self, student: keras.Model, *, ema_decay: float = 0.99, **kwargs) -> None:
        if not 0.0 < ema_decay < 1.0:
            raise InputError(f"`ema_decay` must be in (0, 1). Received: ema_decay={ema_decay}. Typical: 0.99 to 0.999.")
        teacher = keras.models.clone_model(student)
        teacher.set_weights(student.get_weights())
        super().__init__(teacher, student, **kwargs)
        self.ema_decay = float(ema_decay)

    def _after_train_step(self) -> None:
        super()._after_train_step()
        for teacher_weight, student_weight in zip(self.teacher.weights, self.student.weights):
            teacher_weight.assign(self.ema_decay * teacher_weight + (1.0 - self.ema_decay) * student_weight)


@SCHEMES.register("self")
def self_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    mode: str = "ema",
    ema_decay: float = 0.99,
    generations: int = 2,
    build_student: Callable[[], keras.Model] | None = None,
    distillation_losses=None,
    student_loss_weight: float = 0.5,
    config=None,
    stage: str = "distill",
    log_dir=None,
):
    """Self-distillation: the student's own earlier self teaches it (``teacher`` is ignored).

    - ``mode="ema"``: an EMA copy of the student is the teacher (see :class:`EMADistiller`);
    - ``mode="born_again"`` (Furlanello et al. 2018, "Born-Again Neural Networks"):
      generation 0 is trained on labels; generation ``k`` is a fresh student of the same
      architecture distilled from generation ``k-1``; ``generations`` distilled generations.
    """
    from edgedistill.distill import distill
    from edgedistill.training import fit, set_seed, train_classifier

    config = _config(config)
    if mode == "ema":
        set_seed(config.seed)
        distiller = EMADistiller(
            student,
            ema_decay=ema_decay,
            distillation_losses=distillation_losses or [LogitsDistillation()],
            student_loss_weight=student_loss_weight,
        )
        _compile(distiller, config.learning_rate)
        history = fit(
            distiller,
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            config=config,
            stage=stage,
            log_dir=log_dir,
        )
        return distiller.student, history
    if mode == "born_again":
        if not isinstance(generations, int) or generations < 1:
            raise InputError(f"`generations` must be an integer >= 1. Received: generations={generations!r}.")
        build_student = build_student or (lambda: keras.models.clone_model(student))
        history = train_classifier(student, data, config=config, stage=f"{stage}_generation0", log_dir=log_dir)
        previous = student
        for generation in range(1, generations + 1):
            current = build_student()
            current, history = distill(
                previous,
                current,
                data,
                distillation_losses=distillation_losses,
                student_loss_weight=student_loss_weight,
                config=config,
                stage=f"{stage}_generation{generation}",
                log_dir=log_dir,
            )
            previous = current
        return previous, history
    raise InputError(f"Unknown self-distillation mode {mode!r}. Expected one of: ema, born_again.")


# ---------------------------------------------------------------------------------------
# Deep mutual learning


class MutualLearner(keras.Model):
    """Deep mutual learning (Zhang, Xiang, Hospedales & Lu 2018, "Deep Mutual Learning").

    ``K`` students train together; student ``k`` minimises
    ``L_k = CE(y, z_k) + 1/(K-1) * sum_{l != k} T^2 KL(softmax(z_l / T) || softmax(z_k / T))``
    with the peers' predictions held fixed (stop-gradient). All students update in one step
    (the paper alternates; the joint update is the common implementation). Metrics:
    ``accuracy`` is student 0's, ``peer<k>_accuracy`` the others'.
    """

    def __init__(self, students: Sequence[keras.Model], *, temperature: float = 1.0, name: str = "mutual_learner") -> None:
        super().__init__(name=name)
        if len(students) < 2:
            raise InputError(f"Mutual learning needs at least 2 students; received {len(students)}.")
        check_same_classes(students, role="student")
        self.students = list(students)
        self.temperature = float(temperature)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.peer_accuracy = [keras.metrics.SparseCategoricalAccuracy(name=f"peer{k}_accuracy") for k in range(1, len(students))]

    def call(self, inputs, training=None):
        return self.students[0](inputs, training=training)

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.distillation_loss_tracker, *self.peer_accuracy] + self.compiled_metrics.metrics

    def _mutual_losses(self, labels, outputs):
        distillation = LogitsDistillation(self.temperature)
        total, kl_total = 0.0, 0.0
        for k, z_k in enumerate(outputs):
            kl = tf.add_n(
                [distillation.compute_loss(tf.stop_gradient(z_l), z_k) for other, z_l in enumerate(outputs) if other != k]
            ) / (len(outputs) - 1)
            total += self.loss_fn(labels, z_k) + kl
            kl_total += kl
        return total, kl_total / len(outputs)

    def _update(self, labels, outputs, total, kl):
        self.total_loss_tracker.update_state(total)
        self.distillation_loss_tracker.update_state(kl)
        for metric, z in zip(self.peer_accuracy, outputs[1:]):
            metric.update_state(labels, z)
        self.compiled_metrics.update_state(labels, outputs[0])
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            outputs = [student(x, training=True) for student in self.students]
            total, kl = self._mutual_losses(labels, outputs)
            regularization = [loss for student in self.students for loss in student.losses]
            objective = total + (tf.add_n(regularization) if regularization else 0.0)
        variables = [v for student in self.students for v in student.trainable_variables]
        self.optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))
        return self._update(labels, outputs, total, kl)

    def test_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = [student(x, training=False) for student in self.students]
        total, kl = self._mutual_losses(labels, outputs)
        return self._update(labels, outputs, total, kl)


@SCHEMES.register("mutual")
def mutual_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    peers: Sequence[keras.Model] | None = None,
    temperature: float = 1.0,
    config=None,
    stage: str = "distill",
    log_dir=None,
):
    """Deep mutual learning of ``student`` with ``peers`` (default: one fresh copy of the student's
    architecture); see :class:`MutualLearner`. No pretrained teacher is needed (``teacher`` is
    ignored). Returns ``(student, history)``; the peers are trained in place (pass your own
    ``peers`` list to keep them).
    """
    from edgedistill.training import fit, set_seed

    config = _config(config)
    set_seed(config.seed)
    peers = list(peers) if peers else [keras.models.clone_model(student)]
    learner = _compile(MutualLearner([student, *peers], temperature=temperature), config.learning_rate)
    history = fit(
        learner, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), config=config, stage=stage, log_dir=log_dir
    )
    return student, history


# ---------------------------------------------------------------------------------------
# Teacher assistant


@SCHEMES.register("teacher_assistant")
def teacher_assistant_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    assistants: Sequence[keras.Model] = (),
    distillation_losses=None,
    student_loss_weight: float = 0.5,
    config=None,
    teacher_outputs: dict | None = None,
    stage: str = "distill",
    log_dir=None,
):
    """Progressive distillation through teacher assistants (Mirzadeh et al. 2020, "Improved
    Knowledge Distillation via Teacher Assistant").

    ``teacher -> assistants[0] -> ... -> student``: each model is distilled (same losses) from
    the previous one, which bridges a capacity gap too wide for one step. The sizes are the
    user's (order them from large to small). Returns ``(student, history of the last step)``;
    each step's history is under ``history["chain"]``.
    """
    from edgedistill.distill import distill

    if not assistants:
        raise InputError("The teacher-assistant scheme needs at least one assistant model (e.g. assistant_widths=0.5).")
    current_teacher, outputs = teacher, teacher_outputs
    chain = []
    for index, model in enumerate([*assistants, student]):
        check_same_classes([teacher, model], role="model")
        trained, history = distill(
            current_teacher,
            model,
            data,
            distillation_losses=distillation_losses,
            student_loss_weight=student_loss_weight,
            config=config,
            teacher_outputs=outputs,
            stage=f"{stage}_step{index + 1}",
            log_dir=log_dir,
        )
        chain.append(
            {
                "model": trained.name,
                "parameters": int(trained.count_params()),
                "best_val_accuracy": max(history.get("val_accuracy", [0.0])) * 100.0,
            }
        )
        current_teacher, outputs = trained, None
    history = dict(history)
    history["chain"] = chain
    return current_teacher, history


# ---------------------------------------------------------------------------------------
# Patient and consistent (function matching with mixup)


def _beta(alpha: float, shape):
    first = tf.random.gamma(shape, alpha)
    second = tf.random.gamma(shape, alpha)
    return first / (first + second)


class ConsistentDistiller(Distiller):
    """ "Knowledge distillation: a good teacher is patient and consistent" (Beyer et al. 2022).

    Every step the *same* augmented batch goes to teacher and student (the teacher runs per
    batch; nothing is cached): random translation, then mixup
    ``x = lambda x_i + (1 - lambda) x_j`` with ``lambda ~ Beta(alpha, alpha)`` per sample.
    The paper's "function matching" uses only the KL term (``student_loss_weight=0``, the
    default of :func:`patient_distill`); with a label term the mixed labels' cross entropy
    ``lambda CE(y_i) + (1 - lambda) CE(y_j)`` is used. Patience = long schedules: give many epochs.
    """

    def __init__(self, teacher, student, *, mixup_alpha: float = 1.0, translation: float = 0.1, **kwargs) -> None:
        super().__init__(teacher, student, **kwargs)
        if self.teacher is None:
            raise InputError(
                "The patient-and-consistent scheme runs the teacher on every augmented batch; it needs a tf_keras teacher."
            )
        if mixup_alpha < 0:
            raise InputError(f"`mixup_alpha` must be >= 0 (0 disables mixup). Received: mixup_alpha={mixup_alpha}.")
        self.mixup_alpha = float(mixup_alpha)
        self.augment = keras.Sequential(
            [keras.layers.RandomTranslation(translation, translation, fill_mode="constant")] if translation > 0 else [],
            name="augment",
        )

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels, _ = self._split_targets(y)
        x = self.augment(x, training=True) if self.augment.layers else x
        batch = tf.shape(x)[0]
        if self.mixup_alpha > 0:
            lam = _beta(self.mixup_alpha, [batch])
            order = tf.random.shuffle(tf.range(batch))
            lam_x = tf.reshape(lam, [-1] + [1] * (len(x.shape) - 1))
            x = lam_x * x + (1.0 - lam_x) * tf.gather(x, order)
        else:
            lam, order = tf.ones([batch]), tf.range(batch)
        with tf.GradientTape() as tape:
            student_outputs, student_features, teacher_outputs, teacher_features = self._forward(x, None, training=True)
            if teacher_outputs is None:
                teacher_outputs = tf.stop_gradient(self.teacher(x, training=False))
            _, _, distillation_loss = self._compute_losses(
                labels, student_outputs, teacher_outputs, student_features, teacher_features
            )
            per_sample = keras.losses.sparse_categorical_crossentropy
            student_loss = tf.reduce_mean(
                lam * per_sample(labels, student_outputs, from_logits=True)
                + (1.0 - lam) * per_sample(tf.gather(labels, order), student_outputs, from_logits=True)
            )
            total = self.student_loss_weight * student_loss + (1.0 - self.student_loss_weight) * distillation_loss
            objective = total + (tf.add_n(self.student.losses) if self.student.losses else 0.0)
        variables = self.trainable_weights_to_update
        self.optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))
        return self._update(labels, student_outputs, total, student_loss, distillation_loss)


@SCHEMES.register("patient")
def patient_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    mixup_alpha: float = 1.0,
    translation: float = 0.1,
    distillation_losses=None,
    student_loss_weight: float = 0.0,
    config=None,
    stage: str = "distill",
    log_dir=None,
):
    """Patient and consistent distillation (see :class:`ConsistentDistiller`); returns ``(student, history)``.

    The training accuracy it logs is measured on mixed inputs against the first image's label,
    so it is lower than the validation accuracy, which is measured on clean images.
    """
    from edgedistill.training import fit, set_seed

    config = _config(config)
    set_seed(config.seed)
    distiller = ConsistentDistiller(
        teacher,
        student,
        mixup_alpha=mixup_alpha,
        translation=translation,
        distillation_losses=distillation_losses or [LogitsDistillation(1.0)],
        student_loss_weight=student_loss_weight,
    )
    _compile(distiller, config.learning_rate)
    val_targets = teacher_targets(teacher, data.x_val, data.y_val)
    history = fit(
        distiller,
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, val_targets),
        config=config,
        stage=stage,
        log_dir=log_dir,
    )
    return distiller.student, history


# ---------------------------------------------------------------------------------------
# Data-free distillation


def synthesize_inputs(
    teacher: keras.Model,
    *,
    num_samples: int,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    steps: int = 200,
    batch_size: int = 128,
    learning_rate: float = 0.1,
    bn_weight: float = 1.0,
    tv_weight: float = 1e-3,
    l2_weight: float = 1e-5,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Synthetic inputs the teacher classifies confidently, DeepInversion-style (Yin et al. 2020,
    "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion").

    Inputs ``x = sigmoid(v)`` (kept in [0, 1] like the data loaders' images), each assigned a
    target class ``c`` (classes in turn), optimise with Adam::

        L(x) = CE(teacher(x), c)
             + bn_weight * sum_l ( ||mu_l(x) - mu_l||_2 + ||sigma^2_l(x) - sigma^2_l||_2 )
             + tv_weight * TV(x) + l2_weight * ||x||^2

    where ``mu_l, sigma^2_l`` are the running statistics of the teacher's batch-norm layer ``l``
    and ``mu_l(x), sigma^2_l(x)`` the statistics of its input on the synthetic batch. A teacher
    without batch-norm layers gets the output term and the priors only (reported in ``info``).
    Returns ``(x, info)``.
    """
    if not isinstance(teacher, keras.Model) or not getattr(teacher, "_is_graph_network", False):
        raise InputError("Data-free synthesis optimises inputs through the teacher; it needs a functional tf_keras teacher.")
    if num_samples < 1:
        raise InputError(f"`num_samples` must be >= 1. Received: num_samples={num_samples}.")
    num_classes = num_classes or model_output_classes(teacher)
    batch_norms = [layer for layer in teacher.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(teacher.inputs, [teacher.outputs[0], *[layer.input for layer in batch_norms]])
    probe.trainable = False
    statistics = [(tf.constant(layer.moving_mean), tf.constant(layer.moving_variance)) for layer in batch_norms]
    rng = np.random.default_rng(seed)
    optimizer_steps = int(steps)

    def total_variation(x):
        return tf.reduce_mean(tf.abs(x[:, 1:] - x[:, :-1])) + tf.reduce_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1]))

    def step(variable, targets, optimizer):
        with tf.GradientTape() as tape:
            x = tf.sigmoid(variable)
            outputs = probe(x, training=False)
            logits, inputs = outputs[0], outputs[1:]
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
            bn_loss = 0.0
            for features, (mean, variance) in zip(inputs, statistics):
                axes = list(range(len(features.shape) - 1))
                batch_mean, batch_variance = tf.nn.moments(features, axes=axes)
                bn_loss += tf.norm(batch_mean - mean) + tf.norm(batch_variance - variance)
            total = loss + bn_weight * bn_loss + tv_weight * total_variation(x) + l2_weight * tf.reduce_mean(tf.square(x))
            # Under a tf.distribute strategy every replica optimises the same inputs and the
            # optimizer sums their gradients: divide, as the Distiller does.
            total = total / strategy.num_replicas_in_sync
        optimizer.apply_gradients([(tape.gradient(total, variable), variable)])
        return loss, bn_loss

    # The current strategy (the default one outside any scope) runs the step in its replica
    # context, where optimizers may update (mirrored) variables.
    strategy = tf.distribute.get_strategy()

    batches, final_ce, final_bn = [], [], []
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        targets = tf.constant((np.arange(start, start + count) % num_classes).astype(np.int64))
        variable = tf.Variable(rng.normal(0.0, 1.0, size=(count, *input_shape)).astype(np.float32))
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build([variable])  # its slots must exist before tracing
        compiled = tf.function(functools.partial(strategy.run, functools.partial(step, variable, targets, optimizer)))
        for _ in range(optimizer_steps):
            ce, bn = compiled()
        batches.append(tf.sigmoid(tf.convert_to_tensor(variable)).numpy())
        final_ce.append(float(strategy.experimental_local_results(ce)[0]))
        final_bn.append(float(strategy.experimental_local_results(bn)[0]))
    x = np.concatenate(batches).astype(np.float32)
    predictions = predict_logits(teacher, x).argmax(axis=-1)
    wanted = np.arange(num_samples) % num_classes
    info = {
        "num_samples": int(num_samples),
        "steps": optimizer_steps,
        "num_batch_norm_layers": len(batch_norms),
        "final_cross_entropy": float(np.mean(final_ce)),
        "final_bn_loss": float(np.mean(final_bn)),
        "teacher_agrees_with_target_percent": float((predictions == wanted).mean() * 100.0),
    }
    return x, info


@SCHEMES.register("data_free")
def data_free_distill(
    teacher,
    student: keras.Model,
    data,
    *,
    num_samples: int = 2000,
    steps: int = 200,
    bn_weight: float = 1.0,
    distillation_losses=None,
    student_loss_weight: float = 0.0,
    config=None,
    stage: str = "distill",
    log_dir=None,
):
    """Distill without the training data: synthesise inputs from the teacher
    (:func:`synthesize_inputs`), then distill on them with the teacher's cached outputs.

    ``data`` is used only for its input shape and number of classes (and its test split, by
    the caller, for evaluation): no training or validation image reaches the student.
    Validation (early stopping) uses 10 % of the synthetic set labelled by the teacher.
    The synthesis figures are in ``history["synthesis"]``; the synthetic set and the teacher's
    logits on it in ``history["synthetic_data"]`` / ``["synthetic_teacher_outputs"]`` (the
    pipeline quantizes on them).
    """
    from edgedistill.data import Dataset
    from edgedistill.distill import distill

    config = _config(config)
    x, info = synthesize_inputs(
        teacher,
        num_samples=int(num_samples),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        steps=int(steps),
        bn_weight=float(bn_weight),
        seed=config.seed,
    )
    logits = predict_logits(teacher, x)
    labels = logits.argmax(axis=-1).astype(np.int64)
    order = np.random.default_rng(config.seed).permutation(len(x))
    num_val = max(1, len(x) // 10)
    val, train = order[:num_val], order[num_val:]
    synthetic = Dataset(
        name=f"synthetic({data.name})",
        x_train=x[train],
        y_train=labels[train],
        x_val=x[val],
        y_val=labels[val],
        x_test=data.x_test,
        y_test=data.y_test,
        num_classes=data.num_classes,
        class_names=data.class_names,
    )
    student, history = distill(
        teacher,
        student,
        synthetic,
        distillation_losses=distillation_losses,
        student_loss_weight=student_loss_weight,
        config=config,
        teacher_outputs={"train": logits[train], "val": logits[val]},
        stage=stage,
        log_dir=log_dir,
    )
    history = dict(history)
    history["synthesis"] = info
    # For the stages after distillation (QAT, int8 calibration), which must not see real data either.
    history["synthetic_data"] = synthetic
    history["synthetic_teacher_outputs"] = {"train": logits[train], "val": logits[val]}
    return student, history


@SCHEMES.register("standard")
def standard_distill(teacher, student, data, **options):
    """One frozen teacher with cached outputs: :func:`edgedistill.distill.distill`."""
    from edgedistill.distill import distill

    return distill(teacher, student, data, **options)


# ---------------------------------------------------------------------------------------
# Entry point used by the pipeline (--scheme, --scheme-options)


def run_scheme(
    name: str,
    teacher,
    student: keras.Model,
    data,
    *,
    options: str | dict | None = None,
    distillation_losses=None,
    student_loss_weight: float = 0.5,
    config=None,
    teacher_outputs: dict | None = None,
    stage: str = "distill",
    log_dir=None,
):
    """Run a registered scheme by name with options from ``"key=value,..."`` (or a dict).

    Pipeline-level options: ``teachers=a.keras|b.keras`` and ``teacher_weights=2|1``
    (multi_teacher: extra teachers besides the main one), ``assistant_widths=0.5|0.25`` and
    ``assistant_preset=cnn`` (teacher_assistant), ``peer_width`` (mutual, default the student's).
    """
    scheme = SCHEMES.get(name)
    options = parse_arguments(options, what="scheme options") if isinstance(options, str) else dict(options or {})
    common = dict(
        distillation_losses=distillation_losses,
        student_loss_weight=student_loss_weight,
        config=config,
        stage=stage,
        log_dir=log_dir,
    )
    if name == "standard":
        return scheme(teacher, student, data, teacher_outputs=teacher_outputs, **common, **options)
    if name == "multi_teacher":
        from edgedistill.models import load_model_file

        paths = [p for p in str(options.pop("teachers", "")).split("|") if p]
        if not paths:
            raise InputError("The multi_teacher scheme needs extra teachers: --scheme-options 'teachers=a.keras|b.keras'.")
        weights = options.pop("teacher_weights", None)
        weights = [float(w) for w in str(weights).split("|")] if weights is not None else None
        teachers = [teacher, *[load_model_file(path) for path in paths]]
        return scheme(teachers, student, data, teacher_weights=weights, **common, **options)
    if name == "teacher_assistant":
        from edgedistill.models import build_model

        widths = [float(w) for w in str(options.pop("assistant_widths", "")).split("|") if w]
        if not widths:
            raise InputError(
                "The teacher_assistant scheme needs assistant sizes: --scheme-options 'assistant_widths=0.5' (widths of the preset, large to small)."
            )
        preset = options.pop("assistant_preset", "cnn")
        assistants = [
            build_model(preset, data.input_shape, data.num_classes, width=w, name=f"assistant{i + 1}")
            for i, w in enumerate(widths)
        ]
        return scheme(teacher, student, data, assistants=assistants, teacher_outputs=teacher_outputs, **common, **options)
    if name == "mutual":
        common.pop("distillation_losses"), common.pop("student_loss_weight")
        return scheme(
            teacher,
            student,
            data,
            temperature=_temperature_of(distillation_losses) if distillation_losses else 1.0,
            **common,
            **options,
        )
    try:
        return scheme(teacher, student, data, **common, **options)
    except TypeError as error:
        raise InputError(f"Bad options for scheme {name!r}: {error}.") from None


__all__ = [
    "SCHEMES",
    "run_scheme",
    "EnsembleTeacher",
    "ensemble_logits",
    "distill_multi_teacher",
    "EMADistiller",
    "self_distill",
    "MutualLearner",
    "mutual_distill",
    "teacher_assistant_distill",
    "ConsistentDistiller",
    "patient_distill",
    "synthesize_inputs",
    "data_free_distill",
    "standard_distill",
    "check_same_classes",
]
