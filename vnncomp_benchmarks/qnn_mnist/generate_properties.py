#!/usr/bin/env python3
"""VNN-COMP benchmark qnn_mnist: robustness of two MNIST QNNs.

    python generate_properties.py SEED

writes vnnlib/ and instances.csv for the committed models in onnx/ (made by train_models.sh):

* mnist_mlp_qat.onnx: the AAAI 2021 shape -- a 784-64-32-10 fixed-point MLP, 8-bit inputs,
  6-bit weights and activations, round half up, power-of-two scales -- trained with plain QAT;
* mnist_conv_qaibp.onnx: a small conv QNN (two 3x3 stride-2 convs with 8 and 16 channels, a
  32-unit dense layer) in QDQ form, trained with QA-IBP at 2 pixel levels.

Samples come from the held-out part of the shared MNIST test set (the last 2,000 images; the
models train on the first 8,000). SEED picks samples classified correctly by both models.
"""
import sys
from pathlib import Path

from qnn_plugin.benchmarks import generate_robustness_benchmark

MODELS = ["onnx/mnist_mlp_qat.onnx", "onnx/mnist_conv_qaibp.onnx"]
SAMPLES, EPS, TIMEOUT = 5, [2, 4, 8], 20

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate_properties.py SEED")
    inst = generate_robustness_benchmark(Path(__file__).resolve().parent, "qnn_mnist", "mnist",
                                         MODELS, SAMPLES, EPS, TIMEOUT, int(sys.argv[1]))
    print(f"wrote {len(inst)} instances ({SAMPLES} samples x {len(EPS)} eps x {len(MODELS)} models)")
