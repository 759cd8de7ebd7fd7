"""Shared fixtures: tiny data, tiny models and one small end-to-end run, built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

# Flags of a quick `edgedistill run`: a few epochs on part of digits (~40 s on 2 cores).
TINY_RUN = [
    "--teacher-epochs",
    "6",
    "--teacher-width",
    "0.5",
    "--epochs",
    "3",
    "--qat-epochs",
    "1",
    "--student-width",
    "0.25",
    "--max-train-samples",
    "600",
    "--num-runs",
    "20",
    "--warmup-runs",
    "2",
    "--verbose",
    "0",
    "--baseline",
    "none",
    "--distillation-loss",
    "logits",
]
# The scratch baseline is on by default: the pipeline_run fixture turns it on and tests it. The default loss (DIST)
# needs more than these 3 plumbing epochs to leave chance on 600 images (measured: float student 10 %), so the
# tiny runs use vanilla logits; the default itself is measured in benchmarks/kd_defaults.py.


@pytest.fixture(scope="session")
def digits():
    from edgedistill.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def tiny_teacher(digits):
    from edgedistill.models import build_model
    from edgedistill.training import TrainConfig, set_seed, train_classifier

    # Seeded before the weights are drawn: otherwise they depend on what ran earlier in the session, and the
    # 3-epoch teacher's accuracy (which the teacher-gate tests compare across input conventions) with it.
    set_seed(0)
    model = build_model("cnn", digits.input_shape, digits.num_classes, width=0.25, name="teacher")
    train_classifier(model, digits, config=TrainConfig(epochs=3, patience=0, verbose=0))
    return model


@pytest.fixture(scope="session")
def int8_bytes(tiny_teacher, digits) -> bytes:
    from edgedistill.convert import convert_keras_model

    return convert_keras_model(tiny_teacher, quantization="int8", representative_data=digits.x_train, num_calibration_samples=50)


@pytest.fixture(scope="session")
def float_bytes(tiny_teacher) -> bytes:
    from edgedistill.convert import convert_keras_model

    return convert_keras_model(tiny_teacher, quantization="float32")


@pytest.fixture(scope="session")
def int8_file(int8_bytes, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny int8 (copy).tflite"  # spaces and parentheses on purpose
    path.write_bytes(int8_bytes)
    return path


@pytest.fixture(scope="session")
def float_file(float_bytes, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny_float32.tflite"
    path.write_bytes(float_bytes)
    return path


@pytest.fixture(scope="session")
def teacher_file(tiny_teacher, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "teacher.keras"
    tiny_teacher.save(path)
    return path


def invoke(*args: str, input: str | None = None):
    """Run the CLI the way users do (errors become `Error: ...` lines, exit codes kept)."""
    from edgedistill.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    """One small `edgedistill run` on digits; several tests inspect its run folder."""
    output_dir = tmp_path_factory.mktemp("runs")
    result = invoke("run", *TINY_RUN, "--baseline", "scratch", "--output-dir", output_dir, "--run-name", "tiny")
    run_dir = output_dir / "tiny"
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else None
    return result, run_dir, report


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path
