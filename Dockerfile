# The edgedistill cross-build image: Debian bookworm, Arm GCC (Debian's gcc-arm-none-eabi 12.2),
# QEMU, edgedistill, and TFLite Micro at the pinned commit with its libraries prebuilt.
#
#   docker build -t edgedistill .
#   docker run --rm -v "$PWD:/data" edgedistill firmware build /data/runs/<id> --board qemu-mps2-an386
#   docker run --rm -v "$PWD:/data" edgedistill firmware run /data/runs/<id> --board qemu-mps2-an386
#
# Every RUN step calls a script that also runs natively (scripts/install-system-deps.sh,
# firmware/scripts/get_tflm.sh, `edgedistill firmware prepare` -> firmware/scripts/build_tflm_lib.sh),
# so what CI and developers test natively is what this image runs. No Docker engine exists
# in the workplace where this was written: the image itself was never built there.
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    EDGEDISTILL_CACHE_DIR=/opt/edgedistill-cache

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edgedistill
# System packages first (toolchain, QEMU, make, TFLM's build needs): the same script as natively.
COPY scripts/install-system-deps.sh scripts/install-system-deps.sh
RUN bash scripts/install-system-deps.sh && rm -rf /var/lib/apt/lists/*

COPY . .
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install -e '.[flash]'
ENV PATH=/opt/venv/bin:$PATH

# TFLite Micro at the commit pinned in firmware/tflm.env, with its third-party downloads.
RUN bash firmware/scripts/get_tflm.sh /opt/tflm
ENV TFLM_DIR=/opt/tflm

# The compiled TFLM libraries, cached per (commit, target, kernels): a firmware build then
# compiles only the application.
RUN edgedistill firmware prepare --board qemu-mps2-an386 --kernels reference \
 && edgedistill firmware prepare --board qemu-mps2-an386 --kernels cmsis_nn \
 && edgedistill firmware prepare --board qemu-mps3-an547 --kernels reference \
 && edgedistill firmware prepare --board qemu-mps3-an547 --kernels cmsis_nn \
 && edgedistill firmware prepare --board host --kernels reference

WORKDIR /data
ENTRYPOINT ["edgedistill"]
CMD ["--help"]
