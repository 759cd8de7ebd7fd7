"""Benchmark targets: where a model is measured.

Users type a target spec; its scheme picks the implementation from :data:`TARGETS`:

=================  ==================================================================
``local``          the host LiteRT interpreter (subprocess)
``ssh://user@host``  a Raspberry Pi (or any Linux box) through the system OpenSSH client
``adb`` / ``adb:SERIAL``  an Android device through the ``adb`` client and ``benchmark_model``
``qemu-aarch64``   the runner under QEMU user mode in an arm64 Debian root (emulated)
``tflm``           the TFLite Micro interpreter on the host (emulated)
=================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from edgedistill.registry import Registry
from edgedistill.targets.base import BenchConfig, Measurement, Target


@dataclass(frozen=True)
class TargetOptions:
    """Target settings from the command line or a suite file (each target reads its own)."""

    ssh_config: str | None = None
    remote_python: str = "python3"
    accept_new_host_key: bool = False
    connect_timeout_s: float = 10.0
    serial: str | None = None
    benchmark_binary: str | None = None
    taskset: str | None = None
    adb: str = "adb"
    rootfs: str | None = None
    python: str | None = None
    tflm_arena_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


TargetFactory = Callable[[str, TargetOptions], Target]
TARGETS: Registry[TargetFactory] = Registry("benchmark target")


def _local(spec: str, options: TargetOptions) -> Target:
    from edgedistill.targets.local import LocalTarget

    return LocalTarget(spec, python=options.python)


def _ssh(spec: str, options: TargetOptions) -> Target:
    from edgedistill.targets.ssh import SshTarget

    return SshTarget(spec, options)


def _adb(spec: str, options: TargetOptions) -> Target:
    from edgedistill.targets.adb import AdbTarget

    return AdbTarget(spec, options)


def _qemu(spec: str, options: TargetOptions) -> Target:
    from edgedistill.targets.emulator import QemuTarget

    return QemuTarget(spec, options)


def _tflm(spec: str, options: TargetOptions) -> Target:
    from edgedistill.targets.emulator import TflmTarget

    return TflmTarget(spec, options)


TARGETS.add("local", _local)
TARGETS.add("ssh", _ssh)
TARGETS.add("adb", _adb)
TARGETS.add("qemu-aarch64", _qemu)
TARGETS.add("tflm", _tflm)


def scheme_of(spec: str) -> str:
    """``ssh://pi@host`` -> ``ssh``; ``adb:R58M123`` -> ``adb``; ``local`` -> ``local``."""
    if "://" in spec:
        return spec.split("://", 1)[0]
    return spec.split(":", 1)[0]


def make_target(spec: str, options: TargetOptions | None = None) -> Target:
    """Build the target a spec names; unknown schemes list the valid ones."""
    return TARGETS.get(scheme_of(spec))(spec, options or TargetOptions())


__all__ = ["TARGETS", "TargetOptions", "make_target", "scheme_of", "BenchConfig", "Measurement", "Target"]
