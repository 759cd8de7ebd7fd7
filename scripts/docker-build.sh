#!/usr/bin/env bash
# Build the edgedistill cross-build image (Dockerfile) from a clean checkout, with podman or docker.
#
#   scripts/docker-build.sh [--engine podman|docker] [--tag NAME] [--base IMAGE] [--no-make-base]
#                           [--libraries "board:kernels ..."] [--install firmware|full] [--reuse-libraries]
#
# 1. a container engine: podman (preferred: no daemon) or docker;
# 2. the TFLM checkout at the commit of firmware/tflm.env: $TFLM_DIR, else
#    firmware/scripts/get_tflm.sh (the offline copy $TFLM_OFFLINE, default ../shared/tflm, or a
#    clone), staged as .docker/tflm.tar in the build context (once per commit);
# 3. the base image: --base (default: localhost/debian:bookworm-slim with podman, made here once
#    with debootstrap --variant=minbase and `podman import` when missing; debian:bookworm-slim
#    from Docker Hub with docker);
# 4. the build, with what podman 4.3 needs here: --runtime runc, bounded ulimits, and the host's
#    CA bundle mounted for pip (PIP_CERT) where TLS to PyPI is intercepted.
# --reuse-libraries copies the TFLM libraries this machine already compiled (~/.cache/edgedistill/tflm/,
# same Debian Arm GCC and checkout) into the image instead of compiling them again (10-40 min each on a
# loaded 2-core machine); the image's `firmware prepare` step then only checks that they are there.
# Prints the image name and its size. Every failure is one `Error:` line naming the fix.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

fail() { echo "Error: $*" >&2; exit 1; }

engine="" tag="localhost/edgedistill:latest" base="" make_base=1 install="firmware" reuse_libraries=0
libraries="qemu-mps2-an386:cmsis_nn qemu-mps2-an386:reference qemu-mps3-an547:cmsis_nn qemu-mps3-an547:reference host:reference"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --engine) engine="${2:?}"; shift 2 ;;
    --tag) tag="${2:?}"; shift 2 ;;
    --base) base="${2:?}"; shift 2 ;;
    --no-make-base) make_base=0; shift ;;
    --libraries) libraries="${2?}"; shift 2 ;;
    --install) install="${2:?}"; shift 2 ;;
    --reuse-libraries) reuse_libraries=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "Error: unknown option '$1' (see scripts/docker-build.sh --help)." >&2; exit 2 ;;
  esac
done

# 1. The engine.
if [[ -z "$engine" ]]; then
  if command -v podman >/dev/null 2>&1; then engine=podman
  elif command -v docker >/dev/null 2>&1; then engine=docker
  else fail "no container engine: neither podman nor docker is on PATH. Install podman (sudo bash scripts/install-system-deps.sh docker) or Docker."
  fi
fi
command -v "$engine" >/dev/null 2>&1 ||
  fail "the container engine '$engine' is not on PATH. Install it (podman: sudo bash scripts/install-system-deps.sh docker) or pass --engine with one that is."
# podman 4.3 here: crun fails to start containers and the default ulimits are refused; runc and bounded ones work.
engine_args=()
if [[ "$engine" == podman ]]; then
  engine_args=(--runtime runc --ulimit nofile=1000:1000 --ulimit nproc=1000:1000)
fi

# 2. The TFLM checkout at the pinned commit, staged into the build context.
pinned="$(sed -n 's/^TFLM_COMMIT=//p' firmware/tflm.env)"
if [[ -z "${TFLM_OFFLINE:-}" && -f "$repo/../shared/tflm/unpack.sh" ]]; then
  export TFLM_OFFLINE="$repo/../shared/tflm"
fi
checkout="$(bash firmware/scripts/get_tflm.sh 2>/tmp/docker-build-tflm.$$.log)" || {
  reason="$(tail -1 /tmp/docker-build-tflm.$$.log)"; rm -f /tmp/docker-build-tflm.$$.log
  fail "no TFLite Micro checkout ($reason): set TFLM_DIR to a tflite-micro checkout at $pinned, or TFLM_OFFLINE to a folder like ../shared/tflm."
}
rm -f /tmp/docker-build-tflm.$$.log
found="$(git -C "$checkout" rev-parse HEAD 2>/dev/null || echo 'no commit')"
[[ "$found" == "$pinned" ]] ||
  fail "the TFLM checkout $checkout is at $found, firmware/tflm.env pins $pinned: git -C $checkout checkout $pinned (or unset TFLM_DIR)."
[[ -d "$checkout/tensorflow/lite/micro/tools/make/downloads/flatbuffers" ]] ||
  fail "the TFLM checkout $checkout has no third-party downloads: run 'bash firmware/scripts/tflm_make.sh $checkout third_party_downloads' where github.com is reachable."
mkdir -p .docker
# One build at a time per checkout: the staged context below is rewritten by every run.
exec 9>.docker/.lock
flock 9
staged=".docker/tflm-$pinned.tar"
if [[ ! -f "$staged" ]]; then
  # Once per commit: a stable file keeps the ADD layer (and the library layers after it) cached.
  echo "docker-build: staging $checkout into $staged" >&2
  tar -C "$checkout" --exclude=./gen -cf "$staged.partial" . && mv "$staged.partial" "$staged"
fi
ln -f "$staged" .docker/tflm.tar

# The host's compiled libraries (--reuse-libraries), their flags pointed at the image's checkout.
rm -rf .docker/tflm-libs && mkdir -p ".docker/tflm-libs/$pinned"
if [[ "$reuse_libraries" -eq 1 ]]; then
  host_cache="${EDGEDISTILL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgedistill}/tflm/$pinned"
  for library in "$host_cache"/*/; do
    [[ -f "$library/libtensorflow-microlite.a" && -f "$library/tflm_flags.mk" ]] || continue
    name="$(basename "$library")"
    cp -r "$library" ".docker/tflm-libs/$pinned/$name"
    sed -i "s|$checkout|/opt/tflm|g" ".docker/tflm-libs/$pinned/$name/tflm_flags.mk"
    echo "docker-build: reusing the compiled library $name" >&2
  done
fi

# 3. The base image.
if [[ -z "$base" ]]; then
  if [[ "$engine" == podman ]]; then base="localhost/debian:bookworm-slim"; else base="debian:bookworm-slim"; fi
fi
make_base_image() {
  command -v debootstrap >/dev/null 2>&1 ||
    fail "the base image $base is missing and debootstrap, which makes it, is not installed: sudo apt-get install debootstrap (or import $base yourself)."
  [[ "$(id -u)" -eq 0 ]] || fail "the base image $base is missing and debootstrap needs root to make it: run this script with sudo once."
  local rootfs
  rootfs="$(mktemp -d)"
  echo "docker-build: making the base image $base (debootstrap --variant=minbase bookworm, ~2 min)" >&2
  if ! debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1; then
    rm -rf "$rootfs"; fail "debootstrap failed (log: $rootfs.log): check access to deb.debian.org, or import $base yourself."
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$engine" import - "$base" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}
if ! "$engine" image inspect "$base" >/dev/null 2>&1; then
  if [[ "$engine" == docker && "$base" == debian:* ]]; then
    :  # docker build pulls it from Docker Hub
  elif [[ "$make_base" -eq 1 && "$base" == localhost/debian:bookworm-slim ]]; then
    make_base_image
  else
    fail "the base image $base is missing: run scripts/docker-build.sh without --no-make-base (it makes localhost/debian:bookworm-slim with debootstrap), or pull/import $base."
  fi
fi

# 4. The build.
build_args=(--build-arg "BASE_IMAGE=$base" --build-arg "TFLM_LIBRARIES=$libraries" --build-arg "INSTALL=$install")
if [[ "$engine" == podman && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  build_args+=(-v /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro --build-arg PIP_CERT=/host-ca.crt)
fi
start=$(date +%s)
"$engine" build "${engine_args[@]}" "${build_args[@]}" -t "$tag" -f Dockerfile . >&2 ||
  fail "$engine build failed (output above). A pip TLS error needs the CA bundle (PIP_CERT); apt needs deb.debian.org."
size="$("$engine" image inspect --format '{{.Size}}' "$tag" 2>/dev/null)" ||
  fail "$engine build ended without the image $tag (interrupted?): run scripts/docker-build.sh again."
echo "docker-build: built $tag in $(( $(date +%s) - start )) s, $(( size / 1000000 )) MB" >&2
echo "$tag"
