#!/usr/bin/env bash
# Build libtensorflow-microlite.a for one (target, kernels) and record the flags it was built with.
#
#   firmware/scripts/build_tflm_lib.sh TFLM_CHECKOUT TARGET TARGET_ARCH KERNELS OUT_DIR [JOBS]
#
#   TARGET       TFLM Makefile TARGET: cortex_m_generic | linux
#   TARGET_ARCH  e.g. cortex-m4+fp, cortex-m55 ('' for linux)
#   KERNELS      reference | cmsis_nn (OPTIMIZED_KERNEL_DIR)
#   OUT_DIR      receives libtensorflow-microlite.a and tflm_flags.mk (compiler, flags and
#                absolute include paths), which firmware/Makefile includes so that the
#                application is compiled exactly as the library was.
#
# Cross builds use the arm-none-eabi toolchain on PATH (Debian gcc-arm-none-eabi), not TFLM's
# own download of Arm GCC. OUT_DIR is written whole or not at all.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tflm="$(cd "$1" && pwd)"; target="$2"; arch="$3"; kernels="$4"; out="$5"; jobs="${6:-2}"

args=(TARGET="$target" BUILD_TYPE=default)
if [[ -n "$arch" ]]; then args+=(TARGET_ARCH="$arch"); fi
if [[ "$target" != "linux" ]]; then
  gcc="$(command -v arm-none-eabi-gcc || true)"
  if [[ -z "$gcc" ]]; then
    echo "arm-none-eabi-gcc not found: sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib" >&2
    exit 5
  fi
  args+=(TOOLCHAIN=gcc TARGET_TOOLCHAIN_ROOT="$(dirname "$gcc")/")
fi
case "$kernels" in
  reference) ;;
  cmsis_nn) args+=(OPTIMIZED_KERNEL_DIR=cmsis_nn) ;;
  *) echo "Unknown kernels '$kernels' (expected reference or cmsis_nn)" >&2; exit 2 ;;
esac

"$here/tflm_make.sh" "$tflm" "${args[@]}" microlite -j"$jobs"

vars="$("$here/tflm_make.sh" "$tflm" "${args[@]}" print-CXX print-CC print-AR print-CXXFLAGS print-CCFLAGS \
        print-INCLUDES print-LDFLAGS print-MICROLITE_LIBS print-MICROLITE_LIB_PATH 2>/dev/null |
        grep -E '^(CXX|CC|AR|CXXFLAGS|CCFLAGS|INCLUDES|LDFLAGS|MICROLITE_LIBS|MICROLITE_LIB_PATH)=')"
value() { printf '%s\n' "$vars" | sed -n "s/^$1=//p"; }

# Relative -I paths are relative to the checkout; make them absolute.
includes=""
for flag in $(value INCLUDES); do
  path="${flag#-I}"
  if [[ "$flag" == -I* && "$path" != /* ]]; then
    if [[ "$path" == "." ]]; then flag="-I$tflm"; else flag="-I$tflm/$path"; fi
  fi
  includes+="$flag "
done

partial="$out.partial.$$"
rm -rf "$partial"; mkdir -p "$partial"
cp "$tflm/$(value MICROLITE_LIB_PATH)" "$partial/libtensorflow-microlite.a"
{
  echo "# Written by firmware/scripts/build_tflm_lib.sh: how libtensorflow-microlite.a was built."
  echo "TFLM_DIR := $tflm"
  echo "TFLM_TARGET := $target"
  echo "TFLM_TARGET_ARCH := $arch"
  echo "TFLM_KERNELS := $kernels"
  echo "TFLM_CXX := $(value CXX)"
  echo "TFLM_CC := $(value CC)"
  echo "TFLM_CXXFLAGS := $(value CXXFLAGS)"
  echo "TFLM_CCFLAGS := $(value CCFLAGS)"
  echo "TFLM_INCLUDES := $includes"
  echo "TFLM_LDFLAGS := $(value LDFLAGS)"
  echo "TFLM_LIBS := $(value MICROLITE_LIBS)"
} > "$partial/tflm_flags.mk"
rm -rf "$out"; mkdir -p "$(dirname "$out")"; mv "$partial" "$out"
echo "Built $out/libtensorflow-microlite.a" >&2
