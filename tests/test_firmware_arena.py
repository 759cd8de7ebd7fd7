"""The 32-bit arena estimate: struct layouts checked against real compilers, accounting parsed."""

from __future__ import annotations

import ctypes
import subprocess

import pytest

from edgedistill.firmware.arena import (
    CORTEX_M_ABI,
    HOST_ABI,
    STRUCT_FIELDS,
    AllocationBreakdown,
    estimate_target_arena,
    parse_allocations,
    struct_size,
)
from firmware_helpers import needs_cross_toolchain

C_TYPES = {"p": "void*", "i": "int", "e": "enum small", "b": "_Bool"}
CTYPES = {"p": ctypes.c_void_p, "i": ctypes.c_int32, "e": ctypes.c_int, "b": ctypes.c_bool}
LAYOUTS = {**STRUCT_FIELDS, "affine quantization": "ppi", "mixed": "bepie"}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_struct_size_matches_this_hosts_compiler(name):
    fields = LAYOUTS[name]
    if ctypes.sizeof(ctypes.c_void_p) != HOST_ABI["p"]:
        pytest.skip("not a 64-bit host")
    struct = type("S", (ctypes.Structure,), {"_fields_": [(f"f{i}", CTYPES[k]) for i, k in enumerate(fields)]})
    assert struct_size(fields, HOST_ABI) == ctypes.sizeof(struct)


@needs_cross_toolchain
def test_struct_size_matches_arm_none_eabi_gcc(tmp_path):
    """arm-none-eabi GCC: 4-byte pointers and short (1-byte) enums, as CORTEX_M_ABI says."""
    source = ["enum small { kA, kB, kC };"]
    for index, fields in enumerate(LAYOUTS.values()):
        members = " ".join(f"{C_TYPES[kind]} f{i};" for i, kind in enumerate(fields))
        source.append(f"struct s{index} {{ {members} }};")
        source.append(f"char size{index}[sizeof(struct s{index})];")
    (tmp_path / "probe.c").write_text("\n".join(source) + "\n")
    subprocess.run(
        ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-c", "probe.c", "-o", "probe.o"], cwd=tmp_path, check=True
    )
    nm = subprocess.run(["arm-none-eabi-nm", "-S", "probe.o"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    sizes = {line.split()[-1]: int(line.split()[1], 16) for line in nm.splitlines() if line.split()[-1].startswith("size")}
    for index, fields in enumerate(LAYOUTS.values()):
        assert sizes[f"size{index}"] == struct_size(fields, CORTEX_M_ABI), fields


HOST_OUTPUT = """[RecordingMicroAllocator] Arena allocation total 6464 bytes
[RecordingMicroAllocator] Arena allocation head 1280 bytes
[RecordingMicroAllocator] Arena allocation tail 5184 bytes
[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 648 bytes with alignment overhead (requested 648 bytes for 27 allocations)
[RecordingMicroAllocator] 'Persistent TfLiteTensor data' used 128 bytes with alignment overhead (requested 128 bytes for 2 tensors)
[RecordingMicroAllocator] 'Persistent TfLiteTensor quantization data' used 64 bytes with alignment overhead (requested 64 bytes for 4 allocations)
[RecordingMicroAllocator] 'Persistent buffer data' used 3024 bytes with alignment overhead (requested 2996 bytes for 25 allocations)
[RecordingMicroAllocator] 'NodeAndRegistration struct' used 576 bytes with alignment overhead (requested 576 bytes for 9 NodeAndRegistration structs)
"""


def test_parse_allocations():
    breakdown = parse_allocations(HOST_OUTPUT)
    assert (breakdown.total_bytes, breakdown.head_bytes, breakdown.tail_bytes) == (6464, 1280, 5184)
    assert breakdown.categories["TfLiteEvalTensor data"] == (648, 648, 27)
    with pytest.raises(ValueError):
        parse_allocations("nothing here")


def test_estimate_keeps_the_head_and_shrinks_only_pointer_structs():
    host = parse_allocations(HOST_OUTPUT)
    estimate = estimate_target_arena(host)
    parts = estimate["parts"]
    assert parts["head"] == host.head_bytes
    assert parts["Persistent buffer data"] == host.categories["Persistent buffer data"][0]
    for name, fields in STRUCT_FIELDS.items():
        count = host.categories[name][2]
        assert parts[name] == count * struct_size(fields, CORTEX_M_ABI)
        # On the host the same structs are exactly what TFLM accounted.
        assert count * struct_size(fields, HOST_ABI) == host.categories[name][0]
    assert host.head_bytes < estimate["estimate_bytes"] < host.total_bytes
    # Identity: estimating for the host's own ABI gives the host figure back.
    same = estimate_target_arena(host, target_abi=HOST_ABI, recorded=False)
    assert same["estimate_bytes"] == host.total_bytes


def test_estimate_with_no_categories_is_head_plus_scaled_tail():
    host = AllocationBreakdown(total_bytes=1000, head_bytes=600, tail_bytes=400)
    assert estimate_target_arena(host, recorded=False)["estimate_bytes"] == 600 + 200
    from edgedistill.firmware.arena import RECORDING_ALLOCATOR_EXTRA_WORDS

    assert estimate_target_arena(host)["estimate_bytes"] == 600 + (400 - RECORDING_ALLOCATOR_EXTRA_WORDS * 8) // 2


def test_firmware_uses_the_one_micro_export_and_tflm_runner():
    from edgedistill import micro, tflm
    from edgedistill.firmware import arena

    assert arena.arena_with_margin is micro.arena_with_margin and arena.ARENA_ALIGNMENT == micro.ARENA_ALIGNMENT == 16
    assert arena.parse_allocations is tflm.parse_allocations and arena.AllocationBreakdown is tflm.AllocationBreakdown


def test_arena_truth_reads_the_micro_export(tmp_path):
    from edgedistill.firmware.arena import arena_truth
    from edgedistill.micro import load_micro_export
    from firmware_helpers import write_micro_export

    write_micro_export(tmp_path, arena_bytes=8192, arena_bytes_host=7000)
    truth = arena_truth(load_micro_export(tmp_path), arena_used_bytes=6000, pointer_bytes=4)
    assert truth["kTensorArenaSize"] == truth["export_kTensorArenaSize"] == 8192 and truth["arena_bytes_host"] == 7000
    assert truth["headroom_bytes"] == 2192 and "not found" in truth["estimate_error"]
