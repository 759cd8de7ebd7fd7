"""``edgedistill firmware prepare|build|run|boards`` and ``edgedistill flash``: thin click commands over
:mod:`edgedistill.firmware`.

Their options are generated from :class:`edgedistill.firmware.options.FirmwareOptions` (one definition
each, checked as they are parsed). Importing this module must not import TensorFlow: the firmware
commands only read the micro export's files and drive make, QEMU and pyOCD.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from edgedistill.commands.options import config_options
from edgedistill.firmware.boards import BOARDS, KERNELS
from edgedistill.firmware.options import ARENA_SOURCES, FirmwareOptions


_SETTINGS: dict[str, dict[str, Any]] = {
    "board": {"metavar": "NAME"},
    "kernels": {"metavar": "|".join(KERNELS)},
    "arena": {"metavar": "|".join(ARENA_SOURCES)},
    "tflm_dir": {"envvar": "TFLM_DIR", "metavar": "PATH", "show_default": False},
    "drive": {"type": click.Path(path_type=str)},
}


def _options(*names: str, **overrides: dict[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The generated click options of ``names`` (FirmwareOptions fields), with a command's own overrides."""
    merged = {name: {**_SETTINGS.get(name, {}), **overrides.get(name, {})} for name in names}
    return config_options(
        [FirmwareOptions], only=names, aliases={"jobs": ("-j",)}, required=("board",), overrides=merged, checked=True
    )


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.group("firmware")
def firmware() -> None:
    """Build the TFLite Micro firmware of a run, and run it in QEMU or on the host."""


@firmware.command("boards")
@_json_option
def boards(as_json: bool) -> None:
    """List the boards the firmware builds for."""
    if as_json:
        click.echo(json.dumps({name: board.__dict__ for name, board in BOARDS.items()}, indent=2, default=list))
        return
    for board in BOARDS.values():
        memory = (
            f"flash {board.flash_bytes // 1024} KiB, RAM {board.ram_bytes // 1024} KiB"
            if board.flash_bytes and board.ram_bytes
            else "no memory limit"
        )
        untested = "" if board.tested else "  [UNTESTED on hardware]"
        click.echo(f"{board.name:18s} {board.kind:6s} {board.cpu:11s} {memory:28s} kernels: {','.join(board.kernels)}{untested}")


@firmware.command("prepare")
@_options("board", "kernels", "tflm_dir", "jobs")
def prepare(board, kernels, tflm_dir, jobs) -> None:
    """Build and cache the TFLM library for --board/--kernels (no run folder needed; the Dockerfile runs this)."""
    from edgedistill.firmware.build import prepare_library

    library, built_now = prepare_library(board=board, kernels=kernels, tflm_dir=tflm_dir, jobs=jobs)
    click.echo(f"{'Built' if built_now else 'Cached'}: {library.archive}")


@firmware.command("build")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@_options("board", "kernels", "tflm_dir", "jobs", "arena", "arena_bytes", "num_timed_invokes")
@_json_option
def build(run_dir, board, kernels, tflm_dir, jobs, arena, arena_bytes, num_timed_invokes, as_json) -> None:
    """Cross-build the firmware of RUN_DIR (a run folder with a micro export) for --board."""
    from edgedistill.firmware.build import build_firmware

    result = build_firmware(
        run_dir,
        board=board,
        kernels=kernels,
        tflm_dir=tflm_dir,
        jobs=jobs,
        arena_bytes=arena_bytes,
        num_timed_invokes=num_timed_invokes,
        arena=arena,
    )
    info = result.info
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    sizes = info["sizes"]
    library = "built now" if info["tflm_library_built_now"] else "cached"
    click.echo(f"Built {result.elf}")
    click.echo(
        f"  flash {sizes['flash_bytes']} bytes (text {sizes['text_bytes']} + data {sizes['data_bytes']}), "
        f"RAM {sizes['ram_bytes']} bytes (data + bss {sizes['bss_bytes']}; arena {sizes['arena_bytes']})"
    )
    arena_info = info["arena"]
    if arena_info["source"] == "measured":
        click.echo(
            f"  arena {arena_info['kTensorArenaSize']} bytes: {arena_info['arena_used_bytes_target']} used on "
            f"{arena_info['probe_board']} with {kernels} kernels + {arena_info['margin_bytes']} margin "
            f"(export's host-measured kTensorArenaSize: {arena_info['export_kTensorArenaSize']})"
        )
    else:
        click.echo(f"  arena {arena_info['kTensorArenaSize']} bytes ({arena_info['source']})")
    click.echo(f"  TFLM {info['tflm_commit'][:12]} library {library}; app built in {info['app_build_seconds']} s")


@firmware.command("run")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@_options(
    "board",
    "kernels",
    "tflm_dir",
    "jobs",
    "timeout_seconds",
    "build",
    "arena",
    # Unset here: an existing build is run as built; a build made now uses the field's default (measured).
    arena={
        "default": None,
        "show_default": False,
        "help": "Arena source when building (default: measured); rebuilds an existing build made with the other source.",
    },
)
@_json_option
def run(run_dir, board, kernels, tflm_dir, jobs, timeout_seconds, build, arena, as_json) -> None:
    """Run the firmware of RUN_DIR in QEMU (or natively for host) and check its outputs."""
    from edgedistill.firmware.run import run_firmware

    result = run_firmware(
        run_dir,
        board=board,
        kernels=kernels,
        timeout_seconds=timeout_seconds,
        build=build,
        tflm_dir=tflm_dir,
        jobs=jobs,
        arena=arena,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    matched = sum(1 for sample in result["samples"] if sample["match"])
    click.echo(
        f"{board} ({kernels}): {result['status']} - {matched}/{len(result['samples'])} samples match the host TFLM outputs"
    )
    arena = result["arena"]
    click.echo(
        f"  arena used on target {arena.get('arena_used_bytes_target')} bytes "
        f"(host 64-bit {arena.get('arena_bytes_host')}, kTensorArenaSize {arena.get('kTensorArenaSize')})"
    )
    if result["instructions_per_invoke"] is not None:
        click.echo(f"  {result['instructions_per_invoke']} instructions per invoke (QEMU -icount, not cycles)")
    front_end = result.get("front_end")
    if front_end:  # an audio export: raw audio -> front end -> model on the target
        cost = (
            f"{front_end['instructions_per_clip']} instructions"
            if front_end["instructions_per_clip"] is not None
            else f"{front_end['latency_ms_per_clip']:.3f} ms"
        )
        click.echo(
            f"  audio front end: {cost} per clip ({front_end['invokes_per_clip']} invokes), arena used "
            f"{front_end['arena_used_bytes']} bytes; {front_end['num_clips']} clips: "
            f"{front_end['feature_mismatches']} feature and {front_end['output_mismatches']} score mismatches"
        )
    elif result["latency_ms"] is not None:
        click.echo(f"  {result['latency_ms']:.3f} ms per invoke (wall clock)")


@click.command("flash")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@_options("board", "kernels", "method", "probe", "drive", "dry_run")
@_json_option
def flash(run_dir, board, kernels, method, probe, drive, dry_run, as_json) -> None:
    """Flash the firmware built for --board from RUN_DIR to a connected board."""
    from edgedistill.firmware.flash import flash_firmware

    result = flash_firmware(run_dir, board=board, kernels=kernels, method=method, probe=probe, drive=drive, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    what = " ".join(result["command"]) if result["command"] else f"copy {result['source']} -> {result['destination']}"
    click.echo(("Would run: " if dry_run else "Flashed: ") + what)
    click.echo(f"  image: flash {result['sizes']['flash_bytes']} bytes, RAM {result['sizes']['ram_bytes']} bytes (fits {board})")


__all__ = ["firmware", "flash"]
