"""One contract over every registry entry: targets, data loaders and model presets.

(Losses and schemes have theirs in test_losses.py and test_schemes.py.) A new entry without a
row in the tables below fails here, so every registered name is covered.
"""

from __future__ import annotations

import dataclasses

import pytest

from edgedistill.errors import InputError

TARGET_SPECS = {
    "local": "local",
    "ssh": "ssh://pi@127.0.0.1:2222",
    "adb": "adb:emulator-5554",
    "qemu-aarch64": "qemu-aarch64",
    "tflm": "tflm",
}


def test_every_target_has_a_contract_row():
    from edgedistill.targets import TARGETS

    assert set(TARGETS.names()) == set(TARGET_SPECS)


@pytest.mark.parametrize("name", sorted(TARGET_SPECS))
def test_target_contract(name):
    """Built from its spec without touching a device; says what it is; measures through one method."""
    from edgedistill.targets import Target, make_target

    target = make_target(TARGET_SPECS[name])
    assert isinstance(target, Target) and target.scheme == name
    assert target.kind in ("measured", "emulated")
    description = target.describe()
    assert description["name"] == name and description["kind"] == target.kind
    # Each target implements its own measurement (the base class's raises NotImplementedError).
    assert type(target).measure is not Target.measure, name


@pytest.mark.parametrize("name", ["local", "tflm"])
def test_targets_without_a_device_measure_a_model(name, tmp_path):
    """The targets that need no device really measure: an ok status, latency samples, the model's outputs."""
    from bench_helpers import make_models

    from edgedistill.bench import run_benchmark
    from edgedistill.targets import make_target

    model = make_models(tmp_path)["tiny_int8"]
    measurement = run_benchmark(model, target=make_target(TARGET_SPECS[name]), num_runs=3, warmup_runs=1)
    assert measurement.status == "ok", measurement.error
    assert measurement.latency_ms["p50"] > 0


def test_unknown_target_lists_the_valid_ones():
    from edgedistill.targets import make_target

    with pytest.raises(InputError, match="Expected one of: adb, local, qemu-aarch64, ssh, tflm"):
        make_target("gpu://box")


def test_every_loader_refuses_a_missing_source_in_one_line(tmp_path):
    """Each data loader given a path that does not exist fails with one InputError line naming it."""
    from edgedistill.data import LOADERS, load_dataset

    for name in LOADERS.names():
        if name == "digits":  # embedded: takes no argument
            assert load_dataset("digits").num_classes == 10
            continue
        missing = tmp_path / f"no-such-{name}"
        with pytest.raises(InputError) as raised:
            load_dataset(f"{name}:{missing}")
        message = str(raised.value)
        assert "\n" not in message and str(missing) in message, (name, message)


# The input each preset is checked on: one it accepts (mobilenet_v2's strides need 32 x 32 x 3).
PRESET_INPUTS = {
    "cnn": (16, 16, 1),
    "dscnn": (16, 16, 1),
    "dscnn_kws": (16, 16, 1),
    "dscnn_kws_large": (16, 16, 1),
    "dscnn_kws_temporal": (16, 16, 1),
    "mlp": (16, 16, 1),
    "mobilenet_v1": (16, 16, 1),
    "mobilenet_v2": (32, 32, 3),
    "resnet8": (16, 16, 1),
}


def test_every_preset_has_a_contract_row():
    from edgedistill.models import PRESETS

    assert set(PRESETS.names()) == set(PRESET_INPUTS)


@pytest.mark.parametrize("name", sorted(PRESET_INPUTS))
def test_every_preset_builds_a_classifier_of_the_asked_size(name):
    """Every preset builds on its input (a broken preset fails here: no exception is tolerated)."""
    from edgedistill.models import build_model, count_parameters

    shape = PRESET_INPUTS[name]
    small = build_model(name, shape, 4, width=0.25)
    assert small.output_shape[-1] == 4
    assert count_parameters(build_model(name, shape, 4, width=0.5)) > count_parameters(small)


def test_a_preset_refuses_an_input_it_cannot_take_in_one_line():
    from edgedistill.models import build_model

    with pytest.raises(InputError) as raised:
        build_model("mobilenet_v2", (4, 4, 1), 4, width=0.25)
    assert "\n" not in str(raised.value)


def test_help_texts_list_every_registered_name():
    """Option help built from a registry lists its names; the scheme list (written out, to keep TensorFlow out of
    `run --help`) must name every registered scheme."""
    from click.testing import CliRunner

    from edgedistill.cli import cli
    from edgedistill.config import DistillConfig
    from edgedistill.data import LOADERS
    from edgedistill.distill.losses import LOSSES
    from edgedistill.distill.schemes import SCHEMES
    from edgedistill.models import PRESETS

    help_text = " ".join(CliRunner().invoke(cli, ["run", "--help"], terminal_width=10_000).output.split())
    for registry in (LOADERS, LOSSES, PRESETS):
        assert ", ".join(registry.names()) in help_text, registry.kind
    scheme_help = next(f for f in dataclasses.fields(DistillConfig) if f.name == "scheme").metadata["help"]
    for name in SCHEMES:
        assert f" {name}" in scheme_help.replace(",", " "), name


def test_scheme_capabilities_are_registry_fields():
    """What the pipeline asks of a scheme: data-free never trains on the data; the standard Distiller step alone is
    prunable and Keras 3-ready; augmentation reaches the schemes whose one teacher sees the augmented batch."""
    from edgedistill.distill.schemes import SCHEMES

    assert [name for name in SCHEMES if not SCHEMES.get(name).trains_on_data] == ["data_free"]
    assert [name for name in SCHEMES if SCHEMES.get(name).standard_step] == ["standard"]
    assert sorted(name for name in SCHEMES if SCHEMES.get(name).augments) == ["standard", "teacher_assistant"]
    assert not SCHEMES.get("standard").takes_options and SCHEMES.get("self").takes_options


def test_resume_distills_a_data_free_student_again(tmp_path):
    """`run --resume` asks the scheme's entry (trains_on_data), not its name: a data-free student's synthetic inputs
    are not saved, so its saved float student is not restored (the bogus file is never read)."""
    from edgedistill.config import RunConfig
    from edgedistill.pipeline import Artifacts, _restore_distill

    (tmp_path / "student_float.keras").write_bytes(b"not a model")
    config = RunConfig.from_options({"scheme": "data_free"})
    assert _restore_distill(config, Artifacts(run_dir=tmp_path), {}) is False
    with pytest.raises(InputError, match="Cannot load model"):  # the standard scheme's saved student is read
        _restore_distill(RunConfig(), Artifacts(run_dir=tmp_path), {})
