"""Find the cross toolchain, QEMU and build tools; say which Debian packages provide them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgedistill.errors import StageError

# tool -> Debian (bookworm) package that provides it
DEBIAN_PACKAGES: dict[str, str] = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-g++": "gcc-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-objcopy": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "make": "make",
    "g++": "g++",
    "git": "git",
}
# Headers and libraries the cross build needs, found by the compiler, not on PATH.
CROSS_RUNTIME_PACKAGES: tuple[str, ...] = ("libnewlib-arm-none-eabi", "libstdc++-arm-none-eabi-newlib")
# TFLM's Makefile runs python3 scripts that import PIL and numpy while it parses.
TFLM_MAKE_PACKAGES: tuple[str, ...] = ("python3-pil", "python3-numpy", "unzip", "wget")

CROSS_TOOLS: tuple[str, ...] = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "arm-none-eabi-objcopy", "make")
HOST_TOOLS: tuple[str, ...] = ("g++", "make")


@dataclass(frozen=True)
class Toolchain:
    """Where the tools are. ``root`` ends with a slash, as TFLM's TARGET_TOOLCHAIN_ROOT expects."""

    root: str
    prefix: str

    def tool(self, name: str) -> str:
        return f"{self.root}{self.prefix}{name}"


def _search_path() -> str:
    return os.environ.get("PATH", "")


def missing_tools(names: tuple[str, ...] | list[str], *, path: str | None = None) -> list[str]:
    search = path if path is not None else _search_path()
    return [name for name in names if shutil.which(name, path=search) is None]


def require_tools(names: tuple[str, ...] | list[str], *, purpose: str, path: str | None = None) -> None:
    """:class:`StageError` naming the missing tools and the Debian packages to install."""
    missing = missing_tools(names, path=path)
    if not missing:
        return
    packages = sorted({DEBIAN_PACKAGES.get(name, name) for name in missing})
    if any(name.startswith("arm-none-eabi-") for name in missing):
        packages = sorted(set(packages) | set(CROSS_RUNTIME_PACKAGES))
    raise StageError(
        f"{purpose} needs {', '.join(missing)}, not found on PATH. "
        f"Install the Debian packages: sudo apt-get install {' '.join(packages)} "
        '(or use the cross-build image: scripts/docker-build.sh, see README "Docker cross-build").'
    )


def cross_toolchain(*, path: str | None = None) -> Toolchain:
    require_tools(CROSS_TOOLS, purpose="Cross-building the firmware", path=path)
    gcc = shutil.which("arm-none-eabi-gcc", path=path if path is not None else _search_path())
    assert gcc is not None
    return Toolchain(root=str(Path(gcc).parent) + "/", prefix="arm-none-eabi-")


def qemu_binary(*, path: str | None = None) -> str:
    require_tools(("qemu-system-arm",), purpose="Running the firmware in QEMU", path=path)
    found = shutil.which("qemu-system-arm", path=path if path is not None else _search_path())
    assert found is not None
    return found


__all__ = [
    "DEBIAN_PACKAGES",
    "Toolchain",
    "missing_tools",
    "require_tools",
    "cross_toolchain",
    "qemu_binary",
]
