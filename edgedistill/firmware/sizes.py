"""Flash and RAM of a firmware image, and whether it fits a board.

Two checks:
- before building (:func:`check_export_fits`): lower bounds only, the model's bytes against
  flash and ``kTensorArenaSize`` plus the stack against RAM, so a model that can never fit
  fails at once, without a build;
- after building (:func:`image_sizes` + :func:`check_image_fits`): exact figures from
  ``arm-none-eabi-size -B`` (flash = text + data, RAM = data + bss; the arena, stack and heap
  are in bss) and the arena's own size from the linker map file.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgedistill.errors import InputError, StageError
from edgedistill.firmware.boards import Board
from edgedistill.micro import MicroExport


def _kib(value: int) -> str:
    return f"{value} bytes ({value / 1024:.1f} KiB)"


def check_export_fits(export: MicroExport, board: Board, *, arena_bytes: int | None = None) -> None:
    """:class:`InputError` if the model alone exceeds flash, or the arena and stack exceed RAM."""
    arena = export.tensor_arena_size if arena_bytes is None else arena_bytes
    if board.flash_bytes is not None and export.model_size_bytes > board.flash_bytes:
        raise InputError(
            f"The model ({_kib(export.model_size_bytes)}) does not fit the flash of {board.name} "
            f"({_kib(board.flash_bytes)}), before any code. Expected a model smaller than the flash: "
            "distill a smaller student (fewer filters/layers) or pick a board with more flash."
        )
    if board.ram_bytes is not None and arena + board.stack_bytes > board.ram_bytes:
        raise InputError(
            f"The tensor arena (kTensorArenaSize = {_kib(arena)}) plus the {board.stack_bytes}-byte stack does not "
            f"fit the RAM of {board.name} ({_kib(board.ram_bytes)}). Expected at most "
            f"{board.ram_bytes - board.stack_bytes} bytes of arena: distill a smaller student (smaller activations) "
            "or pick a board with more RAM."
        )


@dataclass(frozen=True)
class ImageSizes:
    """Berkeley sizes of an ELF image (``size -B``), and the arena from the map file."""

    text_bytes: int
    data_bytes: int
    bss_bytes: int
    arena_bytes: int | None = None

    @property
    def flash_bytes(self) -> int:
        return self.text_bytes + self.data_bytes

    @property
    def ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes

    def as_dict(self) -> dict[str, int | None]:
        return {
            "text_bytes": self.text_bytes,
            "data_bytes": self.data_bytes,
            "bss_bytes": self.bss_bytes,
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "arena_bytes": self.arena_bytes,
        }


def parse_size_output(text: str) -> tuple[int, int, int]:
    """``(text, data, bss)`` from the output of ``size -B -d FILE``."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and all(field.isdigit() for field in fields[:3]):
            return int(fields[0]), int(fields[1]), int(fields[2])
    raise StageError(f"Could not read the output of `size -B -d`: {text.strip()[:200]!r}")


_ARENA_SYMBOL = "tensor_arena"


def parse_map_arena_bytes(map_text: str) -> int | None:
    """The size of the tensor arena's input section in a GNU ld map file (None if absent).

    GNU ld prints ``.bss.<mangled tensor_arena>`` then, on the same or the next line,
    ``0x<address> 0x<size> <object file>``.
    """
    lines = map_text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith(".bss.") or _ARENA_SYMBOL not in stripped.split()[0]:
            continue
        fields = stripped.split()[1:]
        if len(fields) < 2 and index + 1 < len(lines):
            fields = lines[index + 1].split()
        if len(fields) >= 2 and fields[1].startswith("0x"):
            return int(fields[1], 16)
    return None


def image_sizes(elf: Path, *, size_tool: str, map_file: Path | None = None) -> ImageSizes:
    completed = subprocess.run([size_tool, "-B", "-d", str(elf)], capture_output=True, text=True)
    if completed.returncode != 0:
        raise StageError(f"`{size_tool} -B -d {elf}` failed: {completed.stderr.strip()}")
    text, data, bss = parse_size_output(completed.stdout)
    arena = None
    if map_file is not None and map_file.is_file():
        arena = parse_map_arena_bytes(map_file.read_text(errors="replace"))
    return ImageSizes(text_bytes=text, data_bytes=data, bss_bytes=bss, arena_bytes=arena)


def check_image_fits(sizes: ImageSizes, board: Board) -> None:
    """:class:`StageError` if a built image does not fit the board's flash or RAM."""
    problems = []
    if board.flash_bytes is not None and sizes.flash_bytes > board.flash_bytes:
        problems.append(f"flash {_kib(sizes.flash_bytes)} > {_kib(board.flash_bytes)}")
    if board.ram_bytes is not None and sizes.ram_bytes > board.ram_bytes:
        problems.append(f"RAM {_kib(sizes.ram_bytes)} > {_kib(board.ram_bytes)}")
    if problems:
        raise StageError(
            f"The firmware image does not fit {board.name}: {'; '.join(problems)}. "
            "Distill a smaller student or pick a board with more memory."
        )


_LINKER_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def linker_overflow(log_text: str) -> list[tuple[str, int]]:
    """``[(region, bytes)]`` from GNU ld's "region `RAM' overflowed by N bytes" messages."""
    return [(region, int(count)) for region, count in _LINKER_OVERFLOW.findall(log_text)]


__all__ = [
    "ImageSizes",
    "check_export_fits",
    "check_image_fits",
    "image_sizes",
    "parse_size_output",
    "parse_map_arena_bytes",
    "linker_overflow",
]
