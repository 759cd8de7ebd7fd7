"""Build the firmware of a run for one board: ``build_firmware(run_dir, board=..., kernels=...)``.

Steps: validate the micro export and the board; check the model can fit before building;
find the toolchain and the TFLM checkout; build (or reuse) the cached TFLM library; compile
the runner, the port and the generated model sources with ``firmware/Makefile``; measure the
image (``size -B``, map file) and check it fits. Outputs go to
``<run_dir>/firmware/<board>_<kernels>/`` with a ``build.json`` that ``firmware run`` and
``flash`` read.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.errors import InputError, StageError
from edgedistill.fileio import write_json_atomic
from edgedistill.firmware import sizes as sizes_module
from edgedistill.firmware.boards import Board, check_kernels, get_board
from edgedistill.firmware.export import MicroExport, load_micro_export
from edgedistill.firmware.tflm import ensure_library, firmware_dir, resolve_tflm_dir
from edgedistill.firmware.toolchain import HOST_TOOLS, cross_toolchain, require_tools

BUILD_INFO = "build.json"


def build_dir_for(run_dir: str | Path, board: str, kernels: str) -> Path:
    return Path(run_dir) / "firmware" / f"{board}_{kernels}"


@dataclass(frozen=True)
class BuildResult:
    board: str
    kernels: str
    build_dir: Path
    info: dict[str, Any]

    @property
    def elf(self) -> Path:
        return self.build_dir / "firmware.elf"

    @property
    def bin(self) -> Path:
        return self.build_dir / "firmware.bin"

    @property
    def map_file(self) -> Path:
        return self.build_dir / "firmware.map"


def _tool_version(tool: str) -> str:
    try:
        completed = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (completed.stdout.strip().splitlines() or ["unknown"])[0]


def prepare(run_dir: str | Path, board_name: str, kernels: str, *, arena_bytes: int | None = None) -> tuple[MicroExport, Board]:
    """The checks that need no toolchain: board, kernels, export, and fit before building."""
    board = get_board(board_name)
    check_kernels(board, kernels)
    export = load_micro_export(run_dir)
    if arena_bytes is not None and arena_bytes <= 0:
        raise InputError(f"--arena-bytes must be > 0. Received: {arena_bytes}.")
    sizes_module.check_export_fits(export, board, arena_bytes=arena_bytes)
    return export, board


def build_firmware(
    run_dir: str | Path,
    *,
    board: str,
    kernels: str = "reference",
    tflm_dir: str | os.PathLike | None = None,
    jobs: int = 2,
    arena_bytes: int | None = None,
    num_timed_invokes: int = 10,
) -> BuildResult:
    """Build the firmware of ``run_dir`` for ``board``. See the module docstring.

    Example::

        result = build_firmware("runs/20250101-120000", board="qemu-mps2-an386", kernels="cmsis_nn")
        result.info["sizes"]["flash_bytes"]
    """
    export, board_spec = prepare(run_dir, board, kernels, arena_bytes=arena_bytes)
    if board_spec.cross_compiled:
        toolchain = cross_toolchain()
        compiler = toolchain.tool("g++")
        size_tool = toolchain.tool("size")
    else:
        require_tools(HOST_TOOLS, purpose="Building the host firmware")
        compiler, size_tool = "g++", "size"
    checkout = resolve_tflm_dir(tflm_dir)

    out = build_dir_for(export.run_dir, board_spec.name, kernels)
    out.mkdir(parents=True, exist_ok=True)
    (out / BUILD_INFO).unlink(missing_ok=True)  # present only for a complete build

    started = time.monotonic()
    library, built_now = ensure_library(
        checkout,
        board_spec.tflm_target,
        board_spec.tflm_target_arch,
        kernels,
        jobs=jobs,
        log_path=out / "tflm_library.log",
    )
    library_seconds = time.monotonic() - started

    defines = [f"-DEDGEDISTILL_NUM_TIMED_INVOKES={int(num_timed_invokes)}"]
    if arena_bytes is not None:
        defines.append(f"-DEDGEDISTILL_TENSOR_ARENA_SIZE={int(arena_bytes)}")
    command = [
        "make",
        "-C",
        str(firmware_dir()),
        f"-j{jobs}",
        f"BOARD={board_spec.name}",
        f"KERNELS={kernels}",
        f"MICRO_DIR={export.micro_dir.resolve()}",
        f"TFLM_LIB_DIR={library.directory}",
        f"BUILD_DIR={out.resolve()}",
        f"EXTRA_DEFINES={' '.join(defines)}",
    ]
    app_started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True)
    (out / "build.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        overflow = sizes_module.linker_overflow(completed.stderr)
        if overflow:
            detail = ", ".join(f"{region} by {count} bytes" for region, count in overflow)
            raise StageError(
                f"The firmware does not fit {board_spec.name}: the linker overflowed {detail}. "
                "Distill a smaller student or pick a board with more memory."
            )
        tail = " | ".join(completed.stderr.strip().splitlines()[-4:])
        raise StageError(f"Building the firmware failed (make exit {completed.returncode}): {tail}. Log: {out / 'build.log'}")
    app_seconds = time.monotonic() - app_started

    elf = out / "firmware.elf"
    image = sizes_module.image_sizes(elf, size_tool=size_tool, map_file=out / "firmware.map")
    if board_spec.cross_compiled:
        sizes_module.check_image_fits(image, board_spec)

    info = {
        "board": board_spec.name,
        "kernels": kernels,
        "cpu": board_spec.cpu,
        "tested_on_hardware": board_spec.tested if board_spec.kind == "board" else None,
        "elf": str(elf),
        "bin": str(out / "firmware.bin") if board_spec.cross_compiled else None,
        "map": str(out / "firmware.map"),
        "sizes": image.as_dict(),
        "board_flash_bytes": board_spec.flash_bytes,
        "board_ram_bytes": board_spec.ram_bytes,
        "kTensorArenaSize": export.arena_bytes,
        "arena_bytes_override": arena_bytes,
        "arena_bytes_host": export.arena_bytes_host,
        "num_timed_invokes": num_timed_invokes,
        "tflm_dir": str(checkout),
        "tflm_commit": library.commit,
        "tflm_library": str(library.archive),
        "tflm_library_built_now": built_now,
        "tflm_library_seconds": round(library_seconds, 2),
        "app_build_seconds": round(app_seconds, 2),
        "compiler": _tool_version(compiler),
        "micro_export": export.metadata,
    }
    write_json_atomic(out / BUILD_INFO, info)
    return BuildResult(board=board_spec.name, kernels=kernels, build_dir=out, info=info)


def prepare_library(*, board: str, kernels: str = "reference", tflm_dir: str | os.PathLike | None = None, jobs: int = 2):
    """Build (or find) the cached TFLM library a board needs, without a run folder. Returns (library, built_now)."""
    board_spec = get_board(board)
    check_kernels(board_spec, kernels)
    if board_spec.cross_compiled:
        cross_toolchain()
    else:
        require_tools(HOST_TOOLS, purpose="Building the host firmware")
    checkout = resolve_tflm_dir(tflm_dir)
    return ensure_library(checkout, board_spec.tflm_target, board_spec.tflm_target_arch, kernels, jobs=jobs)


def load_build(run_dir: str | Path, *, board: str, kernels: str) -> BuildResult:
    """A completed build; :class:`InputError` with the build command if there is none."""
    get_board(board)
    out = build_dir_for(run_dir, board, kernels)
    info_path = out / BUILD_INFO
    if not info_path.is_file():
        raise InputError(
            f"No firmware built for board {board!r} with kernels={kernels!r} in {str(run_dir)!r} "
            f"(no {info_path}). Build it first: edgedistill firmware build {run_dir} --board {board} --kernels {kernels}"
        )
    return BuildResult(board=board, kernels=kernels, build_dir=out, info=json.loads(info_path.read_text()))


__all__ = ["BuildResult", "build_firmware", "load_build", "build_dir_for", "prepare", "prepare_library"]
