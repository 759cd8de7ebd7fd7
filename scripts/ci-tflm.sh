#!/usr/bin/env bash
# Print the TFLite Micro checkout the tests build firmware against, for `TFLM_DIR=$(...)` in the
# Makefile's test targets. With none: print nothing (and say why on stderr) so that the firmware
# tests skip with their reason, except under CI=true, where it is an error (exit 1).
#
#   scripts/ci-tflm.sh
#
# $TFLM_DIR when set; otherwise firmware/scripts/get_tflm.sh fills ~/.cache/edgedistill/tflm-src/<commit>
# (outside the clone, so every fresh CI clone reuses it) from the offline copy $TFLM_OFFLINE
# (default: ../shared/tflm beside the repository, as on the CI machine) or, without one, a clone
# of the pinned commit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${TFLM_DIR:-}" ]]; then
  echo "$TFLM_DIR"
  exit 0
fi
offline="${TFLM_OFFLINE:-$repo/../shared/tflm}"
if [[ -f "$offline/unpack.sh" ]]; then
  export TFLM_OFFLINE="$(cd "$offline" && pwd)"
else
  unset TFLM_OFFLINE
fi
if ! checkout="$(bash "$repo/firmware/scripts/get_tflm.sh")"; then
  # In CI the firmware tests must run: no checkout fails the job instead of skipping them.
  if [[ "${CI:-}" == "true" ]]; then
    echo "Error: CI has no TFLite Micro checkout (see above): set TFLM_DIR, or TFLM_OFFLINE to a folder like ../shared/tflm." >&2
    exit 1
  fi
  echo "ci-tflm: no TFLite Micro checkout (see above): the firmware tests will skip." \
       "Set TFLM_DIR, or TFLM_OFFLINE to a folder like ../shared/tflm." >&2
  exit 0
fi
echo "ci-tflm: TFLM_DIR=$checkout" >&2
echo "$checkout"
