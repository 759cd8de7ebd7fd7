"""An emulated Raspberry Pi: Debian 12 arm64 under ``qemu-system-aarch64 -M virt -cpu cortex-a72``.

Layout of the folder (``$EDGEDISTILL_PI_DIR``, else ``~/.cache/edgedistill/pi``)::

    image/      the prepared image; complete only when image/manifest.json exists (built in
                .image-build-*, renamed into place): rootfs.raw, vmlinuz, initrd.img, id_ed25519,
                known_hosts (the guest host key, generated at prepare time), ssh_config
    run/        the running VM: state.json (pid, port), overlay.qcow2 (a qcow2 overlay over
                rootfs.raw: benchmarks never change the prepared image), console.log, qemu.log

The VM is reached as ``ssh://pi@127.0.0.1:PORT`` with ``--ssh-config DIR/image/ssh_config``
(login key, known_hosts with the recorded host key, StrictHostKeyChecking yes).

Acceleration: TCG (software emulation). KVM could only run a guest of the host's own
architecture; on an x86-64 host an aarch64 guest never can, so no ``-enable-kvm`` is passed.

Clock (``start_pi(clock=...)``): ``wall`` (default) gives the guest the host's time, so a guest
timing counts every time slice the host gives another process (+-10 % between back-to-back runs
measured on an idle 2-core host). ``icount`` runs QEMU with ``-icount shift=0,sleep=on``: while the
guest computes, its clock advances 1 ns per instruction executed (idle, at real time), so a latency
is an instruction count, the same on a loaded host as on an idle one, and per-op profiles add up;
the kernel command line carries ``edgedistill.clock=icount`` so the ssh target labels its results.

Example::

    layout = pi_layout(None)
    prepare_pi(layout)
    state = start_pi(layout)        # returns once sshd answers
    ...  # edgedistill bench m.tflite --target ssh://pi@127.0.0.1:{state['port']} --ssh-config ...
    stop_pi(layout)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgedistill.errors import InputError, StageError
from edgedistill.targets.ssh import CLOCK_PARAMETER, PI_MANIFEST

logger = logging.getLogger(__name__)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prepare-pi.sh"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEVICE_NAME = "cortex-a72 (QEMU TCG)"
GUEST_USER = "pi"
# The guest's Python packages: the runner imports numpy and ai_edge_litert. The host's versions
# are pinned so the VM's int8 kernels are the ones the host compares against.
GUEST_PACKAGES = ("ai-edge-litert", "numpy")
MACHINE = ("-M", "virt", "-cpu", "cortex-a72", "-smp", "4", "-m", "2048")
# shift=0: 1 ns of guest time per instruction; sleep=on: an idle guest's clock follows real time, so its
# network timeouts (sshd's login grace) do not race ahead while it waits for the host.
ICOUNT = ("-icount", "shift=0,sleep=on")
CLOCKS = ("wall", "icount")


@dataclass(frozen=True)
class PiLayout:
    """Where the image and the running VM's files live."""

    root: Path

    @property
    def image(self) -> Path:
        return self.root / "image"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def manifest(self) -> Path:
        return self.image / PI_MANIFEST  # beside ssh_config: the ssh target reads the device name from it

    @property
    def state(self) -> Path:
        return self.run / "state.json"

    @property
    def ssh_config(self) -> Path:
        return self.image / "ssh_config"

    def prepared(self) -> bool:
        return self.manifest.is_file()


def pi_layout(directory: str | os.PathLike | None) -> PiLayout:
    """The Pi folder: ``directory``, else ``$EDGEDISTILL_PI_DIR``, else ``~/.cache/edgedistill/pi``."""
    chosen = directory or os.environ.get("EDGEDISTILL_PI_DIR") or "~/.cache/edgedistill/pi"
    return PiLayout(Path(chosen).expanduser().absolute())


@contextlib.contextmanager
def _locked(layout: PiLayout) -> Iterator[None]:
    """One prepare/start/stop at a time per folder (a second caller waits)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# -- prepare ------------------------------------------------------------------------------------


def host_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The host's Debian mirror (first non-security ``URIs:`` / ``deb`` line), else deb.debian.org."""
    files = sorted((sources_dir / "sources.list.d").glob("*.sources")) + [sources_dir / "sources.list"]
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            url = words[1] if words[:1] == ["URIs:"] and len(words) > 1 else None
            if words[:1] == ["deb"]:
                url = next((w for w in words[1:] if "://" in w), None)
            if url and "/debian" in url and "security" not in url:
                return url
    return DEFAULT_MIRROR


def guest_requirements() -> list[str]:
    """``name==host version`` for each guest package (unpinned where the host lacks it)."""
    from importlib import metadata

    requirements = []
    for name in GUEST_PACKAGES:
        try:
            requirements.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            requirements.append(name)
    return requirements


def _check_prepare_tools() -> None:
    missing = [
        tool
        for tool in ("mmdebstrap", "arch-test", "qemu-aarch64-static", "mkfs.ext4", "ssh-keygen", "bash")
        if shutil.which(tool) is None
    ]
    if missing:
        raise StageError(
            f"prepare-pi needs {', '.join(missing)}, which is not installed. Install the Debian "
            "packages with `make system-deps` (scripts/install-system-deps.sh: mmdebstrap arch-test "
            "qemu-user-static binfmt-support e2fsprogs openssh-client)."
        )
    if os.geteuid() != 0:
        raise StageError(
            "prepare-pi builds the image with mmdebstrap's root mode and must run as root "
            f"(running as uid {os.geteuid()}). Run it with sudo, or as root in a container."
        )


def _unmount_below(path: Path) -> bool:
    """Unmount whatever an interrupted mmdebstrap left mounted under ``path``; True when none is left."""

    def mounted() -> list[str]:
        with open("/proc/mounts", encoding="utf-8") as handle:
            points = [line.split()[1].replace("\\040", " ") for line in handle]
        return [point for point in points if point == str(path) or point.startswith(str(path) + "/")]

    for point in sorted(mounted(), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    return not mounted()


def _remove_build(path: Path) -> None:
    # Never rm -rf a tree with /proc or /dev still mounted in it: that would reach the host's.
    if _unmount_below(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        logger.warning("left %s in place: something is still mounted under it", path)


def prepare_pi(layout: PiLayout, *, mirror: str | None = None, log=print) -> dict[str, Any]:
    """Build the image once (a second call returns the manifest at once). Returns the manifest."""
    if layout.prepared():
        return {**json.loads(layout.manifest.read_text(encoding="utf-8")), "cached": True}
    _check_prepare_tools()
    with _locked(layout):
        if layout.prepared():  # built by a concurrent caller while we waited
            return {**json.loads(layout.manifest.read_text(encoding="utf-8")), "cached": True}
        for stale in layout.root.glob(".image-build-*"):
            _remove_build(stale)
        build = layout.root / f".image-build-{os.getpid()}"
        build.mkdir()
        try:
            manifest = _build_image(layout, build, mirror or host_mirror(), log)
            (build / PI_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            os.rename(build, layout.image)
        except BaseException:
            _remove_build(build)
            raise
    return {**manifest, "cached": False}


def _build_image(layout: PiLayout, build: Path, mirror: str, log) -> dict[str, Any]:
    requirements = guest_requirements()
    command = ["bash", str(SCRIPT), str(build), str(layout.image), mirror, sys.executable, *requirements]
    started = time.monotonic()
    log_path = layout.root / "prepare.log"
    with open(log_path, "w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", stdin=subprocess.DEVNULL
        )
        assert process.stdout is not None  # stdout=PIPE
        for line in process.stdout:
            log_file.write(line)
            if line.startswith("prepare-pi:"):
                log(line.rstrip())
        exit_code = process.wait()
    if exit_code != 0:
        tail = " | ".join(log_path.read_text(encoding="utf-8").strip().splitlines()[-3:])
        raise StageError(f"Building the Pi image failed (exit {exit_code}): {tail}. Full log: {log_path}.")
    return {
        "debian": "bookworm",
        "arch": "arm64",
        "mirror": mirror,
        "guest_packages": requirements,
        "prepare_s": round(time.monotonic() - started, 1),
        "image_bytes": (build / "rootfs.raw").stat().st_size,
        "device": DEVICE_NAME,
        "user": GUEST_USER,
    }


# -- start / stop / status -----------------------------------------------------------------------


def _qemu_escape(path: Path) -> str:
    """A path inside a QEMU ``key=value,...`` option: commas are doubled."""
    return str(path).replace(",", ",,")


def qemu_command(layout: PiLayout, port: int, clock: str = "wall") -> list[str]:
    """The qemu-system-aarch64 command line (a list: no shell ever reads it)."""
    image = layout.image
    kernel_line = "root=/dev/vda rw console=ttyAMA0 quiet"
    return [
        "qemu-system-aarch64",
        *MACHINE,
        "-accel",
        "tcg",
        *(ICOUNT if clock == "icount" else ()),
        "-kernel",
        str(image / "vmlinuz"),
        "-initrd",
        str(image / "initrd.img"),
        "-append",
        f"{kernel_line} {CLOCK_PARAMETER}={clock}",
        "-drive",
        f"if=none,file={_qemu_escape(layout.run / 'overlay.qcow2')},format=qcow2,id=hd",
        "-device",
        "virtio-blk-device,drive=hd",
        "-netdev",
        f"user,id=net,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-device,netdev=net",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{layout.run / 'console.log'}",
    ]


def _pid_is_our_qemu(pid: int, layout: PiLayout) -> bool:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    overlay = _qemu_escape(layout.run / "overlay.qcow2").encode()
    return bool(words) and words[0].endswith(b"qemu-system-aarch64") and any(overlay in word for word in words)


def _read_state(layout: PiLayout) -> dict[str, Any] | None:
    try:
        return json.loads(layout.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ssh_probe_command(layout: PiLayout, port: int, connect_timeout_s: int = 5) -> list[str]:
    return [
        "ssh",
        "-F",
        str(layout.ssh_config),
        "-p",
        str(port),
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={connect_timeout_s}",
        f"{GUEST_USER}@127.0.0.1",
        "--",
        "true",
    ]


def _ssh_answers(layout: PiLayout, port: int) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            ssh_probe_command(layout, port),
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        return False, "ssh did not answer in 30 s"
    return result.returncode == 0, result.stderr.strip()


def pi_status(layout: PiLayout) -> dict[str, Any]:
    """``{"prepared", "running", "ssh_ready", "port", "pid"}`` of the folder's VM."""
    state = _read_state(layout) or {}
    pid = state.get("pid")
    running = isinstance(pid, int) and _pid_is_our_qemu(pid, layout)
    ready = running and _ssh_answers(layout, state["port"])[0]
    return {
        "prepared": layout.prepared(),
        "running": running,
        "ssh_ready": ready,
        "port": state.get("port") if running else None,
        "pid": pid if running else None,
        "clock": state.get("clock", "wall") if running else None,
        "ssh_config": str(layout.ssh_config),
    }


def _require_prepared(layout: PiLayout) -> None:
    if not layout.prepared():
        raise InputError(
            f"No emulated Pi image in {layout.root} (no {layout.manifest.name}). Build it first: "
            f"`edgedistill devices prepare-pi {layout.root}` (or set EDGEDISTILL_PI_DIR)."
        )
    if shutil.which("qemu-system-aarch64") is None:
        raise StageError(
            "qemu-system-aarch64 is not installed. Install it: `apt-get install qemu-system-arm` (or `make system-deps`)."
        )


def _kill(pid: int, layout: PiLayout) -> None:
    if not _pid_is_our_qemu(pid, layout):
        return
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _pid_is_our_qemu(pid, layout):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent
            time.sleep(0.1)
        if not _pid_is_our_qemu(pid, layout):
            return


def _clear_run(layout: PiLayout) -> None:
    for name in ("state.json", "overlay.qcow2"):
        with contextlib.suppress(FileNotFoundError):
            (layout.run / name).unlink()


def stop_pi(layout: PiLayout) -> bool:
    """Stop the folder's VM; True when one was running. A stale state file is just removed."""
    with _locked(layout):
        state = _read_state(layout) or {}
        pid = state.get("pid")
        was_running = False
        if isinstance(pid, int) and _pid_is_our_qemu(pid, layout):
            _kill(pid, layout)
            was_running = True
        _clear_run(layout)
    return was_running


def start_pi(
    layout: PiLayout, *, port: int | None = None, timeout_s: float = 900.0, clock: str = "wall", log=print
) -> dict[str, Any]:
    """Boot the VM on a fresh overlay; return its state once sshd answers (or raise, leaving no VM)."""
    if clock not in CLOCKS:
        raise InputError(f"Unknown clock {clock!r}; expected one of {', '.join(CLOCKS)}.")
    _require_prepared(layout)
    with _locked(layout):
        state = _read_state(layout)
        if state and isinstance(state.get("pid"), int) and _pid_is_our_qemu(state["pid"], layout):
            _check_running_matches(layout, state, port, clock)
            return {**state, "already_running": True}
        _clear_run(layout)  # a dead run's state file and overlay never block this start
        if port is not None and not _port_free(port):
            raise InputError(
                f"Port {port} on 127.0.0.1 is taken by another program. Pass another --port, or omit --port to pick a free one."
            )
        chosen = port if port is not None else _free_port()
        return _boot(layout, chosen, timeout_s, log, clock)


def _check_running_matches(layout: PiLayout, state: dict[str, Any], port: int | None, clock: str) -> None:
    """A start that asks for another port or clock than the running VM's fails: it would not get them."""
    if port is not None and port != state.get("port"):
        raise InputError(
            f"The emulated Pi in {layout.root} already runs on port {state['port']} (asked: "
            f"{port}). Use that port, or `edgedistill devices stop-pi` first."
        )
    running_clock = state.get("clock", "wall")
    if clock != running_clock:
        raise InputError(
            f"The emulated Pi in {layout.root} already runs with --clock {running_clock} (asked: {clock}). "
            "Run `edgedistill devices stop-pi` first, then start it with the clock you want."
        )


def _boot(layout: PiLayout, port: int, timeout_s: float, log, clock: str = "wall") -> dict[str, Any]:
    layout.run.mkdir(parents=True, exist_ok=True)
    overlay = layout.run / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(layout.image / "rootfs.raw"), str(overlay)],
        check=True,
        capture_output=True,
    )
    command = qemu_command(layout, port, clock)
    started = time.monotonic()
    with open(layout.run / "qemu.log", "w") as qemu_log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=qemu_log, stderr=subprocess.STDOUT, start_new_session=True
        )  # a terminal's Ctrl-C is handled here, not by QEMU
    state = {
        "pid": process.pid,
        "port": port,
        "clock": clock,
        "started": time.time(),
        "command": command,
        "ssh_config": str(layout.ssh_config),
        "target": f"ssh://{GUEST_USER}@127.0.0.1:{port}",
    }
    temporary = layout.state.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, layout.state)
    timing = "guest clock = instruction count (-icount)" if clock == "icount" else "guest clock = host time"
    log(
        f"booting the emulated Pi (pid {process.pid}, ssh on 127.0.0.1:{port}; TCG, no KVM for aarch64 on "
        f"{platform.machine()}; {timing})"
    )
    try:
        _wait_for_ssh(layout, process, port, started, timeout_s)
    except BaseException:
        _kill(process.pid, layout)
        with contextlib.suppress(ChildProcessError):
            process.wait(timeout=5)
        _clear_run(layout)
        raise
    return {**state, "boot_s": round(time.monotonic() - started, 1), "already_running": False}


def _wait_for_ssh(layout: PiLayout, process: subprocess.Popen, port: int, started: float, timeout_s: float) -> None:
    last_error = ""
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            raise StageError(
                f"The emulated Pi stopped while booting (QEMU exit {process.returncode}): "
                f"{_tail(layout.run / 'qemu.log') or _tail(layout.run / 'console.log')}. "
                f"Console: {layout.run / 'console.log'}."
            )
        ready, last_error = _ssh_answers(layout, port)
        if ready:
            return
        if "Host key verification failed" in last_error or "REMOTE HOST IDENTIFICATION" in last_error:
            raise StageError(
                f"The emulated Pi on port {port} answered with a host key that is not the one recorded "
                f"in {layout.image / 'known_hosts'}; refusing it. Rebuild the image "
                "(remove the folder, `edgedistill devices prepare-pi`)."
            )
        time.sleep(2.0)
    raise StageError(
        f"The emulated Pi did not answer ssh on 127.0.0.1:{port} within {timeout_s:g} s "
        f"(last: {last_error or 'no answer'}); it was stopped. Raise --timeout (TCG boots slowly on a "
        f"loaded host); console: {layout.run / 'console.log'}."
    )


def _tail(path: Path, count: int = 2) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    return " | ".join([line for line in lines if line][-count:])
