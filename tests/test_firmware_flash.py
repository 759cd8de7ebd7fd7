"""Flash: UF2 files, DAPLink/UF2 drive detection, pyOCD commands and probe checks.

No board or probe exists in this workplace: the drives below are stand-in folders with the
marker files a real DAPLink / UF2 drive shows, and the probe list is pyOCD's JSON format.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgedistill.cli import cli
from edgedistill.errors import InputError, StageError
from edgedistill.firmware.boards import BOARDS
from edgedistill.firmware.flash import (
    bin_to_uf2,
    check_probe,
    drive_kind,
    find_drive,
    flash_firmware,
    parse_probe_list,
    parse_uf2,
    pyocd_command,
)
from firmware_helpers import build_bare_metal, needs_cross_toolchain, write_micro_export

NUCLEO = BOARDS["nucleo-f446re"]


def test_uf2_round_trip_and_block_layout():
    data = bytes(range(256)) * 3 + b"tail"
    uf2 = bin_to_uf2(data, base_address=0x10000000, family_id=0xE48BFF56)
    assert len(uf2) == 4 * 512
    blocks = parse_uf2(uf2)
    assert [address for address, _ in blocks] == [0x10000000 + 256 * i for i in range(4)]
    assert b"".join(payload for _, payload in blocks)[: len(data)] == data
    flags, _, _, index, total, family = struct.unpack("<IIIIII", uf2[8:32])
    assert (index, total, family) == (0, 4, 0xE48BFF56) and flags & 0x2000
    with pytest.raises(ValueError):
        parse_uf2(uf2[:-1])


def _stand_in_drive(root: Path, label: str, marker: str) -> Path:
    drive = root / "user" / label
    drive.mkdir(parents=True)
    (drive / marker).write_text("stand-in for a mounted board drive\n")
    return drive


def test_drive_detection(tmp_path):
    daplink = _stand_in_drive(tmp_path / "media", "NODE_F446RE", "DETAILS.TXT")
    assert drive_kind(daplink) == "daplink"
    uf2 = _stand_in_drive(tmp_path / "other", "RPI-RP2", "INFO_UF2.TXT")
    assert drive_kind(uf2) == "uf2"
    assert drive_kind(tmp_path) is None
    assert find_drive(NUCLEO, roots=[str(tmp_path / "media")]) == daplink
    assert find_drive(NUCLEO, drive=daplink) == daplink


def test_missing_drive_is_reported(tmp_path):
    (tmp_path / "media" / "user" / "NODE_F446RE").mkdir(parents=True)  # mounted folder without marker files
    with pytest.raises(StageError, match="No mounted drive of nucleo-f446re"):
        find_drive(NUCLEO, roots=[str(tmp_path / "media")])
    with pytest.raises(InputError, match="not a DAPLink or UF2 drive"):
        find_drive(NUCLEO, drive=tmp_path)
    with pytest.raises(InputError, match="not a mounted folder"):
        find_drive(NUCLEO, drive=tmp_path / "absent")


def test_pyocd_command():
    image = Path("/runs/x/firmware/nucleo-f446re_reference/firmware.elf")
    assert pyocd_command(NUCLEO, image) == ["pyocd", "flash", "-t", "stm32f446retx", "--format", "elf", str(image)]
    assert pyocd_command(NUCLEO, image, probe="0668FF")[4:6] == ["-u", "0668FF"]
    with pytest.raises(InputError):
        pyocd_command(BOARDS["qemu-mps2-an386"], image)


def test_probe_checks():
    listing = json.dumps(
        {
            "pyocd_version": "0.36.0",
            "status": 0,
            "boards": [
                {"unique_id": "0668FF555051", "info": "ST-Link v2-1", "target": "stm32f446retx"},
                {"unique_id": "E6614103E7", "info": "CMSIS-DAP", "target": "cortex_m"},
            ],
        }
    )
    probes = parse_probe_list(listing)
    assert check_probe(probes, NUCLEO, "0668")["unique_id"] == "0668FF555051"
    with pytest.raises(InputError, match="Choose one with --probe"):
        check_probe(probes, NUCLEO, None)
    with pytest.raises(InputError, match="No probe with id 'ABC'"):
        check_probe(probes, NUCLEO, "ABC")
    with pytest.raises(StageError, match="No CMSIS-DAP / ST-LINK probe found"):
        check_probe(parse_probe_list(json.dumps({"boards": []})), NUCLEO, None)


def _real_build(run_dir: Path, tmp_path: Path) -> Path:
    """A build folder holding a real ELF for the Nucleo (start-up code + linker script, no TFLM)."""
    out = run_dir / "firmware" / "nucleo-f446re_reference"
    out.mkdir(parents=True)
    elf = build_bare_metal(tmp_path, "nucleo-f446re")
    (out / "firmware.elf").write_bytes(elf.read_bytes())
    (out / "firmware.bin").write_bytes(b"\x00" * 64)
    (out / "build.json").write_text(json.dumps({"board": "nucleo-f446re", "kernels": "reference"}))
    return out


@needs_cross_toolchain
def test_flash_to_a_drive_copies_the_binary(tmp_path):
    run_dir = tmp_path / "run"
    write_micro_export(run_dir)
    out = _real_build(run_dir, tmp_path)
    drive = _stand_in_drive(tmp_path / "media", "NODE_F446RE", "MBED.HTM")
    dry = flash_firmware(run_dir, board="nucleo-f446re", method="drive", drive=drive, dry_run=True)
    assert dry["destination"] == str(drive / "firmware.bin") and not (drive / "firmware.bin").exists()
    assert dry["tested_on_hardware"] is False
    done = flash_firmware(run_dir, board="nucleo-f446re", method="drive", drive=drive)
    assert (drive / "firmware.bin").read_bytes() == (out / "firmware.bin").read_bytes()
    assert done["sizes"]["flash_bytes"] > 0


@needs_cross_toolchain
def test_flash_cli_dry_run_and_missing_pyocd(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    write_micro_export(run_dir)
    _real_build(run_dir, tmp_path)
    drive = _stand_in_drive(tmp_path / "media", "NODE_F446RE", "DETAILS.TXT")
    result = CliRunner().invoke(
        cli, ["flash", str(run_dir), "--board", "nucleo-f446re", "--method", "drive", "--drive", str(drive), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "Would run: copy" in result.output and "fits nucleo-f446re" in result.output
    import edgedistill.firmware.flash as flash_module

    monkeypatch.setattr(flash_module, "find_pyocd", lambda: None)  # as on a machine without pyOCD
    result = CliRunner().invoke(cli, ["flash", str(run_dir), "--board", "nucleo-f446re", "--method", "pyocd"])
    assert result.exit_code == 1
    assert "pyOCD is not installed" in result.output and "edgedistill[flash]" in result.output


@needs_cross_toolchain
def test_flash_refuses_an_image_that_does_not_fit(tmp_path, monkeypatch):
    """The size check runs on the image before anything is written."""
    import dataclasses

    import edgedistill.firmware.flash as flash_module

    run_dir = tmp_path / "run"
    write_micro_export(run_dir)
    _real_build(run_dir, tmp_path)
    drive = _stand_in_drive(tmp_path / "media", "NODE_F446RE", "DETAILS.TXT")
    tiny = dataclasses.replace(NUCLEO, flash_bytes=256)  # smaller than any real image
    monkeypatch.setattr(flash_module, "get_board", lambda name: tiny)
    with pytest.raises(StageError, match="does not fit nucleo-f446re"):
        flash_firmware(run_dir, board="nucleo-f446re", method="drive", drive=drive)
    assert not (drive / "firmware.bin").exists()


def _pyocd():
    from edgedistill.firmware.flash import find_pyocd

    return find_pyocd()


needs_pyocd = pytest.mark.skipif(_pyocd() is None, reason="needs pyOCD (pip install 'edgedistill[flash]')")


@needs_pyocd
@needs_cross_toolchain
def test_flash_with_real_pyocd_and_no_board_fails_before_writing(tmp_path):
    """Real pyOCD, no board connected here: the target or the probe check stops the flash."""
    run_dir = tmp_path / "run"
    write_micro_export(run_dir)
    _real_build(run_dir, tmp_path)
    result = CliRunner().invoke(cli, ["flash", str(run_dir), "--board", "nucleo-f446re", "--method", "pyocd"])
    assert result.exit_code == 1
    assert ("pyocd pack install stm32f446retx" in result.output) or ("No CMSIS-DAP / ST-LINK probe found" in result.output)
    assert "Traceback" not in result.output


@needs_pyocd
def test_real_pyocd_lists_its_targets_and_probes():
    from edgedistill.firmware.flash import list_probes, parse_target_list

    completed = __import__("subprocess").run([_pyocd(), "json", "--targets"], capture_output=True, text=True, check=True)
    targets = parse_target_list(completed.stdout)
    assert "stm32f429xi" in targets  # one of pyOCD's built-in targets
    assert isinstance(list_probes(), list)  # [] here: no probe in this workplace
