"""The ``edgedistill`` command line: a thin click group.

Commands are loaded lazily from the modules named in ``COMMANDS`` so that
``edgedistill --help`` never imports TensorFlow (importing it takes ~14 s). Each command
parses options, calls one library function and formats its result. Errors derived from
:class:`edgedistill.errors.EdgeDistillError` and click's usage errors become one line on stderr and their exit code (2 bad
input, 1 a stage failed, 3 a gate failed); Ctrl-C is ``Error: interrupted`` and exit code 130;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib

import click

from edgedistill._version import __version__
from edgedistill.errors import EdgeDistillError

# name -> ("module:attribute", one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "edgedistill.commands.pipeline:run",
        "All stages: teacher -> distill -> QAT -> int8 -> micro -> verify -> baseline -> bench.",
    ),
    "teacher": ("edgedistill.commands.pipeline:teacher", "Train a teacher from a preset and save it."),
    "distill": ("edgedistill.commands.pipeline:distill", "Distill a float student from a teacher."),
    "quantize": ("edgedistill.commands.pipeline:quantize", "Quantization-aware distillation of a float student."),
    "convert": ("edgedistill.commands.pipeline:convert", "Convert a Keras model to int8 (or float) TFLite."),
    "verify": ("edgedistill.commands.pipeline:verify", "Accuracy parity: Keras, LiteRT int8 and TFLM int8."),
    "micro": ("edgedistill.commands.pipeline:micro", "TFLite Micro sources: C array, op resolver, arena size."),
    "info": ("edgedistill.commands.pipeline:info", "Ops, tensors, quantization and size of a .tflite model."),
    "search": (
        "edgedistill.commands.search:search",
        "Search temperature, alpha and student width; Pareto front of accuracy vs int8 bytes.",
    ),
    "bench": (
        "edgedistill.commands.bench:bench",
        "Benchmark .tflite models on the host, a Pi (ssh), Android (adb) or emulators.",
    ),
    "results": ("edgedistill.commands.bench:results", "Compare and plot benchmark result files."),
    "listen": (
        "edgedistill.commands.listen:listen",
        "Keyword spotting over a long recording: detections, misses, false accepts per hour.",
    ),
    "firmware": ("edgedistill.commands.firmware:firmware", "Build and run the TFLite Micro firmware (QEMU, host, boards)."),
    "flash": ("edgedistill.commands.firmware:flash", "Flash a built firmware image to a board."),
    "devices": ("edgedistill.devices.cli:devices", "Emulated devices: prepare, start and stop a Raspberry Pi in QEMU."),
}


INTERRUPTED_EXIT_CODE = 130


class UserFacingError(click.ClickException):
    """An :class:`EdgeDistillError` on its way out: printed as ``Error: ...`` with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click annotates exit_code as a ClassVar, but ClickException reads it from the instance
        self.exit_code = exit_code  # type: ignore[misc]


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and error.name.startswith("edgedistill"):
                return _unavailable(cmd_name, f"{module_name} is not part of this installation")
            raise
        return getattr(module, attribute)

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:  # the group's own options, e.g. `edgedistill --nosuch`
            raise _one_line(error) from None

    def invoke(self, ctx: click.Context):
        # Done here, not only in main(), so CliRunner tests see exactly what users see.
        try:
            return super().invoke(ctx)
        except EdgeDistillError as error:
            raise UserFacingError(str(error), error.exit_code) from None
        except click.UsageError as error:
            raise _one_line(error) from None
        except KeyboardInterrupt:
            # Ctrl-C: 130 (128 + SIGINT) as shells expect, one line, no traceback.
            raise UserFacingError("interrupted (Ctrl-C).", INTERRUPTED_EXIT_CODE) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _one_line(error: click.UsageError) -> UserFacingError:
    """click prints a usage block and a hint over three lines; the project's rule is one ``Error:`` line."""
    hint = f" See '{error.ctx.command_path} --help'." if error.ctx is not None else ""
    return UserFacingError(error.format_message().rstrip(".") + "." + hint, error.exit_code)


def _unavailable(name: str, why: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"`edgedistill {name}` is not available: {why}.")

    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgedistill")
@click.option("-v", "verbosity", count=True, help="More detail: -v debug lines, -vv also TensorFlow's own logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors (results are still printed).")
def cli(verbosity: int, quiet: bool) -> None:
    """edgedistill: distill a Keras model into a small int8 model and prove it runs on the edge.

    Start with `edgedistill run` (no arguments) for the whole pipeline on the embedded
    digits data set; see `edgedistill COMMAND --help` for each stage.
    """
    from edgedistill.logs import configure_cli_output

    configure_cli_output(verbosity=verbosity, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: TensorFlow's native start-up lines are filtered unless ``-vv``."""
    import re
    import sys

    arguments = sys.argv[1:] if argv is None else argv
    verbosity = sum(len(word) - 1 for word in arguments if re.fullmatch(r"-v+", word))
    if verbosity < 2:
        from edgedistill.logs import filter_native_stderr

        filter_native_stderr()
    cli.main(args=argv, prog_name="edgedistill")


__all__ = ["cli", "main", "COMMANDS"]
