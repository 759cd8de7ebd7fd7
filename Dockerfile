# The edgedistill cross-build image: Debian bookworm, Arm GCC (Debian's gcc-arm-none-eabi 12.2),
# QEMU, edgedistill's firmware commands, and TFLite Micro at the pinned commit with its libraries
# prebuilt. Nothing is downloaded from GitHub: the TFLM checkout comes from the build context.
#
#   scripts/docker-build.sh            # podman or docker: base image, TFLM staged, then this build
#   docker build -t edgedistill .      # Docker, once .docker/tflm.tar (pinned checkout) and .docker/tflm-libs/ exist
#   docker run --rm -v "$PWD/runs:/data" edgedistill firmware build /data/<id> --board qemu-mps2-an386
#   docker run --rm -v "$PWD/runs:/data" edgedistill firmware run /data/<id> --board qemu-mps2-an386
#
# Every RUN step calls a script that also runs natively (scripts/install-system-deps.sh,
# `edgedistill firmware prepare` -> firmware/scripts/build_tflm_lib.sh), so what CI and developers
# test natively is what this image runs. README.md "Docker" says what a podman build needs.

# debian:bookworm-slim from a registry, or a locally imported one (scripts/docker-build.sh makes
# localhost/debian:bookworm-slim with debootstrap where no registry is reachable).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EDGEDISTILL_CACHE_DIR=/opt/edgedistill-cache

WORKDIR /opt/edgedistill
# System packages: the firmware group of the same script as natively (toolchain, QEMU, make, g++,
# TFLM's Makefile's python3-pil/numpy, git for the checkout's commit).
# The Arm C/C++ libraries are kept for the boards' architecture variants only (the others are 1.6 GB).
ARG ARM_MULTILIBS="thumb/v7e-m+fp thumb/v8-m.main+dp"
COPY scripts/install-system-deps.sh scripts/install-system-deps.sh
COPY firmware/scripts/prune_arm_multilibs.sh firmware/scripts/prune_arm_multilibs.sh
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && bash scripts/install-system-deps.sh firmware \
 && bash firmware/scripts/prune_arm_multilibs.sh "$ARM_MULTILIBS" \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*

# PIP_CERT: a CA bundle for pip where TLS to PyPI is intercepted (podman build -v host-ca.crt; empty: none).
ARG PIP_CERT=
# firmware: the package without TensorFlow (`firmware build/run/prepare` import click and numpy, and
# `firmware run` the .tflite schema for its per-operator profile: tflite-micro's, 4 MB, not LiteRT's 59 MB);
# full: every dependency (TensorFlow: `edgedistill run`, export, benchmarks) plus pyOCD.
ARG INSTALL=firmware
RUN python3 -m venv /opt/venv \
 && if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && if [ "$INSTALL" = firmware ]; then /opt/venv/bin/pip install --quiet 'click>=8.1' 'numpy>=1.23' 'tflite-micro>=0.dev0' 'setuptools>=68' wheel; \
    elif [ "$INSTALL" != full ]; then echo "Error: INSTALL=$INSTALL, expected firmware or full." >&2; exit 2; fi
ENV PATH=/opt/venv/bin:$PATH

# TFLite Micro at the commit pinned in firmware/tflm.env, with its third-party downloads, from the
# build context (scripts/docker-build.sh stages it as .docker/tflm.tar; ADD unpacks a local tar).
ARG TFLM_ARCHIVE=.docker/tflm.tar
ADD ${TFLM_ARCHIVE} /opt/tflm/
COPY firmware/tflm.env firmware/tflm.env
RUN . firmware/tflm.env \
 && found="$(git -C /opt/tflm rev-parse HEAD 2>/dev/null || echo none)" \
 && if [ "$found" != "$TFLM_COMMIT" ]; then \
      echo "Error: the TFLM checkout in the build context is at commit $found, firmware/tflm.env pins $TFLM_COMMIT: run scripts/docker-build.sh (it stages the pinned checkout)." >&2; exit 3; fi
ENV TFLM_DIR=/opt/tflm

COPY pyproject.toml setup.cfg README.md ./
COPY edgedistill edgedistill
COPY firmware firmware
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
 && if [ "$INSTALL" = full ]; then /opt/venv/bin/pip install --quiet -e '.[flash]'; \
    else /opt/venv/bin/pip install --quiet --no-deps --no-build-isolation -e .; fi

# The compiled TFLM libraries, cached per (commit, target, kernels): a firmware build then compiles
# only the application. "board:kernels" pairs; scripts/docker-build.sh --libraries picks fewer.
# .docker/tflm-libs/<commit>/ holds the host's compiled ones with --reuse-libraries (else it is empty):
# `firmware prepare` then finds them and compiles nothing.
COPY .docker/tflm-libs/ /opt/edgedistill-cache/tflm/
ARG TFLM_LIBRARIES="qemu-mps2-an386:cmsis_nn qemu-mps2-an386:reference qemu-mps3-an547:cmsis_nn qemu-mps3-an547:reference host:reference"
RUN for pair in $TFLM_LIBRARIES; do \
      edgedistill firmware prepare --board "${pair%%:*}" --kernels "${pair##*:}" || exit 1; \
    done \
 && rm -rf /opt/tflm/gen

WORKDIR /data
# edgedistill, after checking that a run folder given to `firmware build/run` is writable (not mounted :ro).
ENTRYPOINT ["/opt/edgedistill/firmware/scripts/container-entrypoint.sh"]
CMD ["--help"]
