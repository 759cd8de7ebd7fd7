"""Emulated targets: figures from them are labelled ``emulated`` and are never device times.

- ``qemu-aarch64``: the runner under QEMU user mode (``qemu-aarch64-static``) in an arm64 Debian
  bookworm root file system, a stand-in for Raspberry Pi OS 64-bit (same ABI and Python stack;
  not the Pi's CPU, caches or clocks: the latency is QEMU's translation speed on this host).
  The root is prepared once (debootstrap + LiteRT from PyPI) and cached; see :func:`prepare_rootfs`
  or ``python -m edgedistill.targets.emulator prepare-rootfs``.
- ``tflm``: the model in the real TFLite Micro interpreter (PyPI ``tflite-micro``) on the host, in a
  subprocess; reports the arena actually used. Host-CPU time, not a microcontroller's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgedistill.errors import InputError, StageError
from edgedistill.targets.base import (
    RUNNER_PATH,
    BenchConfig,
    Measurement,
    RunnerOutput,
    Target,
    finish_from_runner,
    last_lines,
    run_streaming,
    runner_arguments,
)

logger = logging.getLogger(__name__)

DEFAULT_ROOTFS = "/var/cache/edgedistill/rootfs-arm64-bookworm"
MARKER = ".edgedistill-rootfs.json"
# The one TFLM runner (edgedistill/tflm.py), run by path: `tflm.py bench --model ...`.
TFLM_RUNNER_PATH = Path(__file__).resolve().parent.parent / "tflm.py"
QEMU = "qemu-aarch64-static"


def rootfs_path(options: Any = None) -> Path:
    return Path((options and options.rootfs) or os.environ.get("EDGEDISTILL_ROOTFS") or DEFAULT_ROOTFS)


def rootfs_ready(path: str | os.PathLike) -> dict[str, Any] | None:
    """The marker's content when the root file system is complete (the marker is written last)."""
    marker = Path(path) / MARKER
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _check_can_prepare() -> None:
    """Root, debootstrap and qemu-user-static, with arm64 binfmt enabled; StageError naming what is missing."""
    if os.geteuid() != 0:
        raise StageError(
            "Preparing the arm64 root file system needs root (debootstrap, chroot). Run it as root: "
            "`sudo python -m edgedistill.targets.emulator prepare-rootfs`."
        )
    for tool, package in (("debootstrap", "debootstrap"), (QEMU, "qemu-user-static")):
        if not shutil.which(tool):
            raise StageError(f"`{tool}` is not installed. Install it: `apt-get install {package}`.")
    subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)


def _debootstrap(partial: Path, suite: str, mirror: str) -> None:
    """A minimal arm64 Debian ``suite`` with Python into ``partial``: the first stage on the host, the second
    under QEMU; then the host's CA certificates and resolver, so pip inside the root works as on the host."""
    logger.info(f"debootstrap {suite} arm64 into {partial} (first stage)")
    subprocess.run(
        [
            "debootstrap",
            "--arch=arm64",
            "--foreign",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,ca-certificates",
            suite,
            str(partial),
            mirror,
        ],
        check=True,
    )
    host_qemu = shutil.which(QEMU)
    assert host_qemu is not None  # checked by _check_can_prepare
    shutil.copy(host_qemu, partial / "usr/bin" / QEMU)
    logger.info("second stage under QEMU (about 8-10 minutes)")
    subprocess.run(["chroot", str(partial), "/debootstrap/debootstrap", "--second-stage"], check=True)
    # pip inside the root must trust what the host trusts (e.g. a proxy's CA), and resolve names.
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", partial / "etc/ssl/certs/ca-certificates.crt")
    shutil.copy("/etc/resolv.conf", partial / "etc/resolv.conf")


def _pip_install(partial: Path, packages: tuple[str, ...]) -> str:
    """pip-install ``packages`` (arm64 wheels) into the root's system Python; the installed ai-edge-litert version."""
    logger.info(f"pip install {' '.join(packages)} (arm64 wheels)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    subprocess.run(
        [
            "chroot",
            str(partial),
            "/usr/bin/python3",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--break-system-packages",
            "--disable-pip-version-check",
            *packages,
        ],
        check=True,
        env=env,
    )
    return subprocess.run(
        ["chroot", str(partial), "/usr/bin/python3", "-c", "import importlib.metadata as m; print(m.version('ai-edge-litert'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def prepare_rootfs(
    path: str | os.PathLike = DEFAULT_ROOTFS,
    *,
    suite: str = "bookworm",
    mirror: str = "http://deb.debian.org/debian",
    packages: tuple[str, ...] = ("ai-edge-litert", "numpy"),
) -> Path:
    """Build an arm64 Debian root with Python, numpy and LiteRT, once (about 11 minutes, ~450 MB).

    Needs root, ``debootstrap`` and ``qemu-user-static`` with binfmt enabled (the second stage runs
    arm64 programs). Built in ``PATH.partial`` and renamed; the marker file is written last, so
    an interrupted build is never taken for a complete one.
    """
    path = Path(path)
    if rootfs_ready(path):
        return path
    _check_can_prepare()
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _debootstrap(partial, suite, mirror)
    version = _pip_install(partial, packages)
    if path.exists():
        shutil.rmtree(path)
    partial.rename(path)
    tmp = path / (MARKER + ".partial")
    tmp.write_text(json.dumps({"suite": suite, "arch": "arm64", "packages": list(packages), "ai_edge_litert": version}) + "\n")
    tmp.rename(path / MARKER)
    return path


class QemuTarget(Target):
    """The runner under QEMU user mode in an arm64 Debian root (emulated; not device time)."""

    scheme = "qemu-aarch64"
    kind = "emulated"
    can_profile = True  # _runner.py --profile under QEMU user mode

    def __init__(self, spec: str, options: Any) -> None:
        super().__init__(spec)
        self.options = options
        self.rootfs = rootfs_path(options)
        self.work: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "host": "localhost",
            "rootfs": str(self.rootfs),
            "rootfs_marker": rootfs_ready(self.rootfs),
            "emulates": "Raspberry Pi OS 64-bit stand-in: Debian bookworm arm64 under QEMU user mode",
        }

    def open(self) -> None:
        if not rootfs_ready(self.rootfs):
            raise StageError(
                f"No prepared arm64 root file system at {self.rootfs} (marker {MARKER} absent). "
                "Prepare it once (about 11 minutes, ~450 MB, as root): "
                "`python -m edgedistill.targets.emulator prepare-rootfs`, or point --rootfs / "
                "EDGEDISTILL_ROOTFS at one."
            )
        if os.geteuid() != 0:
            raise StageError(
                "The qemu-aarch64 target runs the runner with chroot into the arm64 root, which "
                "needs root. Run as root (e.g. in the CI container)."
            )
        if not (self.rootfs / "usr/bin" / QEMU).exists():
            host_qemu = shutil.which(QEMU)
            if not host_qemu:
                raise StageError(f"`{QEMU}` is not installed. Install it: `apt-get install qemu-user-static`.")
            shutil.copy(host_qemu, self.rootfs / "usr/bin" / QEMU)
        self.work = Path(tempfile.mkdtemp(prefix="edgedistill-", dir=self.rootfs / "tmp"))
        shutil.copy(RUNNER_PATH, self.work / "runner.py")

    def close(self) -> None:
        if self.work:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def measure(self, model: Path, config: BenchConfig) -> Measurement:
        if self.work is None:
            self.open()
        assert self.work is not None  # open() made it
        measurement = self.new_measurement(model, config)
        started = time.monotonic()
        shutil.copy(model, self.work / model.name)
        inside = "/" + str(self.work.relative_to(self.rootfs))
        inputs = None
        if config.inputs:
            shutil.copy(config.inputs, self.work / ("inputs" + Path(config.inputs).suffix))
            inputs = f"{inside}/inputs{Path(config.inputs).suffix}"
        # The emulator is named explicitly, so running does not depend on binfmt_misc.
        command = [
            shutil.which("chroot") or "/usr/sbin/chroot",
            str(self.rootfs),
            f"/usr/bin/{QEMU}",
            "/usr/bin/python3",
            f"{inside}/runner.py",
            *runner_arguments(f"{inside}/{model.name}", config, inputs_path=inputs),
        ]
        output = RunnerOutput()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        usage: dict[str, Any] = {}
        exit_code, stderr, timed_out = run_streaming(
            command, timeout_s=config.timeout_s, on_line=output.feed, env=env, usage=usage
        )
        measurement = finish_from_runner(
            measurement, output, exit_code, stderr, timed_out, where="qemu-aarch64", started=started, timeout_s=config.timeout_s
        )
        if measurement.peak_rss_bytes is None and usage.get("max_rss_bytes"):
            # /proc is not mounted in the root, so the runner cannot read VmHWM: take the peak RSS of the
            # QEMU process from wait4 (it includes QEMU's own translation buffers).
            measurement.peak_rss_bytes = usage["max_rss_bytes"]
            measurement.extra["peak_rss_source"] = "wait4 ru_maxrss of the qemu-aarch64 process"
        measurement.extra["note"] = "emulated: QEMU user-mode translation on the host, not Raspberry Pi time"
        return measurement


class TflmTarget(Target):
    """The real TFLite Micro interpreter on the host, in a subprocess (emulated; not MCU time)."""

    scheme = "tflm"
    kind = "emulated"
    can_profile = True  # tflm.py bench --profile (one-operator models on TFLM)

    def __init__(self, spec: str, options: Any) -> None:
        super().__init__(spec)
        self.options = options
        self._stderr = ""

    @property
    def device_key(self) -> str:
        return "local"  # it runs on the host CPU: never at the same time as the local target

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "host": "localhost",
            "emulates": "TFLite Micro interpreter on the host CPU (not a microcontroller)",
        }

    def measure(self, model: Path, config: BenchConfig) -> Measurement:
        given = self.options.tflm_arena_bytes
        measurement, output, exit_code = self._run(model, config, arena=given or 0)
        if _crashed(exit_code, output) and not given:
            # A crash (not a clean "arena too small", which the runner grows past itself) may still be
            # a too-small arena: one more try with a much larger one before blaming the model.
            first = output.init.get("arena_size_bytes") or model.stat().st_size * 10 + 16 * 1024
            measurement, output, exit_code = self._run(model, config, arena=first * 8)
            if _crashed(exit_code, output):
                return self._crash_failure(
                    measurement,
                    output,
                    exit_code,
                    f"with a {first}-byte arena and again with {first * 8} bytes; the model is "
                    "probably corrupt or uses an op TFLM cannot run (check it with "
                    "`edgedistill info MODEL`)",
                )
        elif _crashed(exit_code, output):
            return self._crash_failure(
                measurement,
                output,
                exit_code,
                f"with the {given}-byte arena given by --arena-bytes, which may be too small; "
                "omit --arena-bytes to let bench grow the arena, or pass a larger one",
            )
        return measurement

    def _run(self, model: Path, config: BenchConfig, *, arena: int) -> tuple[Measurement, RunnerOutput, int | None]:
        """One run of the TFLM bench runner (``arena`` 0: the runner picks and grows it)."""
        measurement = self.new_measurement(model, config)
        started = time.monotonic()
        command = [
            self.options.python or sys.executable,
            str(TFLM_RUNNER_PATH),
            "bench",
            "--model",
            str(model),
            "--num-runs",
            str(config.num_runs),
            "--warmup-runs",
            str(config.warmup_runs),
            "--min-secs",
            repr(float(config.min_secs)),
            "--arena-bytes",
            str(arena),
            "--seed",
            str(config.seed),
            *(["--profile"] if config.profile else []),
        ]
        output = RunnerOutput()
        exit_code, stderr, timed_out = run_streaming(command, timeout_s=config.timeout_s, on_line=output.feed)
        self._stderr = stderr
        # The result event carries arena_total_bytes / _head_ / _tail_ (TFLM's allocation report): into extra.
        measurement = finish_from_runner(
            measurement, output, exit_code, stderr, timed_out, where="tflm", started=started, timeout_s=config.timeout_s
        )
        measurement.num_threads = 1  # TFLM is single-threaded
        if measurement.ok and "arena_total_bytes" not in measurement.extra:
            measurement.extra["arena_total_bytes"] = None
        measurement.extra["note"] = "emulated: TFLM on the host CPU, not microcontroller time"
        return measurement, output, exit_code

    def _crash_failure(self, measurement: Measurement, output: RunnerOutput, exit_code: int | None, detail: str) -> Measurement:
        said = last_lines(self._stderr, 1)
        measurement.status = "failed"
        measurement.error = f"tflm: the TFLM interpreter crashed (signal {-(exit_code or 0)}) {detail}" + (
            f". TFLM said: {said}" if said else "."
        )
        return measurement


def _crashed(exit_code: int | None, output: RunnerOutput) -> bool:
    return exit_code is not None and exit_code < 0 and not output.error


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edgedistill.targets.emulator")
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare-rootfs", help="build the cached arm64 root for --target qemu-aarch64")
    prepare.add_argument("path", nargs="?", default=str(rootfs_path()))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # this module's own command line
    if args.command == "prepare-rootfs":
        started = time.monotonic()
        path = prepare_rootfs(args.path)
        print(f"ready: {path} ({rootfs_ready(path)}) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()


__all__ = ["QemuTarget", "TflmTarget", "prepare_rootfs", "rootfs_ready", "DEFAULT_ROOTFS", "InputError"]
