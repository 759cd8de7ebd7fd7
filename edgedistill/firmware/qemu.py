"""Run a firmware image in qemu-system-arm (or natively for the host board) and read its result.

QEMU runs with ``-icount shift=0``: virtual time advances exactly 1 ns per guest instruction,
so the SysTick counter (at the board model's processor clock) measures instructions, not real
cycles, and the figure is the same on every machine. Output comes through semihosting
(``-semihosting-config enable=on,target=native``) and the guest's SYS_EXIT ends QEMU.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgedistill.errors import InputError, StageError
from edgedistill.firmware.boards import Board

NS_PER_INSTRUCTION = 1  # -icount shift=0: 2**0 ns of virtual time per instruction


def qemu_command(board: Board, elf: Path, *, qemu: str = "qemu-system-arm") -> list[str]:
    """The qemu-system-arm command line that runs ``elf`` on ``board``."""
    if board.kind != "qemu" or not board.qemu_machine:
        raise InputError(
            f"Board {board.name!r} is not emulated. Expected a QEMU board: "
            "qemu-mps2-an386, qemu-mps3-an547 (or host to run natively)."
        )
    command = [qemu, "-M", board.qemu_machine]
    if board.qemu_cpu:
        command += ["-cpu", board.qemu_cpu]
    return command + [
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
        "-kernel",
        str(elf),
    ]


@dataclass(frozen=True)
class RunOutput:
    command: list[str]
    returncode: int
    output: str
    seconds: float


def run_command(command: list[str], *, timeout_seconds: float, what: str) -> RunOutput:
    """Run ``command``; :class:`StageError` on a timeout (the process is killed) or if it cannot start."""
    started = time.monotonic()
    try:
        completed = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_seconds
        )
    except subprocess.TimeoutExpired as error:
        partial = (error.output or b"").decode(errors="replace").strip()
        raise StageError(
            f"{what} did not finish within {timeout_seconds:g} s and was stopped. "
            f"Output so far: {partial[-300:]!r}. A firmware that hangs (a fault loop, a missing semihosting exit) "
            "never ends; if it is only slow, raise --timeout."
        ) from None
    except OSError as error:
        raise StageError(f"Could not start {command[0]}: {error}.") from None
    return RunOutput(
        command=command,
        returncode=completed.returncode,
        output=completed.stdout.decode(errors="replace"),
        seconds=time.monotonic() - started,
    )


def instructions_per_invoke(ticks_per_invoke: float, ticks_per_second: int) -> float:
    """SysTick ticks -> instructions under ``-icount shift=0`` (1 ns of virtual time per instruction)."""
    return ticks_per_invoke * 1e9 / ticks_per_second / NS_PER_INSTRUCTION


__all__ = ["qemu_command", "run_command", "RunOutput", "instructions_per_invoke"]
