"""TFLite Micro firmware: build for a board, run in QEMU or on the host, flash to hardware.

The C++ application and the board ports are in the repository's ``firmware/`` folder; this
package drives them. Nothing here imports TensorFlow.
"""

from edgedistill.firmware.boards import BOARDS, KERNELS, Board, get_board
from edgedistill.firmware.build import build_firmware, load_build
from edgedistill.firmware.flash import flash_firmware
from edgedistill.firmware.run import run_firmware

__all__ = ["BOARDS", "KERNELS", "Board", "get_board", "build_firmware", "load_build", "run_firmware", "flash_firmware"]
