#!/usr/bin/env python3
"""VNN-COMP benchmark qnn_digits: robustness of two 64-32 QNNs on scikit-learn's 8x8 digits.

    python generate_properties.py SEED

writes vnnlib/ and instances.csv for the committed models in onnx/ (made by train_models.sh):
digits_qaibp.onnx (trained with QA-IBP) and digits_qat.onnx (plain QAT, same size and seed).
SEED picks the evaluation samples (classified correctly by both models); each gets a property
at each eps (pixel levels of 1/256), checked on both models.
"""
import sys
from pathlib import Path

from qnn_plugin.benchmarks import generate_robustness_benchmark

MODELS = ["onnx/digits_qaibp.onnx", "onnx/digits_qat.onnx"]
SAMPLES, EPS, TIMEOUT = 8, [4, 8, 16], 10

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate_properties.py SEED")
    inst = generate_robustness_benchmark(Path(__file__).resolve().parent, "qnn_digits", "digits",
                                         MODELS, SAMPLES, EPS, TIMEOUT, int(sys.argv[1]))
    print(f"wrote {len(inst)} instances ({SAMPLES} samples x {len(EPS)} eps x {len(MODELS)} models)")
