#!/usr/bin/env bash
# Debian packages the tests, the firmware build and the benchmarks need.
# Called by `make system-deps` (and so by .ci/run and the Dockerfile). Idempotent: installs
# only what is missing, so a warm machine pays nothing.
set -euo pipefail

PACKAGES=(
  dataset-fashion-mnist        # Fashion-MNIST under /usr/share/datasets/fashion-mnist/
  openssh-server openssh-client  # real sshd on loopback for the ssh (Raspberry Pi) target tests
  adb                          # real adb client for the Android target tests
  qemu-user-static binfmt-support debootstrap  # qemu-aarch64 emulator target
  qemu-system-arm              # Cortex-M firmware in QEMU
  gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib  # firmware toolchain
  make g++                     # g++: the firmware's host board build
  espeak-ng sox                # audio tests: words spoken by espeak-ng; sox converts WAVs (as the audio loader's errors suggest)
  python3-pil python3-numpy wget unzip git  # TFLM's Makefile (firmware build): its scripts import PIL/numpy, its downloads use wget/unzip/git
)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "system-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
