"""STAND-IN for an Android device: the device side of the adb protocol on loopback, for tests.

No Android device or emulator runs here and Debian ships no ``adbd``. This stand-in speaks the
device end of the adb wire protocol (CNXN / OPEN / OKAY / WRTE / CLSE, the ``sync:`` file
service and ``shell,v2`` with exit codes) so the REAL ``adb`` client (Debian package ``adb``)
connects to it with ``adb connect 127.0.0.1:PORT`` and push / pull / shell go through the real
client and server. Shell commands run on the host with ``sh -c`` in a temporary folder that
plays ``/data/local/tmp``; ``getprop`` answers from a small table. It is not an Android device:
no figure measured through it is a device figure.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import subprocess
import threading
from pathlib import Path

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257, 0x48545541)
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
DEVICE_TMP = "/data/local/tmp"


def _message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


class _Stream:
    """One adb stream (a service opened by the host) and its flow control."""

    def __init__(self, device: "_Connection", local_id: int, remote_id: int) -> None:
        self.device, self.local_id, self.remote_id = device, local_id, remote_id
        self.inbox = bytearray()
        self.ready = threading.Event()  # the host acknowledged our last WRTE
        self.ready.set()
        self.received = threading.Condition()
        self.closed = False

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.device.max_payload):
            self.ready.wait(timeout=30)
            if self.closed:
                return
            self.ready.clear()
            self.device.send(_message(A_WRTE, self.local_id, self.remote_id, data[start : start + self.device.max_payload]))

    def read_exact(self, count: int) -> bytes:
        with self.received:
            while len(self.inbox) < count and not self.closed:
                self.received.wait(timeout=30)
            chunk = bytes(self.inbox[:count])
            del self.inbox[:count]
            return chunk

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.device.send(_message(A_CLSE, self.local_id, self.remote_id))
        with self.received:
            self.received.notify_all()
        self.ready.set()


class _Connection(threading.Thread):
    def __init__(self, standin: "AdbDeviceStandin", sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.standin, self.sock = standin, sock
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.max_payload = 4096

    def send(self, data: bytes) -> None:
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def _recv_exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def run(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _, _ = struct.unpack("<6I", self._recv_exact(24))
                data = self._recv_exact(length) if length else b""
                self.handle(command, arg0, arg1, data)
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.closed = True
                stream.ready.set()
            self.sock.close()

    def handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.max_payload = min(arg1, MAX_PAYLOAD)
            props = ";".join(f"{k}={v}" for k, v in self.standin.banner_props.items())
            self.send(_message(A_CNXN, min(arg0, A_VERSION), self.max_payload, f"device::{props};features=shell_v2,cmd".encode()))
        elif command == A_OPEN:
            local_id = self.next_id
            self.next_id += 1
            stream = _Stream(self, local_id, arg0)
            self.streams[local_id] = stream
            self.send(_message(A_OKAY, local_id, arg0))
            service = data.rstrip(b"\0").decode()
            threading.Thread(target=self.serve, args=(stream, service), daemon=True).start()
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream:
                stream.ready.set()
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream:
                with stream.received:
                    stream.inbox += data
                    stream.received.notify_all()
                self.send(_message(A_OKAY, arg1, arg0))
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream:
                stream.closed = True
                with stream.received:
                    stream.received.notify_all()
                stream.ready.set()

    def serve(self, stream: _Stream, service: str) -> None:
        try:
            if service.startswith("sync:"):
                self.standin.serve_sync(stream)
            elif service.startswith("shell"):
                header, _, command = service.partition(":")
                self.standin.serve_shell(stream, command, v2=",v2" in header)
            else:
                stream.write(b"FAIL" + f"{len(service):04x}".encode() + service.encode())
        finally:
            stream.close()
            self.streams.pop(stream.local_id, None)


class AdbDeviceStandin:
    """Listen on 127.0.0.1:PORT as a fake Android device (see module docstring).

    ``root`` is the host folder standing in for ``/data/local/tmp``.
    """

    def __init__(self, root: Path, *, model: str = "Standin_Phone", soc: str = "standin-soc", release: str = "14") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.props = {
            "ro.product.model": model,
            "ro.product.manufacturer": "edgedistill-tests",
            "ro.soc.model": soc,
            "ro.board.platform": soc,
            "ro.build.version.release": release,
            "ro.build.version.sdk": "34",
            "ro.product.cpu.abi": "arm64-v8a",
        }
        self.banner_props = {"ro.product.name": "standin", "ro.product.model": model, "ro.product.device": "standin"}
        self.bin = self.root.parent / f"{self.root.name}-bin"
        self.bin.mkdir(exist_ok=True)
        getprop = self.bin / "getprop"
        table = "\n".join(f'  {key}) echo "{value}" ;;' for key, value in self.props.items())
        getprop.write_text(f'#!/bin/sh\ncase "$1" in\n{table}\n  *) echo "" ;;\nesac\n')
        getprop.chmod(0o755)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.connections: list[_Connection] = []
        self.processes: list[subprocess.Popen] = []
        self.shell_commands: list[str] = []
        self._accepting = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while self._accepting:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            if not self._accepting:
                sock.close()
                return
            connection = _Connection(self, sock)
            self.connections.append(connection)
            connection.start()

    def host_path(self, device_path: str) -> Path:
        if not device_path.startswith(DEVICE_TMP):
            raise PermissionError(device_path)
        return self.root / device_path[len(DEVICE_TMP) :].lstrip("/")

    def map_command(self, command: str) -> str:
        return command.replace(DEVICE_TMP, str(self.root))

    # -- services ----------------------------------------------------------------------------

    def serve_shell(self, stream: _Stream, command: str, *, v2: bool) -> None:
        self.shell_commands.append(command)
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        process = subprocess.Popen(
            ["sh", "-c", self.map_command(command)],
            cwd=self.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self.processes.append(process)

        def pump(pipe, packet_id: int) -> None:
            for chunk in iter(lambda: pipe.read1(65536), b""):
                if v2:
                    stream.write(struct.pack("<BI", packet_id, len(chunk)) + chunk)
                else:
                    stream.write(chunk)

        pumps = [threading.Thread(target=pump, args=(process.stdout, 1)), threading.Thread(target=pump, args=(process.stderr, 2))]
        for thread in pumps:
            thread.start()
        for thread in pumps:
            thread.join()
        code = process.wait()
        if v2:
            stream.write(struct.pack("<BI", 3, 1) + bytes([code & 0xFF]))

    def serve_sync(self, stream: _Stream) -> None:
        while not stream.closed:
            header = stream.read_exact(8)
            if len(header) < 8:
                return
            request, length = header[:4], struct.unpack("<I", header[4:])[0]
            payload = stream.read_exact(length).decode(errors="replace")
            if request == b"STAT":
                try:
                    info = self.host_path(payload).stat()
                    mode, size, mtime = info.st_mode, info.st_size, int(info.st_mtime)
                except (OSError, PermissionError):
                    mode = size = mtime = 0
                stream.write(b"STAT" + struct.pack("<III", mode, size, mtime))
            elif request == b"SEND":
                path, _, mode = payload.rpartition(",")
                target = self.host_path(path)
                data = bytearray()
                while True:
                    chunk_header = stream.read_exact(8)
                    if len(chunk_header) < 8:
                        return
                    kind, size = chunk_header[:4], struct.unpack("<I", chunk_header[4:])[0]
                    if kind == b"DATA":
                        data += stream.read_exact(size)
                    elif kind == b"DONE":
                        break
                    else:
                        return
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bytes(data))
                target.chmod(int(mode) & 0o7777 if mode.isdigit() else 0o644)
                stream.write(b"OKAY" + struct.pack("<I", 0))
            elif request == b"RECV":
                try:
                    data = self.host_path(payload).read_bytes()
                except (OSError, PermissionError) as error:
                    message = str(error).encode()
                    stream.write(b"FAIL" + struct.pack("<I", len(message)) + message)
                    continue
                for start in range(0, len(data), 64 * 1024):
                    chunk = data[start : start + 64 * 1024]
                    stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                stream.write(b"DONE" + struct.pack("<I", 0))
            elif request == b"LIST":
                folder = self.host_path(payload)
                for entry in folder.iterdir() if folder.is_dir() else []:
                    info = entry.stat()
                    name = entry.name.encode()
                    stream.write(b"DENT" + struct.pack("<IIII", info.st_mode, info.st_size, int(info.st_mtime), len(name)) + name)
                stream.write(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
            elif request == b"QUIT":
                return
            else:
                message = f"unsupported sync request {request!r}".encode()
                stream.write(b"FAIL" + struct.pack("<I", len(message)) + message)

    # -- faults --------------------------------------------------------------------------------

    def disappear(self) -> None:
        """The device is unplugged: stop listening, drop every connection, end its processes."""
        self._accepting = False
        try:
            self.server.close()
        except OSError:
            pass
        for connection in self.connections:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for process in self.processes:
            if process.poll() is None:
                process.kill()

    def stop(self) -> None:
        self.disappear()


__all__ = ["AdbDeviceStandin", "DEVICE_TMP", "stat"]
