#!/usr/bin/env bash
# Debian packages the tests, the firmware build and the benchmarks need.
# Called by `make system-deps` (and so by .ci/run). Idempotent: installs only what is missing,
# so a warm machine pays nothing.
#
#   scripts/install-system-deps.sh [all|firmware|docker]
#
# all (default): everything below. firmware: only the firmware build and run (the Dockerfile's
# lean image). docker: what scripts/docker-build.sh needs to build the image with podman.
set -euo pipefail

PACKAGES=(
  dataset-fashion-mnist        # Fashion-MNIST under /usr/share/datasets/fashion-mnist/
  openssh-server openssh-client  # real sshd on loopback for the ssh (Raspberry Pi) target tests
  adb                          # real adb client for the Android target tests
  qemu-user-static binfmt-support debootstrap  # qemu-aarch64 emulator target
  mmdebstrap arch-test e2fsprogs qemu-utils  # emulated Pi image (edgedistill devices prepare-pi; qemu-img: overlays)
  qemu-system-arm              # Cortex-M firmware in QEMU
  gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib  # firmware toolchain
  make g++                     # g++: the firmware's host board build
  espeak-ng sox                # audio tests: words spoken by espeak-ng; sox converts WAVs (as the audio loader's errors suggest)
  python3-pil python3-numpy wget unzip git  # TFLM's Makefile (firmware build): its scripts import PIL/numpy, its downloads use wget/unzip/git
)

FIRMWARE_PACKAGES=(
  qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib
  make g++ python3-pil python3-numpy git
)
DOCKER_PACKAGES=(podman runc debootstrap uidmap fuse-overlayfs slirp4netns)
case "${1:-all}" in
  all) ;;
  firmware) PACKAGES=("${FIRMWARE_PACKAGES[@]}") ;;
  docker) PACKAGES=("${DOCKER_PACKAGES[@]}") ;;
  *) echo "Error: unknown package group '$1' (expected all, firmware or docker)." >&2; exit 2 ;;
esac

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
