"""The command line starts fast: --help must not import TensorFlow."""

import subprocess
import sys

from click.testing import CliRunner

from edgedistill.cli import COMMANDS, cli


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from click.testing import CliRunner; from edgedistill.cli import cli; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(cli, ['run', '--help']); assert r.exit_code == 0, r.output; "
        "heavy = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(cli, ["distil"])
    assert result.exit_code == 2
    assert "No such command" in result.output
