"""Atomic file writes: nothing half-written is ever left looking complete.

Every artefact is written to a temporary name in the same folder and renamed into place,
so a crash or an error leaves either the old file, or no file, never a truncated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; artefacts get the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays, paths and dataclasses into plain JSON values."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Append one JSON line and flush it to disk at once (results survive a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(to_jsonable(record), sort_keys=False) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def ensure_writable_dir(path: str | os.PathLike, *, what: str = "the output folder") -> Path:
    """Prove a file can be written in folder ``path`` (or, when it does not exist yet, in its nearest
    existing parent, which is left as it is) before any long work: a read-only folder, a path under
    /proc, or an existing *file* in its place is one :class:`InputError` naming the folder and the
    reason, not a traceback after the work. Creates nothing."""
    from edgedistill.errors import InputError

    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".edgedistill-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = f"creating a file in {str(existing)!r} failed: {error.strerror or type(error).__name__}"
        if isinstance(error, NotADirectoryError):
            reason = f"{str(existing)!r} is a file, not a folder"
        raise InputError(f"Cannot write to {what} {str(path)!r}: {reason}. Pass a folder you can write to.") from None
    return path


def save_model_atomic(model: Any, path: str | os.PathLike) -> Path:
    """``model.save(path)`` through a temporary folder beside it, then a rename: never a half-written model.

    The temporary file keeps the final name (Keras picks the format from the suffix:
    ``.keras``, ``.h5``, or a SavedModel folder).
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        temporary = Path(folder) / path.name
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


__all__ = ["ensure_writable_dir", "save_model_atomic", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "append_jsonl", "to_jsonable"]
