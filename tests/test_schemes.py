"""Distillation schemes: the contract every registered scheme keeps, option parsing, and each scheme's mechanics.

Tiny models (width 0.125-0.25) and 1-2 epochs: these check that each scheme trains a student
(finite losses, accuracy above chance), not how well; the benchmark measures that.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from edgedistill.distill import SCHEMES, SchemeResult, TrainingArguments, parse_scheme_options, run_scheme
from edgedistill.distill.losses import LogitsDistillation
from edgedistill.errors import InputError

EPOCHS = 2
CHANCE = 10.0  # digits: 10 balanced classes

# Options that make each scheme runnable in a second on tiny models; "{teacher_file}" is the
# session's saved teacher. A new scheme runs with its defaults unless it needs an entry here.
CONTRACT_OPTIONS = {
    "multi_teacher": "teachers={teacher_file}",
    "teacher_assistant": "assistant_widths=0.25",
    "data_free": "num_samples=40,steps=5",
}


@pytest.fixture(scope="module")
def setup(digits, tiny_teacher):
    """The session's digits and tiny trained cnn teacher (conftest), a student factory, 2-epoch training arguments."""
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig

    data, teacher = digits, tiny_teacher
    training = TrainingArguments(
        distillation_losses=[LogitsDistillation(4.0)],
        config=TrainConfig(epochs=EPOCHS, patience=0, verbose=0, learning_rate=3e-3),
    )

    def student(width=0.125, preset="cnn", name="student"):
        return build_model(preset, data.input_shape, data.num_classes, width=width, name=name)

    return data, teacher, student, training


@pytest.fixture(scope="module")
def small_data(digits):
    """300 training and 100 validation images of digits: enough for one quick epoch."""
    return dataclasses.replace(
        digits, x_train=digits.x_train[:300], y_train=digits.y_train[:300], x_val=digits.x_val[:100], y_val=digits.y_val[:100]
    )


def _check_trained(result, data, *, minimum=2 * CHANCE, epochs=EPOCHS):
    from edgedistill.training import accuracy

    assert isinstance(result, SchemeResult)
    assert all(math.isfinite(v) for v in result.history["loss"])
    assert len(result.history["loss"]) == epochs
    assert accuracy(result.student, data.x_val, data.y_val) > minimum


# ---------------------------------------------------------------------------------------
# The contract


@pytest.mark.parametrize("name", SCHEMES.names())
def test_scheme_contract(name, small_data, tiny_teacher, teacher_file):
    """Every registered scheme: options parse, one epoch runs, a SchemeResult whose student predicts the classes."""
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig

    scheme = SCHEMES.get(name)
    assert dataclasses.is_dataclass(scheme.options) and scheme.options.__dataclass_params__.frozen
    assert all(field.metadata.get("help") for field in dataclasses.fields(scheme.options)), "every option needs help text"
    assert scheme.summary
    options = CONTRACT_OPTIONS.get(name, "").format(teacher_file=teacher_file)
    data = small_data
    student = build_model("cnn", data.input_shape, data.num_classes, width=0.125, name="student")
    training = TrainingArguments(config=TrainConfig(epochs=1, patience=0, verbose=0))
    result = run_scheme(name, tiny_teacher, student, data, options=options, training=training)
    assert isinstance(result, SchemeResult)
    assert result.student.predict(data.x_test[:8], verbose=0).shape == (8, data.num_classes)
    assert result.history and all(isinstance(v, float) for values in result.history.values() for v in values)
    assert all(math.isfinite(v) for v in result.history["loss"])
    json.dumps(result.report)  # plain JSON values
    if result.quantization_data is not None:
        assert result.quantization_data.input_shape == data.input_shape
        assert set(result.quantization_teacher_outputs) == {"train", "val"}


def test_every_contract_option_names_a_scheme():
    assert set(CONTRACT_OPTIONS) <= set(SCHEMES.names())


def test_a_new_scheme_plugs_in_without_touching_run_scheme(monkeypatch, setup):
    """run_scheme only looks the entry up: a scheme registered elsewhere runs with its own options."""
    from edgedistill.distill.schemes import Scheme, option

    @dataclasses.dataclass(frozen=True)
    class EchoOptions:
        factor: float = option(2.0, "A number to hand back.")

    def run_echo(teacher, student, data, options, training):
        return SchemeResult(
            student=student, history={}, report={"factor": options.factor, "weight": training.student_loss_weight}
        )

    monkeypatch.setitem(SCHEMES._items, "echo", Scheme(name="echo", options=EchoOptions, run=run_echo))
    data, teacher, student, _ = setup
    result = run_scheme(
        "echo", teacher, student(), data, options="factor=3", training=TrainingArguments(student_loss_weight=0.25)
    )
    assert result.report == {"factor": 3.0, "weight": 0.25}


# ---------------------------------------------------------------------------------------
# Options


def test_options_parse_from_text_dicts_and_instances():
    from edgedistill.distill.schemes import MultiTeacherOptions, PatientOptions, SelfOptions, TeacherAssistantOptions

    assert parse_scheme_options("self", "mode=born_again,generations=3") == SelfOptions(mode="born_again", generations=3)
    assert parse_scheme_options("self", None) == SelfOptions()
    assert parse_scheme_options("patient", {"mixup_alpha": 0.4}) == PatientOptions(mixup_alpha=0.4)
    assert parse_scheme_options("patient", "mixup_alpha=1") == PatientOptions(mixup_alpha=1.0)
    parsed = parse_scheme_options("multi_teacher", "teachers=a.keras|b.keras,teacher_weights=2|1|1")
    assert parsed == MultiTeacherOptions(teachers=("a.keras", "b.keras"), teacher_weights=(2.0, 1.0, 1.0))
    assert parse_scheme_options("multi_teacher", {"teachers": ["a.keras"]}).teachers == ("a.keras",)
    assert parse_scheme_options("teacher_assistant", "assistant_widths=0.5|0.25").assistant_widths == (0.5, 0.25)
    instance = TeacherAssistantOptions(assistant_widths=(0.5,))
    assert parse_scheme_options("teacher_assistant", instance) is instance
    assert parse_scheme_options("standard", "") == SCHEMES.get("standard").options()


def test_option_errors_list_the_valid_keys_and_the_received_text():
    with pytest.raises(
        InputError,
        match=r"Bad options for scheme 'patient': unknown key 'mixup'\. "
        r"Valid keys: mixup_alpha, translation\. Received: 'mixup=0.2'",
    ):
        parse_scheme_options("patient", "mixup=0.2")
    with pytest.raises(InputError, match=r"`generations` must be an integer\. Received: generations='two'"):
        parse_scheme_options("self", "generations=two")
    with pytest.raises(InputError, match="is not key=value"):
        parse_scheme_options("self", "born_again")
    with pytest.raises(InputError, match="Scheme 'standard' takes no options"):
        parse_scheme_options("standard", "temperature=4")
    with pytest.raises(InputError, match=r"`mode` must be one of: ema, born_again. Received: mode='sideways'"):
        parse_scheme_options("self", "mode=sideways")
    with pytest.raises(InputError, match="teacher_weights` needs 2 numbers"):
        parse_scheme_options("multi_teacher", "teachers=a.keras,teacher_weights=1|2|3")
    with pytest.raises(InputError, match="takes PatientOptions"):
        parse_scheme_options("patient", parse_scheme_options("self", ""))


def test_run_scheme_errors(setup):
    data, teacher, student, training = setup
    with pytest.raises(InputError, match="Unknown distillation scheme 'nope'. Expected one of: data_free, multi_teacher"):
        run_scheme("nope", teacher, student(), data, training=training)
    with pytest.raises(InputError, match="assistant_widths"):
        run_scheme("teacher_assistant", teacher, student(), data, training=training)
    with pytest.raises(InputError, match="teachers=a.keras"):
        run_scheme("multi_teacher", teacher, student(), data, training=training)
    with pytest.raises(InputError, match="Model file not found"):
        run_scheme("multi_teacher", teacher, student(), data, options="teachers=/nonexistent.keras", training=training)


# ---------------------------------------------------------------------------------------
# Each scheme's mechanics


def test_ensemble_logits_is_the_weighted_average_of_soft_targets():
    from edgedistill.distill.schemes import ensemble_logits

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    T = 3.0

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    combined = ensemble_logits([a, b], weights=[3, 1], temperature=T)
    np.testing.assert_allclose(softmax(combined / T), 0.75 * softmax(a / T) + 0.25 * softmax(b / T), atol=1e-5)
    with pytest.raises(InputError, match="teacher_weights"):
        ensemble_logits([a, b], weights=[1, 2, 3])


def test_multi_teacher(setup):
    from edgedistill.distill.schemes import EnsembleTeacher, distill_multi_teacher, ensemble_logits
    from edgedistill.models import predict_logits

    data, teacher, student, training = setup
    second = student(width=0.25, preset="dscnn", name="teacher2")
    # the graph ensemble (per-batch use) and the cached one agree
    ensemble = EnsembleTeacher([teacher, second], weights=[2, 1], temperature=4.0)
    np.testing.assert_allclose(
        np.asarray(ensemble(data.x_val[:16])),
        ensemble_logits(
            [predict_logits(teacher, data.x_val[:16]), predict_logits(second, data.x_val[:16])], weights=[2, 1], temperature=4.0
        ),
        atol=1e-4,
    )
    result = distill_multi_teacher([teacher, second], student(), data, teacher_weights=[2, 1], training=training)
    _check_trained(result, data)
    # QAT is guided by the ensemble as well: the scheme hands its targets on (the main teacher's alone differ).
    expected = ensemble_logits(
        [predict_logits(teacher, data.x_train), predict_logits(second, data.x_train)], weights=[2, 1], temperature=4.0
    )
    np.testing.assert_allclose(result.quantization_teacher_outputs["train"], expected, atol=1e-4)
    assert result.quantization_data is None


def test_qat_after_multi_teacher_trains_on_the_ensembles_targets_without_augmentation(setup, monkeypatch):
    """stages.quantize_student passes the scheme's cached targets to QAT, and no augmentation: an augmented batch
    would make the teacher run per batch, and that teacher is the main one, not the ensemble."""
    import edgedistill.distill as distill_package
    from edgedistill import stages
    from edgedistill.config import DistillConfig, QatConfig, TrainingConfig

    data, teacher, student, _ = setup
    ensemble = {"train": np.full((len(data.x_train), 10), 7.0, dtype="float32")}
    captured = {}

    def fake_quantize(teacher_model, model, quantization_data, *, training):
        captured.update(outputs=training.teacher_outputs, augmentation=training.augmentation, data=quantization_data)
        return SchemeResult(student=model, history={"loss": [0.0]})

    monkeypatch.setattr(distill_package, "quantize_distill", fake_quantize)
    main_teacher = stages.Teacher(model=teacher, outputs={"train": np.zeros((len(data.x_train), 10))}, source="test")
    distilled = SchemeResult(student=student(), history={}, quantization_teacher_outputs=ensemble)
    training = TrainingConfig(augment=True, verbose=0)
    stages.quantize_student(QatConfig(qat_epochs=1), DistillConfig(), training, main_teacher, distilled, data)
    assert captured["outputs"] is ensemble and captured["augmentation"] is None and captured["data"] is data


def test_teachers_with_different_class_counts(setup):
    from edgedistill.distill.schemes import EnsembleTeacher, distill_multi_teacher
    from edgedistill.models import build_model

    data, teacher, student, training = setup
    five_classes = build_model("cnn", data.input_shape, 5, width=0.125, name="five")
    with pytest.raises(InputError, match=r"different numbers of classes \(teacher 1: 10, teacher 2: 5\)"):
        distill_multi_teacher([teacher, five_classes], student(), data, training=training)
    with pytest.raises(InputError, match="different numbers of classes"):
        EnsembleTeacher([teacher, five_classes])


def test_self_distillation_ema(setup):
    from edgedistill.distill.schemes import EMADistiller, self_distill

    data, _, student, training = setup
    _check_trained(self_distill(student(), data, mode="ema", ema_decay=0.9, training=training), data)
    # the EMA teacher follows the student but lags behind it
    fresh = student()
    distiller = EMADistiller(fresh, ema_decay=0.5)
    before = [w.copy() for w in distiller.teacher.get_weights()]
    fresh.layers[1].kernel.assign_add(np.ones(fresh.layers[1].kernel.shape, dtype=np.float32))
    distiller._after_train_step()
    after = distiller.teacher.get_weights()[0]
    np.testing.assert_allclose(after, before[0] + 0.5, atol=1e-6)
    with pytest.raises(InputError, match="ema_decay"):
        EMADistiller(student(), ema_decay=1.0)


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_self_distillation_born_again(setup):
    from edgedistill.distill.schemes import self_distill

    data, _, student, training = setup
    first = student()
    result = self_distill(first, data, mode="born_again", generations=1, training=training)
    assert result.student is not first  # generation 1 is a fresh network
    assert result.report == {"generations": 1}
    _check_trained(result, data)
    with pytest.raises(InputError, match="mode"):
        self_distill(student(), data, mode="sideways", training=training)


def test_mutual_learning(setup):
    from edgedistill.distill.schemes import mutual_distill

    data, _, student, training = setup
    peer = student(name="peer")
    result = mutual_distill(student(), data, peers=[peer], temperature=training.logits_temperature(), training=training)
    assert "val_peer1_accuracy" in result.history
    _check_trained(result, data)
    _check_trained(SchemeResult(student=peer, history=result.history), data)


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_teacher_assistant(setup):
    from edgedistill.distill.schemes import teacher_assistant_distill

    data, teacher, student, training = setup
    result = teacher_assistant_distill(
        teacher, student(width=0.125), data, assistants=[student(width=0.25, name="assistant")], training=training
    )
    assert [step["model"] for step in result.report["chain"]] == ["assistant", "student"]
    _check_trained(result, data)
    with pytest.raises(InputError, match="assistant"):
        teacher_assistant_distill(teacher, student(), data, assistants=[], training=training)


@pytest.mark.parametrize(
    "scheme, options, function, keyword",
    [
        ("teacher_assistant", "assistant_widths=0.25", "teacher_assistant_distill", "assistants"),
        ("mutual", "peer_width=0.25", "mutual_distill", "peers"),
    ],
)
def test_models_a_scheme_builds_take_the_students_raw_values(monkeypatch, digits, scheme, options, function, keyword):
    """Data keep raw values (digits: counts 0..16) and the student carries ``x / 16``: the
    assistants and peers a scheme builds from a preset must carry the same first layer."""
    import importlib

    from edgedistill.models import build_model
    from edgedistill.preprocessing import find_preprocessing_layer, with_preprocessing
    from edgedistill.stages import student_preprocessing_of

    module = importlib.import_module(SCHEMES.get(scheme).run.__module__)
    built = {}
    monkeypatch.setattr(module, function, lambda *args, **kwargs: built.update(kwargs) or SchemeResult(None, {}))  # no training
    student = with_preprocessing(
        build_model("cnn", digits.input_shape, 10, width=0.125, name="student"), student_preprocessing_of(digits)
    )
    run_scheme(scheme, None, student, digits, options=options)
    (model,) = built[keyword]
    layer = find_preprocessing_layer(model)
    assert layer is not None, [layer.name for layer in model.layers[:3]]
    assert layer.get_config()["scale"] == pytest.approx(1 / 16) and layer.get_config()["offset"] == 0.0
    # A student without preprocessing (float data, a user's file) gets a model without it too.
    built.clear()
    run_scheme(scheme, None, build_model("cnn", digits.input_shape, 10, width=0.125, name="student"), digits, options=options)
    assert find_preprocessing_layer(built[keyword][0]) is None


def test_patient_and_consistent(setup):
    from edgedistill.distill.schemes import patient_distill

    data, teacher, student, training = setup
    _check_trained(patient_distill(teacher, student(), data, mixup_alpha=0.4, training=training), data)


@pytest.mark.slow  # > 30 s on the shared 2-core machine
def test_patient_with_feature_hint(setup):
    """Schemes compose with layer losses: the consistent batch feeds the feature extractors too."""
    from edgedistill.distill.losses import FeatureDistillation
    from edgedistill.distill.schemes import patient_distill

    data, teacher, student, training = setup
    training = dataclasses.replace(
        training,
        config=dataclasses.replace(training.config, epochs=5),  # two layer losses on a mixed batch: 2 epochs sat near chance
        student_loss_weight=0.2,
        distillation_losses=[LogitsDistillation(2.0), FeatureDistillation("block2_relu", "block2_relu")],
    )
    _check_trained(patient_distill(teacher, student(), data, training=training), data, epochs=5)


def test_data_free(setup):
    from edgedistill.distill.schemes import data_free_distill, synthesize_inputs

    data, teacher, student, training = setup
    x, info = synthesize_inputs(
        teacher,
        num_samples=40,
        input_shape=data.input_shape,
        num_classes=10,
        steps=40,
        batch_size=40,
        value_range=data.value_range,
    )  # the raw digits: 0..16
    assert x.shape == (40, *data.input_shape) and 0.0 <= x.min() and x.max() <= 16.0
    assert info["num_batch_norm_layers"] == 2
    # the optimisation works: the teacher assigns most synthetic images their target class
    assert info["teacher_agrees_with_target_percent"] >= 80.0
    result = data_free_distill(teacher, student(), data, num_samples=200, steps=30, training=training)
    assert result.report["synthesis"]["num_samples"] == 200
    assert all(math.isfinite(v) for v in result.history["loss"])
    # the synthetic set replaces the real one for QAT and calibration; no real training image in it
    synthetic = result.quantization_data
    assert len(synthetic.x_train) + len(synthetic.x_val) == 200 and synthetic.name == f"synthetic({data.name})"
    assert len(result.quantization_teacher_outputs["train"]) == len(synthetic.x_train)
    assert "synthetic_data" not in result.history
