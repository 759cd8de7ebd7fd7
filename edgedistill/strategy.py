"""``multi_worker`` set-up: ``TF_CONFIG`` checked and every peer reached, with a deadline, before TensorFlow waits.

TensorFlow's ``MultiWorkerMirroredStrategy`` blocks inside C++ until every worker of ``TF_CONFIG`` has
registered (it holds the GIL and swallows SIGTERM meanwhile): an unreachable peer meant a silent
process that ignored SIGTERM for 15 minutes. So before the strategy is built, this module

- parses ``TF_CONFIG`` itself: not JSON, no ``cluster`` or ``task``, a task index out of range or an
  address that is not ``host:port`` is one :class:`~edgedistill.errors.InputError`;
- listens on this task's own port (so that peers doing the same see it) and connects to every peer,
  retrying until all answered or the deadline passed (``EDGEDISTILL_PEER_TIMEOUT_S``, default
  :data:`DEFAULT_PEER_TIMEOUT_S`): a :class:`~edgedistill.errors.StageError` names the peers that never
  answered. The wait is plain Python, so Ctrl-C and SIGTERM stop it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

from edgedistill.errors import InputError, StageError

logger = logging.getLogger(__name__)

PEER_TIMEOUT_ENV = "EDGEDISTILL_PEER_TIMEOUT_S"
DEFAULT_PEER_TIMEOUT_S = 300.0
_RETRY_S = 0.25


def _fail(problem: str) -> InputError:
    return InputError(
        f"TF_CONFIG {problem}. Expected JSON like "
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}; '
        "fix the TF_CONFIG environment variable, or unset it to train on this machine alone."
    )


def _address(text: Any, where: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    if not isinstance(text, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail(f"{where} is {text!r}, not an address host:port")
    return host.strip("[]"), int(port)


def parse_tf_config(text: str) -> tuple[dict[str, list[tuple[str, int]]], str, int]:
    """``TF_CONFIG`` -> (job -> addresses, this task's type, its index); :class:`InputError` naming what is wrong."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise _fail(f"is not JSON ({error}; received {text[:80]!r})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config["cluster"]:
        raise _fail('has no "cluster" (a mapping of job name to a list of host:port)')
    cluster: dict[str, list[tuple[str, int]]] = {}
    for job, addresses in config["cluster"].items():
        if not isinstance(addresses, list) or not addresses:
            raise _fail(f"cluster.{job} is {addresses!r}, not a non-empty list of host:port")
        cluster[job] = [_address(a, f"cluster.{job}[{i}]") for i, a in enumerate(addresses)]
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise _fail(f'has no "task" with a type and an index (received task={task!r})')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise _fail(f"task.type is {task_type!r}, which is no job of the cluster ({', '.join(cluster)})")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise _fail(
            f"task.index is {index!r}; the cluster has {len(cluster[task_type])} {task_type} task(s), index "
            f"0..{len(cluster[task_type]) - 1}"
        )
    return cluster, task_type, index


def peer_timeout_s() -> float:
    text = os.environ.get(PEER_TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_PEER_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 86400:
        raise InputError(f"{PEER_TIMEOUT_ENV} must be a number of seconds in (0, 86400). Received: {text!r}.")
    return value


def _own_listener(port: int) -> socket.socket | None:
    """A socket on this task's port while waiting (peers doing the same check see it); None if it is taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", port))
        listener.listen(16)
    except OSError:
        listener.close()
        return None
    listener.setblocking(False)
    return listener


def _reach(host: str, port: int, me: str) -> bool:
    """Whether the peer answers; it is told who called (so it knows this task is up, too)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as connection:
            connection.sendall(f"{me}\n".encode())
            return True
    except OSError:
        return False


def _callers(listener: socket.socket | None) -> set[str]:
    """The peers that connected to this task's listener since the last look (each says "job index")."""
    found: set[str] = set()
    while listener is not None:
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, OSError):
            break
        with connection:
            connection.settimeout(1.0)
            try:
                found.add(connection.recv(256).decode(errors="replace").strip())
            except OSError:
                pass
    return found


def _wait(peers: dict[str, tuple[str, int]], names: dict[str, str], me: str, listener, deadline: float) -> list[str]:
    """Until this task reached every peer and (when it listens) every peer reached it; the peers still missing."""
    unreached, silent = dict(peers), set(peers) if listener is not None else set()
    while unreached or silent:
        unreached = {name: address for name, address in unreached.items() if not _reach(*address, me)}
        silent -= {names.get(caller, "") for caller in _callers(listener)}
        if time.monotonic() >= deadline:
            break
        if unreached or silent:
            time.sleep(_RETRY_S)
    return sorted(set(unreached) | silent)


def wait_for_peers(text: str | None = None, *, timeout_s: float | None = None) -> None:
    """Check ``TF_CONFIG`` (default: the environment's) and wait until every peer answers, or raise."""
    text = os.environ.get("TF_CONFIG", "") if text is None else text
    if not text.strip():
        return  # no TF_CONFIG: TensorFlow trains on this machine alone
    cluster, task_type, index = parse_tf_config(text)
    timeout_s = peer_timeout_s() if timeout_s is None else timeout_s
    peers = {
        f"{job} {i} ({host}:{port})": (host, port)
        for job, addresses in cluster.items()
        for i, (host, port) in enumerate(addresses)
        if (job, i) != (task_type, index)
    }
    if not peers:
        return
    names = {
        f"{job} {i}": f"{job} {i} ({host}:{port})"
        for job, addresses in cluster.items()
        for i, (host, port) in enumerate(addresses)
    }
    logger.warning(
        "multi_worker: this is %s %d of TF_CONFIG; waiting up to %g s (%s) for %s",
        task_type,
        index,
        timeout_s,
        PEER_TIMEOUT_ENV,
        ", ".join(peers),
    )
    listener = _own_listener(cluster[task_type][index][1])
    try:
        missing = _wait(peers, names, f"{task_type} {index}", listener, time.monotonic() + timeout_s)
    finally:
        if listener is not None:
            listener.close()
    if missing:
        raise StageError(
            f"multi_worker: {', '.join(missing)} did not answer within {timeout_s:g} s (this process is "
            f"{task_type} {index} of TF_CONFIG={text[:300]}). Start every worker TF_CONFIG lists, fix their "
            f"addresses, or raise {PEER_TIMEOUT_ENV}; --strategy none trains on this machine alone."
        )


__all__ = ["wait_for_peers", "parse_tf_config", "peer_timeout_s", "PEER_TIMEOUT_ENV", "DEFAULT_PEER_TIMEOUT_S"]
