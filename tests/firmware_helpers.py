"""Helpers for the firmware tests: micro export folders written as text (no TensorFlow), tiny
bare-metal programs built with the real arm-none-eabi toolchain (no TFLM)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edgedistill.firmware.tflm_checkout import firmware_dir

CROSS_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "arm-none-eabi-objcopy")

needs_cross_toolchain = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in CROSS_TOOLS),
    reason="needs the arm-none-eabi toolchain (Debian gcc-arm-none-eabi libnewlib-arm-none-eabi)",
)
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="needs qemu-system-arm (Debian qemu-system-arm)")


def write_micro_export(
    run_dir: Path,
    *,
    model_size_bytes: int = 4096,
    arena_bytes: int = 8192,
    arena_bytes_host: int = 7000,
    expected_outputs: list[list[int]] | None = None,
    output_dtype: str = "int8",
) -> Path:
    """A micro export folder following the spine's contract, with made-up contents (for checks that never compile it)."""
    expected_outputs = expected_outputs or [[-128, 127, 0], [5, -5, 10]]
    micro = run_dir / "micro"
    micro.mkdir(parents=True, exist_ok=True)
    (micro / "model_data.h").write_text(
        "#include <cstdint>\nextern const unsigned char g_model_data[];\nextern const unsigned int g_model_data_len;\n"
    )
    (micro / "model_data.cc").write_text(
        f"alignas(16) const unsigned char g_model_data[] = {{0x00}};\nconst unsigned int g_model_data_len = {model_size_bytes};\n"
    )
    (micro / "model_op_resolver.h").write_text("// made up for tests\n")
    num_outputs = len(expected_outputs[0])
    (micro / "model_settings.h").write_text(
        f"constexpr int kTensorArenaSize = {arena_bytes};\nconstexpr int kOutputSize = {num_outputs};\n"
    )
    (micro / "test_data.h").write_text(f"constexpr int kNumTestSamples = {len(expected_outputs)};\n")
    rows = ",\n".join("    {" + ", ".join(str(v) for v in row) + "}" for row in expected_outputs)
    labels = ", ".join(str(i % num_outputs) for i in range(len(expected_outputs)))
    (micro / "test_data.cc").write_text(
        '#include "test_data.h"\n'
        "const ModelInputType g_test_inputs[kNumTestSamples][kInputSize] = {{1, 2}, {3, 4}};\n"
        f"const ModelOutputType g_test_expected_outputs[kNumTestSamples][kOutputSize] = {{\n{rows}\n}};\n"
        f"const int g_test_labels[kNumTestSamples] = {{{labels}}};\n"
    )
    (micro / "micro_export.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "model_file": "model.tflite",
                "model_size_bytes": model_size_bytes,
                "ops": ["FULLY_CONNECTED"],
                "resolver_methods": ["AddFullyConnected"],
                "arena_bytes_host": arena_bytes_host,
                "arena_margin_bytes": arena_bytes - arena_bytes_host,
                "kTensorArenaSize": arena_bytes,
                "input_shape": [1, 2],
                "input_dtype": "int8",
                "output_shape": [1, num_outputs],
                "output_dtype": output_dtype,
                "input_quantization": {"scale": 0.1, "zero_point": 0},
                "output_quantization": {"scale": 1 / 256, "zero_point": -128},
                "num_test_samples": len(expected_outputs),
                "tflm_version": "test",
            }
        )
    )
    return micro


BARE_METAL_MAIN = r"""
// A bare-metal program without TFLM for the port tests: prints through semihosting, times a
// loop of a known number of instructions with the port's SysTick counter, exits.
#include <cstdint>
#include "port.h"
#include "semihosting.h"
#include "systick.h"

extern "C" void edgedistill_port_fault(const char* what) {
  edgedistill::semihosting::Write0("fault=");
  edgedistill::semihosting::Write0(what);
  edgedistill::semihosting::Exit(false);
}

static void WriteNumber(const char* key, uint64_t value) {
  char text[24];
  int index = 23;
  text[index] = '\0';
  do { text[--index] = static_cast<char>('0' + value % 10); value /= 10; } while (value);
  edgedistill::semihosting::Write0(key);
  edgedistill::semihosting::Write0(&text[index]);
  edgedistill::semihosting::Write0("\n");
}

int main() {
  edgedistill::systick::Start();
#ifdef HANG
  for (;;) { __asm__ volatile("nop"); }
#endif
  const uint32_t iterations = LOOP_ITERATIONS;
  const uint64_t start = edgedistill::systick::Ticks();
  // Exactly 2 instructions per iteration: subs + bne.
  __asm__ volatile(
      "mov r0, %0\n"
      "1: subs r0, r0, #1\n"
      "bne 1b\n" : : "r"(iterations) : "r0", "cc");
  const uint64_t ticks = edgedistill::systick::Ticks() - start;
  WriteNumber("loop_instructions=", 2ull * iterations);
  WriteNumber("ticks=", ticks);
  edgedistill::semihosting::Exit(true);
}
"""

BOARD_FLAGS = {
    "qemu-mps2-an386": ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    "qemu-mps3-an547": ["-mcpu=cortex-m55", "-mfloat-abi=hard"],
    "nucleo-f446re": ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
}


def build_bare_metal(tmp_path: Path, board: str, *, iterations: int = 1_000_000, hang: bool = False) -> Path:
    """Compile BARE_METAL_MAIN with the board's start-up code and linker script (real toolchain)."""
    ports = firmware_dir() / "ports"
    source = tmp_path / "main.cc"
    source.write_text(BARE_METAL_MAIN)
    elf = tmp_path / f"bare_{board}.elf"
    flags = [*BOARD_FLAGS[board], "-mthumb", "-O2", "-ffunction-sections", "-fdata-sections", "-fno-exceptions", "-fno-rtti"]
    defines = [f"-DLOOP_ITERATIONS={iterations}u"] + (["-DHANG"] if hang else [])
    command = [
        "arm-none-eabi-g++",
        *flags,
        *defines,
        "-std=c++17",
        f"-I{firmware_dir() / 'src'}",
        f"-I{ports / 'common'}",
        str(source),
        str(ports / "common" / "cortex_m_startup.c"),
        str(ports / "common" / "systick.cc"),
        "-nostartfiles",
        "--specs=nano.specs",
        "--specs=nosys.specs",
        f"-L{ports / 'common'}",
        f"-T{ports / board / 'linker.ld'}",
        "-Wl,--gc-sections",
        f"-Wl,-Map={tmp_path / 'bare.map'}",
        "-o",
        str(elf),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return elf
