#!/usr/bin/env bash
# Re-create the committed models of qnn_digits (deterministic for the seed on CPU; about a minute).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p onnx
COMMON="--data digits --hidden 64,32 --epochs 20 --eps 8 --eval-eps 2,4,8 --seed 0 --form qdq --no-progress"
qnn-train $COMMON --kappa 0.5 --out onnx/digits_qaibp.onnx
qnn-train $COMMON --kappa 0 --out onnx/digits_qat.onnx
