"""The exact integer program (intprog) against the integer semantics and exhaustive enumeration:

* each activation's encoding pins its output to the exact value at every input of a range
  (ties, saturation on both sides, zero): 'the output differs from the semantics' is infeasible
  and 'it equals it' feasible, for every rounding, shift, zero point and clamp;
* on small random QNNs of every integer encoding, a polytope is infeasible exactly when no code
  of the box is unsafe, and a feasible answer's codes are unsafe;
* the verifier's step uses it (and falls back to the float program for other networks)."""
import itertools
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin import intnet
from qnn_plugin.intnet import IntNet, Lin, Step, Var
from qnn_plugin.verifier import intprog, verify
from qnn_plugin.verifier.network import Network
from qnn_plugin.verifier.problem import Problem
from tests.baselines.smt.networks import ENCODINGS, write
from tests.verifier.instances import grid_instance

LO, HI = -40, 40
COEF, CONST = 3, 5          # z = 3 x + 5 over x in [LO, HI]


def _net(var: Var) -> IntNet:
    """Outputs: the input x and the activation of z = 3 x + 5."""
    z_lo, z_hi = COEF * LO + CONST, COEF * HI + CONST
    var.pre = Lin(np.array([0]), np.array([COEF]), CONST, var.exp, z_lo, z_hi)
    vals = [var.apply(COEF * x + CONST) for x in range(LO, HI + 1)]
    var.lo, var.hi = min(vals), max(vals)
    outs = [Lin(np.array([0]), np.array([1]), 0, 0, LO, HI),
            Lin(np.array([1]), np.array([1]), 0, var.exp, var.lo, var.hi)]
    return IntNet([Var("input", LO, HI), var], 1, outs)


def _status(prog, x: int, rows):
    """Feasibility of x = x0 and the extra rows (a, b) over (x, activation value)."""
    A = np.array([[1.0, 0.0], [-1.0, 0.0]] + [r[0] for r in rows])
    b = np.array([float(x), -float(x)] + [r[1] for r in rows])
    return intprog.solve(prog, A, b, range(len(b)), 30).status


def _pinned(net: IntNet):
    """Inputs x where the program lets the activation differ from its semantics, or cannot
    reach it."""
    prog = intprog.build(net)
    unit = 2.0 ** -net.outputs[1].exp
    bad = []
    for x in range(LO, HI + 1):
        want = net.vars[1].apply(COEF * x + CONST)
        below = _status(prog, x, [([0.0, 1.0], (want - 1) * unit)])
        above = _status(prog, x, [([0.0, -1.0], -(want + 1) * unit)])
        equal = _status(prog, x, [([0.0, 1.0], want * unit), ([0.0, -1.0], -want * unit)])
        if (below, above, equal) != ("infeasible", "infeasible", "feasible"):
            bad.append((x, want, below, above, equal))
    return bad


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "floor", "ceil"])
@pytest.mark.parametrize("shift", [-1, 0, 1, 2, 3])
def test_steps_are_exact(rounding, shift):
    for zp, lo, hi in [(0, None, None), (3, -6, 9), (-2, 0, 15)]:
        net = _net(Var("step", 0, 0, 0, step=Step(shift, zp, lo, hi, rounding)))
        assert _pinned(net) == [], (zp, lo, hi)


@pytest.mark.parametrize("kind", ["relu", "sign", "clip"])
def test_relu_sign_clip_are_exact(kind):
    var = Var(kind, 0, 0, 2 if kind != "sign" else 0, clip=(-17, 31) if kind == "clip" else None)
    assert _pinned(_net(var)) == []


def test_a_wrong_encoding_is_caught(monkeypatch):
    """The check can fail: half to even encoded as half up differs on the ties."""
    monkeypatch.setattr(intprog, "_edges", lambda rounding, s: (-(s // 2), s // 2 - 1))
    net = _net(Var("step", 0, 0, 0, step=Step(2, 0, None, None, "half_even")))
    assert len(_pinned(net)) > 0


def _program(path, spec):
    net = Network(path, torch.device("cpu"))
    problem = Problem.from_case(spec.cases[0], 0, torch.device("cpu"))
    lo, hi = net.domain_box(problem.lower, problem.upper)
    inet = intnet.extract(net.bounded_module, net.input_shape, lo.numpy().astype(np.int64),
                          hi.numpy().astype(np.int64))
    return net, problem, inet, intprog.build(inet)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_program_agrees_with_enumeration(tmp_path, encoding, seed, kind):
    rng = np.random.default_rng(seed)
    built = ENCODINGS[encoding](rng)
    spec, _ = grid_instance(rng, built, kind, free=4)
    net, problem, inet, prog = _program(write(tmp_path, built), spec)
    lo, hi = net.domain_box(problem.lower, problem.upper)
    axes = [np.arange(int(a), int(b) + 1) for a, b in zip(lo.tolist(), hi.tolist())]
    codes = np.array(list(itertools.product(*axes)))
    # the integer semantics on every code of the box (equal to onnxruntime: test_intnet)
    units = np.array([inet.evaluate(c) for c in codes], dtype=np.float64)
    y = units * 2.0 ** -np.array([o.exp for o in inet.outputs], dtype=np.float64)
    poly = problem.poly.numpy()
    for p in range(problem.n_poly):
        rows = np.flatnonzero(poly == p)
        truth = bool(np.all(y @ problem.A64[rows].T <= problem.b64[rows], axis=1).any())
        ans = intprog.solve(prog, problem.A64, problem.b64, rows, 60)
        assert ans.status == ("feasible" if truth else "infeasible"), (p, ans)
        if ans.status == "feasible":
            assert bool(((ans.codes >= lo.numpy()) & (ans.codes <= hi.numpy())).all())
            out = np.array(inet.evaluate(ans.codes), dtype=np.float64) * 2.0 ** -np.array(
                [o.exp for o in inet.outputs], dtype=np.float64)
            assert np.all(problem.A64[rows] @ out <= problem.b64[rows])


@pytest.mark.parametrize("encoding", ["fixed_point", "fixed_point_even", "qdq", "qdq_conv",
                                      "integer"])
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_verifier_step_with_crown_ranges(tmp_path, encoding, seed, kind):
    """The verifier's step (ranges narrowed by CROWN bounds, polytopes CROWN refutes skipped)
    decides every instance, and its answer is the enumerated truth."""
    from qnn_plugin.verifier import api
    from qnn_plugin.verifier.check import Checker

    rng = np.random.default_rng(seed)
    built = ENCODINGS[encoding](rng)
    spec, truth = grid_instance(rng, built, kind, free=4)
    net = Network(write(tmp_path, built), torch.device("cpu"))
    problem = Problem.from_case(spec.cases[0], 0, torch.device("cpu"))
    problem.set_output_bound(100.0)
    lo, hi = net.domain_box(problem.lower, problem.upper)
    stats = {}
    job = api._start_exact_program(net, problem, lo, hi, Checker(net), time.monotonic() + 60, stats)
    try:
        decided = job.decided(wait=60)
    finally:
        job.stop()
    assert "intprog_error" not in stats, stats
    if truth:   # a confirmed counterexample, unless its codes are reachable only by rounding
        assert job.answer != "unsat"
        assert decided or stats.get("intprog_rejected") == 1.0
        if decided:
            assert job.answer.x is not None
    else:
        assert job.answer == "unsat"
