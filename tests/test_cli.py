"""The command line: fast --help without TensorFlow, options generated once from the config."""

import dataclasses
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgedistill.cli import COMMANDS, cli
from edgedistill.config import DistillConfig, RunConfig


def test_help_of_every_command_is_fast_and_does_not_import_tensorflow():
    code = (
        "import sys, time; from click.testing import CliRunner; from edgedistill.cli import cli, COMMANDS; "
        "started = time.perf_counter(); "
        "results = [CliRunner().invoke(cli, [name, '--help']) for name in COMMANDS]; "
        "assert all(r.exit_code == 0 for r in results), [r.output for r in results if r.exit_code]; "
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]; "
        "assert not heavy, heavy; print(time.perf_counter() - started)"
    )
    completed = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert float(completed.stdout.strip()) < 5.0  # all commands; one --help is well under 1 s


def test_run_has_one_option_per_config_field():
    output = CliRunner().invoke(cli, ["run", "--help"], terminal_width=200).output
    missing = [name for name in RunConfig.option_names() if "--" + name.replace("_", "-") not in output]
    assert not missing


@pytest.mark.parametrize("command", ["run", "distill", "quantize"])
def test_temperature_is_defined_once(command):
    """Help text and default of --temperature come from DistillConfig in every command that has it."""
    field = next(f for f in dataclasses.fields(DistillConfig) if f.name == "temperature")
    option = next(p for p in COMMAND_OBJECTS()[command].params if p.name == "temperature")
    assert option.help == field.metadata["help"] and option.default == field.default == 4.0


def COMMAND_OBJECTS():
    context = cli.make_context("edgedistill", ["--help"], resilient_parsing=True)
    return {name: cli.get_command(context, name) for name in COMMANDS}


def test_old_stage_option_names_still_work():
    """`teacher --preset/--width/--epochs` and `quantize --epochs/--learning-rate` are aliases of the config options."""
    commands = COMMAND_OBJECTS()
    teacher = {p.name: p.opts for p in commands["teacher"].params}
    assert "--preset" in teacher["teacher_preset"] and "--epochs" in teacher["teacher_epochs"]
    quantize = {p.name: p.opts for p in commands["quantize"].params}
    assert "--epochs" in quantize["qat_epochs"] and "--learning-rate" in quantize["qat_learning_rate"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["distil"], "Error: No such command 'distil'. See 'edgedistill --help'."),
        (["--nosuch"], "Error: No such option '--nosuch'. See 'edgedistill --help'."),
        (
            ["run", "--epochs", "abc"],
            "Error: Invalid value for '--epochs': 'abc' is not a valid integer. See 'edgedistill run --help'.",
        ),
        (["search", "--num-trials", "0"], "Error: Invalid value for '--num-trials': 0 is not in the range x>=1."),
        (
            ["firmware", "run", "--jobs", "0"],
            "Error: Invalid value for '--jobs' / '-j': `jobs` must be a whole number in [1, 64]. Received: jobs=0.",
        ),
    ],
)
def test_usage_errors_are_one_error_line(arguments, message):
    """click's usage block and hint would make three lines; the project's rule is one ``Error:`` line, exit 2."""
    result = CliRunner().invoke(cli, arguments, prog_name="edgedistill")
    assert result.exit_code == 2
    assert message in result.output and "Usage:" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_option_value_is_one_error_line(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--temperature", "nan", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "Error: `temperature` must be > 0. Received: temperature=nan." in result.output
    assert not list(tmp_path.iterdir())
