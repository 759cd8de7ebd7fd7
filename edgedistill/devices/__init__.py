"""Emulated devices edgedistill can prepare, start and stop (today: a Raspberry Pi in QEMU).

This package knows nothing of targets: it builds a disk image, boots it and says how to reach it
(``ssh://pi@127.0.0.1:PORT`` with the ssh config the image comes with). The ssh target measures
there like on any device. Nothing here imports TensorFlow.
"""

from edgedistill.devices.pi import (
    PiLayout,
    pi_layout,
    prepare_pi,
    pi_status,
    start_pi,
    stop_pi,
)

__all__ = ["PiLayout", "pi_layout", "prepare_pi", "pi_status", "start_pi", "stop_pi"]
