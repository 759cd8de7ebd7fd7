"""Each bad input of `edgedistill firmware` / `flash`, through the real CLI (CliRunner)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgedistill.cli import cli
from edgedistill.firmware.boards import BOARDS
from firmware_helpers import write_micro_export


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_unknown_board_exits_2_and_lists_boards(tmp_path):
    write_micro_export(tmp_path)
    result = invoke("firmware", "build", tmp_path, "--board", "arduino-uno")
    assert result.exit_code == 2
    assert "Unknown board 'arduino-uno'" in result.output
    for name in BOARDS:
        assert name in result.output
    assert "Traceback" not in result.output


def test_run_folder_without_micro_export(tmp_path):
    (tmp_path / "report.json").write_text("{}")
    result = invoke("firmware", "build", tmp_path, "--board", "qemu-mps2-an386")
    assert result.exit_code == 2
    assert "no complete micro export" in result.output
    assert "micro_export.json" in result.output and "edgedistill micro" in result.output


def test_run_folder_that_does_not_exist(tmp_path):
    result = invoke("firmware", "run", tmp_path / "nope", "--board", "qemu-mps2-an386")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_micro_export_with_missing_file_is_named(tmp_path):
    micro = write_micro_export(tmp_path)
    (micro / "model_op_resolver.h").unlink()
    result = invoke("firmware", "build", tmp_path, "--board", "qemu-mps2-an386")
    assert result.exit_code == 2
    assert "missing model_op_resolver.h" in result.output


def test_arena_that_does_not_fit_ram_fails_before_building(tmp_path, monkeypatch):
    board = BOARDS["nucleo-f446re"]
    too_big = board.ram_bytes - board.stack_bytes + 16
    write_micro_export(tmp_path, arena_bytes=too_big)
    # No toolchain and no TFLM on PATH: the check must come first, without either.
    monkeypatch.delenv("TFLM_DIR", raising=False)
    result = invoke("firmware", "build", tmp_path, "--board", "nucleo-f446re", env={"PATH": str(tmp_path)})
    assert result.exit_code == 2
    assert "does not fit the RAM of nucleo-f446re" in result.output
    assert str(too_big) in result.output
    # The same arena fits a board with more RAM: the check is about the board.
    write_micro_export(tmp_path, arena_bytes=too_big)
    ok = invoke("firmware", "build", tmp_path, "--board", "qemu-mps2-an386", env={"PATH": str(tmp_path)})
    assert "does not fit" not in ok.output


def test_arena_just_fitting_passes_the_check(tmp_path):
    from edgedistill.firmware.build import prepare

    board = BOARDS["nucleo-f446re"]
    write_micro_export(tmp_path, arena_bytes=board.ram_bytes - board.stack_bytes)
    export, checked_board = prepare(tmp_path, "nucleo-f446re", "reference")
    assert checked_board is board
    assert export.tensor_arena_size == board.ram_bytes - board.stack_bytes


def test_model_that_does_not_fit_flash_fails_before_building(tmp_path):
    board = BOARDS["qemu-mps3-an547"]
    write_micro_export(tmp_path, model_size_bytes=board.flash_bytes + 1)
    result = invoke("firmware", "build", tmp_path, "--board", "qemu-mps3-an547", env={"PATH": str(tmp_path)})
    assert result.exit_code == 2
    assert "does not fit the flash of qemu-mps3-an547" in result.output


def test_missing_toolchain_names_the_debian_packages(tmp_path):
    write_micro_export(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = invoke("firmware", "build", tmp_path, "--board", "qemu-mps2-an386", env={"PATH": str(empty)})
    assert result.exit_code == 1
    assert "arm-none-eabi-gcc" in result.output
    for package in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "libstdc++-arm-none-eabi-newlib"):
        assert package in result.output
    assert "Traceback" not in result.output


def test_missing_qemu_names_the_debian_package(tmp_path):
    from edgedistill.errors import StageError
    from edgedistill.firmware.toolchain import qemu_binary

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with pytest.raises(StageError, match="apt-get install qemu-system-arm"):
        qemu_binary(path=str(empty))


def test_unknown_kernels(tmp_path):
    write_micro_export(tmp_path)
    result = invoke("firmware", "build", tmp_path, "--board", "host", "--kernels", "cmsis_nn")
    assert result.exit_code == 2
    assert "does not support kernels='cmsis_nn'" in result.output


def test_tflm_dir_that_is_not_a_checkout(tmp_path):
    write_micro_export(tmp_path)
    bogus = tmp_path / "not-tflm"
    bogus.mkdir()
    result = invoke("firmware", "build", tmp_path, "--board", "qemu-mps2-an386", "--tflm-dir", bogus)
    if "arm-none-eabi" in result.output:
        pytest.skip("no cross toolchain here: the TFLM check comes after the toolchain check")
    assert result.exit_code == 2
    assert "is not a TFLite Micro checkout" in result.output


def _fake_build(run_dir: Path, board: str, kernels: str = "reference") -> Path:
    """A build folder as `firmware build` leaves it, with a made-up image (for checks that never run it)."""
    out = run_dir / "firmware" / f"{board}_{kernels}"
    out.mkdir(parents=True)
    (out / "firmware.elf").write_bytes(b"\x7fELF")
    (out / "build.json").write_text(json.dumps({"board": board, "kernels": kernels, "sizes": {}}))
    return out


def test_qemu_timeout_is_reported_without_traceback(tmp_path):
    """A stand-in qemu-system-arm that never ends: the real one is exercised in test_firmware_qemu.py."""
    write_micro_export(tmp_path)
    _fake_build(tmp_path, "qemu-mps2-an386")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "qemu-system-arm"
    stand_in.write_text("#!/bin/sh\n# stand-in for qemu-system-arm: prints a little, then hangs\necho booting\nexec sleep 30\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    result = invoke(
        "firmware",
        "run",
        tmp_path,
        "--board",
        "qemu-mps2-an386",
        "--no-build",
        "--timeout",
        "1",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.exit_code == 1
    assert "did not finish within 1 s" in result.output
    assert "booting" in result.output
    assert "Traceback" not in result.output


def test_run_without_build_says_how_to_build(tmp_path):
    write_micro_export(tmp_path)
    result = invoke("firmware", "run", tmp_path, "--board", "qemu-mps3-an547", "--no-build")
    assert result.exit_code == 2
    assert "edgedistill firmware build" in result.output and "--board qemu-mps3-an547" in result.output


def test_run_on_a_real_board_points_to_flash(tmp_path):
    write_micro_export(tmp_path)
    result = invoke("firmware", "run", tmp_path, "--board", "nucleo-f446re")
    assert result.exit_code == 2
    assert "edgedistill flash" in result.output


def test_flash_an_emulated_board_is_refused(tmp_path):
    write_micro_export(tmp_path)
    result = invoke("flash", tmp_path, "--board", "qemu-mps2-an386")
    assert result.exit_code == 2
    assert "not real hardware" in result.output and "nucleo-f446re" in result.output


def test_flash_without_build(tmp_path):
    write_micro_export(tmp_path)
    result = invoke("flash", tmp_path, "--board", "nucleo-f446re")
    assert result.exit_code == 2
    assert "No firmware built for board 'nucleo-f446re'" in result.output


def test_flash_unknown_method(tmp_path):
    write_micro_export(tmp_path)
    result = invoke("flash", tmp_path, "--board", "nucleo-f446re", "--method", "jtag")
    assert result.exit_code == 2
    assert "Unknown --method 'jtag'" in result.output


def test_no_tflm_and_no_clone_says_to_set_tflm_dir(tmp_path, monkeypatch):
    """TFLM_DIR unset and the pinned clone failing (here: an unreachable repository URL)."""
    from edgedistill.errors import StageError
    from edgedistill.firmware.tflm_checkout import resolve_tflm_dir

    monkeypatch.delenv("TFLM_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TFLM_REPO_URL", str(tmp_path / "no-such-repository"))
    with pytest.raises(StageError, match="Set TFLM_DIR to a tflite-micro checkout"):
        resolve_tflm_dir(None)
    assert not any((tmp_path / "cache").rglob(".edgedistill-complete"))
