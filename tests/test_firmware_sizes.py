"""Flash/RAM figures of an image and the fit checks (real arm-none-eabi-size when present)."""

from __future__ import annotations

import pytest

from edgedistill.errors import StageError
from edgedistill.firmware.boards import BOARDS
from edgedistill.firmware.sizes import (
    ImageSizes,
    check_image_fits,
    image_sizes,
    linker_overflow,
    parse_map_arena_bytes,
    parse_size_output,
)
from firmware_helpers import build_bare_metal, needs_cross_toolchain


def test_parse_berkeley_size_output():
    text = "   text\t   data\t    bss\t    dec\t    hex\tfilename\n 101234\t     16\t  30000\t 131250\t  200b2\tfirmware.elf\n"
    assert parse_size_output(text) == (101234, 16, 30000)
    with pytest.raises(StageError):
        parse_size_output("size: firmware.elf: file format not recognized")


def test_map_arena_on_one_line_and_on_two_lines():
    one = " .bss._ZN12_GLOBAL__N_112tensor_arenaE\n                0x20000010     0x28f0 obj/main.o\n"
    assert parse_map_arena_bytes(one) == 0x28F0
    same_line = " .bss._ZN12_GLOBAL__N_112tensor_arenaE 0x20000010 0x100 obj/main.o\n"
    assert parse_map_arena_bytes(same_line) == 0x100
    assert parse_map_arena_bytes(" .bss.other\n  0x0 0x10 x.o\n") is None


def test_image_fit_check_uses_text_plus_data_and_data_plus_bss():
    board = BOARDS["nucleo-f446re"]
    fits = ImageSizes(text_bytes=board.flash_bytes - 100, data_bytes=100, bss_bytes=board.ram_bytes - 100)
    check_image_fits(fits, board)
    with pytest.raises(StageError, match="flash"):
        check_image_fits(ImageSizes(text_bytes=board.flash_bytes, data_bytes=1, bss_bytes=0), board)
    with pytest.raises(StageError, match="RAM"):
        check_image_fits(ImageSizes(text_bytes=0, data_bytes=1, bss_bytes=board.ram_bytes), board)


def test_linker_overflow_messages():
    log = "ld: firmware.elf section `.bss' will not fit in region `RAM'\nld: region `RAM' overflowed by 3456 bytes\n"
    assert linker_overflow(log) == [("RAM", 3456)]


@needs_cross_toolchain
@pytest.mark.parametrize("board", ["qemu-mps2-an386", "qemu-mps3-an547", "nucleo-f446re"])
def test_sizes_of_a_real_image_add_up(tmp_path, board):
    """A real ELF from the board's start-up code and linker script: size -B agrees with the linker's layout."""
    elf = build_bare_metal(tmp_path, board)
    sizes = image_sizes(elf, size_tool="arm-none-eabi-size", map_file=tmp_path / "bare.map")
    spec = BOARDS[board]
    assert sizes.text_bytes > 0
    # The linker script reserves the stack (and heap) in RAM: bss is at least the stack.
    assert sizes.bss_bytes >= spec.stack_bytes
    assert sizes.flash_bytes == sizes.text_bytes + sizes.data_bytes
    assert sizes.arena_bytes is None  # no TFLM arena in this program
    check_image_fits(sizes, spec)
