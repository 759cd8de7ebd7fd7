"""Write a built firmware to a real board: pyOCD (CMSIS-DAP probes) or a mounted DAPLink / UF2 drive.

Before anything is written: the build must exist, the image must fit the board's flash and
RAM (from ``size -B`` and the map file), and the probe or drive must be there. With no board
in this workplace, the checks and the commands are tested; the writes are not (see README).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from edgedistill.errors import InputError, StageError
from edgedistill.firmware import sizes as sizes_module
from edgedistill.firmware.boards import Board, get_board
from edgedistill.firmware.build import BuildResult, load_build
from edgedistill.firmware.options import FirmwareOptions
from edgedistill.firmware.toolchain import cross_toolchain

METHODS: tuple[str, ...] = ("pyocd", "drive")
# Files that identify a mounted drive of a board's USB bootloader or debug probe.
DAPLINK_MARKERS: tuple[str, ...] = ("DETAILS.TXT", "MBED.HTM")
UF2_MARKERS: tuple[str, ...] = ("INFO_UF2.TXT",)
DEFAULT_MOUNT_ROOTS: tuple[str, ...] = ("/media", "/run/media", "/mnt", "/Volumes")

# UF2 (https://github.com/microsoft/uf2): 512-byte blocks of 256 payload bytes.
UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY_ID_PRESENT = 0x00002000
UF2_PAYLOAD_BYTES = 256


def bin_to_uf2(data: bytes, *, base_address: int, family_id: int) -> bytes:
    """A UF2 file that writes ``data`` at ``base_address`` on a board of ``family_id``."""
    num_blocks = (len(data) + UF2_PAYLOAD_BYTES - 1) // UF2_PAYLOAD_BYTES
    blocks = []
    for index in range(num_blocks):
        chunk = data[index * UF2_PAYLOAD_BYTES : (index + 1) * UF2_PAYLOAD_BYTES]
        header = struct.pack(
            "<IIIIIIII",
            UF2_MAGIC_START0,
            UF2_MAGIC_START1,
            UF2_FLAG_FAMILY_ID_PRESENT,
            base_address + index * UF2_PAYLOAD_BYTES,
            UF2_PAYLOAD_BYTES,
            index,
            num_blocks,
            family_id,
        )
        payload = chunk.ljust(476, b"\x00")
        blocks.append(header + payload + struct.pack("<I", UF2_MAGIC_END))
    return b"".join(blocks)


def parse_uf2(data: bytes) -> list[tuple[int, bytes]]:
    """``[(address, payload)]`` of a UF2 file (checks every block's magic numbers)."""
    if len(data) % 512:
        raise ValueError(f"A UF2 file is a whole number of 512-byte blocks. Received {len(data)} bytes.")
    blocks = []
    for offset in range(0, len(data), 512):
        block = data[offset : offset + 512]
        start0, start1, _flags, address, size, _index, _total, _family = struct.unpack("<IIIIIIII", block[:32])
        (end,) = struct.unpack("<I", block[508:])
        if (start0, start1, end) != (UF2_MAGIC_START0, UF2_MAGIC_START1, UF2_MAGIC_END):
            raise ValueError(f"Block at byte {offset} is not a UF2 block (bad magic numbers).")
        blocks.append((address, block[32 : 32 + size]))
    return blocks


def drive_kind(path: Path) -> str | None:
    """'uf2', 'daplink' or None: what the mounted folder ``path`` is, from its marker files."""
    names = {entry.name.upper() for entry in path.iterdir()} if path.is_dir() else set()
    if any(marker in names for marker in UF2_MARKERS):
        return "uf2"
    if any(marker in names for marker in DAPLINK_MARKERS):
        return "daplink"
    return None


def find_drive(board: Board, *, drive: str | os.PathLike | None = None, roots: Iterable[str] = DEFAULT_MOUNT_ROOTS) -> Path:
    """The mounted drive of ``board``: ``drive`` if given (checked), else searched under ``roots``."""
    if drive is not None:
        path = Path(drive)
        if not path.is_dir():
            raise InputError(f"--drive {str(path)!r} is not a mounted folder. Plug in the board and pass its mount point.")
        if drive_kind(path) is None:
            raise InputError(
                f"--drive {str(path)!r} is not a DAPLink or UF2 drive (no {', '.join(DAPLINK_MARKERS + UF2_MARKERS)}). "
                "Pass the folder where the board's USB drive is mounted."
            )
        return path
    candidates: list[Path] = []
    for root in roots:
        root_path = Path(root)
        if not root_path.is_dir():
            continue
        for depth_one in root_path.iterdir():
            for path in (depth_one, *(depth_one.iterdir() if depth_one.is_dir() else ())):
                if path.is_dir() and path.name.upper() in {label.upper() for label in board.drive_labels}:
                    candidates.append(path)
    found = [path for path in candidates if drive_kind(path) is not None]
    if not found:
        raise StageError(
            f"No mounted drive of {board.name} (volume {' or '.join(board.drive_labels) or 'n/a'}) under "
            f"{', '.join(roots)}. Plug the board in (and mount its drive), or pass --drive PATH, or use --method pyocd."
        )
    return found[0]


def find_pyocd() -> str | None:
    """pyOCD on PATH, or next to this Python (a virtual environment that is not activated)."""
    found = shutil.which("pyocd")
    if found:
        return found
    beside = Path(sys.executable).parent / "pyocd"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def pyocd_command(board: Board, image: Path, *, probe: str | None = None, pyocd: str = "pyocd") -> list[str]:
    """``pyocd flash -t <target> [-u <probe>] --format elf <image>``."""
    if not board.pyocd_target:
        raise InputError(f"Board {board.name!r} has no pyOCD target. Expected a board flashed with pyOCD.")
    command = [pyocd, "flash", "-t", board.pyocd_target]
    if probe:
        command += ["-u", probe]
    return command + ["--format", "elf", str(image)]


def parse_probe_list(text: str) -> list[dict[str, Any]]:
    """The probes of ``pyocd json --probes`` output."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise StageError(f"`pyocd json --probes` printed no JSON: {text.strip()[:200]!r}") from None
    return list(data.get("boards", []))


def list_probes(pyocd: str | None = None) -> list[dict[str, Any]]:
    pyocd = pyocd or find_pyocd() or "pyocd"
    completed = subprocess.run([pyocd, "json", "--probes"], capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        raise StageError(f"`pyocd json --probes` failed: {completed.stderr.strip()[:300]}")
    return parse_probe_list(completed.stdout)


def parse_target_list(text: str) -> set[str]:
    """Target names of ``pyocd json --targets`` output (built-in and installed packs)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise StageError(f"`pyocd json --targets` printed no JSON: {text.strip()[:200]!r}") from None
    return {str(entry.get("name", "")).lower() for entry in data.get("targets", [])}


def check_pyocd_target(board: Board, pyocd: str = "pyocd") -> None:
    """:class:`StageError` if pyOCD does not know the board's target (its CMSIS pack is not installed)."""
    completed = subprocess.run([pyocd, "json", "--targets"], capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise StageError(f"`pyocd json --targets` failed: {completed.stderr.strip()[:300]}")
    if str(board.pyocd_target).lower() not in parse_target_list(completed.stdout):
        raise StageError(
            f"pyOCD does not know the target {board.pyocd_target!r} of {board.name} (not built in; its CMSIS pack is "
            f"not installed). Install it once: pyocd pack install {board.pyocd_target}, or use --method drive."
        )


def check_probe(probes: list[dict[str, Any]], board: Board, probe: str | None) -> dict[str, Any]:
    if not probes:
        raise StageError(
            f"No CMSIS-DAP / ST-LINK probe found by pyOCD for {board.name}. Plug the board in by USB "
            "(check `pyocd list`), or copy to its drive with --method drive."
        )
    if probe is None:
        if len(probes) > 1:
            ids = ", ".join(str(p.get("unique_id")) for p in probes)
            raise InputError(f"{len(probes)} probes are connected ({ids}). Choose one with --probe UNIQUE_ID.")
        return probes[0]
    for entry in probes:
        if str(entry.get("unique_id", "")).startswith(probe):
            return entry
    ids = ", ".join(str(p.get("unique_id")) for p in probes)
    raise InputError(f"No probe with id {probe!r}. Connected: {ids}. Pass one of these with --probe.")


@dataclass(frozen=True)
class FlashPlan:
    method: str
    command: list[str] | None  # pyocd
    source: Path | None  # drive copy: what is copied
    destination: Path | None  # drive copy: where to


def flash_firmware(
    run_dir: str | Path,
    *,
    board: str,
    kernels: str = FirmwareOptions.kernels,
    method: str | None = None,
    probe: str | None = None,
    drive: str | os.PathLike | None = None,
    dry_run: bool = False,
    roots: Iterable[str] = DEFAULT_MOUNT_ROOTS,
) -> dict[str, Any]:
    """Flash the firmware built for ``board``; see the module docstring.

    Example::

        flash_firmware("runs/20250101-120000", board="nucleo-f446re", method="pyocd", dry_run=True)
    """
    board_spec = get_board(board)
    _check_flash_request(run_dir, board, board_spec, method)
    built = load_build(run_dir, board=board, kernels=kernels)
    if not built.elf.is_file():
        raise InputError(f"{built.elf} is missing. Rebuild: edgedistill firmware build {run_dir} --board {board}")

    # Fit check from the image itself (size -B) and the map file, before writing anything.
    size_tool = cross_toolchain().tool("size")
    image = sizes_module.image_sizes(built.elf, size_tool=size_tool, map_file=built.map_file)
    sizes_module.check_image_fits(image, board_spec)

    pyocd = find_pyocd()
    chosen = method or ("pyocd" if pyocd and "pyocd" in board_spec.flash_methods else "drive")
    if chosen == "pyocd":
        plan = _pyocd_plan(board_spec, built, probe=probe, pyocd=pyocd)
    else:
        plan = _drive_plan(board_spec, built, drive=drive, roots=roots)

    result: dict[str, Any] = {
        "board": board,
        "method": plan.method,
        "command": plan.command,
        "source": str(plan.source) if plan.source else None,
        "destination": str(plan.destination) if plan.destination else None,
        "sizes": image.as_dict(),
        "dry_run": dry_run,
        "tested_on_hardware": board_spec.tested,
    }
    if dry_run:
        return result
    output = _carry_out(plan)
    if output is not None:
        result["output"] = output
    return result


def _check_flash_request(run_dir: str | Path, board: str, board_spec: Board, method: str | None) -> None:
    """InputError for a board that is no real hardware, or a method it cannot be flashed with."""
    if board_spec.kind != "board":
        raise InputError(
            f"Board {board!r} is not real hardware; there is nothing to flash. "
            f"Run it instead: edgedistill firmware run {run_dir} --board {board}. "
            "Boards that flash: " + ", ".join(name for name, spec in _boards().items() if spec.kind == "board")
        )
    if method is not None and method not in METHODS:
        raise InputError(f"Unknown --method {method!r}. Expected one of: {', '.join(METHODS)}.")
    if method is not None and method not in board_spec.flash_methods:
        raise InputError(
            f"Board {board!r} cannot be flashed with {method}. Expected one of: {', '.join(board_spec.flash_methods)}."
        )


def _pyocd_plan(board_spec: Board, built: BuildResult, *, probe: str | None, pyocd: str | None) -> FlashPlan:
    """The ``pyocd flash`` command for the one connected probe (or ``probe``), after checking pyOCD knows the target."""
    if pyocd is None:
        raise StageError(
            "pyOCD is not installed: pip install 'edgedistill[flash]' (or pip install pyocd), "
            "or copy to the board's drive with --method drive."
        )
    check_pyocd_target(board_spec, pyocd)
    selected = check_probe(list_probes(pyocd), board_spec, probe)
    return FlashPlan(
        method="pyocd",
        command=pyocd_command(board_spec, built.elf, probe=str(selected.get("unique_id") or "") or probe, pyocd=pyocd),
        source=None,
        destination=None,
    )


def _drive_plan(board_spec: Board, built: BuildResult, *, drive: str | os.PathLike | None, roots: Iterable[str]) -> FlashPlan:
    """The copy to the board's mounted drive: the .bin for DAPLink, a .uf2 (written next to the build) for UF2."""
    target = find_drive(board_spec, drive=drive, roots=roots)
    if drive_kind(target) == "uf2":
        if board_spec.uf2_family_id is None:
            raise InputError(f"{target} is a UF2 drive, but {board_spec.name} has no UF2 family id. Pass the board's own drive.")
        source = built.build_dir / "firmware.uf2"
        source.write_bytes(
            bin_to_uf2(built.bin.read_bytes(), base_address=board_spec.flash_base_address, family_id=board_spec.uf2_family_id)
        )
    else:
        source = built.bin
    return FlashPlan(method="drive", command=None, source=source, destination=target / source.name)


def _carry_out(plan: FlashPlan) -> str | None:
    """Write the firmware as ``plan`` says; pyOCD's output (its last 1000 characters), None for a drive copy."""
    if plan.command is not None:
        completed = subprocess.run(plan.command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise StageError(f"pyOCD failed (exit {completed.returncode}): {completed.stderr.strip()[-300:]}")
        return completed.stdout.strip()[-1000:]
    assert plan.source is not None and plan.destination is not None
    # A plain copy + fsync: the drive's firmware starts programming when the file is closed.
    with open(plan.source, "rb") as source_handle, open(plan.destination, "wb") as handle:
        shutil.copyfileobj(source_handle, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return None


def _boards():
    from edgedistill.firmware.boards import BOARDS

    return BOARDS


__all__ = [
    "bin_to_uf2",
    "parse_uf2",
    "drive_kind",
    "find_drive",
    "pyocd_command",
    "parse_probe_list",
    "list_probes",
    "check_probe",
    "check_pyocd_target",
    "parse_target_list",
    "flash_firmware",
    "METHODS",
]
