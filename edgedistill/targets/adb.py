"""``adb`` / ``adb:SERIAL``: an Android device (or emulator such as ``emulator-5554``) via the adb client.

Uses the real ``adb`` client (Debian package ``adb``; the server port follows adb's own
``ANDROID_ADB_SERVER_PORT``). Pushes TFLite's ``benchmark_model`` binary (the user provides it:
``--benchmark-binary`` or ``EDGEDISTILL_BENCHMARK_MODEL``) and the model to a private folder
under ``/data/local/tmp``, runs it with the tool's own flag names, optionally pinned with
``taskset``, parses its output and removes the folder. Records ``getprop`` model, SoC and
Android version. ``benchmark_model`` prints aggregate statistics only, so ``samples_ms`` is
empty and p90/p99 are not available on this target (p5/median/p95 are, in newer builds).
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from edgedistill.errors import InputError, StageError
from edgedistill.targets.base import BenchConfig, Measurement, Target, last_lines, run_streaming
from edgedistill.targets.benchmark_model import (
    benchmark_model_arguments,
    fill_from_benchmark_model,
    parse_benchmark_model_output,
)

logger = logging.getLogger(__name__)

DEVICE_TMP = "/data/local/tmp"
PROPS = {
    "model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "soc": "ro.soc.model",
    "board_platform": "ro.board.platform",
    "android_version": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "abi": "ro.product.cpu.abi",
}
ENV_BINARY = "EDGEDISTILL_BENCHMARK_MODEL"


def parse_devices(text: str) -> list[dict[str, str]]:
    """Rows of ``adb devices -l``: serial, state and the key:value facts."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        row = {"serial": parts[0], "state": parts[1]}
        for part in parts[2:]:
            key, sep, value = part.partition(":")
            if sep:
                row[key] = value
        devices.append(row)
    return devices


class AdbTarget(Target):
    """An Android device measured with TFLite's ``benchmark_model`` through ``adb``.

    Example::

        options = TargetOptions(serial="R58M123", benchmark_binary="./benchmark_model", taskset="f0")
        with AdbTarget("adb", options) as target:
            m = target.measure(Path("student_int8.tflite"), BenchConfig(num_runs=100, num_threads=4))
    """

    scheme = "adb"
    kind = "measured"
    can_profile = True  # benchmark_model --enable_op_profiling=true

    def __init__(self, spec: str, options: Any) -> None:
        super().__init__(spec)
        self.options = options
        _, _, serial = spec.partition(":")
        self.serial = options.serial or serial or None
        self.adb = shutil.which(options.adb) or options.adb
        binary = options.benchmark_binary or os.environ.get(ENV_BINARY)
        self.binary = Path(binary) if binary else None
        self.remote_dir: str | None = None
        self._device: dict[str, Any] = {}
        self._pushed: dict[str, str] = {}

    @property
    def device_key(self) -> str:
        return f"adb:{self.serial or 'default'}"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "serial": self.serial,
            "benchmark_binary": str(self.binary) if self.binary else None,
            "taskset": self.options.taskset,
            **({"device": self._device} if self._device else {}),
        }

    def _adb(self, *arguments: str, timeout_s: float = 120.0, serial: bool = True) -> subprocess.CompletedProcess:
        command = [self.adb, *(["-s", self.serial] if serial and self.serial else []), *arguments]
        try:
            return subprocess.run(
                command, capture_output=True, text=True, errors="replace", timeout=timeout_s, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise StageError(
                f"The adb client was not found ({self.adb!r}). Install it: `apt-get install adb`, "
                "or the Android SDK platform-tools."
            ) from None
        except subprocess.TimeoutExpired:
            raise StageError(
                f"{self.spec}: `adb {' '.join(arguments[:2])}` did not finish in {timeout_s:g} s; is the device still connected?"
            ) from None

    def shell(self, command_words: list[str], *, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
        # One argument: adb sends it as is to the device's `sh -c`; each word is quoted by us.
        return self._adb("shell", " ".join(shlex.quote(w) for w in command_words), timeout_s=timeout_s)

    def _check(self, result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
        if result.returncode != 0:
            raise StageError(
                f"{self.spec} ({self.serial}): {what} failed (exit {result.returncode}): "
                f"{last_lines(result.stderr + result.stdout) or 'no message'}"
            )
        return result

    def choose_device(self) -> str:
        listing = self._adb("devices", "-l", serial=False, timeout_s=self.options.connect_timeout_s + 20)
        if listing.returncode != 0:
            raise StageError(f"`adb devices` failed: {last_lines(listing.stderr) or 'no message'}")
        devices = parse_devices(listing.stdout)
        ready = [d for d in devices if d["state"] == "device"]
        if self.serial:
            match = [d for d in devices if d["serial"] == self.serial]
            if not match:
                known = ", ".join(d["serial"] for d in devices) or "none"
                raise InputError(
                    f"No adb device with serial {self.serial!r} (attached: {known}). Check "
                    "`adb devices -l` and the --serial value."
                )
            if match[0]["state"] != "device":
                raise StageError(
                    f"adb device {self.serial} is {match[0]['state']!r}, not ready. "
                    "Unlock it and accept USB debugging, or reconnect it."
                )
            return self.serial
        if not ready:
            others = ", ".join(f"{d['serial']} ({d['state']})" for d in devices)
            raise InputError(
                "No adb device is attached"
                + (f" and ready (seen: {others})" if others else "")
                + ". Connect one with USB debugging on (or `adb connect HOST:PORT`), then check "
                "`adb devices -l`."
            )
        if len(ready) > 1:
            raise InputError(
                f"Several adb devices are attached ({', '.join(d['serial'] for d in ready)}). "
                "Choose one with --serial SERIAL (or --target adb:SERIAL)."
            )
        return ready[0]["serial"]

    def open(self) -> None:
        if self.binary is None:
            raise InputError(
                "The adb target runs TFLite's benchmark_model on the device, and none was given. "
                f"Pass --benchmark-binary PATH (or set {ENV_BINARY}) to a benchmark_model built for "
                "the device (e.g. android_aarch64_benchmark_model from the TensorFlow project's "
                "prebuilt nightlies, or `bazel build -c opt --config=android_arm64 "
                "//tensorflow/lite/tools/benchmark:benchmark_model`)."
            )
        if not self.binary.is_file():
            raise InputError(
                f"benchmark_model binary not found: {str(self.binary)!r}. Pass the path of TFLite's "
                "benchmark_model built for the device."
            )
        self.serial = self.choose_device()
        query = "; ".join(f"getprop {prop}" for prop in PROPS.values())
        props = self._check(self._adb("shell", query), "reading getprop").stdout.splitlines()
        self._device = {name: (props[i].strip() if i < len(props) else "") for i, name in enumerate(PROPS)}
        self._device["serial"] = self.serial
        self.remote_dir = f"{DEVICE_TMP}/edgedistill-{secrets.token_hex(4)}"
        logger.debug("adb %s (%s): session folder %s", self.serial, self._device.get("model"), self.remote_dir)
        self._check(self.shell(["mkdir", "-p", self.remote_dir]), "creating a folder in /data/local/tmp")
        self._pushed = {}
        self._push(self.binary, "benchmark_model")
        self._check(self.shell(["chmod", "755", f"{self.remote_dir}/benchmark_model"]), "chmod benchmark_model")

    def close(self) -> None:
        if self.remote_dir:
            try:
                self.shell(["rm", "-rf", self.remote_dir], timeout_s=30)
            except StageError as error:
                logger.debug("adb %s: could not remove %s: %s", self.serial, self.remote_dir, error)
            self.remote_dir = None

    def _push(self, local: Path, name: str) -> str:
        key = f"{local.resolve()}:{local.stat().st_mtime_ns}"
        if key not in self._pushed:
            remote = f"{self.remote_dir}/{name}"
            logger.debug("adb %s: pushing %s to %s", self.serial, local, remote)
            self._check(self._adb("push", str(local), remote, timeout_s=600), f"pushing {local.name}")
            self._pushed[key] = remote
        return self._pushed[key]

    def measure(self, model: Path, config: BenchConfig) -> Measurement:
        if self.remote_dir is None:
            self.open()
        measurement = self.new_measurement(model, config)
        measurement.target = self.describe()
        started = time.monotonic()
        remote_model = self._push(model, model.name)
        words = [f"{self.remote_dir}/benchmark_model", *benchmark_model_arguments(remote_model, config)]
        if self.options.taskset:
            words = ["taskset", self.options.taskset, *words]
        command = [self.adb, "-s", self.serial, "shell", " ".join(shlex.quote(w) for w in words)]
        lines: list[str] = []
        exit_code, stderr, timed_out = run_streaming(command, timeout_s=config.timeout_s, on_line=lines.append)
        measurement.wall_s = time.monotonic() - started
        text = "".join(lines) + "\n" + stderr
        measurement.extra["benchmark_model_output_tail"] = text.strip().splitlines()[-12:]
        if timed_out:
            measurement.status = "failed"
            measurement.error = (
                f"{self.spec} ({self.serial}): timed out after {config.timeout_s:g} s. Raise "
                "--timeout or lower --num-runs / --min-secs."
            )
            return measurement
        try:
            fill_from_benchmark_model(measurement, parse_benchmark_model_output(text))
        except ValueError as error:
            measurement.status = "failed"
            lost = any(marker in text for marker in ("device offline", "not found", "closed", "no devices"))
            measurement.error = f"{self.spec} ({self.serial}): " + (
                f"the device was lost mid-run (adb exit {exit_code}: {last_lines(text, 2)})."
                if lost
                else f"{error} (exit {exit_code})."
            )
            return measurement
        if exit_code != 0:
            measurement.status = "failed"
            measurement.error = f"{self.spec} ({self.serial}): benchmark_model exited {exit_code}: {last_lines(text)}"
        return measurement


__all__ = ["AdbTarget", "parse_devices"]
