"""Distillation losses: how a student is pulled towards its teacher.

Each loss is a :class:`DistillationLoss` registered under the name users type in the CLI
and YAML (``kind: logits``). The names and signatures follow ``keras.distillation`` so
Keras users find what they know, on tf_keras (Keras 2) because tfmot needs it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from edgedistill.errors import InputError
from edgedistill.registry import Registry

logger = logging.getLogger(__name__)

LOSSES: Registry[type["DistillationLoss"]] = Registry("distillation loss")

#: What ``keras.losses.get`` accepts: a name (``"mse"``), a serialized dict, a Loss instance or a callable.
KerasLossSpec = Any


def keras_loss(spec: KerasLossSpec, *, role: str) -> Callable:
    """A per-sample loss function ``f(y_true, y_pred)`` from anything ``keras.losses.get`` accepts.

    A ``keras.losses.Loss`` instance is rebuilt with ``reduction="none"`` and the caller takes
    the mean: ``tf.distribute`` strategies reject the default reduction inside a custom
    ``train_step``. An unknown name raises :class:`InputError` naming ``role``.
    """
    from edgedistill._keras import keras

    try:
        loss = keras.losses.get(spec)
    except (ValueError, TypeError) as error:
        raise InputError(
            f"{role}: cannot make a Keras loss from {spec!r} ({str(error).splitlines()[0]}). Expected a name keras.losses.get "
            "accepts (e.g. mse, kl_divergence, sparse_categorical_crossentropy), a keras.losses.Loss or a callable."
        ) from None
    if loss is None:
        raise InputError(f"{role}: a loss is needed; received None.")
    if isinstance(loss, keras.losses.Loss):
        try:
            return type(loss).from_config({**loss.get_config(), "reduction": keras.losses.Reduction.NONE})
        except Exception:  # noqa: BLE001 - a user's Loss whose config does not round-trip: use it as given
            logger.debug("Loss %r kept with its own reduction", loss)
    return loss


def keras_loss_config(spec: KerasLossSpec) -> Any:
    """A JSON-friendly form of a Keras loss spec that :func:`keras_loss` accepts back."""
    if spec is None or isinstance(spec, (str, dict)):
        return spec
    from edgedistill._keras import keras

    if isinstance(spec, keras.losses.Loss):
        return keras.losses.serialize(spec)
    return getattr(spec, "__name__", repr(spec))


class DistillationLoss:
    """Base class of distillation losses.

    Subclasses implement :meth:`compute_loss` on teacher and student outputs and return a
    scalar tensor. A loss that matches intermediate layers sets ``teacher_layer_name`` /
    ``student_layer_name``; a loss on final outputs leaves them ``None``, which lets the
    :class:`~edgedistill.distill.distiller.Distiller` cache the teacher's outputs.
    """

    name = "base"
    #: ``"penultimate"`` names the layer that feeds the model's last layer (its embedding).
    PENULTIMATE = "penultimate"
    teacher_layer_name: str | None = None
    student_layer_name: str | None = None

    @property
    def uses_final_outputs(self) -> bool:
        return self.teacher_layer_name is None and self.student_layer_name is None

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        raise NotImplementedError

    def build(self, teacher_shape, student_shape) -> list:
        """Create trainable helper layers (e.g. an adapter) for these feature shapes.

        Called by the Distiller once the shapes of the matched layers are known; returns the
        layers whose weights train with the student (discarded after training). Default: none.
        """
        return []

    def validate_outputs(self, teacher_outputs, student_outputs) -> None:
        teacher_dim, student_dim = teacher_outputs.shape[-1], student_outputs.shape[-1]
        if teacher_dim is not None and student_dim is not None and teacher_dim != student_dim:
            raise InputError(
                f"{type(self).__name__}: the teacher outputs {teacher_dim} values per sample and the student "
                f"{student_dim}; they must match (same number of classes)."
            )

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "DistillationLoss":
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def register_loss(name: str):
    """Class decorator: register a :class:`DistillationLoss` under ``name``."""

    def decorator(cls):
        cls.name = name
        LOSSES.add(name, cls)
        return cls

    return decorator


SCHEDULES = ("linear", "cosine")


def _check_positive_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"`{name}` must be a number. Received: {name}={value!r}.")
    if not value > 0:
        raise InputError(f"`{name}` must be > 0. Received: {name}={value}. Typical values are 1 to 8.")
    return float(value)


class TemperatureLoss(DistillationLoss):
    """Base of the losses on temperature-softened logits (``logits``, ``dkd``, ``dist``, ...).

    Holds the temperature and its optional schedule: with ``final_temperature`` the
    temperature moves from ``temperature`` (first epoch) to ``final_temperature`` (last epoch),
    ``T(p) = T0 + (T1 - T0) * f(p)`` with training progress ``p`` in [0, 1] and
    ``f(p) = p`` (``schedule="linear"``) or ``f(p) = (1 - cos(pi p)) / 2`` (``"cosine"``).
    The :class:`~edgedistill.distill.distiller.Distiller` feeds ``p`` per epoch.
    """

    def __init__(self, temperature: float = 3.0, final_temperature: float | None = None, schedule: str = "linear") -> None:
        self.temperature = _check_positive_number("temperature", temperature)
        self.final_temperature = (
            None if final_temperature is None else _check_positive_number("final_temperature", final_temperature)
        )
        if schedule not in SCHEDULES:
            raise InputError(f"Unknown temperature schedule {schedule!r}. Expected one of: {', '.join(SCHEDULES)}.")
        self.schedule = schedule

    def temperature_at(self, progress):
        """The temperature at training progress ``progress`` in [0, 1] (a float or a tensor)."""
        if self.final_temperature is None or progress is None:
            return self.temperature
        from edgedistill._keras import tf

        progress = tf.clip_by_value(tf.cast(progress, tf.float32), 0.0, 1.0)
        fraction = progress if self.schedule == "linear" else (1.0 - tf.cos(progress * 3.141592653589793)) / 2.0
        return self.temperature + (self.final_temperature - self.temperature) * fraction

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"temperature": self.temperature}
        if self.final_temperature is not None:
            config.update(final_temperature=self.final_temperature, schedule=self.schedule)
        return config


#: Added to a standard deviation's square before the root: keeps the gradient finite for constant logits.
_STD_EPSILON = 1e-12


def standardize_logits(logits):
    """Z-score each row of logits: ``(z - mean(z)) / std(z)`` over the classes (population std).

    The pre-process of logit standardization (Sun et al., CVPR 2024): softmax of the result
    depends on the logits' relations, not on their range, so a small student need not match a
    large teacher's logit magnitude.
    """
    from edgedistill._keras import tf

    centered = logits - tf.reduce_mean(logits, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    return centered / tf.sqrt(variance + _STD_EPSILON)


def _softened(teacher_outputs, student_outputs, temperature, standardize: bool):
    """Teacher and student logits (teacher cast to the student's dtype), optionally z-scored, divided by T."""
    from edgedistill._keras import tf

    teacher = tf.cast(teacher_outputs, student_outputs.dtype)
    student = student_outputs
    if standardize:
        teacher, student = standardize_logits(teacher), standardize_logits(student)
    return teacher / temperature, student / temperature


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"`{name}` must be true or false. Received: {name}={value!r}.")
    return value


@register_loss("logits")
class LogitsDistillation(TemperatureLoss):
    """Soft-target distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

    ``loss = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``, averaged over the batch.
    The ``T^2`` factor keeps the gradient scale of the soft targets independent of the
    temperature, so the weight against the hard-label loss keeps its meaning as T changes.

    Temperature schedule (``final_temperature``, ``schedule``): see :class:`TemperatureLoss`.

    ``standardize=True`` z-scores both logits first (logit standardization, Sun et al. 2024;
    see :class:`LogitStandardization`): ``z -> (z - mean(z)) / std(z)``.

    ``loss`` is what ``keras.distillation.LogitsDistillation`` accepts (anything
    ``keras.losses.get`` takes). The default ``"kl_divergence"`` (or a ``KLDivergence``) is the
    formula above, computed in log space; any other loss is applied as Keras does, to the
    temperature-scaled logits without the ``T^2`` factor: ``mean(loss(z_t / T, z_s / T))``.

    Example::

        loss = LogitsDistillation(temperature=4.0)
        annealed = LogitsDistillation(temperature=8.0, final_temperature=2.0, schedule="cosine")
        squared = LogitsDistillation(temperature=1.0, loss="mse")  # logit matching (Ba & Caruana 2014)
    """

    def __init__(
        self,
        temperature: float = 3.0,
        final_temperature: float | None = None,
        schedule: str = "linear",
        loss: KerasLossSpec = "kl_divergence",
        standardize: bool = False,
    ) -> None:
        super().__init__(temperature, final_temperature, schedule)
        self.loss = loss
        self.standardize = _check_flag("standardize", standardize)
        self._loss_fn = None if _is_kl_divergence(loss) else keras_loss(loss, role="LogitsDistillation `loss`")

    def compute_loss(self, teacher_outputs, student_outputs, progress=None, **kwargs):
        from edgedistill._keras import tf

        temperature = tf.cast(self.temperature_at(progress), student_outputs.dtype)
        teacher_scaled, student_scaled = _softened(teacher_outputs, student_outputs, temperature, self.standardize)
        if self._loss_fn is not None:
            return tf.reduce_mean(tf.cast(self._loss_fn(teacher_scaled, student_scaled), student_outputs.dtype))
        teacher_log_probs = tf.nn.log_softmax(teacher_scaled, axis=-1)
        student_log_probs = tf.nn.log_softmax(student_scaled, axis=-1)
        # KL(p_t || p_s) = sum p_t (log p_t - log p_s); log-space for numerical stability.
        kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
        return tf.reduce_mean(kl) * temperature**2

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if not (isinstance(self.loss, str) and self.loss == "kl_divergence"):
            config["loss"] = keras_loss_config(self.loss)
        if self.standardize:
            config["standardize"] = True
        return config


_KL_NAMES = ("kl_divergence", "kld", "kullback_leibler_divergence")


def _is_kl_divergence(spec: KerasLossSpec) -> bool:
    """True for the names and objects of Keras' KL divergence (checked without importing TensorFlow for names)."""
    if isinstance(spec, str):
        return spec.lower() in _KL_NAMES
    if isinstance(spec, dict):
        return str(spec.get("class_name", "")).lower() in ("kldivergence", *_KL_NAMES)
    from edgedistill._keras import keras

    return spec is keras.losses.kl_divergence or isinstance(spec, keras.losses.KLDivergence)


def _check_layer_name(role: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"`{role}` must be a layer name (a non-empty string). Received: {role}={value!r}.")
    return value


def _match_spatial(teacher, student):
    """Bring 4-D teacher features to the student's height x width (bilinear, antialiased); a
    4-D tensor matched with a 2-D one is global-average pooled."""
    from edgedistill._keras import tf

    if teacher.shape.rank == 4 and student.shape.rank == 2:
        teacher = tf.reduce_mean(teacher, axis=[1, 2])
    elif teacher.shape.rank == 2 and student.shape.rank == 4:
        student = tf.reduce_mean(student, axis=[1, 2])
    elif teacher.shape.rank == 4 and tuple(teacher.shape[1:3]) != tuple(student.shape[1:3]):
        teacher = tf.image.resize(teacher, tuple(student.shape[1:3]), method="bilinear", antialias=True)
    return teacher, student


def _feature_dim(shape) -> int | None:
    return None if shape[-1] is None else int(shape[-1])


#: Feature losses computed here; any other ``loss`` goes through ``keras.losses.get``.
FEATURE_METRICS = ("mse", "cosine")
ADAPTER_MODES = ("auto", "always", "none")


@register_loss("feature")
class FeatureDistillation(DistillationLoss):
    """Feature / hint distillation (FitNets: Romero et al. 2015, "FitNets: Hints for Thin Deep Nets").

    The output ``F_s`` of a student layer (the *guided* layer) is pulled towards the output
    ``F_t`` of a teacher layer (the *hint*) through a learned regressor ``r``:

    - ``loss="mse"``: ``loss = mean((r(F_s) - F_t)^2)`` (FitNets' hint loss, averaged);
    - ``loss="cosine"``: ``loss = mean_i (1 - cos(r(F_s)_i, F_t_i))`` over flattened samples;
    - any other value ``keras.losses.get`` accepts (as ``keras.distillation.FeatureDistillation``
      does, e.g. ``"mae"`` or a ``keras.losses.Huber()``): ``mean(loss(F_t, r(F_s)))``.

    ``metric`` is the former name of ``loss`` and is still accepted.

    ``r`` is a 1x1 convolution (4-D features) or a dense layer (2-D) mapping the student's
    channels to the teacher's; with ``adapter="auto"`` it is only created when the channel
    counts differ (``"always"``: always, ``"none"``: never, shapes must then match). Teacher
    features of another height x width are resized (bilinear) to the student's; a 4-D layer
    matched with a 2-D one is global-average pooled. The adapter trains with the student and
    is not part of the exported model.

    The teacher runs on every batch (its intermediate features are not cached).

    Example::

        loss = FeatureDistillation(teacher_layer_name="block2_relu", student_layer_name="block2_pw_relu")
    """

    def __init__(
        self,
        teacher_layer_name: str = "features",
        student_layer_name: str = "features",
        loss: KerasLossSpec = "mse",
        adapter: str = "auto",
        *,
        metric: str | None = None,
    ) -> None:
        self.teacher_layer_name = _check_layer_name("teacher_layer_name", teacher_layer_name)
        self.student_layer_name = _check_layer_name("student_layer_name", student_layer_name)
        if metric is not None:
            if loss not in ("mse", metric):
                raise InputError(
                    f"FeatureDistillation: give `loss` or its former name `metric`, not both (loss={loss!r}, metric={metric!r})."
                )
            loss = metric
        if adapter not in ADAPTER_MODES:
            raise InputError(f"Unknown adapter mode {adapter!r}. Expected one of: {', '.join(ADAPTER_MODES)}.")
        self.loss = loss
        # mse and cosine are computed below; anything else is a Keras loss (an unknown name fails here).
        self._loss_fn = None if loss in FEATURE_METRICS else keras_loss(loss, role="FeatureDistillation `loss`")
        self.adapter_mode = adapter
        self.adapter: Any = None  # a Keras layer once built for the feature shapes

    def validate_outputs(self, teacher_outputs, student_outputs) -> None:
        self.build(teacher_outputs.shape, student_outputs.shape)

    def build(self, teacher_shape, student_shape) -> list:
        from edgedistill._keras import keras

        teacher_dim, student_dim = _feature_dim(teacher_shape), _feature_dim(student_shape)
        needs_adapter = self.adapter_mode == "always" or (self.adapter_mode == "auto" and teacher_dim != student_dim)
        if not needs_adapter:
            if teacher_dim != student_dim:
                raise InputError(
                    f"FeatureDistillation: teacher layer {self.teacher_layer_name!r} has {teacher_dim} channels and student "
                    f"layer {self.student_layer_name!r} {student_dim}; with adapter='none' they must match. Use adapter='auto'."
                )
            self.adapter = None
            return []
        student_rank = len(student_shape)
        teacher_rank = len(teacher_shape)
        expected_kernel = (
            (1, 1, student_dim, teacher_dim) if student_rank == 4 and teacher_rank == 4 else (student_dim, teacher_dim)
        )
        if self.adapter is not None and tuple(self.adapter.kernel.shape) == expected_kernel:
            # The same loss continues in the QAT stage: keep the adapter learned while distilling.
            return [self.adapter]
        if student_rank == 4 and teacher_rank == 4:
            self.adapter = keras.layers.Conv2D(teacher_dim, 1, use_bias=False, name=f"adapter_{self.student_layer_name}")
            self.adapter.build(tuple(student_shape))
        else:
            self.adapter = keras.layers.Dense(teacher_dim, use_bias=False, name=f"adapter_{self.student_layer_name}")
            self.adapter.build((None, student_dim))
        return [self.adapter]

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        from edgedistill._keras import tf

        teacher, student = _match_spatial(tf.cast(teacher_outputs, student_outputs.dtype), student_outputs)
        if self.adapter is not None:
            student = self.adapter(student)
        if self._loss_fn is not None:
            return tf.reduce_mean(tf.cast(self._loss_fn(teacher, student), student.dtype))
        if self.loss == "mse":
            return tf.reduce_mean(tf.square(student - teacher))
        batch = tf.shape(student)[0]
        teacher_flat = tf.math.l2_normalize(tf.reshape(teacher, [batch, -1]), axis=-1)
        student_flat = tf.math.l2_normalize(tf.reshape(student, [batch, -1]), axis=-1)
        return tf.reduce_mean(1.0 - tf.reduce_sum(teacher_flat * student_flat, axis=-1))

    def get_config(self) -> dict[str, Any]:
        return {
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "loss": keras_loss_config(self.loss),
            "adapter": self.adapter_mode,
        }


@register_loss("attention")
class AttentionTransfer(DistillationLoss):
    """Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention").

    The spatial attention map of a conv activation ``A`` (C x H x W) is
    ``Q = vec(sum_c |A_c|^p)``, normalised ``Q / ||Q||_2``; the loss is
    ``beta / 2 * mean_{batch, positions} (Q_s/||Q_s|| - Q_t/||Q_t||)^2``, as in the authors'
    code (``p = 2``, ``beta = 1000``). Channel counts may differ (the map sums over channels);
    a teacher map of another size is resized to the student's. Both layers must be 4-D.

    Example::

        loss = AttentionTransfer(teacher_layer_name="block2_relu", student_layer_name="block2_relu")
    """

    def __init__(
        self,
        teacher_layer_name: str = "block2_relu",
        student_layer_name: str = "block2_relu",
        p: float = 2.0,
        beta: float = 1000.0,
    ) -> None:
        self.teacher_layer_name = _check_layer_name("teacher_layer_name", teacher_layer_name)
        self.student_layer_name = _check_layer_name("student_layer_name", student_layer_name)
        self.p = _check_positive_number("p", p)
        self.beta = _check_positive_number("beta", beta)

    def validate_outputs(self, teacher_outputs, student_outputs) -> None:
        self.build(teacher_outputs.shape, student_outputs.shape)

    def build(self, teacher_shape, student_shape) -> list:
        for role, name, shape in (
            ("teacher", self.teacher_layer_name, teacher_shape),
            ("student", self.student_layer_name, student_shape),
        ):
            if len(shape) != 4:
                raise InputError(
                    f"AttentionTransfer needs 4-D conv activations; the {role} layer {name!r} outputs shape {tuple(shape)}. "
                    "Choose a convolutional layer (e.g. block2_relu)."
                )
        return []

    def attention_map(self, features):
        from edgedistill._keras import tf

        # mean over channels = sum / C: the same map once normalised, and smaller numbers in float32.
        attention = tf.reduce_mean(tf.pow(tf.abs(features), self.p), axis=-1, keepdims=True)  # NHW1
        return attention

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        from edgedistill._keras import tf

        teacher = self.attention_map(tf.cast(teacher_outputs, student_outputs.dtype))
        student = self.attention_map(student_outputs)
        if tuple(teacher.shape[1:3]) != tuple(student.shape[1:3]):
            teacher = tf.image.resize(teacher, tuple(student.shape[1:3]), method="bilinear", antialias=True)
        batch = tf.shape(student)[0]
        teacher = tf.math.l2_normalize(tf.reshape(teacher, [batch, -1]), axis=-1)
        student = tf.math.l2_normalize(tf.reshape(student, [batch, -1]), axis=-1)
        return self.beta / 2.0 * tf.reduce_mean(tf.square(student - teacher))

    def get_config(self) -> dict[str, Any]:
        return {
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "p": self.p,
            "beta": self.beta,
        }


def _pairwise_distances(embeddings):
    from edgedistill._keras import tf

    squared = tf.reduce_sum(tf.square(embeddings), axis=-1)
    distances = squared[:, None] + squared[None, :] - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True)
    # sqrt has an infinite gradient at 0 (the diagonal): clamp, then zero the diagonal.
    distances = tf.sqrt(tf.maximum(distances, 1e-12))
    return distances * (1.0 - tf.eye(tf.shape(embeddings)[0], dtype=embeddings.dtype))


def _huber(a, b):
    from edgedistill._keras import tf

    difference = tf.abs(a - b)
    return tf.reduce_mean(tf.where(difference < 1.0, 0.5 * tf.square(difference), difference - 0.5))


@register_loss("rkd")
class RelationalDistillation(DistillationLoss):
    """Relational knowledge distillation, distance and angle (Park, Kim, Lu & Cho 2019, "Relational Knowledge Distillation").

    On embeddings ``t_i`` / ``s_i`` (by default the penultimate layer: the input of the last
    layer; any dimensions), with Huber loss ``l_delta`` (delta = 1):

    - distance: ``psi_D(t_i, t_j) = ||t_i - t_j||_2 / mu`` with ``mu`` the mean distance of
      the batch's pairs; ``L_D = mean l_delta(psi_D(s_i, s_j), psi_D(t_i, t_j))``;
    - angle: ``psi_A(t_i, t_j, t_k) = <e_ij, e_kj>`` with ``e_ij = (t_i - t_j)/||t_i - t_j||``;
      ``L_A = mean l_delta(psi_A(s), psi_A(t))``;

    ``loss = distance_weight * L_D + angle_weight * L_A`` (the paper's 25 and 50 by default).
    Features of more than 2 dimensions are flattened.

    Example::

        loss = RelationalDistillation()  # penultimate embeddings of both models
    """

    def __init__(
        self,
        teacher_layer_name: str = DistillationLoss.PENULTIMATE,
        student_layer_name: str = DistillationLoss.PENULTIMATE,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
    ) -> None:
        self.teacher_layer_name = _check_layer_name("teacher_layer_name", teacher_layer_name)
        self.student_layer_name = _check_layer_name("student_layer_name", student_layer_name)
        for name, value in (("distance_weight", distance_weight), ("angle_weight", angle_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"`{name}` must be a number >= 0. Received: {name}={value!r}.")
        if distance_weight == 0 and angle_weight == 0:
            raise InputError("RelationalDistillation: `distance_weight` and `angle_weight` are both 0; set at least one > 0.")
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)

    def validate_outputs(self, teacher_outputs, student_outputs) -> None:
        return None  # any embedding sizes

    @staticmethod
    def _distance_potential(embeddings):
        from edgedistill._keras import tf

        distances = _pairwise_distances(embeddings)
        num_pairs = tf.cast(tf.shape(embeddings)[0] * (tf.shape(embeddings)[0] - 1), embeddings.dtype)
        mean = tf.reduce_sum(distances) / tf.maximum(num_pairs, 1.0)
        return distances / tf.maximum(mean, 1e-8)

    @staticmethod
    def _angle_potential(embeddings):
        from edgedistill._keras import tf

        differences = embeddings[None, :, :] - embeddings[:, None, :]  # [j, i, d] = e_i - e_j
        unit = tf.math.l2_normalize(differences, axis=-1)
        return tf.matmul(unit, unit, transpose_b=True)  # [j, i, k] = <e_ij, e_kj>

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        from edgedistill._keras import tf

        batch = tf.shape(student_outputs)[0]
        teacher = tf.reshape(tf.cast(teacher_outputs, student_outputs.dtype), [batch, -1])
        student = tf.reshape(student_outputs, [batch, -1])
        loss = tf.constant(0.0, dtype=student.dtype)
        if self.distance_weight:
            loss += self.distance_weight * _huber(
                self._distance_potential(student), tf.stop_gradient(self._distance_potential(teacher))
            )
        if self.angle_weight:
            loss += self.angle_weight * _huber(self._angle_potential(student), tf.stop_gradient(self._angle_potential(teacher)))
        return loss

    def get_config(self) -> dict[str, Any]:
        return {
            "teacher_layer_name": self.teacher_layer_name,
            "student_layer_name": self.student_layer_name,
            "distance_weight": self.distance_weight,
            "angle_weight": self.angle_weight,
        }


@register_loss("logit_standardization")
class LogitStandardization(LogitsDistillation):
    """Knowledge distillation with logit standardization (Sun, Ren, Li, Wang & Cao, CVPR 2024,
    "Logit Standardization in Knowledge Distillation").

    Both logits are z-scored per sample before the softened softmax,
    ``Z(z) = (z - mean(z)) / std(z)`` (mean and population standard deviation over the K
    classes), then ``loss = T^2 * KL(softmax(Z(z_t) / T) || softmax(Z(z_s) / T))``, averaged
    over the batch. Each model thus gets its own effective temperature ``T * std(z)``: the
    student matches the teacher's logit *relations*, not their range, which a small student
    often cannot reach. ``T`` is the paper's base temperature (2 in its CIFAR-100 runs).

    It is ``logits`` with ``standardize=True`` (the paper's pre-process applies to any logit
    loss: ``dkd:standardize=true`` is DKD with it), registered under its own name so users find
    the method. Note: the paper's code weights the KD term 9 against 1 for the hard-label loss
    (``--student-loss-weight 0.1`` here) and uses the unbiased standard deviation, the same up
    to a factor ``sqrt(K/(K-1))`` on ``T``.

    Example::

        loss = LogitStandardization(temperature=2.0)   # CLI: --distillation-loss logit_standardization:temperature=2
    """

    def __init__(
        self,
        temperature: float = 2.0,
        final_temperature: float | None = None,
        schedule: str = "linear",
        loss: KerasLossSpec = "kl_divergence",
    ) -> None:
        super().__init__(temperature, final_temperature, schedule, loss, standardize=True)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("standardize", None)  # always on
        return config


DKD_TARGETS = ("label", "teacher")


def _target_classes(labels, teacher_logits):
    """The target class of each sample as int32 ``[batch]``: from sparse or one-hot labels, else the teacher's top class."""
    from edgedistill._keras import tf

    if labels is None:
        return tf.argmax(teacher_logits, axis=-1, output_type=tf.int32)
    labels = tf.convert_to_tensor(labels)
    num_classes = teacher_logits.shape[-1]
    if labels.shape.rank == teacher_logits.shape.rank and num_classes not in (None, 1) and labels.shape[-1] == num_classes:
        return tf.argmax(labels, axis=-1, output_type=tf.int32)  # one-hot (or soft) labels
    return tf.reshape(tf.cast(labels, tf.int32), [-1])


def _binary_log_probs(log_probs, target_mask):
    """``[log p_target, log (1 - p_target)]`` per sample from log-probabilities over K classes, without ``log(1 - p)``."""
    from edgedistill._keras import tf

    num_classes = log_probs.shape[-1] or tf.shape(log_probs)[-1]
    log_target = tf.reduce_sum(tf.where(target_mask, log_probs, tf.zeros_like(log_probs)), axis=-1)
    non_target = tf.reshape(tf.boolean_mask(log_probs, tf.logical_not(target_mask)), [-1, num_classes - 1])
    return tf.stack([log_target, tf.reduce_logsumexp(non_target, axis=-1)], axis=-1), non_target


def _kl_from_log_probs(teacher_log_probs, student_log_probs):
    from edgedistill._keras import tf

    return tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)


@register_loss("dkd")
class DecoupledKD(TemperatureLoss):
    """Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang, CVPR 2022, "Decoupled Knowledge Distillation").

    With ``p = softmax(z / T)`` and ``t`` the target class of the sample, KD splits into

    - TCKD (target class): ``KL(b_T || b_S)`` on the binary ``b = [p_t, 1 - p_t]``;
    - NCKD (non-target classes): ``KL(q_T || q_S)`` on ``q = softmax(z_{i != t} / T)``, the
      distribution among the K-1 other classes;

    ``loss = w(p) * T^2 * (alpha * TCKD + beta * NCKD)``, averaged over the batch. Vanilla KD is
    ``TCKD + (1 - p_t^T) * NCKD``: it weakens NCKD exactly where the teacher is confident;
    DKD gives it its own weight ``beta`` (the paper: alpha = 1, beta = 8 on CIFAR-100, T = 4).

    ``target="label"`` (the paper) takes ``t`` from the ground-truth labels the Distiller
    passes; ``"teacher"`` uses the teacher's top class (e.g. without labels or with mixup);
    without labels the teacher's top class is used. ``warmup`` ramps the loss in linearly over
    that fraction of training, ``w(p) = min(1, p / warmup)`` (the paper: 20 of 240 epochs,
    ``warmup=0.08``; 0 = off). ``standardize=True`` z-scores the logits first (see
    :class:`LogitStandardization`). Temperature schedule: see :class:`TemperatureLoss`.
    The paper adds DKD to the hard-label loss at weight 1 each: ``--student-loss-weight 0.5``.

    Example::

        loss = DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0)   # CLI: --distillation-loss dkd:beta=8
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        final_temperature: float | None = None,
        schedule: str = "linear",
        warmup: float = 0.0,
        target: str = "label",
        standardize: bool = False,
    ) -> None:
        super().__init__(temperature, final_temperature, schedule)
        self.alpha, self.beta = _check_weights("DecoupledKD", alpha=alpha, beta=beta)
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup <= 1:
            raise InputError(
                f"`warmup` must be a fraction of training in [0, 1]. Received: warmup={warmup!r}. The paper's is 0.08."
            )
        self.warmup = float(warmup)
        if target not in DKD_TARGETS:
            raise InputError(f"Unknown DKD target {target!r}. Expected one of: {', '.join(DKD_TARGETS)}.")
        self.target = target
        self.standardize = _check_flag("standardize", standardize)

    def compute_loss(self, teacher_outputs, student_outputs, progress=None, labels=None, **kwargs):
        from edgedistill._keras import tf

        temperature = tf.cast(self.temperature_at(progress), student_outputs.dtype)
        teacher_scaled, student_scaled = _softened(teacher_outputs, student_outputs, temperature, self.standardize)
        target = _target_classes(None if self.target == "teacher" else labels, teacher_scaled)
        target_mask = tf.cast(tf.one_hot(target, tf.shape(student_scaled)[-1]), tf.bool)
        teacher_binary, teacher_other = _binary_log_probs(tf.nn.log_softmax(teacher_scaled, axis=-1), target_mask)
        student_binary, student_other = _binary_log_probs(tf.nn.log_softmax(student_scaled, axis=-1), target_mask)
        tckd = _kl_from_log_probs(teacher_binary, student_binary)
        # softmax over the non-target classes = log_softmax of their log-probabilities (shift invariance)
        nckd = _kl_from_log_probs(tf.nn.log_softmax(teacher_other, axis=-1), tf.nn.log_softmax(student_other, axis=-1))
        loss = tf.reduce_mean(self.alpha * tckd + self.beta * nckd) * temperature**2
        if self.warmup > 0 and progress is not None:
            loss *= tf.minimum(1.0, tf.cast(progress, loss.dtype) / self.warmup)
        return loss

    def get_config(self) -> dict[str, Any]:
        config = {"alpha": self.alpha, "beta": self.beta, **super().get_config()}
        if self.warmup:
            config["warmup"] = self.warmup
        if self.target != "label":
            config["target"] = self.target
        if self.standardize:
            config["standardize"] = True
        return config


def _check_weights(owner: str, **weights) -> tuple[float, ...]:
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InputError(f"`{name}` must be a number >= 0. Received: {name}={value!r}.")
    if not any(weights.values()):
        names = " and ".join(f"`{name}`" for name in weights)
        raise InputError(f"{owner}: {names} are all 0; set at least one > 0.")
    return tuple(float(value) for value in weights.values())


#: Floor of a squared norm in the Pearson correlation: a constant row or column (e.g. a batch of one) gives 0, not NaN.
_PEARSON_EPSILON = 1e-12


def pearson_correlation(a, b, axis: int):
    """Pearson correlation of ``a`` and ``b`` along ``axis`` (one value per row or column)."""
    from edgedistill._keras import tf

    a = tf.math.l2_normalize(a - tf.reduce_mean(a, axis=axis, keepdims=True), axis=axis, epsilon=_PEARSON_EPSILON)
    b = tf.math.l2_normalize(b - tf.reduce_mean(b, axis=axis, keepdims=True), axis=axis, epsilon=_PEARSON_EPSILON)
    return tf.reduce_sum(a * b, axis=axis)


@register_loss("dist")
class DISTDistillation(TemperatureLoss):
    """DIST: distillation from a stronger teacher (Huang, You, Wang, Qian & Xu, NeurIPS 2022,
    "Knowledge Distillation from A Stronger Teacher").

    Exact probability matching (KL) is replaced by correlation matching, which keeps only the
    teacher's *relations*. With ``Y = softmax(Z / T)`` the B x K probability matrix of a batch
    and ``rho`` the Pearson correlation coefficient:

    - inter-class relation: ``L_inter = 1 - 1/B * sum_i rho(Y_s[i, :], Y_t[i, :])`` (each
      sample's ranking of the classes);
    - intra-class relation: ``L_intra = 1 - 1/K * sum_j rho(Y_s[:, j], Y_t[:, j])`` (each class's
      scores across the batch's samples);

    ``loss = T^2 * (beta * L_inter + gamma * L_intra)``. The paper: beta = gamma = 1, T = 1 on
    ImageNet; beta = gamma = 2, T = 4 on CIFAR-100. The intra-class term needs batches of
    several samples (a batch of one contributes ``gamma * T^2``, constant). The paper adds it to
    the hard-label loss at weight 1 each (``--student-loss-weight 0.5``).
    Temperature schedule: see :class:`TemperatureLoss`.

    Example::

        loss = DISTDistillation(beta=2.0, gamma=2.0, temperature=4.0)   # CLI: --distillation-loss dist:beta=2,gamma=2
    """

    def __init__(
        self,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 1.0,
        final_temperature: float | None = None,
        schedule: str = "linear",
    ) -> None:
        super().__init__(temperature, final_temperature, schedule)
        self.beta, self.gamma = _check_weights("DISTDistillation", beta=beta, gamma=gamma)

    def compute_loss(self, teacher_outputs, student_outputs, progress=None, **kwargs):
        from edgedistill._keras import tf

        temperature = tf.cast(self.temperature_at(progress), student_outputs.dtype)
        teacher_scaled, student_scaled = _softened(teacher_outputs, student_outputs, temperature, False)
        teacher_probs, student_probs = tf.nn.softmax(teacher_scaled, axis=-1), tf.nn.softmax(student_scaled, axis=-1)
        inter = 1.0 - tf.reduce_mean(pearson_correlation(student_probs, teacher_probs, axis=1))
        intra = 1.0 - tf.reduce_mean(pearson_correlation(student_probs, teacher_probs, axis=0))
        return (self.beta * inter + self.gamma * intra) * temperature**2

    def get_config(self) -> dict[str, Any]:
        return {"beta": self.beta, "gamma": self.gamma, **super().get_config()}


def loss_parameters(name: str) -> set[str]:
    """The constructor arguments of the registered loss ``name`` (e.g. which take ``temperature``)."""
    import inspect

    return set(inspect.signature(LOSSES.get(name)).parameters)


def parse_arguments(text: str, *, what: str = "arguments") -> dict[str, Any]:
    """``"a=1,b=x,c=0.5"`` -> ``{"a": 1, "b": "x", "c": 0.5}`` (numbers, true/false/none, else strings).

    The compact form used on the command line and in YAML strings, e.g.
    ``--distillation-loss attention:teacher_layer_name=block2_relu,student_layer_name=block2_pw_relu``.
    """
    arguments: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise InputError(
                f"Cannot read {what} {text!r}: {item!r} is not key=value. Expected e.g. 'temperature=4,schedule=cosine'."
            )
        arguments[key.strip()] = _parse_value(value.strip())
    return arguments


def _parse_value(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def get_loss(spec: "str | dict[str, Any] | DistillationLoss") -> DistillationLoss:
    """A loss from its name (``"logits"``), ``"name:key=value,..."``, a dict
    (``{"kind": "logits", "temperature": 4}``) or an instance."""
    if isinstance(spec, DistillationLoss):
        return spec
    if isinstance(spec, str):
        name, separator, text = spec.partition(":")
        if separator:
            return get_loss({"kind": name.strip(), **parse_arguments(text, what=f"the arguments of loss {name!r}")})
        return LOSSES.get(spec)()
    if isinstance(spec, dict):
        arguments = dict(spec)
        kind = arguments.pop("kind", None)
        if kind is None:
            raise InputError(
                f"A distillation loss needs a `kind`. Received: {spec}. Expected one of: {', '.join(LOSSES.names())}."
            )
        cls = LOSSES.get(kind)
        try:
            return cls(**arguments)
        except TypeError as error:
            raise InputError(f"Bad arguments for distillation loss {kind!r}: {error}.") from None
    raise InputError(
        f"Cannot make a distillation loss from {spec!r}; expected a name, a dict with `kind`, or a DistillationLoss."
    )


__all__ = [
    "DistillationLoss",
    "TemperatureLoss",
    "LogitsDistillation",
    "LogitStandardization",
    "DecoupledKD",
    "DISTDistillation",
    "standardize_logits",
    "pearson_correlation",
    "loss_parameters",
    "FeatureDistillation",
    "AttentionTransfer",
    "RelationalDistillation",
    "LOSSES",
    "register_loss",
    "get_loss",
    "parse_arguments",
    "keras_loss",
]
