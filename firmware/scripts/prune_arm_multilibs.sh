#!/usr/bin/env bash
# Delete the Arm GCC multilib variants no board uses (the lean image: ~1.6 GB of 1.9 GB).
#
#   firmware/scripts/prune_arm_multilibs.sh "thumb/v7e-m+fp thumb/v8-m.main+dp"
#
# Debian's libnewlib-arm-none-eabi and libstdc++-arm-none-eabi-newlib ship libc/libstdc++ for every
# Arm architecture variant (20 of them, ~115 MB each). The boards link against one each:
# `arm-none-eabi-gcc <the board's flags> -print-multi-directory` names it (Cortex-M4F:
# thumb/v7e-m+fp/hard; Cortex-M55: thumb/v8-m.main+dp/hard). A new board on another variant fails
# to link with "cannot find -lc": add its directory to the list (Dockerfile ARG ARM_MULTILIBS).
set -euo pipefail
keep=" ${1:?usage: prune_arm_multilibs.sh \"thumb/VARIANT ...\"} "
for root in /usr/lib/arm-none-eabi/lib /usr/lib/gcc/arm-none-eabi/*; do
  rm -rf "$root/arm"
  for variant in "$root"/thumb/*/; do
    name="thumb/$(basename "$variant")"
    if [[ "$keep" != *" $name "* ]]; then rm -rf "$variant"; fi
  done
done
