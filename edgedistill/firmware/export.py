"""Read a run folder's micro export (``<run_dir>/micro/``) written by ``edgedistill micro``.

Only what the firmware needs: the file set of the contract, ``micro_export.json`` and the
test samples' expected outputs (parsed from ``test_data.cc`` so the output check on the
host does not trust the firmware's own verdict).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.errors import InputError

MICRO_DIR = "micro"
REQUIRED_FILES: tuple[str, ...] = (
    "model_data.h",
    "model_data.cc",
    "model_op_resolver.h",
    "model_settings.h",
    "test_data.h",
    "test_data.cc",
    "micro_export.json",
)
SUPPORTED_SCHEMA_VERSIONS = (1,)


@dataclass(frozen=True)
class MicroExport:
    """A validated micro export folder."""

    run_dir: Path
    micro_dir: Path
    metadata: dict[str, Any]

    @property
    def arena_bytes(self) -> int:
        """``kTensorArenaSize``: what the firmware reserves for the tensor arena."""
        return int(self.metadata["kTensorArenaSize"])

    @property
    def arena_bytes_host(self) -> int:
        return int(self.metadata["arena_bytes_host"])

    @property
    def model_size_bytes(self) -> int:
        return int(self.metadata["model_size_bytes"])

    @property
    def model_path(self) -> Path:
        """The .tflite the export was made from (next to the export, or in the run folder)."""
        name = str(self.metadata.get("model_file", ""))
        beside = self.micro_dir / name
        return beside if beside.is_file() else self.run_dir / name

    @property
    def num_test_samples(self) -> int:
        return int(self.metadata["num_test_samples"])

    @property
    def output_dtype(self) -> str:
        return str(self.metadata.get("output_dtype", "int8"))

    def expected_outputs(self) -> list[list[float]]:
        """The host TFLM outputs of the test samples, read from ``test_data.cc``."""
        return parse_c_array_rows(self.micro_dir / "test_data.cc", "g_test_expected_outputs")

    def test_labels(self) -> list[int]:
        rows = parse_c_array_rows(self.micro_dir / "test_data.cc", "g_test_labels", nested=False)
        return [int(v) for v in rows[0]]


def find_micro_dir(run_dir: str | Path) -> Path:
    """``run_dir/micro`` (or ``run_dir`` itself if it is the export folder)."""
    run_dir = Path(run_dir)
    if (run_dir / "micro_export.json").exists():
        return run_dir
    return run_dir / MICRO_DIR


def load_micro_export(run_dir: str | Path) -> MicroExport:
    """Validate and load the micro export of ``run_dir``; :class:`InputError` if it is not usable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(
            f"Run folder {str(run_dir)!r} does not exist. Expected a folder written by `edgedistill run` "
            "(runs/<id>). Pass an existing run folder."
        )
    micro_dir = find_micro_dir(run_dir)
    missing = [name for name in REQUIRED_FILES if not (micro_dir / name).is_file()]
    if missing:
        raise InputError(
            f"Run folder {str(run_dir)!r} has no complete micro export: missing {', '.join(missing)} in "
            f"{str(micro_dir)!r}. Expected the files of `edgedistill micro`. "
            f"Fix: run `edgedistill micro {run_dir}` (or `edgedistill run`) first."
        )
    if micro_dir == run_dir:
        run_dir = micro_dir.parent
    try:
        metadata = json.loads((micro_dir / "micro_export.json").read_text())
    except json.JSONDecodeError as error:
        raise InputError(
            f"{str(micro_dir / 'micro_export.json')!r} is not valid JSON ({error}). Re-run `edgedistill micro` to write it again."
        ) from None
    version = metadata.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InputError(
            f"micro_export.json has schema_version={version!r}; expected one of {SUPPORTED_SCHEMA_VERSIONS}. "
            "Re-export with this edgedistill version (`edgedistill micro`)."
        )
    for key in ("kTensorArenaSize", "arena_bytes_host", "model_size_bytes", "num_test_samples"):
        if not isinstance(metadata.get(key), int) or metadata[key] < 0:
            raise InputError(
                f"micro_export.json: {key!r} must be a non-negative integer. Received: {metadata.get(key)!r}. "
                "Re-run `edgedistill micro`."
            )
    return MicroExport(run_dir=run_dir, micro_dir=micro_dir, metadata=metadata)


_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?f?|0x[0-9a-fA-F]+")


def parse_c_array_rows(path: Path, name: str, *, nested: bool = True) -> list[list[float]]:
    """The rows of the C array ``name`` in ``path``: ``{{1,2},{3,4}}`` -> ``[[1,2],[3,4]]``."""
    text = Path(path).read_text()
    match = re.search(rf"\b{re.escape(name)}\b[^=;]*=\s*\{{", text)
    if not match:
        raise InputError(f"{str(path)!r} does not define {name}. Re-run `edgedistill micro`.")
    depth, start = 1, match.end()
    index = start
    while depth and index < len(text):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    body = text[start : index - 1]
    rows_text = re.findall(r"\{([^{}]*)\}", body) if nested else [body]

    def number(token: str) -> float:
        token = token.rstrip("f")
        if token.lower().startswith("0x"):
            return int(token, 16)
        value = float(token)
        return int(value) if value.is_integer() and "." not in token and "e" not in token.lower() else value

    return [[number(t) for t in _NUMBER.findall(row)] for row in rows_text]


__all__ = ["MicroExport", "load_micro_export", "find_micro_dir", "parse_c_array_rows", "REQUIRED_FILES"]
