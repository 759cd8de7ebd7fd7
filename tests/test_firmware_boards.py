"""The boards table against the ports: one contract, every board."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from edgedistill.cli import cli
from edgedistill.firmware.boards import BOARDS, KERNELS, KINDS, check_kernels, get_board
from edgedistill.firmware.tflm_checkout import firmware_dir, pinned_version
from edgedistill.errors import InputError


def _linker_length(text: str, region: str) -> int:
    match = re.search(rf"{region}\s*\([a-z]+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9A-Fa-f]+),\s*LENGTH\s*=\s*(\d+)([KM]?)", text)
    assert match, f"no {region} region"
    return int(match.group(2)) * {"": 1, "K": 1024, "M": 1024 * 1024}[match.group(3)]


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_board_has_a_port_that_matches_the_table(name):
    board = BOARDS[name]
    port = firmware_dir() / "ports" / name
    assert (port / "board.mk").is_file()
    assert board.kind in KINDS
    assert set(board.kernels) <= set(KERNELS)
    if board.cross_compiled:
        linker = (port / "linker.ld").read_text()
        # The table's sizes are what the fit checks use: they must be the linker script's.
        assert _linker_length(linker, "FLASH") == board.flash_bytes
        assert _linker_length(linker, "RAM") == board.ram_bytes
        stack = re.search(r"__stack_size__\s*=\s*(\d+)K", linker)
        assert stack and int(stack.group(1)) * 1024 == board.stack_bytes
        clock = re.search(r"EDGEDISTILL_CPU_CLOCK_HZ=(\d+)", (port / "board.mk").read_text())
        assert clock and int(clock.group(1)) == board.cpu_clock_hz
    if board.kind == "board":
        assert board.flash_methods, "a real board needs a way to be flashed"
        assert not board.tested, "no board was ever connected here: real boards must be marked untested"


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_board_has_a_place_to_measure_its_arena(name):
    """A board that cannot run here is measured on an emulated board that links the same TFLM library."""
    from edgedistill.firmware.build import arena_probe_board

    board = BOARDS[name]
    probe = arena_probe_board(board)
    assert probe.runnable_here
    assert (probe.tflm_target, probe.tflm_target_arch, probe.cpu) == (board.tflm_target, board.tflm_target_arch, board.cpu)
    assert set(board.kernels) <= set(probe.kernels)
    if board.runnable_here:
        assert probe is board


def test_probe_arena_is_generous_but_within_ram():
    from edgedistill.firmware.build import PROBE_MIN_ARENA_BYTES, probe_arena_size

    m55 = BOARDS["qemu-mps3-an547"]
    size = probe_arena_size(m55, 7744)
    assert size == PROBE_MIN_ARENA_BYTES and size % 16 == 0
    # A model whose host arena is large gets 8x, but never more than the RAM besides the stack and the runner.
    big = probe_arena_size(m55, 1_000_000)
    assert 1_000_000 < big <= m55.ram_bytes - m55.stack_bytes - 64 * 1024
    assert probe_arena_size(BOARDS["host"], 1_000_000) == 8_000_000


def test_a_board_with_nowhere_to_measure_says_to_pass_the_arena():
    import dataclasses

    from edgedistill.firmware.build import arena_probe_board

    orphan = dataclasses.replace(BOARDS["nucleo-f446re"], name="custom", arena_probe_board=None)
    with pytest.raises(InputError, match="--arena-bytes N, or --arena export"):
        arena_probe_board(orphan)


def test_unknown_board_lists_the_boards():
    with pytest.raises(InputError) as error:
        get_board("esp32")
    for name in BOARDS:
        assert name in str(error.value)


def test_kernels_are_checked_against_the_board():
    assert check_kernels(get_board("qemu-mps2-an386"), "cmsis_nn") == "cmsis_nn"
    with pytest.raises(InputError, match="does not support kernels='cmsis_nn'"):
        check_kernels(get_board("host"), "cmsis_nn")
    with pytest.raises(InputError, match="Unknown kernels"):
        check_kernels(get_board("qemu-mps2-an386"), "xtensa")


def test_boards_command_lists_every_board_and_marks_untested_ones():
    result = CliRunner().invoke(cli, ["firmware", "boards"])
    assert result.exit_code == 0, result.output
    for name, board in BOARDS.items():
        line = next(line for line in result.output.splitlines() if line.startswith(name))
        assert ("UNTESTED" in line) == (not board.tested)


def test_tflm_is_pinned_to_a_full_commit():
    pin = pinned_version()
    assert re.fullmatch(r"[0-9a-f]{40}", pin["TFLM_COMMIT"])
    assert pin["TFLM_REPO_URL"].endswith("tflite-micro.git")


def test_importing_the_firmware_cli_does_not_import_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, edgedistill.commands.firmware; "
        "print(any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"
