#!/usr/bin/env bash
# Re-create the committed models of qnn_mnist (deterministic for the seed on CPU).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p onnx
# the AAAI 2021 setting: 784-64-32-10, 8-bit input, 6-bit weights and activations, round half up
qnn-train --data mnist --hidden 64,32 --w-bits 6 --w-frac 6 --act-bits 6 --act-frac 4 \
  --rounding half_up --form fixed_point --kappa 0 --epochs 15 --seed 0 --eval-eps 1,2,4 \
  --no-progress --out onnx/mnist_mlp_qat.onnx
qnn-train --data mnist --conv 8,16 --hidden 32 --eps 2 --kappa 0.5 --epochs 15 --seed 0 \
  --eval-eps 1,2,4 --form qdq --no-progress --out onnx/mnist_conv_qaibp.onnx
