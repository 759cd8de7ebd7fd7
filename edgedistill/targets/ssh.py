"""``ssh://user@host[:port]``: a Raspberry Pi (or any Linux box) through the system OpenSSH client.

Using ``ssh`` and ``scp`` themselves means the user's keys, agent, ``~/.ssh/config`` and
``known_hosts`` just work; ``--ssh-config FILE`` is passed as ``ssh -F``. Per session the target
creates a private temporary folder on the device (``mktemp -d``), copies the model and the
self-contained runner (``edgedistill/_runner.py``) there, runs it with ``--remote-python``
(default ``python3``), reads its JSON lines back as they arrive, and removes the folder.
With ``--benchmark-binary`` it runs TFLite's ``benchmark_model`` instead and parses its output.

Every remote command is built from ``shlex.quote``-d words, with ``--`` before operands, and files
are deployed under names of safe characters (:func:`remote_file_name`), so no model name ever reaches
a remote shell, under scp's SFTP protocol or its legacy one (``scp -O``). An unknown host key is
refused unless ``accept_new_host_key``; a changed one is always refused, and said to be changed.
One connection is shared by all commands of a session (``ControlMaster``).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from edgedistill.targets.benchmark_model import (
    benchmark_model_arguments,
    fill_from_benchmark_model,
    parse_benchmark_model_output,
)

logger = logging.getLogger(__name__)

SSH_ERROR_EXIT = 255  # ssh's own exit code for connection/authentication failures
_SAFE_REMOTE = re.compile(r"[A-Za-z0-9._-]+")
_SAFE_REMOTE_DIR = re.compile(r"/[A-Za-z0-9._/-]+")
# An emulated device (edgedistill's QEMU Pi image) says so in this file; its results are labelled
# `emulated` with the device named there, on whatever host and port it is reached.
EMULATED_MARKER = "/etc/edgedistill-emulated"
# `devices prepare-pi` writes its ssh_config beside this manifest (its "device" names the emulated CPU): a
# session through that file is labelled emulated before it connects, so a Pi that never answers is not
# recorded as a `measured` device. Once connected, the guest's own marker decides.
PI_MANIFEST = "manifest.json"
# The emulated Pi's kernel command line says how its clock runs (`devices start-pi --clock`): with
# `icount`, a guest timing is an instruction count (1 ns each), which its results must say.
CLOCK_PARAMETER = "edgedistill.clock"
GUEST_CMDLINE = "/proc/cmdline"
ICOUNT_LABEL = "-icount: 1 ns per instruction"


def emulated_label(marker: str, kernel_line: str) -> tuple[str, str]:
    """(device, clock) of an emulated device: its marker's first line, and ``icount`` when its kernel line has
    ``edgedistill.clock=icount`` (the device then says so: its times are instruction counts), else ``wall``."""
    device = marker.strip().splitlines()[0][:80]
    if f"{CLOCK_PARAMETER}=icount" in kernel_line.split():
        return f"{device}, {ICOUNT_LABEL}", "icount"
    return device, "wall"


def emulated_device_beside(ssh_config: str | None) -> str | None:
    """The device named by a Pi manifest beside ``ssh_config`` (see :data:`PI_MANIFEST`), else None."""
    if not ssh_config:
        return None
    manifest = Path(ssh_config).expanduser().with_name(PI_MANIFEST)
    try:
        device = json.loads(manifest.read_text(encoding="utf-8")).get("device")
    except (OSError, ValueError, AttributeError):
        return None
    return str(device)[:80] if device else None


def parse_ssh_spec(spec: str) -> tuple[str | None, str, int | None]:
    """``ssh://pi@raspberrypi.local:2222`` -> ("pi", "raspberrypi.local", 2222)."""
    parts = urlsplit(spec)
    if parts.scheme != "ssh" or not parts.hostname:
        raise InputError(f"Bad ssh target {spec!r}. Expected ssh://[user@]host[:port], e.g. ssh://pi@raspberrypi.local.")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"Bad port in ssh target {spec!r}. Expected ssh://[user@]host[:port] with a number.") from None
    if parts.path not in ("", "/"):
        raise InputError(f"ssh target {spec!r} has a path ({parts.path!r}); expected ssh://[user@]host[:port].")
    return parts.username, parts.hostname, port


def explain_ssh_failure(where: str, stderr: str, options: Any) -> str:
    """One line saying what went wrong in ssh terms and how to fix it."""
    text = stderr.strip()
    # First: OpenSSH also prints "Host key verification failed" for a changed key, and a changed
    # key must never be answered with advice to trust it.
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "POSSIBLE DNS SPOOFING" in text:
        return (
            f"{where}: the device's host key has CHANGED since it was recorded in known_hosts; refusing to "
            "connect. This can be a man-in-the-middle attack. Verify the new key with whoever runs the device "
            "(over another channel) before you change known_hosts; --accept-new-host-key does not apply to "
            "changed keys."
        )
    if (
        "Host key verification failed" in text
        or "No ED25519 host key is known" in text
        or ("host key" in text.lower() and "known" in text.lower())
    ):
        return (
            f"{where}: the device's host key is not in known_hosts, so the connection was refused. "
            "Check the key (e.g. `ssh-keyscan HOST`) and add it to known_hosts, or pass --accept-new-host-key "
            "to trust it on first use."
        )
    if "Permission denied" in text:
        return (
            f"{where}: authentication refused ({last_lines(text, 1)}). Set up key login "
            "(`ssh-copy-id USER@HOST`), load your key in ssh-agent, or check the user name; "
            "passwords are not asked for (BatchMode)."
        )
    if "Could not resolve hostname" in text:
        return f"{where}: unknown host ({last_lines(text, 1)}). Check the name or use the device's IP address."
    for marker in (
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Network is unreachable",
        "Operation timed out",
        "Connection closed",
        "Connection reset",
    ):
        if marker in text:
            return (
                f"{where}: cannot reach the device ({marker}). Check that it is on, on the network, and runs "
                "an ssh server; see --connect-timeout."
            )
    return f"{where}: ssh failed: {last_lines(text) or 'no message'}"


def remote_file_name(index: int, name: str) -> str:
    """A name for a deployed file made of ``[A-Za-z0-9._-]`` only, unique per session.

    scp's legacy protocol (``scp -O``, the default of OpenSSH clients before 9.0) hands the remote
    path to the remote shell, SFTP does not: quoting that suits one breaks the other. A name with
    no shell character needs no quoting under either, and the index keeps two ``model.tflite`` from
    different folders apart.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".-") or "file"
    return f"{index}_{safe[:80]}"


class SshTarget(Target):
    """A Linux device reached with the system ``ssh``/``scp`` clients.

    Example::

        options = TargetOptions(ssh_config="~/.ssh/config", remote_python="/home/pi/venv/bin/python")
        with SshTarget("ssh://pi@raspberrypi.local", options) as target:
            m = target.measure(Path("student_int8.tflite"), BenchConfig(num_runs=100, num_threads=4))
    """

    scheme = "ssh"
    kind = "measured"
    can_profile = True  # _runner.py --profile on the device (or benchmark_model --enable_op_profiling with --benchmark-binary)

    def __init__(self, spec: str, options: Any) -> None:
        super().__init__(spec)
        self.user, self.host, self.port = parse_ssh_spec(spec)
        self.options = options
        if options.ssh_config and not Path(options.ssh_config).expanduser().is_file():
            raise InputError(
                f"ssh config file not found: {options.ssh_config!r}. Pass an existing file to "
                "--ssh-config, or omit it to use ~/.ssh/config."
            )
        # "" when the client is not installed: open() says so before any command runs
        self.ssh = shutil.which("ssh") or ""
        self.scp = shutil.which("scp") or ""
        self.remote_dir: str | None = None
        self._control_dir: str | None = None
        self._deployed: dict[str, str] = {}
        self._device: dict[str, Any] = {}
        self.emulated_device = emulated_device_beside(options.ssh_config)
        self.emulated_clock: str | None = None  # known once connected (the guest's kernel line)
        self.kind = "emulated" if self.emulated_device else type(self).kind

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def device_key(self) -> str:
        return f"ssh:{self.destination}:{self.port or ''}"

    def describe(self) -> dict[str, Any]:
        emulated = {"kind": "emulated", "emulated_device": self.emulated_device} if self.emulated_device else {}
        if self.emulated_device and self.emulated_clock:
            emulated["emulated_clock"] = self.emulated_clock
        return {
            **super().describe(),
            **emulated,
            "host": self.host,
            "user": self.user,
            "port": self.port,
            "remote_python": self.options.remote_python,
            "benchmark_binary": self.options.benchmark_binary,
            **({"device": self._device} if self._device else {}),
        }

    # -- ssh plumbing ----------------------------------------------------------------------

    def _common_options(self) -> list[str]:
        options = []
        if self.options.ssh_config:
            options += ["-F", str(Path(self.options.ssh_config).expanduser())]
        options += [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={max(1, int(round(self.options.connect_timeout_s)))}",
            "-o",
            "StrictHostKeyChecking=" + ("accept-new" if self.options.accept_new_host_key else "yes"),
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
        ]
        if self._control_dir:
            options += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlPersist=60"]
        return options

    def ssh_command(self, remote_words: list[str]) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return [
            self.ssh,
            *self._common_options(),
            *port,
            self.destination,
            "--",
            " ".join(shlex.quote(word) for word in remote_words),
        ]

    def run(self, remote_words: list[str], *, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                self.ssh_command(remote_words),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise StageError(f"{self.spec}: `{' '.join(remote_words[:3])}` did not finish in {timeout_s:g} s.") from None

    def _check(self, result: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
        if result.returncode == SSH_ERROR_EXIT:
            raise StageError(explain_ssh_failure(self.spec, result.stderr, self.options))
        if result.returncode != 0:
            raise StageError(
                f"{self.spec}: {what} failed (exit {result.returncode}): {last_lines(result.stderr) or 'no message'}"
            )
        return result

    def copy(self, local: Path, remote_name: str) -> str:
        if not _SAFE_REMOTE.fullmatch(remote_name):
            raise ValueError(f"unsafe remote file name {remote_name!r}")  # a bug: names come from remote_file_name
        remote_path = f"{self.remote_dir}/{remote_name}"
        port = ["-P", str(self.port)] if self.port else []
        # The remote path is made of safe characters only (remote_file_name, _SAFE_REMOTE), so it means
        # the same under SFTP and under the legacy protocol (where the remote shell reads it); the local
        # path is absolute, so a ':' in it is never taken for a host; `--` ends scp's options.
        command = [
            self.scp,
            "-q",
            *self._common_options(),
            *port,
            "--",
            str(local.resolve()),
            f"{self.destination}:{remote_path}",
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, errors="replace", timeout=600, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise StageError(f"{self.spec}: copying {local.name} did not finish in 600 s.") from None
        if result.returncode != 0:
            if result.returncode == SSH_ERROR_EXIT or "Connection" in result.stderr or "lost connection" in result.stderr:
                raise StageError(explain_ssh_failure(self.spec, result.stderr, self.options))
            raise StageError(f"{self.spec}: copying {local.name} failed: {last_lines(result.stderr)}")
        return remote_path

    # -- session ---------------------------------------------------------------------------

    def open(self) -> None:
        if not self.ssh or not self.scp:
            raise StageError("The OpenSSH client (ssh, scp) is not installed. Install it: `apt-get install openssh-client`.")
        self._control_dir = tempfile.mkdtemp(prefix="edgedistill-ssh-")
        try:
            self._open_session()
        except BaseException:
            self.close()  # a failed connection leaves no control folder behind
            raise

    def _open_session(self) -> None:
        result = self._check(
            self.run(
                ["sh", "-c", 'mktemp -d "${TMPDIR:-/tmp}/edgedistill.XXXXXX"'], timeout_s=self.options.connect_timeout_s + 30
            ),
            "creating a temporary folder",
        )
        lines = result.stdout.strip().splitlines()
        if not lines or not _SAFE_REMOTE_DIR.fullmatch(lines[-1]):
            raise StageError(
                f"{self.spec}: `mktemp -d` printed {result.stdout!r}; expected a folder path of "
                "letters, digits and / . _ - (set TMPDIR on the device to such a folder)."
            )
        self.remote_dir = lines[-1]
        self._deployed = {}
        self._read_emulated_marker()
        logger.debug("%s: session folder %s", self.spec, self.remote_dir)

    def _read_emulated_marker(self) -> None:
        marker = self.run(["cat", "--", EMULATED_MARKER], timeout_s=self.options.connect_timeout_s + 30)
        if marker.returncode == SSH_ERROR_EXIT:
            raise StageError(explain_ssh_failure(self.spec, marker.stderr, self.options))
        self.emulated_device = self.emulated_clock = None
        if marker.returncode == 0 and marker.stdout.strip():
            kernel_line = self.run(["cat", "--", GUEST_CMDLINE], timeout_s=self.options.connect_timeout_s + 30).stdout
            self.emulated_device, self.emulated_clock = emulated_label(marker.stdout, kernel_line)
        # An instance attribute: new_measurement() and describe() label every result of this session.
        self.kind = "emulated" if self.emulated_device else type(self).kind

    def close(self) -> None:
        try:
            if self.remote_dir and "/edgedistill." in self.remote_dir:
                self.run(["rm", "-rf", "--", self.remote_dir], timeout_s=30)
        except StageError as error:
            logger.debug("%s: could not remove %s: %s", self.spec, self.remote_dir, error)
        finally:
            self.remote_dir = None
            if self._control_dir:
                port = ["-p", str(self.port)] if self.port else []
                subprocess.run(
                    [self.ssh, *self._common_options(), *port, "-O", "exit", self.destination],
                    capture_output=True,
                    timeout=15,
                    stdin=subprocess.DEVNULL,
                )
                shutil.rmtree(self._control_dir, ignore_errors=True)
                self._control_dir = None

    def _deploy(self, local: Path, remote_name: str) -> str:
        key = f"{local.resolve()}:{local.stat().st_mtime_ns}"
        if key not in self._deployed:
            logger.debug("%s: copying %s", self.spec, local)
            self._deployed[key] = self.copy(local, remote_file_name(len(self._deployed), remote_name))
        return self._deployed[key]

    # -- measuring -------------------------------------------------------------------------

    def measure(self, model: Path, config: BenchConfig) -> Measurement:
        if self.remote_dir is None:
            self.open()
        if self.options.benchmark_binary:
            return self._measure_with_benchmark_model(model, config)
        measurement = self.new_measurement(model, config)
        started = time.monotonic()
        remote_runner = self._deploy(RUNNER_PATH, "edgedistill_runner.py")
        remote_model = self._deploy(model, model.name)
        remote_inputs = self._deploy(Path(config.inputs), "inputs" + Path(config.inputs).suffix) if config.inputs else None
        words = [self.options.remote_python, remote_runner, *runner_arguments(remote_model, config, inputs_path=remote_inputs)]
        output = RunnerOutput()
        exit_code, stderr, timed_out = run_streaming(self.ssh_command(words), timeout_s=config.timeout_s, on_line=output.feed)
        if exit_code == SSH_ERROR_EXIT and not output.error:
            output.fill(measurement)
            measurement.status = "failed"
            measurement.wall_s = time.monotonic() - started
            measurement.error = (
                f"{explain_ssh_failure(self.spec, stderr, self.options)} "
                f"(connection lost after {len(output.samples_ms)} samples; they are kept)"
            )
            return measurement
        if exit_code == 127 and not output.device:
            output.fill(measurement)
            measurement.status = "failed"
            measurement.error = (
                f"{self.spec}: {self.options.remote_python!r} was not found on the device. Install "
                "Python 3 there (`sudo apt install python3 python3-numpy`) or pass --remote-python "
                "PATH (e.g. a venv's bin/python)."
            )
            return measurement
        measurement = finish_from_runner(
            measurement,
            output,
            exit_code,
            stderr,
            timed_out,
            where=self.spec,
            started=started,
            timeout_s=config.timeout_s,
            hint_no_interpreter="Or pass --remote-python PATH for a Python that has one, or --benchmark-binary.",
        )
        self._device = measurement.target.get("device", {})
        if self.emulated_device and measurement.ok:
            measurement.extra.update(compare_with_host(model, config, measurement.extra))
        return measurement

    def _measure_with_benchmark_model(self, model: Path, config: BenchConfig) -> Measurement:
        binary = Path(self.options.benchmark_binary)
        if not binary.is_file():
            raise InputError(
                f"benchmark_model binary not found: {str(binary)!r}. Pass the path of TFLite's "
                "benchmark_model built for the device."
            )
        measurement = self.new_measurement(model, config)
        started = time.monotonic()
        remote_binary = self._deploy(binary, "benchmark_model")
        self._check(self.run(["chmod", "+x", "--", remote_binary]), "chmod")
        remote_model = self._deploy(model, model.name)
        words = [remote_binary, *benchmark_model_arguments(remote_model, config)]
        if self.options.taskset:
            words = ["taskset", self.options.taskset, *words]
        lines: list[str] = []
        exit_code, stderr, timed_out = run_streaming(self.ssh_command(words), timeout_s=config.timeout_s, on_line=lines.append)
        measurement.wall_s = time.monotonic() - started
        text = "".join(lines) + "\n" + stderr
        measurement.extra["benchmark_model_output_tail"] = text.strip().splitlines()[-12:]
        if timed_out:
            measurement.status, measurement.error = "failed", f"{self.spec}: timed out after {config.timeout_s:g} s."
            return measurement
        if exit_code == SSH_ERROR_EXIT:
            measurement.status, measurement.error = "failed", explain_ssh_failure(self.spec, stderr, self.options)
            return measurement
        try:
            fill_from_benchmark_model(measurement, parse_benchmark_model_output(text))
        except ValueError as error:
            measurement.status, measurement.error = "failed", f"{self.spec}: {error}"
        return measurement


def compare_with_host(model: Path, config: BenchConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Run the model once with the host's LiteRT on the same inputs; compare with the device's outputs.

    Returns ``outputs_match_host`` (True, False, or None when it could not be checked, with
    ``outputs_check`` saying why) and ``outputs_max_abs_diff``. The device's values are dropped
    from the record once compared. Same interpreter settings as the device (XNNPACK on or off).
    """
    device_values = extra.pop("output_values", None)
    device_digest = extra.get("input_sha256")
    if device_values is None or device_digest is None:
        return {"outputs_match_host": None, "outputs_check": "the device sent no output values (outputs too large)"}
    try:
        host_digest, host_values, runtime = _host_outputs(model, config)
    except (Exception, SystemExit) as error:  # no LiteRT on the host (the runner exits), or it cannot load the model
        return {"outputs_match_host": None, "outputs_check": f"host LiteRT failed: {type(error).__name__}: {error}"}
    if host_digest != device_digest:
        return {
            "outputs_match_host": None,
            "outputs_check": "the host generated other inputs than the device (numpy versions differ?)",
        }
    import numpy as np

    diffs = [
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))
        for a, b in zip(device_values, host_values)
    ]
    shapes_equal = [len(a) for a in device_values] == [len(b) for b in host_values]
    max_diff = max(diffs, default=0.0) if shapes_equal else None
    return {
        "outputs_match_host": bool(shapes_equal and max_diff == 0.0),
        "outputs_max_abs_diff": max_diff,
        "outputs_check": f"host {runtime}, same inputs (sha256 {host_digest[:12]})",
    }


def _host_outputs(model: Path, config: BenchConfig) -> tuple[str, list[list[float]], str]:
    """(input digest, flattened outputs, runtime) of one invoke on the host, set up as the runner does."""
    import numpy as np

    from edgedistill import _runner

    interpreter_class, runtime, version, module = _runner.load_interpreter_class("auto")
    options: dict[str, Any] = {"num_threads": config.num_threads}
    resolver = getattr(getattr(module, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
    if not config.use_xnnpack and resolver is not None:
        options["experimental_op_resolver_type"] = resolver
    interpreter = interpreter_class(model_content=model.read_bytes(), **options)
    interpreter.allocate_tensors()
    for detail, array in zip(interpreter.get_input_details(), _runner.make_inputs(interpreter, np, config.inputs, config.seed)):
        interpreter.set_tensor(detail["index"], array)
    interpreter.invoke()
    record = _runner.output_record(interpreter, np, max_values=1 << 30)
    return record["input_sha256"], record["output_values"], f"{runtime} {version}"


__all__ = ["SshTarget", "compare_with_host", "parse_ssh_spec", "explain_ssh_failure", "remote_file_name"]
