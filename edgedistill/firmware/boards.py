"""The boards the firmware builds for: a data table, not code.

Each entry says what a board changes (TFLM target and CPU, memory sizes, clock, how it runs
or is flashed). The C++ side of a board lives in ``firmware/ports/<name>/``. Sizes are the
memory regions of the board's linker script (``firmware/ports/<name>/linker.ld``): flash is
what holds code and read-only data (the model), RAM holds data, bss (the tensor arena) and
the stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgedistill.errors import InputError

KERNELS: tuple[str, ...] = ("reference", "cmsis_nn")
KINDS: tuple[str, ...] = ("qemu", "host", "board")


@dataclass(frozen=True)
class Board:
    """One build target of the firmware.

    Example::

        board = get_board("qemu-mps2-an386")
        board.tflm_target_arch  # 'cortex-m4+fp'
    """

    name: str
    description: str
    kind: str  # one of KINDS
    cpu: str
    tflm_target: str  # TFLM Makefile TARGET
    tflm_target_arch: str  # TFLM Makefile TARGET_ARCH
    kernels: tuple[str, ...] = KERNELS
    flash_bytes: int | None = None  # None: not limited (host)
    ram_bytes: int | None = None
    stack_bytes: int = 0  # reserved by the linker script, part of RAM
    cpu_clock_hz: int | None = None  # SysTick runs at this rate (processor clock)
    qemu_machine: str | None = None
    qemu_cpu: str | None = None
    pyocd_target: str | None = None
    drive_labels: tuple[str, ...] = ()  # volume names of the board's DAPLink / UF2 drive
    uf2_family_id: int | None = None  # set for boards flashed by copying a .uf2 file
    flash_base_address: int = 0
    tested: bool = True  # False: built here, never run on the hardware (no board in this workplace)
    notes: str = ""
    flash_methods: tuple[str, ...] = field(default=())
    # Where the tensor arena is measured for a board that cannot run here: an emulated board with
    # the same TFLM target and CPU, so the same compiled library (and the same kernels' scratch).
    arena_probe_board: str | None = None

    @property
    def runnable_here(self) -> bool:
        """QEMU boards and the host run here; real boards need the hardware."""
        return self.kind in ("qemu", "host")

    @property
    def cross_compiled(self) -> bool:
        return self.kind != "host"


BOARDS: dict[str, Board] = {
    board.name: board
    for board in (
        Board(
            name="qemu-mps2-an386",
            description="Arm MPS2 AN386 (Cortex-M4F, 25 MHz) emulated by qemu-system-arm; semihosting output",
            kind="qemu",
            cpu="cortex-m4",
            tflm_target="cortex_m_generic",
            tflm_target_arch="cortex-m4+fp",
            flash_bytes=4 * 1024 * 1024,  # SSRAM1 at 0x00000000 holds the image
            ram_bytes=4 * 1024 * 1024,  # SSRAM2/3 at 0x20000000
            stack_bytes=16 * 1024,
            cpu_clock_hz=25_000_000,
            qemu_machine="mps2-an386",
            qemu_cpu="cortex-m4",
        ),
        Board(
            name="qemu-mps3-an547",
            description="Arm MPS3 AN547 (Cortex-M55 with MVE, 32 MHz) emulated by qemu-system-arm; semihosting output",
            kind="qemu",
            cpu="cortex-m55",
            tflm_target="cortex_m_generic",
            tflm_target_arch="cortex-m55",
            flash_bytes=512 * 1024,  # ITCM at 0x00000000 holds the image
            ram_bytes=4 * 1024 * 1024,  # SRAM at 0x21000000
            stack_bytes=16 * 1024,
            cpu_clock_hz=32_000_000,
            qemu_machine="mps3-an547",
            qemu_cpu="cortex-m55",
        ),
        Board(
            name="host",
            description="This Linux machine (x86-64 or arm64): a quick local check of the same runner",
            kind="host",
            cpu="host",
            tflm_target="linux",
            tflm_target_arch="",
            kernels=("reference",),
        ),
        Board(
            name="nucleo-f446re",
            description="ST NUCLEO-F446RE (STM32F446RE, Cortex-M4F, 512 KiB flash, 128 KiB RAM); output on the ST-LINK virtual "
            "COM port, 115200 8N1",
            kind="board",
            cpu="cortex-m4",
            tflm_target="cortex_m_generic",
            tflm_target_arch="cortex-m4+fp",
            flash_bytes=512 * 1024,
            ram_bytes=128 * 1024,
            stack_bytes=8 * 1024,
            cpu_clock_hz=16_000_000,  # HSI, no PLL set-up
            pyocd_target="stm32f446retx",
            drive_labels=("NODE_F446RE",),
            flash_base_address=0x0800_0000,
            tested=False,
            flash_methods=("pyocd", "drive"),
            arena_probe_board="qemu-mps2-an386",
            notes=(
                "Built here; never run on hardware (no board in this workplace). pyOCD needs the target pack once: "
                "pyocd pack install stm32f446retx."
            ),
        ),
    )
}


def board_names() -> list[str]:
    return list(BOARDS)


def get_board(name: str) -> Board:
    """The board called ``name``; an :class:`InputError` listing the boards otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise InputError(
            f"Unknown board {name!r}. Expected one of: {', '.join(BOARDS)}. Pass one of these with --board."
        ) from None


def check_kernels(board: Board, kernels: str) -> str:
    if kernels not in KERNELS:
        raise InputError(f"Unknown kernels {kernels!r}. Expected one of: {', '.join(KERNELS)}.")
    if kernels not in board.kernels:
        raise InputError(
            f"Board {board.name!r} does not support kernels={kernels!r}. Expected one of: {', '.join(board.kernels)}."
        )
    return kernels


__all__ = ["Board", "BOARDS", "KERNELS", "board_names", "get_board", "check_kernels"]
