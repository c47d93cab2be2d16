#!/usr/bin/env bash
# VNN-COMP: prepare one instance. No analysis happens here (the verifier loads the model and the
# property within its own timeout in run_instance.sh); this only checks the arguments and that
# the files exist (possibly gzipped), and exits 0.
#   prepare_instance.sh v1 CATEGORY ONNX VNNLIB
set -euo pipefail
usage() { echo "usage: $0 v1 CATEGORY ONNX VNNLIB" >&2; exit 1; }
[ "$#" -eq 4 ] || usage
[ "$1" = "v1" ] || { echo "$0: unsupported VNN-COMP script version '$1' (expected v1)" >&2; usage; }
for f in "$3" "$4"; do
  if [ ! -f "$f" ] && [ ! -f "$f.gz" ]; then
    echo "$0: no such file: $f" >&2
    exit 1
  fi
done
exit 0
