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
from tests.verifier.instances import grid_case, grid_instance

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


@pytest.mark.parametrize("band", [1, 2])
def test_a_banded_sign_takes_the_sign_or_zero_in_its_band(band):
    """intnet's relaxed Sign (a float bias within float32's rounding error of 0): for |z| <=
    band the program allows sign(z) and 0, elsewhere sign(z) alone."""
    net = _net(Var("sign", 0, 0, 0, band=band))
    prog = intprog.build(net)
    for x in range(LO, HI + 1):
        z = COEF * x + CONST
        want = {int(np.sign(z))} | ({0} if abs(z) <= band else set())
        got = {v for v in (-1, 0, 1)
               if _status(prog, x, [([0.0, 1.0], v), ([0.0, -1.0], -v)]) == "feasible"}
        assert got == want, (x, z, got)


def test_a_wrong_encoding_is_caught(monkeypatch):
    """The check can fail: half to even encoded as half up differs on the ties."""
    monkeypatch.setattr(intprog, "_edges", lambda rounding, s: (-(s // 2), s // 2 - 1))
    net = _net(Var("step", 0, 0, 0, step=Step(2, 0, None, None, "half_even")))
    assert len(_pinned(net)) > 0


def _doubling_net() -> IntNet:
    """One output k = 2 x for codes x in [0, 3]: with a continuous x every level in [0, 6]
    is reachable, with integer codes only the even ones."""
    step = Var("step", 0, 6, 0, pre=Lin(np.array([0]), np.array([2]), 0, 0, 0, 6),
               step=Step(0, 0, None, None, "half_even"))
    return IntNet([Var("input", 0, 3), step], 1, [Lin(np.array([1]), np.array([1]), 0, 0, 0, 6)])


@pytest.mark.parametrize("level, inputs, phases, status", [
    (2, "relaxed-first", ["relaxed", "codes"], "feasible"),   # x in [3/4, 5/4]: code 1
    (1, "relaxed-first", ["relaxed", "codes", "levels", "integer"], "infeasible"),
    (1, "relaxed", ["relaxed", "codes", "levels"], "unknown"),
    (1, "integer", ["integer"], "infeasible")])
def test_relaxed_inputs_fall_back_to_integer_codes(monkeypatch, level, inputs, phases, status):
    """With continuous inputs the program can stop at a fractional x whose level no integer
    code reaches (k = 1 from x = 1/2): the rounded codes, then integer codes under its levels,
    then the integer program are tried, and the answer is the integer one."""
    prog = intprog.build(_doubling_net())
    seen = _spy_phases(monkeypatch)
    ans = intprog.solve(prog, np.array([[1.0], [-1.0]]), np.array([level, -level]), [0, 1], 30,
                        inputs=inputs)
    assert (ans.status, seen) == (status, phases)
    if status == "feasible":
        assert ans.codes.tolist() == [1]


def _spy_phases(monkeypatch):
    """The list that records which kind of program each HiGHS run solves."""
    seen = []
    run = intprog._run

    def spy(lp, prog, end, options, relax=(), fix=None):
        inputs = set(prog.inputs)
        seen.append("relaxed" if relax else "integer" if not fix else "codes" if set(fix) == inputs
                    else "nearby" if set(fix) < inputs else "levels")
        return run(lp, prog, end, options, relax, fix)

    monkeypatch.setattr(intprog, "_run", spy)
    return seen


def test_a_repair_frees_the_fractional_codes(monkeypatch):
    """y = x0 + x1 = 3 from the relaxed point (0, 2.5): its rounded codes (0, 2) miss, holding
    the integral x0 = 0 and freeing x1 finds (0, 3) (on AAAI eps 3 sample 84 the other
    repairs failed where this one found the counterexample)."""
    net = IntNet([Var("input", 0, 3), Var("input", 0, 3)], 2,
                 [Lin(np.array([0, 1]), np.array([1, 1]), 0, 0, 0, 6)])
    prog = intprog.build(net)
    lp = intprog._highs_lp(prog, np.array([[1.0], [-1.0]]), np.array([3.0, -3.0]), [0, 1])
    seen = _spy_phases(monkeypatch)
    first = intprog.Answer("feasible", values=np.array([0.0, 2.5]))
    ans = intprog._repair(lp, prog, first, lambda: time.monotonic() + 10, None)
    assert (ans.status, ans.codes.tolist(), seen) == ("feasible", [0, 3], ["codes", "nearby"])


@pytest.mark.parametrize("inputs", intprog.INPUT_MODES)
def test_a_program_of_inputs_only(inputs):
    """y = 2 x on codes [0, 3]: with continuous inputs no integer column is left and HiGHS
    solves an LP, whose optimum is the proof's bound (it reports no MIP bound)."""
    net = IntNet([Var("input", 0, 3)], 1, [Lin(np.array([0]), np.array([2]), 0, 0, 0, 6)])
    prog = intprog.build(net)

    def answer(level):
        A, b = np.array([[1.0], [-1.0]]), np.array([level, -level])
        return intprog.solve(prog, A, b, [0, 1], 30, inputs=inputs).status

    assert answer(10) == "infeasible"                        # beyond the range
    assert answer(4) == "feasible"                           # x = 2
    assert answer(1) == ("unknown" if inputs == "relaxed" else "infeasible")   # x = 1/2 only


def _program(path, spec):
    net = Network(path, torch.device("cpu"))
    problem = Problem.from_case(spec.cases[0], 0, torch.device("cpu"))
    lo, hi = net.domain_box(problem.lower, problem.upper)
    inet = intnet.extract(net.bounded_module, net.input_shape, lo.numpy().astype(np.int64),
                          hi.numpy().astype(np.int64))
    return net, problem, inet, intprog.build(inet)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]),
       inputs=st.sampled_from(intprog.INPUT_MODES))
def test_program_agrees_with_enumeration(tmp_path, encoding, seed, kind, inputs):
    """Every input mode answers the truth, for each polytope and for the union of all of them
    in one program; "relaxed" may also say "unknown" (a fractional solution it could not
    repair), never the wrong verdict."""
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
    groups = [np.flatnonzero(poly == p) for p in range(problem.n_poly)]

    def inside(out, rows):
        return bool(np.all(problem.A64[rows] @ out <= problem.b64[rows]))

    truths = [bool(np.all(y @ problem.A64[rows].T <= problem.b64[rows], axis=1).any())
              for rows in groups]
    # each polytope alone, then (robustness: several polytopes) one program over their union
    asked = [(rows, [rows], truth) for rows, truth in zip(groups, truths)]
    if len(groups) > 1:
        asked.append((groups, groups, any(truths)))
    for rows, union, truth in asked:
        ans = intprog.solve(prog, problem.A64, problem.b64, rows, 60, inputs=inputs)
        allowed = {"feasible" if truth else "infeasible"}
        if inputs == "relaxed":
            allowed.add("unknown")
        assert ans.status in allowed, (len(union), ans)
        if ans.status == "feasible":
            assert bool(((ans.codes >= lo.numpy()) & (ans.codes <= hi.numpy())).all())
            out = np.array(inet.evaluate(ans.codes), dtype=np.float64) * 2.0 ** -np.array(
                [o.exp for o in inet.outputs], dtype=np.float64)
            assert any(inside(out, r) for r in union)


def _grid_case(tmp_path, encoding: str, seed: int, kind: str):
    """(net, problem, lo, hi, truth) of a random instance with 4 free inputs (instances.py)."""
    rng = np.random.default_rng(seed)
    return grid_case(tmp_path, ENCODINGS[encoding](rng), rng, kind)


@pytest.mark.parametrize("encoding", ["fixed_point", "fixed_point_even", "qdq", "qdq_conv",
                                      "integer", "sign", "sign_float_bias", "quant_float_bias"])
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_verifier_step_with_crown_ranges(tmp_path, encoding, seed, kind):
    """The verifier's step (ranges narrowed by CROWN bounds, polytopes CROWN refutes skipped)
    decides every instance, and its answer is the enumerated truth."""
    from qnn_plugin.verifier import api
    from qnn_plugin.verifier.check import Checker

    net, problem, lo, hi, truth = _grid_case(tmp_path, encoding, seed, kind)
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


@pytest.mark.parametrize("share", [0.0, 0.25])
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), inputs=st.sampled_from(["relaxed", "integer"]))
def test_the_union_after_a_first_pass_decides(tmp_path, monkeypatch, share, seed, inputs):
    """The verifier's child with ``together``: a first pass one polytope at a time (share 0:
    none, so the union of every open polytope), then one program over the union of the
    polytopes it left open; the answer is the enumerated truth of the robustness case
    ("relaxed" may say "unknown")."""
    from qnn_plugin.verifier import api

    monkeypatch.setattr(api, "_FIRST_PASS_SHARE", share)
    rng = np.random.default_rng(seed)
    net, problem, lo, hi, truth = grid_case(tmp_path, ENCODINGS["fixed_point"](rng), rng, "robust")
    built = api.exact_program(net, problem, lo, hi)
    assert built is not None
    prog = built[0]
    # every polytope, also those CROWN refutes (on these small boxes nearly all): a union of 2
    status, codes, _ = api._solve_polytopes(prog, problem.A64, problem.b64, problem.poly.numpy(),
                                            list(range(problem.n_poly)), time.monotonic() + 60,
                                            inputs, True)
    allowed = {"feasible" if truth else "infeasible"} | ({"unknown"} if inputs == "relaxed" else set())
    assert status in allowed, (status, truth, problem.n_poly)
    if status == "feasible":
        assert bool(((codes >= lo.numpy()) & (codes <= hi.numpy())).all())


# robust fixed-point instances that CROWN leaves open: seed 6 is sat and both variants decide
# it; seed 4 is unsat and only the integer one does (the relaxed solution is fractional)
@pytest.mark.parametrize("seed, slow", [(6, "relaxed"), (6, "integer"), (4, "relaxed")])
def test_either_program_variant_decides(tmp_path, monkeypatch, seed, slow):
    """The two variants race in two children: with one of them stuck, the other decides."""
    from qnn_plugin.verifier import api
    from qnn_plugin.verifier.check import Checker

    solve = intprog.solve

    def stuck(*args, inputs="relaxed-first", **kwargs):
        (tmp_path / f"started_{inputs}").touch()      # in the child: both variants start
        if inputs == slow:
            time.sleep(60)
        return solve(*args, inputs=inputs, **kwargs)

    monkeypatch.setattr(intprog, "solve", stuck)
    net, problem, lo, hi, truth = _grid_case(tmp_path, "fixed_point", seed, "robust")
    assert api.exact_program(net, problem, lo, hi)[1], "CROWN decides it: nothing to race"
    stats = {}
    t = time.monotonic()
    job = api._start_exact_program(net, problem, lo, hi, Checker(net), t + 60, stats)
    try:
        assert job.decided(wait=30)
    finally:
        job.stop()
    assert time.monotonic() - t < 30
    assert (job.answer == "unsat") == (not truth)
    assert {f.name for f in tmp_path.glob("started_*")} == {"started_relaxed", "started_integer"}


def test_a_disagreement_between_the_variants_is_reported(tmp_path, monkeypatch, capsys):
    """A (planted) wrong proof from one variant beside the other's confirmed counterexample:
    the counterexample stands, and the conflict is recorded and reported."""
    from qnn_plugin.verifier import api
    from qnn_plugin.verifier.check import Checker
    from qnn_plugin.verifier.result import Counterexample

    honest = api._solve_polytopes

    def planted(prog, A, b, poly, order, deadline, inputs, together=False, options=None):
        if inputs == "relaxed":
            return "infeasible", None, 0
        return honest(prog, A, b, poly, order, deadline, inputs, together, options)

    monkeypatch.setattr(api, "_solve_polytopes", planted)
    net, problem, lo, hi, truth = _grid_case(tmp_path, "fixed_point", 6, "robust")
    assert truth                                    # sat (see above)
    stats = {}
    job = api._start_exact_program(net, problem, lo, hi, Checker(net), time.monotonic() + 60, stats)
    try:
        for child in job.pending:                   # both answer before anyone asks
            assert child.wait(30)
        assert job.decided()
    finally:
        job.stop()
    assert isinstance(job.answer, Counterexample)
    assert stats.get("intprog_conflict") == 1.0
    assert "internal error" in capsys.readouterr().err


def _stalling_instance():
    """qnn_digits' plain-QAT model, digits evaluation sample 88 at 2 pixel levels (see
    test_milp): the root bound does not prove it and the search alone stalls."""
    from pathlib import Path

    from qnn_plugin.benchmarks import robustness_vnnlib
    from qnn_plugin.spec import parse_vnnlib
    from qnn_plugin.training.data import load_dataset

    ds = load_dataset("digits")
    px, label = ds.x_test[88].reshape(-1).astype(np.int64), int(ds.y_test[88])
    model = str(Path(__file__).resolve().parents[2] / "vnncomp_benchmarks" / "qnn_digits" /
                "onnx" / "digits_qat.onnx")
    return model, parse_vnnlib(robustness_vnnlib(px, label, 10, 2))


def test_the_program_interrupts_the_search():
    model, spec = _stalling_instance()
    res = verify(model, spec, timeout=30)
    assert res.verdict == "unsat", res.message
    assert res.stats.get("intprog_decided") == 1.0, res.stats
    assert res.stats["time_total"] < 25


def test_a_failing_program_leaves_the_search_alone(monkeypatch):
    """An exception in the child (here: the solver) is recorded, and the search alone decides
    or runs out of time; never a verdict from the failed program."""
    def broken(*args, **kwargs):
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(intprog, "solve", broken)
    model, spec = _stalling_instance()
    res = verify(model, spec, timeout=6)
    assert res.stats.get("intprog_error") == 1.0, res.stats
    assert "intprog_decided" not in res.stats
    assert res.verdict in ("unsat", "timeout"), res.verdict


def test_search_stops_when_interrupted():
    """bab.search returns 'interrupted' at the first round once the interrupt says so."""
    from qnn_plugin.verifier import bab

    calls = []

    def interrupt():
        calls.append(1)
        return True

    class _Net:   # the search asks nothing of the network before its first round
        grid = cells = None
        n_in = 2
        bounded_module = None

    lo, hi = torch.zeros(2), torch.ones(2)
    problem = Problem.from_case(_case(), 0, torch.device("cpu"))
    class _Judge:
        confirm = exactly_safe = None

    out = bab.search(_Net(), problem, lo, hi, time.monotonic() + 10, _Judge(),
                     bab.Options(branch="input", root_alpha=False, batch=8, interrupt=interrupt))
    assert out.status == "interrupted" and calls == [1]


def _case():
    from qnn_plugin.spec import Case, Polytope

    return Case(np.zeros(2), np.ones(2), (Polytope(np.array([[1.0, -1.0]]), np.zeros(1)),))
