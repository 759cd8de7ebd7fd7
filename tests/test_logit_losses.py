"""The strongest logit losses (issue 10): Decoupled KD, DIST and logit standardization.

Each is checked against a numpy reference written here from the papers' formulas (random
logits, several temperatures), its gradient against finite differences of that reference,
and a 2-epoch distillation on digits; the CLI spec and the QAT continuation are checked too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgedistill.distill.losses import DecoupledKD, DISTDistillation, LogitsDistillation, LogitStandardization, get_loss
from edgedistill.errors import InputError

TEMPERATURES = [1.0, 2.0, 4.0, 8.0]


# ---------------------------------------------------------------------------------------
# numpy references (float64), written from the papers' formulas


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _kl_rows(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def _standardize(z):
    centered = z - z.mean(axis=-1, keepdims=True)
    return centered / np.sqrt(centered.var(axis=-1, keepdims=True) + 1e-12)


def _dkd_parts(teacher, student, labels, temperature):
    """Per-sample TCKD and NCKD (Zhao et al. 2022, eq. 1-4), and the teacher's target probability."""
    p_t, p_s = _softmax(teacher / temperature), _softmax(student / temperature)
    rows = np.arange(len(labels))
    b_t = np.stack([p_t[rows, labels], 1 - p_t[rows, labels]], axis=1)
    b_s = np.stack([p_s[rows, labels], 1 - p_s[rows, labels]], axis=1)
    others = np.ones_like(p_t, dtype=bool)
    others[rows, labels] = False
    q_t = p_t[others].reshape(len(labels), -1)
    q_s = p_s[others].reshape(len(labels), -1)
    q_t, q_s = q_t / q_t.sum(1, keepdims=True), q_s / q_s.sum(1, keepdims=True)
    return _kl_rows(b_t, b_s), _kl_rows(q_t, q_s), p_t[rows, labels]


def _dkd(teacher, student, labels, temperature, alpha=1.0, beta=8.0):
    tckd, nckd, _ = _dkd_parts(teacher, student, labels, temperature)
    return temperature**2 * np.mean(alpha * tckd + beta * nckd)


def _pearson_rows(a, b):
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _dist(teacher, student, temperature, beta=1.0, gamma=1.0):
    """Huang et al. 2022: 1 - mean Pearson over samples (inter-class) and over classes (intra-class)."""
    y_t, y_s = _softmax(teacher / temperature), _softmax(student / temperature)
    inter = 1 - np.mean(_pearson_rows(y_s, y_t))
    intra = 1 - np.mean(_pearson_rows(y_s.T, y_t.T))
    return temperature**2 * (beta * inter + gamma * intra)


def _logit_standardization(teacher, student, temperature):
    """Sun et al. 2024: KD on z-scored logits."""
    p_t, p_s = _softmax(_standardize(teacher) / temperature), _softmax(_standardize(student) / temperature)
    return temperature**2 * np.mean(_kl_rows(p_t, p_s))


def _kd(teacher, student, temperature):
    return temperature**2 * np.mean(_kl_rows(_softmax(teacher / temperature), _softmax(student / temperature)))


def _logits(seed, batch=16, classes=10, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, classes)) * scale, rng.normal(size=(batch, classes)) * scale, rng.integers(0, classes, batch)


# (loss object, numpy reference(teacher, student, labels, T)) for each new loss
def _cases(temperature):
    return {
        "dkd": (DecoupledKD(alpha=1.0, beta=8.0, temperature=temperature), lambda t, s, y: _dkd(t, s, y, temperature)),
        "dkd_weights": (
            DecoupledKD(alpha=0.5, beta=2.0, temperature=temperature),
            lambda t, s, y: _dkd(t, s, y, temperature, alpha=0.5, beta=2.0),
        ),
        "dist": (
            DISTDistillation(beta=2.0, gamma=1.0, temperature=temperature),
            lambda t, s, y: _dist(t, s, temperature, 2.0, 1.0),
        ),
        "logit_standardization": (LogitStandardization(temperature), lambda t, s, y: _logit_standardization(t, s, temperature)),
        "logits_standardize": (
            LogitsDistillation(temperature, standardize=True),
            lambda t, s, y: _logit_standardization(t, s, temperature),
        ),
    }


CASES = ["dkd", "dkd_weights", "dist", "logit_standardization", "logits_standardize"]


def test_numpy_dkd_reference_recombines_into_kd():
    """The reference's own check (the paper's eq. 7): KD = TCKD + (1 - p_t^T) * NCKD, per sample."""
    teacher, student, labels = _logits(0)
    for temperature in TEMPERATURES:
        tckd, nckd, p_target = _dkd_parts(teacher, student, labels, temperature)
        kd = _kl_rows(_softmax(teacher / temperature), _softmax(student / temperature))
        np.testing.assert_allclose(tckd + (1 - p_target) * nckd, kd, rtol=1e-10)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("case", CASES)
def test_loss_matches_numpy_reference(case, temperature):
    from edgedistill._keras import tf

    loss, reference = _cases(temperature)[case]
    for seed in range(3):
        teacher, student, labels = _logits(seed)
        value = loss.compute_loss(tf.constant(teacher, tf.float32), tf.constant(student, tf.float32), labels=tf.constant(labels))
        assert float(value) == pytest.approx(reference(teacher, student, labels), rel=2e-4, abs=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_finite_differences_of_the_reference(case):
    """d loss / d student logits from TensorFlow (float64) against central differences of the numpy reference."""
    from edgedistill._keras import tf

    loss, reference = _cases(3.0)[case]
    teacher, student, labels = _logits(7, batch=6, classes=5)
    student_tensor = tf.Variable(student, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = loss.compute_loss(tf.constant(teacher, tf.float64), student_tensor, labels=tf.constant(labels))
    gradient = tape.gradient(value, student_tensor).numpy()
    numeric = np.zeros_like(student)
    step = 1e-6
    for index in np.ndindex(student.shape):
        plus, minus = student.copy(), student.copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (reference(teacher, plus, labels) - reference(teacher, minus, labels)) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-7)
    assert np.abs(gradient).max() > 1e-4  # the student is pulled somewhere


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradient_vanish_when_the_student_is_the_teacher(case):
    from edgedistill._keras import tf

    loss, _ = _cases(4.0)[case]
    teacher, _, labels = _logits(3)
    student = tf.Variable(teacher, dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = loss.compute_loss(tf.constant(teacher, tf.float64), student, labels=tf.constant(labels))
    assert float(value) == pytest.approx(0.0, abs=1e-8)
    assert np.abs(tape.gradient(value, student).numpy()).max() < 1e-6


def test_logit_standardization_ignores_logit_range_and_shift():
    """Z-scored: a student whose logits are the teacher's scaled and shifted per sample has zero loss (KD does not)."""
    from edgedistill._keras import tf

    teacher, _, _ = _logits(5)
    rng = np.random.default_rng(5)
    student = teacher * rng.uniform(0.1, 3.0, size=(len(teacher), 1)) + rng.normal(size=(len(teacher), 1))
    t, s = tf.constant(teacher, tf.float32), tf.constant(student, tf.float32)
    assert float(LogitStandardization(2.0).compute_loss(t, s)) == pytest.approx(0.0, abs=1e-5)
    assert float(LogitsDistillation(2.0).compute_loss(t, s)) > 0.1


def test_dkd_targets_one_hot_labels_teacher_and_warmup():
    from edgedistill._keras import tf

    teacher, student, labels = _logits(11)
    t, s = tf.constant(teacher, tf.float32), tf.constant(student, tf.float32)
    dkd = DecoupledKD(temperature=4.0)
    sparse = float(dkd.compute_loss(t, s, labels=tf.constant(labels)))
    one_hot = float(dkd.compute_loss(t, s, labels=tf.one_hot(labels, 10)))
    column = float(dkd.compute_loss(t, s, labels=tf.constant(labels.reshape(-1, 1), tf.float32)))
    assert sparse == pytest.approx(one_hot, rel=1e-6) and sparse == pytest.approx(column, rel=1e-6)
    teacher_top = teacher.argmax(1)
    expected = _dkd(teacher, student, teacher_top, 4.0)
    assert float(dkd.compute_loss(t, s)) == pytest.approx(expected, rel=2e-4)  # no labels: the teacher's top class
    assert float(DecoupledKD(temperature=4.0, target="teacher").compute_loss(t, s, labels=labels)) == pytest.approx(
        expected, rel=2e-4
    )
    warm = DecoupledKD(temperature=4.0, warmup=0.5)
    assert float(warm.compute_loss(t, s, progress=0.25, labels=labels)) == pytest.approx(sparse / 2, rel=1e-5)
    assert float(warm.compute_loss(t, s, progress=0.75, labels=labels)) == pytest.approx(sparse, rel=1e-5)


def test_dist_survives_a_batch_of_one():
    """The intra-class correlation of one sample is undefined: it counts as 0 (constant), not NaN."""
    from edgedistill._keras import tf

    teacher, student, _ = _logits(2, batch=1)
    s = tf.Variable(student, dtype=tf.float32)
    with tf.GradientTape() as tape:
        value = DISTDistillation(beta=1.0, gamma=1.0, temperature=1.0).compute_loss(tf.constant(teacher, tf.float32), s)
    assert math.isfinite(float(value)) and np.all(np.isfinite(tape.gradient(value, s).numpy()))


def test_configs_round_trip_and_bad_arguments_are_named():
    for spec in (
        "dkd:alpha=0.5,beta=4,warmup=0.1,target=teacher,standardize=true",
        "dist:beta=2,gamma=2,temperature=4",
        "logit_standardization:temperature=3,final_temperature=1",
        "logits:standardize=true",
    ):
        loss = get_loss(spec)
        config = loss.get_config()
        assert get_loss({"kind": loss.name, **config}).get_config() == config
    assert get_loss("logit_standardization").get_config() == {"temperature": 2.0}
    for spec, message in (
        ("dkd:beta=-1", "`beta` must be a number >= 0"),
        ("dkd:alpha=0,beta=0", "`alpha` and `beta` are all 0"),
        ("dkd:target=soft", "Unknown DKD target 'soft'. Expected one of: label, teacher"),
        ("dkd:warmup=2", "`warmup` must be a fraction"),
        ("dist:gamma=x", "`gamma` must be a number"),
        ("logits:standardize=1", "`standardize` must be true or false"),
        ("logit_standardization:standardize=false", "Bad arguments for distillation loss 'logit_standardization'"),
    ):
        with pytest.raises(InputError, match=message):
            get_loss(spec)


def test_cli_spec_gets_the_temperature_unless_given():
    from edgedistill.config import DistillConfig
    from edgedistill.stages import resolve_loss

    dkd = resolve_loss(DistillConfig(distillation_loss="dkd:beta=4", temperature=3.0, final_temperature=1.0))
    assert isinstance(dkd, DecoupledKD) and (dkd.beta, dkd.temperature, dkd.final_temperature) == (4.0, 3.0, 1.0)
    dist = resolve_loss(DistillConfig(distillation_loss="dist:temperature=2", temperature=6.0))
    assert isinstance(dist, DISTDistillation) and dist.temperature == 2.0
    standardized = resolve_loss(DistillConfig(distillation_loss="logit_standardization", temperature=5.0))
    assert isinstance(standardized, LogitStandardization) and standardized.temperature == 5.0
    rkd = resolve_loss(DistillConfig(distillation_loss="rkd", temperature=5.0))  # no temperature parameter: not given one
    assert "temperature" not in rkd.get_config()


@pytest.mark.parametrize("name", ["dkd", "dist", "logit_standardization"])
def test_two_epoch_distillation_then_qat_with_the_same_loss(name, tiny_teacher, digits):
    """A short distillation moves the student to the teacher; QAT continues with the same loss object."""
    from edgedistill.distill import TrainingArguments, quantize_distill
    from edgedistill.distill.distiller import distill
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig

    loss = get_loss({"kind": name, "temperature": 4.0})
    student = build_model("mlp", digits.input_shape, digits.num_classes, width=0.25)
    student, history = distill(
        tiny_teacher,
        student,
        digits,
        distillation_losses=[loss],
        student_loss_weight=0.0,
        config=TrainConfig(epochs=2, patience=0, verbose=0, batch_size=32),
    )
    losses = history["distillation_loss"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    agreement = np.mean(
        student.predict(digits.x_test, verbose=0).argmax(1) == tiny_teacher.predict(digits.x_test, verbose=0).argmax(1)
    )
    assert agreement > 0.3  # chance is 0.1
    training = TrainingArguments(distillation_losses=[loss], config=TrainConfig(epochs=1, patience=0, verbose=0, batch_size=32))
    result = quantize_distill(tiny_teacher, student, digits, training=training)
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in result.student.layers)
    assert all(math.isfinite(v) for v in result.history["distillation_loss"])


def test_distill_command_with_a_new_loss_and_a_reference_preset(teacher_file, tmp_path):
    """The CLI path: `--distillation-loss dkd:beta=4` with `--temperature` and the resnet8 preset as student."""
    from conftest import invoke

    output = tmp_path / "student.keras"
    result = invoke(
        "distill",
        "--teacher",
        teacher_file,
        "--data",
        "digits",
        "--student-preset",
        "resnet8",
        "--student-width",
        "0.25",
        "--distillation-loss",
        "dkd:beta=4",
        "--temperature",
        "3",
        "--epochs",
        "1",
        "--max-train-samples",
        "200",
        "--verbose",
        "0",
        "-o",
        output,
    )
    assert result.exit_code == 0, result.output
    assert output.is_file()
