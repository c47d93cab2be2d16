"""Ground truth behind the AAAI 2021 table's timeouts: two of the three instances the verifier
does not decide in 60 s are `sat`, and the committed counterexamples (found by another MIP
solver on the program of scripts/bench_intprog.py --write-mps) are confirmed by the exact
semantics and onnxruntime on the instance the benchmark script builds."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qnn_plugin.training.data import find_shared_dir

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "vnncomp_benchmarks" / "qnn_mnist" / "onnx" / "mnist_mlp_qat.onnx"
FOUND = json.loads((Path(__file__).parent / "data" / "aaai2021_counterexamples.json").read_text())


@pytest.mark.parametrize("ce", FOUND["counterexamples"], ids=lambda c: f"{c['sample']}_eps{c['eps']}")
def test_the_timeouts_counterexamples_are_real(ce):
    if find_shared_dir() is None:
        pytest.skip("the shared datasets folder (datasets/mnist) is not on this machine")
    from qnn_plugin.benchmarks import robustness_vnnlib
    from qnn_plugin.spec import parse_vnnlib
    from qnn_plugin.training.data import load_dataset
    from qnn_plugin.verifier.check import Checker
    from qnn_plugin.verifier.network import Network
    from qnn_plugin.verifier.problem import Problem

    ds = load_dataset("mnist")
    px = ds.x_test[ce["sample"]].reshape(-1).astype(np.int64)
    spec = parse_vnnlib(robustness_vnnlib(px, int(ds.y_test[ce["sample"]]), 10, ce["eps"]))
    net = Network(str(MODEL), torch.device("cpu"))
    problem = Problem.from_case(spec.cases[0], 0, torch.device("cpu"))
    lo, hi = net.domain_box(problem.lower, problem.upper)
    codes = torch.tensor(ce["codes"], dtype=torch.float32)
    assert bool(((codes >= lo) & (codes <= hi)).all())
    x = net.to_inputs(codes.unsqueeze(0), problem.inner_lower, problem.inner_upper)[0]
    assert Checker(net).check(x.numpy(), problem).confirmed
