"""Model files may not run Python code on load unless the user says so (issue 12, security 1 and 3)."""

from __future__ import annotations

import pytest

from conftest import invoke

PWNED = "edgedistill_lambda_ran"


def _lambda_model(marker):
    """A digits-shaped classifier whose Lambda layer creates ``marker`` when its code runs."""
    from edgedistill._keras import keras

    path = str(marker)

    def payload(x):
        open(path, "w").close()  # the side effect an attacker would use
        return x

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(payload, name="payload")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


@pytest.fixture(scope="module")
def lambda_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / PWNED
    model = _lambda_model(marker)
    model.save(folder / "hostile.h5")
    model.save(folder / "hostile_savedmodel")
    marker.unlink(missing_ok=True)  # saving traced the layer once
    return folder, marker


@pytest.mark.parametrize("name", ["hostile.h5", "hostile_savedmodel"])
def test_lambda_model_is_refused_by_the_loader(lambda_files, name):
    from edgedistill.errors import InputError
    from edgedistill.models import load_model_file

    folder, marker = lambda_files
    with pytest.raises(InputError, match=r"payload \(Lambda\).*--trust-model-code"):
        load_model_file(folder / name)
    assert not marker.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--teacher", "{model}", "--output-dir", "{tmp}"],
        ["run", "--student", "{model}", "--teacher-epochs", "1", "--output-dir", "{tmp}"],
        ["distill", "--teacher", "{model}", "-o", "{tmp}/s.keras"],
        ["quantize", "--teacher", "{model}", "--student", "{model}", "-o", "{tmp}/q.h5"],
        ["convert", "{model}", "-o", "{tmp}/m.tflite"],
    ],
    ids=["run-teacher", "run-student", "distill", "quantize", "convert"],
)
def test_every_command_refuses_a_code_layer(lambda_files, tmp_path, command):
    folder, marker = lambda_files
    arguments = [part.format(model=folder / "hostile.h5", tmp=tmp_path) for part in command]
    result = invoke(*arguments)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "--trust-model-code" in result.output
    assert not marker.exists()


def test_trust_option_allows_it(lambda_files):
    from edgedistill.models import load_model_file, trust_model_code

    folder, marker = lambda_files
    with trust_model_code():
        model = load_model_file(folder / "hostile.h5")
    import numpy as np

    model(np.zeros((1, 8, 8, 1), dtype="float32"))
    assert marker.exists()  # the code runs, as the user allowed
    marker.unlink()
