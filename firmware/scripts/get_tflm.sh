#!/usr/bin/env bash
# Print the path of a TFLite Micro checkout with its third-party downloads in place.
#
#   firmware/scripts/get_tflm.sh [DEST]
#
# Uses $TFLM_DIR when set (any checkout; it is not modified except for TFLM's own downloads/).
# Otherwise fills DEST (default ~/.cache/edgedistill/tflm-src/<commit>) once, from the first of:
#   - an offline copy: $TFLM_OFFLINE, a folder with unpack.sh and a tarball of the pinned checkout
#     with its third-party downloads (CI's ../shared/tflm); its commit must be TFLM_COMMIT;
#   - a clone of TFLM_REPO_URL at TFLM_COMMIT (firmware/tflm.env), then TFLM's Makefile downloads
#     flatbuffers, gemmlowp, ruy, kissfft, pigweed, CMSIS_6, Cortex_DFP and CMSIS-NN at its own pins
#     (needs network access to github.com).
# Logs go to stderr, the path to stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The pin comes from firmware/tflm.env; TFLM_REPO_URL / TFLM_COMMIT in the environment override it
# (a mirror, or a test).
url_override="${TFLM_REPO_URL:-}"; commit_override="${TFLM_COMMIT:-}"
# shellcheck source=../tflm.env
source "$here/../tflm.env"
TFLM_REPO_URL="${url_override:-$TFLM_REPO_URL}"; TFLM_COMMIT="${commit_override:-$TFLM_COMMIT}"

if [[ -n "${TFLM_DIR:-}" ]]; then
  if [[ ! -f "$TFLM_DIR/tensorflow/lite/micro/tools/make/Makefile" ]]; then
    echo "TFLM_DIR=$TFLM_DIR is not a TFLite Micro checkout (no tensorflow/lite/micro/tools/make/Makefile)." >&2
    exit 2
  fi
  echo "$TFLM_DIR"
  exit 0
fi

dest="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/edgedistill/tflm-src/$TFLM_COMMIT}"
if [[ ! -f "$dest/.edgedistill-complete" ]]; then
  rm -rf "$dest.partial" "$dest.partial.unpacked"
  mkdir -p "$(dirname "$dest")"
  if [[ -n "${TFLM_OFFLINE:-}" ]]; then
    if [[ ! -f "$TFLM_OFFLINE/unpack.sh" ]]; then
      echo "TFLM_OFFLINE=$TFLM_OFFLINE has no unpack.sh (expected a folder like ../shared/tflm)." >&2
      exit 2
    fi
    echo "Unpacking the offline TFLM copy $TFLM_OFFLINE into $dest" >&2
    bash "$TFLM_OFFLINE/unpack.sh" "$dest.partial" >/dev/null
    rm -f "$dest.partial.unpacked"
    found="$(git -C "$dest.partial" rev-parse HEAD 2>/dev/null || echo none)"
    if [[ "$found" != "$TFLM_COMMIT" ]]; then
      rm -rf "$dest.partial"
      echo "The offline TFLM copy $TFLM_OFFLINE is at commit $found, the pin (firmware/tflm.env) is $TFLM_COMMIT." >&2
      exit 3
    fi
  else
    echo "Cloning $TFLM_REPO_URL at $TFLM_COMMIT into $dest" >&2
    if ! git clone --quiet "$TFLM_REPO_URL" "$dest.partial" >&2 ||
       ! git -C "$dest.partial" checkout --quiet "$TFLM_COMMIT" >&2; then
      rm -rf "$dest.partial"
      echo "Could not clone $TFLM_REPO_URL at $TFLM_COMMIT (no network access to github.com?)." \
           "Set TFLM_DIR to an existing TFLite Micro checkout, or TFLM_OFFLINE to an offline copy, instead." >&2
      exit 3
    fi
    # The Makefile fetches its third-party sources (at the pins in its *_download.sh scripts) when parsed.
    "$here/tflm_make.sh" "$dest.partial" third_party_downloads >&2
  fi
  touch "$dest.partial/.edgedistill-complete"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
fi
echo "$dest"
