"""The pinned TFLite Micro source checkout and its compiled-library cache (what ``firmware build`` compiles against).

TFLM appears in four modules, one concern each: :mod:`edgedistill.tflm` runs the TFLM interpreter
(PyPI ``tflite-micro``) on the host (arena bisection, outputs, the ``tflm`` bench runner);
:mod:`edgedistill.micro` writes the C/C++ sources a TFLM application compiles (C array, op
resolver, arena size, memory plan, compaction); :mod:`edgedistill._runner` is the LiteRT runner
copied to devices (it shares only the one-operator timing loop with the ``tflm`` runner); and this
module finds the C++ source tree and caches the library built from it.

TFLM is never vendored. ``firmware build`` takes a checkout from ``--tflm-dir`` or
``TFLM_DIR``, or fills ``~/.cache/edgedistill/tflm-src/<commit>`` through
``firmware/scripts/get_tflm.sh`` (the script ``make test`` and ``scripts/docker-build.sh`` run too):
from an offline copy of the pinned checkout given by ``TFLM_OFFLINE`` (e.g. ``../shared/tflm``),
else a clone of upstream at the commit pinned in ``firmware/tflm.env``. The compiled
``libtensorflow-microlite.a`` is cached per (commit, target, kernels) under
``~/.cache/edgedistill/tflm/`` so a second firmware build only compiles the application.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgedistill.errors import InputError, StageError


def firmware_dir() -> Path:
    """The ``firmware/`` folder (C++ sources, ports, scripts): ``EDGEDISTILL_FIRMWARE_DIR`` or the repository's."""
    configured = os.environ.get("EDGEDISTILL_FIRMWARE_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "firmware"
    if not (path / "Makefile").is_file():
        raise StageError(
            f"The firmware sources are not at {str(path)!r} (no Makefile). They ship with the edgedistill "
            "repository: install it from a checkout (pip install -e .) or set EDGEDISTILL_FIRMWARE_DIR."
        )
    return path


def pinned_version(path: Path | None = None) -> dict[str, str]:
    """``{"TFLM_REPO_URL": ..., "TFLM_COMMIT": ...}`` from ``firmware/tflm.env``."""
    path = path or firmware_dir() / "tflm.env"
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def cache_root() -> Path:
    base = os.environ.get("EDGEDISTILL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgedistill"
    )
    return Path(base)


def check_tflm_dir(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser().resolve()
    if not (path / "tensorflow/lite/micro/tools/make/Makefile").is_file():
        raise InputError(
            f"TFLM_DIR={str(path)!r} is not a TFLite Micro checkout (no tensorflow/lite/micro/tools/make/Makefile). "
            "Point --tflm-dir or TFLM_DIR at a clone of tensorflow/tflite-micro."
        )
    return path


def resolve_tflm_dir(tflm_dir: str | os.PathLike | None = None) -> Path:
    """The TFLM checkout to build against: ``tflm_dir``, ``$TFLM_DIR``, or the pinned commit (offline copy or clone)."""
    chosen = tflm_dir or os.environ.get("TFLM_DIR")
    if chosen:
        return check_tflm_dir(chosen)
    script = firmware_dir() / "scripts" / "get_tflm.sh"
    environment = {key: value for key, value in os.environ.items() if key != "TFLM_DIR"}
    completed = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        pin = pinned_version()
        last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise StageError(
            f"No TFLite Micro checkout: TFLM_DIR is not set and getting {pin.get('TFLM_REPO_URL')} at "
            f"{pin.get('TFLM_COMMIT')} failed ({last}). Set TFLM_DIR to a tflite-micro checkout, TFLM_OFFLINE to "
            "an offline copy (a folder with unpack.sh, like ../shared/tflm), or give this machine access to github.com."
        )
    return check_tflm_dir(completed.stdout.strip().splitlines()[-1])


def tflm_commit(tflm_dir: Path) -> str:
    """The checkout's commit (``-dirty`` if it has local changes), the first part of the cache key."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(tflm_dir), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(tflm_dir), "status", "--porcelain", "--untracked-files=no", "--", "tensorflow", "third_party"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unversioned"
    return commit + ("-dirty" if dirty else "")


@dataclass(frozen=True)
class TflmLibrary:
    """A compiled libtensorflow-microlite.a and the flags it was built with."""

    directory: Path
    commit: str
    target: str
    target_arch: str
    kernels: str

    @property
    def archive(self) -> Path:
        return self.directory / "libtensorflow-microlite.a"

    @property
    def flags_file(self) -> Path:
        return self.directory / "tflm_flags.mk"

    @property
    def exists(self) -> bool:
        return self.archive.is_file() and self.flags_file.is_file()


def library_for(commit: str, target: str, target_arch: str, kernels: str, *, root: Path | None = None) -> TflmLibrary:
    """Where the library for (commit, target, kernels) is cached (it may not be built yet)."""
    name = "_".join(part for part in (target, target_arch.replace("+", "-"), kernels) if part)
    directory = (root or cache_root() / "tflm") / commit / name
    return TflmLibrary(directory=directory, commit=commit, target=target, target_arch=target_arch, kernels=kernels)


def ensure_library(
    tflm_dir: Path,
    target: str,
    target_arch: str,
    kernels: str,
    *,
    jobs: int = 2,
    log_path: Path | None = None,
) -> tuple[TflmLibrary, bool]:
    """The cached library, built first if missing. Returns (library, built_now)."""
    library = library_for(tflm_commit(tflm_dir), target, target_arch, kernels)
    if library.exists:
        return library, False
    script = firmware_dir() / "scripts" / "build_tflm_lib.sh"
    command = ["bash", str(script), str(tflm_dir), target, target_arch, kernels, str(library.directory), str(jobs)]
    log_path = log_path or library.directory.parent / f"{library.directory.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if completed.returncode != 0 or not library.exists:
        tail = "; ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
        raise StageError(
            f"Building TFLite Micro ({target} {target_arch} {kernels}) failed, exit {completed.returncode}: {tail}. "
            f"Full log: {log_path}"
        )
    return library, True


__all__ = [
    "TflmLibrary",
    "firmware_dir",
    "pinned_version",
    "cache_root",
    "resolve_tflm_dir",
    "check_tflm_dir",
    "tflm_commit",
    "library_for",
    "ensure_library",
]
