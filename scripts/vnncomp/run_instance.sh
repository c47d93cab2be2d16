#!/usr/bin/env bash
# VNN-COMP: verify one instance and write RESULTS_FILE (sat + counterexample, unsat, timeout,
# unknown or error).
#   run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# Runs the repository's .venv/bin/qnn-verify (the venv install_tool.sh made; another venv with
# QNN_VENV=PATH, relative paths meaning relative to the repository root), or qnn-verify from PATH
# with QNN_VENV=none. Works from any working directory: the paths are passed on unchanged, so
# relative ones stay relative to the caller's directory.
set -euo pipefail
usage() { echo "usage: $0 v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2; exit 1; }
[ "$#" -eq 6 ] || usage
[ "$1" = "v1" ] || { echo "$0: unsupported VNN-COMP script version '$1' (expected v1)" >&2; usage; }
ONNX=$3 VNNLIB=$4 RESULTS=$5 TIMEOUT=$6
if ! [[ "$TIMEOUT" =~ ^[0-9]+([.][0-9]*)?$ ]]; then
  echo "$0: TIMEOUT must be a number of seconds, got '$TIMEOUT'" >&2
  echo error > "$RESULTS" || true
  usage
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV=${QNN_VENV:-.venv}
if [ "$VENV" = "none" ]; then
  QNN_VERIFY=$(command -v qnn-verify || true)
else
  case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
  QNN_VERIFY="$VENV/bin/qnn-verify"
fi
if [ -z "$QNN_VERIFY" ] || [ ! -x "$QNN_VERIFY" ]; then
  echo "$0: qnn-verify not found (${QNN_VERIFY:-not on PATH}); run install_tool.sh v1 first" >&2
  mkdir -p "$(dirname "$RESULTS")" && echo error > "$RESULTS" || true
  exit 1
fi
# qnn-verify writes RESULTS atomically; it exits 2 on error (RESULTS then says error)
exec "$QNN_VERIFY" "$ONNX" "$VNNLIB" --timeout "$TIMEOUT" --results-file "$RESULTS"
