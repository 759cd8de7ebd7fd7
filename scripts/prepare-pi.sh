#!/usr/bin/env bash
# Build the emulated Raspberry Pi: a Debian 12 (bookworm) arm64 disk image for qemu-system-aarch64.
#
# Called by `edgedistill devices prepare-pi` (edgedistill/devices/pi.py), which passes every value as
# its own argument (never spliced into a command string) and renames BUILD_DIR into place only when
# this script succeeds, so a half-built image never looks complete.
#
#   prepare-pi.sh BUILD_DIR FINAL_DIR MIRROR PYTHON PIP_REQUIREMENT...
#
# BUILD_DIR  empty folder the image is built in (renamed to FINAL_DIR by the caller)
# FINAL_DIR  where the image will live (written into ssh_config, so the paths there are final)
# MIRROR     Debian mirror URL (the host's apt mirror)
# PYTHON     host Python whose pip fetches the guest's wheels (aarch64, cp311) and installs them
#            into the image offline (`pip install --target`, nothing runs pip inside the guest)
# PIP_REQUIREMENT  e.g. ai-edge-litert==2.3.0 numpy
#
# Needs root (mmdebstrap's root mode), mmdebstrap, qemu-user-static with binfmt_misc (dpkg runs the
# arm64 maintainer scripts through it), e2fsprogs (mkfs.ext4 -d: no loop mount), ssh-keygen.
set -euo pipefail

if [ "$#" -lt 5 ]; then
  echo "usage: prepare-pi.sh BUILD_DIR FINAL_DIR MIRROR PYTHON PIP_REQUIREMENT..." >&2
  exit 2
fi
build=$1
final=$2
mirror=$3
python=$4
shift 4
requirements=("$@")
root="$build/rootfs"

step() { echo "prepare-pi: $(date -u +%H:%M:%S) $*"; }

# dpkg inside the arm64 tree runs arm64 programs: the kernel must hand them to qemu-aarch64-static.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
  update-binfmts --enable qemu-aarch64 || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "prepare-pi: arm64 programs cannot run on this host (no binfmt_misc entry qemu-aarch64). Install" \
       "qemu-user-static and binfmt-support (scripts/install-system-deps.sh) and run as root." >&2
  exit 3
fi

step "fetching the guest's wheels (aarch64, CPython 3.11) on the host"
"$python" -m pip download --quiet --dest "$build/wheels" --only-binary=:all: --implementation cp \
  --python-version 3.11 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
  -- "${requirements[@]}"

step "generating the guest's host key and the login key"
ssh-keygen -q -t ed25519 -N '' -C edgedistill-pi-host -f "$build/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C edgedistill-pi-login -f "$build/id_ed25519"

step "mmdebstrap bookworm arm64 from $mirror"
mkdir -p "$root"
# The initramfs gets only the modules QEMU's virt machine needs (virtio-mmio disk and network, ext4):
# Debian's default (MODULES=most) copies hundreds of modules one process at a time, which under
# qemu-user emulation is most of the build. Installed before the kernel package runs update-initramfs.
printf 'MODULES=list\n' > "$build/initramfs.conf"
cat > "$build/initramfs-hook" <<'HOOK'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
for module in virtio_mmio virtio_blk virtio_net ext4 crc32c_generic; do force_load "$module"; done
HOOK
# The hooks are fixed strings: mmdebstrap passes the tree as "$1", the build folder comes from the environment.
export EDGEDISTILL_PI_BUILD="$build"
mmdebstrap --mode=root --arch=arm64 --variant=minbase --format=directory \
  --essential-hook='install -D -m 644 "$EDGEDISTILL_PI_BUILD/initramfs.conf" "$1/etc/initramfs-tools/conf.d/edgedistill"' \
  --essential-hook='install -D -m 755 "$EDGEDISTILL_PI_BUILD/initramfs-hook" "$1/etc/initramfs-tools/hooks/edgedistill"' \
  --include=systemd-sysv,udev,kmod,linux-image-arm64,openssh-server,python3,iproute2,procps \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash pi' \
  --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service || true' \
  bookworm "$root" "$mirror"

step "configuring: network, sshd, user pi, marker"
echo edgedistill-pi > "$root/etc/hostname"
printf '127.0.1.1 edgedistill-pi\n' >> "$root/etc/hosts"
printf '/dev/vda / ext4 defaults,noatime 0 1\n' > "$root/etc/fstab"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$root/etc/systemd/network/20-wired.network"
# One host key, generated now and recorded in known_hosts: StrictHostKeyChecking=yes works from boot one.
rm -f "$root"/etc/ssh/ssh_host_*
install -m 600 "$build/ssh_host_ed25519_key" "$root/etc/ssh/ssh_host_ed25519_key"
install -m 644 "$build/ssh_host_ed25519_key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nUseDNS no\n' \
  > "$root/etc/ssh/sshd_config.d/edgedistill.conf"
pi_uid=$(awk -F: '$1 == "pi" {print $3}' "$root/etc/passwd")
pi_gid=$(awk -F: '$1 == "pi" {print $4}' "$root/etc/passwd")
install -d -m 700 -o "$pi_uid" -g "$pi_gid" "$root/home/pi/.ssh"
install -m 600 -o "$pi_uid" -g "$pi_gid" "$build/id_ed25519.pub" "$root/home/pi/.ssh/authorized_keys"
# Read by edgedistill's ssh target: results measured here are labelled emulated, whatever the port.
printf 'cortex-a72 (QEMU TCG)\n' > "$root/etc/edgedistill-emulated"

step "installing the wheels offline into the image"
"$python" -m pip install --quiet --no-index --find-links "$build/wheels" --only-binary=:all: \
  --implementation cp --python-version 3.11 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
  --target "$root/usr/local/lib/python3.11/dist-packages" -- "${requirements[@]}"
rm -rf "$root/usr/local/lib/python3.11/dist-packages/bin"

step "copying the kernel and initrd out of the image"
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
cp -- "$kernel" "$build/vmlinuz"
cp -- "$initrd" "$build/initrd.img"

step "making the ext4 image (mkfs.ext4 -d, no loop mount)"
used_mib=$(du -sm "$root" | cut -f1)
size_mib=$((used_mib + 1024))
mkfs.ext4 -q -F -L edgedistill-pi -d "$root" "$build/rootfs.raw" "${size_mib}M"
rm -rf "$root" "$build/wheels" "$build/initramfs.conf" "$build/initramfs-hook"

printf 'edgedistill-pi %s\n' "$(cut -d' ' -f1,2 "$build/ssh_host_ed25519_key.pub")" > "$build/known_hosts"
rm -f "$build/ssh_host_ed25519_key"
cat > "$build/ssh_config" <<EOF
# Written by \`edgedistill devices prepare-pi\`: pass it with --ssh-config to reach the emulated Pi.
Host 127.0.0.1 localhost
  User pi
  IdentityFile "$final/id_ed25519"
  IdentitiesOnly yes
  UserKnownHostsFile "$final/known_hosts"
  HostKeyAlias edgedistill-pi
  StrictHostKeyChecking yes
EOF
step "done: $size_mib MiB image"
