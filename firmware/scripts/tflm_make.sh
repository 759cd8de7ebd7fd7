#!/usr/bin/env bash
# Run TFLite Micro's Makefile in TFLM_CHECKOUT with the given arguments.
#
#   firmware/scripts/tflm_make.sh TFLM_CHECKOUT [make arguments...]
#
# TFLM's Makefile runs python3 scripts that import PIL and numpy while it parses; when the
# python3 on PATH lacks them (a virtualenv), a python3 that has them (Debian's python3-pil,
# python3-numpy) is put first on PATH for make alone.
set -euo pipefail
tflm="$1"; shift
shim=""
pick_python() {
  local candidate
  for candidate in ${TFLM_PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import PIL, numpy" >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}
if ! python="$(pick_python)"; then
  echo "TFLM's Makefile needs a python3 with PIL and numpy: sudo apt-get install python3-pil python3-numpy" >&2
  exit 4
fi
if [[ "$(command -v python3 || true)" != "$python" ]]; then
  shim="$(mktemp -d)"
  trap 'rm -rf "$shim"' EXIT
  ln -s "$python" "$shim/python3"
  export PATH="$shim:$PATH"
fi
cd "$tflm"
make -f tensorflow/lite/micro/tools/make/Makefile "$@"
