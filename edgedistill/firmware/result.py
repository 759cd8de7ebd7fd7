"""Parse the firmware's result block and check its outputs against the export's expected outputs.

The block (printed by ``firmware/src/main.cc``)::

    EDGEDISTILL_RESULT_BEGIN
    format_version=1
    board=qemu-mps2-an386
    ...
    arena_used_bytes=8896
    sample=0 label=3 argmax=3 match=1 output=-128,-128,...
    ticks_total=123456
    status=pass
    EDGEDISTILL_RESULT_END
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from edgedistill.errors import StageError

BEGIN = "EDGEDISTILL_RESULT_BEGIN"
END = "EDGEDISTILL_RESULT_END"


@dataclass
class FirmwareResult:
    fields: dict[str, str]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def integer(self, key: str) -> int | None:
        value = self.fields.get(key)
        return int(value) if value is not None and value.lstrip("-").isdigit() else None

    @property
    def status(self) -> str:
        return self.fields.get("status", "missing")

    @property
    def arena_used_bytes(self) -> int | None:
        return self.integer("arena_used_bytes")

    @property
    def ticks_per_invoke(self) -> float | None:
        ticks, runs = self.integer("ticks_total"), self.integer("num_timed_invokes")
        if ticks is None or not runs:
            return None
        return ticks / runs


def _decode(token: str) -> float:
    if token.startswith("0x"):  # float outputs are printed as IEEE-754 bits
        return struct.unpack("<f", struct.pack("<I", int(token, 16)))[0]
    return int(token)


def parse_result_block(text: str) -> FirmwareResult:
    """The last complete result block in ``text``; :class:`StageError` if there is none."""
    start = text.rfind(BEGIN)
    if start < 0:
        raise StageError(f"The firmware printed no {BEGIN} block. Its output began: {text.strip()[:300]!r}")
    end = text.find(END, start)
    if end < 0:
        raise StageError(
            f"The firmware's result block has no {END} line (it stopped early). Output after the block start: "
            f"{text[start : start + 400].strip()!r}"
        )
    result = FirmwareResult(fields={})
    for line in text[start + len(BEGIN) : end].splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("sample="):
            sample: dict[str, Any] = {}
            for part in line.split():
                key, _, value = part.partition("=")
                if key == "output":
                    sample["output"] = [_decode(token) for token in value.split(",") if token]
                else:
                    sample[key] = int(value)
            result.samples.append(sample)
        elif "=" in line:
            key, _, value = line.partition("=")
            result.fields[key.strip()] = value.strip()
    return result


def compare_outputs(
    result: FirmwareResult, expected: list[list[float]], *, tolerance: float = 0, relative: bool = False
) -> list[dict[str, Any]]:
    """Per sample, the largest difference from the host TFLM output and whether it is within tolerance.

    Integer outputs: ``tolerance`` in quantization steps (0: bit-exact). Float outputs: pass
    ``relative=True`` and a relative tolerance.
    """
    if len(result.samples) != len(expected):
        raise StageError(
            f"The firmware reported {len(result.samples)} test samples, the export has {len(expected)}. "
            "Rebuild the firmware from this run's micro export."
        )
    checks = []
    for index, (sample, want) in enumerate(zip(result.samples, expected)):
        got = sample.get("output", [])
        if len(got) != len(want):
            raise StageError(f"Sample {index}: the firmware printed {len(got)} outputs, the export expects {len(want)}.")
        differences = [abs(a - b) for a, b in zip(got, want)]
        worst = max(differences, default=0)
        if relative:
            ok = all(d <= tolerance * max(1.0, abs(b)) for d, b in zip(differences, want))
        else:
            ok = worst <= tolerance
        checks.append({"sample": index, "max_abs_diff": worst, "match": ok})
    return checks


__all__ = ["FirmwareResult", "parse_result_block", "compare_outputs", "BEGIN", "END"]
