#!/usr/bin/env bash
# The image's entrypoint: `edgedistill "$@"`, after one check the container alone needs.
#
# `firmware build` and `firmware run` write into the run folder (firmware/, report.json,
# firmware.jsonl). A run folder mounted read-only (-v ...:ro), or owned by a user the container's
# user cannot write as, would fail deep inside the build; say so first, in one line, with the fix.
set -euo pipefail
if [[ "${1:-}" == firmware && ( "${2:-}" == build || "${2:-}" == run ) ]]; then
  for argument in "${@:3}"; do
    # Run folders are the directory arguments with a micro export in them.
    if [[ -d "$argument/micro" ]] && ! { : > "$argument/.edgedistill-write-check"; } 2>/dev/null; then
      echo "Error: the run folder $argument is not writable in the container (mounted with :ro, or owned by another user): mount it read-write, e.g. -v \"\$PWD/runs/<id>:$argument\" without :ro." >&2
      exit 1
    fi
    rm -f "$argument/.edgedistill-write-check" 2>/dev/null || true
  done
fi
exec edgedistill "$@"
