"""Atomic file writes: nothing half-written is ever left looking complete.

Every artefact is written to a temporary name in the same folder and renamed into place,
so a crash or an error leaves either the old file, or no file, never a truncated one.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

NAME_MAX = 255  # bytes of one file name on Linux file systems (ext4, xfs, tmpfs, btrfs)
# Errors of the output's file system, not of the user's input: disk full, quota, I/O, read-only.
_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS)


def write_error(path: str | os.PathLike, error: OSError) -> Exception:
    """The project's one-line error for an ``OSError`` while writing ``path`` (to raise ``from None``)."""
    from edgedistill.errors import InputError, StageError

    reason = error.strerror or type(error).__name__
    if error.errno in _SPACE_ERRORS:
        return StageError(
            f"Cannot write {str(path)!r}: {reason}. Nothing half-written was left; free space on that "
            "file system (or pass an output on another one) and run the command again."
        )
    return InputError(f"Cannot write {str(path)!r}: {reason}. Pass an output path you can write to.")


def check_output_name(path: str | os.PathLike, *, what: str = "the output") -> Path:
    """Every part of ``path`` fits the file system's name limit (255 bytes), checked before any work."""
    from edgedistill.errors import InputError

    path = Path(path).expanduser()
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise InputError(
                f"{what}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes; file names are at "
                f"most {NAME_MAX} bytes. Pass a shorter name."
            )
    return path


def refuse_output_over_input(output: str | os.PathLike, inputs: Mapping[str, Any], *, what: str = "-o/--output") -> None:
    """An output that is one of the command's inputs (same file, by inode: links and ``./x`` included) is refused
    before anything is written: ``convert m.h5 -o m.h5`` would replace the model it reads."""
    from edgedistill.errors import InputError

    output_path = Path(output).expanduser()
    if not output_path.exists():
        return
    for label, source in inputs.items():
        for item in _paths(source):
            try:
                same = item.exists() and os.path.samefile(output_path, item)
            except OSError:
                same = False
            if same:
                raise InputError(
                    f"{what} {str(output)!r} is the {label} this command reads ({str(item)!r}); writing "
                    "it would destroy that input. Pass another output path."
                )


def _paths(source: Any) -> Iterable[Path]:
    if not source:
        return []
    if isinstance(source, (list, tuple)):
        return [Path(str(item)).expanduser() for item in source if item]
    return [Path(str(source)).expanduser()]


def refuse_special_output(path: Path) -> None:
    """An existing output that is not a regular file (``/dev/full``, ``/dev/null``, a FIFO) is refused: the atomic
    rename would replace the device node itself (as root, in /dev)."""
    from edgedistill.errors import InputError

    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
        raise InputError(f"Output {str(path)!r} is {kind}, not a regular file. Pass a file name.")


def _temporary_prefix(path: Path) -> str:
    # The temporary name must fit NAME_MAX too: a final name of 250 bytes is fine, ".<name>.xxxx.partial" is not.
    return f".{os.fsdecode(os.fsencode(path.name)[:120])}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename. A full disk, a name too long or
    an unwritable folder is one project error (no traceback) and leaves no partial file."""
    path = Path(path)
    check_output_name(path)
    refuse_special_output(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".partial")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; artefacts get the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if error.errno is None:
            raise  # not from the operating system: a bug or a test's stand-in, kept as it is
        raise write_error(path, error) from None
    except BaseException:
        if tmp is not None:
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
    """Append one JSON line and flush it to disk at once (results survive a crash).

    All or nothing: when the write fails (disk full), the file is cut back to its old size, so no
    half line is left, and the failure is one project error.
    """
    from edgedistill.errors import InputError

    path = Path(path)
    line = (json.dumps(to_jsonable(record), sort_keys=False) + "\n").encode("utf-8")
    if path.exists() and (stat.S_ISFIFO(path.stat().st_mode) or stat.S_ISSOCK(path.stat().st_mode)):
        raise InputError(f"{str(path)!r} is a FIFO or socket (opening it could block forever). Pass a file name.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as error:
        raise write_error(path, error) from None
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except OSError as error:
            _cut_back(fd, size)
            raise write_error(path, error) from None
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # os.write may write part of the data (a full disk, a signal)
        written = os.write(fd, view)
        view = view[written:]


def _cut_back(fd: int, size: int) -> None:
    if stat.S_ISREG(os.fstat(fd).st_mode):  # devices (/dev/full) have nothing to cut
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass


def ensure_writable_dir(path: str | os.PathLike, *, what: str = "the output folder") -> Path:
    """Prove a file can be written in folder ``path`` (or, when it does not exist yet, in its nearest
    existing parent, which is left as it is) before any long work: a read-only folder, a path under
    /proc, or an existing *file* in its place is one :class:`InputError` naming the folder and the
    reason, not a traceback after the work. Creates nothing."""
    from edgedistill.errors import InputError

    path = check_output_name(path, what=what).absolute()
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
    check_output_name(path)
    refuse_special_output(path)
    folder = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".partial")
        temporary = Path(folder) / path.name
        model.save(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return path


__all__ = [
    "check_output_name",
    "refuse_output_over_input",
    "refuse_special_output",
    "write_error",
    "ensure_writable_dir",
    "save_model_atomic",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "append_jsonl",
    "to_jsonable",
]
