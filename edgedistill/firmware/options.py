"""The options of the firmware commands (``firmware prepare|build|run``, ``flash``), defined once.

Each is a field made by the config's :func:`~edgedistill.config.option` (default, help text, check);
the click options of :mod:`edgedistill.commands.firmware` are generated from these fields and the
library functions (:func:`~edgedistill.firmware.build.build_firmware`, ``run_firmware``,
``flash_firmware``) take their defaults from them, so a default is stated once.
"""

from __future__ import annotations

import dataclasses

from edgedistill.config import Section, option, positive, whole
from edgedistill.firmware.boards import BOARDS, KERNELS

ARENA_SOURCES: tuple[str, ...] = ("measured", "export")


@dataclasses.dataclass(frozen=True)
class FirmwareOptions(Section):
    board: str | None = option(None, "Target board: " + ", ".join(BOARDS) + ".")
    kernels: str = option(
        "reference", "TFLM kernels: reference, or Arm CMSIS-NN (OPTIMIZED_KERNEL_DIR=cmsis_nn).", choices=KERNELS
    )
    tflm_dir: str | None = option(None, "TFLite Micro checkout (default: $TFLM_DIR, else a clone at the pinned commit).")
    jobs: int = option(2, "Parallel compile jobs.", check=whole(1, 64), expected="a whole number in [1, 64]")
    arena: str = option(
        "measured",
        "Tensor arena to compile in: measured on the target with these kernels (a probe run in QEMU or on "
        "the host first), or the export's host-measured kTensorArenaSize.",
        choices=ARENA_SOURCES,
    )
    arena_bytes: int | None = option(
        None, "Compile in this arena size (bytes) instead; no probe.", check=whole(1), expected="a whole number >= 1"
    )
    num_timed_invokes: int = option(
        10, "Timed invokes of the model in the firmware.", check=whole(1, 100_000), expected="a whole number in [1, 100000]"
    )
    timeout_seconds: float = option(
        120.0, "Seconds before QEMU is stopped.", check=positive, expected="a finite number > 0", flag="--timeout"
    )
    build: bool = option(True, "Build first if there is no build.")
    method: str | None = option(None, "pyocd (CMSIS-DAP / ST-LINK probe) or drive (DAPLink / UF2 USB drive).")
    probe: str | None = option(None, "pyOCD probe unique id (when several are connected).")
    drive: str | None = option(None, "Mount point of the board's USB drive.")
    dry_run: bool = option(False, "Check everything and print what would be written, write nothing.", flag="--dry-run")


__all__ = ["FirmwareOptions", "ARENA_SOURCES"]
