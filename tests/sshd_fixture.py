"""A real OpenSSH server (Debian ``openssh-server``) on a free loopback port, standing in for a Pi.

Throw-away host and user keys in a temporary folder; the server runs with its own config
(``sshd -f``, foreground, owned by the test) and the client is pointed at it with its own
config file, passed as ``--ssh-config`` (``ssh -F``), because OpenSSH reads the config of the
passwd home, not ``$HOME``. Root logs in with the throw-away key only (``prohibit-password``).
Nothing but 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench_helpers import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


@dataclass
class SshServer:
    folder: Path
    port: int
    process: subprocess.Popen
    user: str
    client_key: Path
    host_public_key: str
    known_hosts: Path

    def client_config(
        self, name: str, *, known_hosts: Path | None = None, key: Path | None = None, port: int | None = None
    ) -> Path:
        """A client config file with one Host alias ``name`` pointing at this server."""
        path = self.folder / f"ssh_config_{name}"
        path.write_text(
            f"Host {name}\n"
            f"  HostName 127.0.0.1\n"
            f"  Port {port or self.port}\n"
            f"  User {self.user}\n"
            f"  IdentityFile {key or self.client_key}\n"
            f"  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known_hosts or self.known_hosts}\n"
            f"  GlobalKnownHostsFile /dev/null\n"
            f"  LogLevel ERROR\n"
        )
        return path

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes (children of the listener): killing them drops the link."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def drop_connections(self) -> int:
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def rotate_host_key(self) -> str:
        """Restart the server with a new host key on the same port (as a reinstalled device, or a
        man in the middle, would present); ``known_hosts`` keeps the old one. Returns the new key."""
        self.stop()
        host_key = self.folder / "host_ed25519"
        host_key.unlink()
        host_key.with_suffix(".pub").unlink()
        public = keygen(host_key)
        self.process = _launch(self.folder, self.port)
        return public

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def start_sshd(folder: Path) -> SshServer:
    """Start sshd on a free loopback port; raises RuntimeError (with sshd's log) if it does not come up."""
    folder.mkdir(parents=True, exist_ok=True)
    if not Path(SSHD).exists() or not Path(SFTP_SERVER).exists():
        raise RuntimeError("openssh-server is not installed (apt-get install openssh-server)")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    host_key = folder / "host_ed25519"
    host_public = keygen(host_key)
    client_key = folder / "client_ed25519"
    (folder / "authorized_keys").write_text(keygen(client_key) + "\n")
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "MaxStartups 50\n"
        "MaxSessions 50\n"
        f"Subsystem sftp {SFTP_SERVER}\n"
        "LogLevel VERBOSE\n"
    )
    process = _launch(folder, port)
    known_hosts = folder / "known_hosts"
    # The host key pinned as `[127.0.0.1]:PORT` (what ssh looks up for a non-22 port).
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public.split()[0]} {host_public.split()[1]}\n")
    return SshServer(folder, port, process, getpass.getuser(), client_key, host_public, known_hosts)


def _launch(folder: Path, port: int) -> subprocess.Popen:
    """sshd in the foreground with ``folder/sshd_config``; returns once it listens on ``port``."""
    log = folder / "sshd.log"
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stdout=subprocess.DEVNULL, stderr=open(log, "ab")
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")
