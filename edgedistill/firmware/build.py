"""Build the firmware of a run for one board: ``build_firmware(run_dir, board=..., kernels=...)``.

Steps: validate the micro export and the board; check the model can fit before building;
find the toolchain and the TFLM checkout; build (or reuse) the cached TFLM library; compile
the runner, the port and the generated model sources with ``firmware/Makefile``; measure the
image (``size -B``, map file) and check it fits.

The tensor arena compiled in is measured on the target by default: a probe build with a large
arena runs once (in QEMU, natively for ``host``, or for a real board on the emulated board with
the same TFLM target and CPU), prints ``arena_used_bytes()``, and the real build reserves that
plus the export's margin rule. The export's ``kTensorArenaSize`` is measured on the host with
TFLM's reference kernels, which do not see optimized kernels' scratch buffers (CMSIS-NN on the
Cortex-M55 needs 9,764 bytes for the default student, against 5,204 with reference kernels). Outputs go to
``<run_dir>/firmware/<board>_<kernels>/`` with a ``build.json`` that ``firmware run`` and
``flash`` read.
"""

from __future__ import annotations

import hashlib
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
from edgedistill.micro import ARENA_ALIGNMENT, arena_with_margin
from edgedistill.firmware.boards import Board, check_kernels, get_board
from edgedistill.firmware.options import ARENA_SOURCES, FirmwareOptions
from edgedistill.micro import MicroExport, load_micro_export
from edgedistill.firmware.qemu import qemu_command, run_command
from edgedistill.firmware.result import FirmwareResult, parse_result_block
from edgedistill.firmware.tflm_checkout import ensure_library, firmware_dir, resolve_tflm_dir
from edgedistill.firmware.toolchain import HOST_TOOLS, cross_toolchain, qemu_binary, require_tools

BUILD_INFO = "build.json"
ARENA_PROBE_INFO = "arena_probe.json"
PROBE_MIN_ARENA_BYTES = 1024 * 1024  # the probe reserves at least this much (or what the board's RAM allows)
PROBE_ARENA_FACTOR = 8  # ... and at least 8x the host-measured arena
PROBE_RAM_RESERVE_BYTES = 64 * 1024  # RAM left for the runner's data, bss and heap besides the arena and stack


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


def arena_probe_board(board: Board) -> Board:
    """The board the arena of ``board`` is measured on: itself if it runs here, else its emulated twin."""
    if board.runnable_here:
        return board
    if not board.arena_probe_board:
        raise InputError(
            f"Board {board.name!r} cannot run here and has no emulated board to measure its tensor arena on. "
            "Pass the arena size with --arena-bytes N, or --arena export to use the export's kTensorArenaSize."
        )
    probe = get_board(board.arena_probe_board)
    if (probe.tflm_target, probe.tflm_target_arch) != (board.tflm_target, board.tflm_target_arch):
        raise StageError(
            f"Board table error: {board.name!r} is measured on {probe.name!r}, which builds a different TFLM library "
            f"({probe.tflm_target}/{probe.tflm_target_arch} vs {board.tflm_target}/{board.tflm_target_arch})."
        )
    return probe


def probe_arena_size(board: Board, export_arena_bytes: int) -> int:
    """The arena a probe build reserves: generous, but within the board's RAM."""
    wanted = max(PROBE_MIN_ARENA_BYTES, PROBE_ARENA_FACTOR * export_arena_bytes)
    if board.ram_bytes is None:
        return wanted
    room = board.ram_bytes - board.stack_bytes - PROBE_RAM_RESERVE_BYTES
    return max(min(wanted, room), export_arena_bytes) // ARENA_ALIGNMENT * ARENA_ALIGNMENT


def _probe_key(export: MicroExport, probe: Board, kernels: str, library: Any) -> dict[str, Any]:
    digest = hashlib.sha256()
    for name in ("model_data.cc", "model_op_resolver.h"):
        digest.update((export.micro_dir / name).read_bytes())
    digest.update((firmware_dir() / "src" / "main.cc").read_bytes())
    return {
        "model_sources_sha256": digest.hexdigest(),
        "probe_board": probe.name,
        "kernels": kernels,
        "tflm_commit": library.commit,
    }


def _make_app(export: MicroExport, board: Board, kernels: str, library: Any, out: Path, defines: list[str], jobs: int):
    """Compile and link the runner into ``out`` with ``firmware/Makefile``; StageError with the log's tail if it fails."""
    command = [
        "make",
        "-C",
        str(firmware_dir()),
        f"-j{jobs}",
        f"BOARD={board.name}",
        f"KERNELS={kernels}",
        f"MICRO_DIR={export.micro_dir.resolve()}",
        f"TFLM_LIB_DIR={library.directory}",
        f"BUILD_DIR={out.resolve()}",
        f"EXTRA_DEFINES={' '.join(defines)}",
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    (out / "build.log").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0:
        overflow = sizes_module.linker_overflow(completed.stderr)
        if overflow:
            detail = ", ".join(f"{region} by {count} bytes" for region, count in overflow)
            raise StageError(
                f"The firmware does not fit {board.name}: the linker overflowed {detail}. "
                "Distill a smaller student or pick a board with more memory."
            )
        tail = " | ".join(completed.stderr.strip().splitlines()[-4:])
        raise StageError(f"Building the firmware failed (make exit {completed.returncode}): {tail}. Log: {out / 'build.log'}")


def measure_target_arena(
    export: MicroExport,
    board: Board,
    kernels: str,
    *,
    checkout: Path,
    out: Path,
    jobs: int = 2,
    timeout_seconds: float = 300.0,
) -> dict[str, Any]:
    """The tensor arena the firmware needs on ``board`` with ``kernels``, measured by running a probe build.

    The probe reserves :func:`probe_arena_size` bytes, runs the test samples once and prints
    ``arena_used_bytes()``: what TFLM's allocator used on the target, optimized kernels'
    scratch buffers included. The result is cached in ``out/arena_probe.json`` for the same
    model sources, runner, TFLM commit, kernels and probe board.
    """
    probe = arena_probe_board(board)
    if probe.cross_compiled:
        cross_toolchain()
    library, _ = ensure_library(
        checkout, probe.tflm_target, probe.tflm_target_arch, kernels, jobs=jobs, log_path=out / "tflm_library.log"
    )
    key = _probe_key(export, probe, kernels, library)
    cached_path = out / ARENA_PROBE_INFO
    cached = _cached_probe(cached_path, key)
    if cached is not None:
        return {**cached, "cached": True}

    probe_size = probe_arena_size(probe, export.tensor_arena_size)
    started = time.monotonic()
    parsed = _run_arena_probe(
        export, probe, kernels, library, out / "arena_probe", probe_size=probe_size, jobs=jobs, timeout_seconds=timeout_seconds
    )
    result = {
        "key": key,
        "arena_used_bytes_target": parsed.arena_used_bytes,
        "probe_board": probe.name,
        "probe_arena_bytes": probe_size,
        "pointer_bytes": parsed.integer("pointer_bytes"),
        "seconds": round(time.monotonic() - started, 2),
    }
    write_json_atomic(cached_path, result)
    return {**result, "cached": False}


def _cached_probe(cached_path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The probe result cached in ``cached_path`` when it was measured for ``key``; None when it must be measured."""
    if not cached_path.is_file():
        return None
    cached = json.loads(cached_path.read_text())
    return cached if cached.get("key") == key else None


def _run_arena_probe(
    export: MicroExport,
    probe: Board,
    kernels: str,
    library: Any,
    probe_dir: Path,
    *,
    probe_size: int,
    jobs: int,
    timeout_seconds: float,
) -> FirmwareResult:
    """Build the probe with a ``probe_size`` arena, run it once (QEMU or natively) and parse what it printed.

    StageError when it printed no ``arena_used_bytes``: the arena was too small for the model, or the run failed.
    """
    probe_dir.mkdir(parents=True, exist_ok=True)
    _make_app(
        export,
        probe,
        kernels,
        library,
        probe_dir,
        ["-DEDGEDISTILL_NUM_TIMED_INVOKES=1", f"-DEDGEDISTILL_TENSOR_ARENA_SIZE={probe_size}"],
        jobs,
    )
    elf = probe_dir / "firmware.elf"
    if probe.kind == "qemu":
        command, what = qemu_command(probe, elf, qemu=qemu_binary()), f"The arena probe in QEMU ({probe.qemu_machine})"
    else:
        command, what = [str(elf)], "The host arena probe"
    ran = run_command(command, timeout_seconds=timeout_seconds, what=what)
    (probe_dir / "run.log").write_text(ran.output)
    parsed = parse_result_block(ran.output)
    if parsed.arena_used_bytes is None:
        error = parsed.fields.get("error", "?")
        if error == "allocate_tensors_failed":
            raise StageError(
                f"The model needs more than {probe_size} bytes of tensor arena on {probe.name} with kernels={kernels} "
                f"(the most its RAM allows a probe). Distill a smaller student or pick a board with more RAM."
            )
        raise StageError(f"The arena probe stopped with error={error} on {probe.name}. Log: {probe_dir / 'run.log'}")
    return parsed


@dataclass(frozen=True)
class _LibraryBuild:
    """The TFLM library a firmware links, whether this build compiled it (else it came from the cache), and how long that took."""

    library: Any
    built_now: bool
    seconds: float


def _build_app(
    export: MicroExport,
    board_spec: Board,
    kernels: str,
    library: Any,
    out: Path,
    arena_info: dict[str, Any],
    num_timed_invokes: int,
    jobs: int,
    size_tool: str,
) -> tuple[sizes_module.ImageSizes, float]:
    """Compile and link the firmware with its arena and invoke count, and check its image fits the board:
    (the image's sizes, the seconds the app build took)."""
    defines = [
        f"-DEDGEDISTILL_NUM_TIMED_INVOKES={int(num_timed_invokes)}",
        f"-DEDGEDISTILL_TENSOR_ARENA_SIZE={int(arena_info['kTensorArenaSize'])}",
    ]
    app_started = time.monotonic()
    _make_app(export, board_spec, kernels, library, out, defines, jobs)
    app_seconds = time.monotonic() - app_started

    image = sizes_module.image_sizes(out / "firmware.elf", size_tool=size_tool, map_file=out / "firmware.map")
    if board_spec.cross_compiled:
        sizes_module.check_image_fits(image, board_spec)
    return image, app_seconds


def _fresh_build_dir(export: MicroExport, board_spec: Board, kernels: str) -> Path:
    """The build folder of this run, board and kernels, without the record of an earlier complete build."""
    out = build_dir_for(export.run_dir, board_spec.name, kernels)
    out.mkdir(parents=True, exist_ok=True)
    (out / BUILD_INFO).unlink(missing_ok=True)  # present only for a complete build
    return out


def build_firmware(
    run_dir: str | Path,
    *,
    board: str,
    kernels: str = FirmwareOptions.kernels,
    tflm_dir: str | os.PathLike | None = None,
    jobs: int = FirmwareOptions.jobs,
    arena_bytes: int | None = None,
    num_timed_invokes: int = FirmwareOptions.num_timed_invokes,
    arena: str = FirmwareOptions.arena,
    probe_timeout_seconds: float = 300.0,
) -> BuildResult:
    """Build the firmware of ``run_dir`` for ``board``. See the module docstring.

    ``arena``: ``"measured"`` (default; measure on the target, see :func:`measure_target_arena`)
    or ``"export"`` (the export's host-measured ``kTensorArenaSize``); ``arena_bytes`` overrides both.

    Example::

        result = build_firmware("runs/20250101-120000", board="qemu-mps2-an386", kernels="cmsis_nn")
        result.info["sizes"]["flash_bytes"]
    """
    if arena not in ARENA_SOURCES:
        raise InputError(f"Unknown arena source {arena!r}. Expected 'measured' or 'export' (or pass --arena-bytes N).")
    export, board_spec = prepare(run_dir, board, kernels, arena_bytes=arena_bytes)
    compiler, size_tool = _build_tools(board_spec)
    checkout = resolve_tflm_dir(tflm_dir)
    out = _fresh_build_dir(export, board_spec, kernels)
    library_build = _build_library(checkout, board_spec, kernels, jobs=jobs, out=out)
    arena_info = _arena_info(
        export,
        board_spec,
        kernels,
        arena=arena,
        arena_bytes=arena_bytes,
        checkout=checkout,
        out=out,
        jobs=jobs,
        probe_timeout_seconds=probe_timeout_seconds,
    )

    image, app_seconds = _build_app(
        export, board_spec, kernels, library_build.library, out, arena_info, num_timed_invokes, jobs, size_tool
    )

    info = _build_info(
        export,
        board_spec,
        kernels,
        out,
        image,
        arena_info,
        library_build,
        num_timed_invokes=num_timed_invokes,
        checkout=checkout,
        app_seconds=app_seconds,
        compiler=compiler,
    )
    write_json_atomic(out / BUILD_INFO, info)
    return BuildResult(board=board_spec.name, kernels=kernels, build_dir=out, info=info)


def _build_tools(board_spec: Board) -> tuple[str, str]:
    """The compiler and ``size`` tool of the board's toolchain; StageError naming what to install when one is missing."""
    if board_spec.cross_compiled:
        toolchain = cross_toolchain()
        return toolchain.tool("g++"), toolchain.tool("size")
    require_tools(HOST_TOOLS, purpose="Building the host firmware")
    return "g++", "size"


def _build_library(checkout: Path, board_spec: Board, kernels: str, *, jobs: int, out: Path) -> _LibraryBuild:
    """The board's TFLM library, built now or found in the cache, timed for ``build.json``."""
    started = time.monotonic()
    library, built_now = ensure_library(
        checkout,
        board_spec.tflm_target,
        board_spec.tflm_target_arch,
        kernels,
        jobs=jobs,
        log_path=out / "tflm_library.log",
    )
    return _LibraryBuild(library=library, built_now=built_now, seconds=time.monotonic() - started)


def _arena_info(
    export: MicroExport,
    board_spec: Board,
    kernels: str,
    *,
    arena: str,
    arena_bytes: int | None,
    checkout: Path,
    out: Path,
    jobs: int,
    probe_timeout_seconds: float,
) -> dict[str, Any]:
    """The arena compiled in (``kTensorArenaSize``) and where it comes from: ``--arena-bytes``, the export, or a probe run."""
    if arena_bytes is not None:
        arena_info = {"source": "override", "kTensorArenaSize": int(arena_bytes)}
    elif arena == "export":
        arena_info = {"source": "export", "kTensorArenaSize": export.tensor_arena_size}
    else:
        measured = measure_target_arena(
            export, board_spec, kernels, checkout=checkout, out=out, jobs=jobs, timeout_seconds=probe_timeout_seconds
        )
        size, margin = arena_with_margin(measured["arena_used_bytes_target"])
        arena_info = {
            "source": "measured",
            "kTensorArenaSize": size,
            "margin_bytes": margin,
            **{key: value for key, value in measured.items() if key != "key"},
        }
        # The measured arena can exceed the export's, which prepare() checked: check the fit again.
        sizes_module.check_export_fits(export, board_spec, arena_bytes=size)
    arena_info["export_kTensorArenaSize"] = export.tensor_arena_size
    arena_info["arena_bytes_host"] = export.arena_bytes_host
    return arena_info


def _build_info(
    export: MicroExport,
    board_spec: Board,
    kernels: str,
    out: Path,
    image: sizes_module.ImageSizes,
    arena_info: dict[str, Any],
    library_build: _LibraryBuild,
    *,
    num_timed_invokes: int,
    checkout: Path,
    app_seconds: float,
    compiler: str,
) -> dict[str, Any]:
    """``build.json``: what was built, with which tools and TFLM, its sizes and arena; ``firmware run`` and ``flash`` read it."""
    return {
        "board": board_spec.name,
        "kernels": kernels,
        "cpu": board_spec.cpu,
        "tested_on_hardware": board_spec.tested if board_spec.kind == "board" else None,
        "elf": str(out / "firmware.elf"),
        "bin": str(out / "firmware.bin") if board_spec.cross_compiled else None,
        "map": str(out / "firmware.map"),
        "sizes": image.as_dict(),
        "board_flash_bytes": board_spec.flash_bytes,
        "board_ram_bytes": board_spec.ram_bytes,
        "kTensorArenaSize": arena_info["kTensorArenaSize"],
        "arena": arena_info,
        "arena_bytes_host": export.arena_bytes_host,
        "num_timed_invokes": num_timed_invokes,
        "tflm_dir": str(checkout),
        "tflm_commit": library_build.library.commit,
        "tflm_library": str(library_build.library.archive),
        "tflm_library_built_now": library_build.built_now,
        "tflm_library_seconds": round(library_build.seconds, 2),
        "app_build_seconds": round(app_seconds, 2),
        "compiler": _tool_version(compiler),
        "micro_export": export.metadata,
    }


def prepare_library(
    *,
    board: str,
    kernels: str = FirmwareOptions.kernels,
    tflm_dir: str | os.PathLike | None = None,
    jobs: int = FirmwareOptions.jobs,
):
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
    return BuildResult(board=board, kernels=kernels, build_dir=out, info=read_build_info(info_path, run_dir, board, kernels))


def read_build_info(info_path: Path, run_dir: str | Path, board: str, kernels: str) -> dict[str, Any]:
    """``build.json`` as a mapping; anything else (cut short, edited, another file) is an InputError saying how to rebuild."""
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        problem = f"is not valid JSON ({str(error).splitlines()[0]})"
    else:
        if isinstance(info, dict):
            return info
        problem = f"holds a JSON {type(info).__name__}, not an object"
    raise InputError(
        f"{str(info_path)!r} {problem}. Rebuild it: edgedistill firmware build {run_dir} --board {board} --kernels {kernels}"
    )


__all__ = [
    "BuildResult",
    "build_firmware",
    "load_build",
    "read_build_info",
    "build_dir_for",
    "prepare",
    "prepare_library",
    "measure_target_arena",
    "arena_probe_board",
    "probe_arena_size",
]
