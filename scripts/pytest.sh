#!/usr/bin/env bash
# Runs the suite on both cores. pytest exits 5 when it collected nothing: that is a failure here,
# because a green run that tested nothing proves nothing.
set -u
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
"$BIN/pytest" -n 2 --dist loadfile -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
