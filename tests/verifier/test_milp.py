"""The integer program against exhaustive enumeration: infeasible only when no grid point of the
box is unsafe, never infeasible when one is; and the verifier's MILP step end to end."""
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin import onnx_builders as ob
from qnn_plugin.verifier import bab, milp, verify
from qnn_plugin.verifier.network import Network
from qnn_plugin.verifier.problem import Problem

from tests.baselines.smt import networks

from .instances import ENCODINGS, POOLS, batchnorm_sign_mlp, grid_instance, pool_net

# the verifier's encodings, Sign nets (exact thresholds, float thresholds, the +-1 idiom, a
# BatchNormalization node before the Sign) and a float bias read by a quantizer
PROGRAM_ENCODINGS = {**ENCODINGS, **{k: networks.ENCODINGS[k] for k in (
    "sign", "sign_idiom", "sign_float_bias", "quant_float_bias")},
    "batchnorm_sign": batchnorm_sign_mlp}



def _program_verdict(tmp_path, built, spec):
    path = tmp_path / "net.onnx"
    path.write_bytes(built.model.SerializeToString())
    net = Network(str(path), torch.device("cpu"))
    problem = Problem.from_case(spec.cases[0], 0, torch.device("cpu"))
    lo, hi = net.domain_box(problem.lower, problem.upper)
    with torch.no_grad():
        problem.set_output_bound(1.0)
        bab.bound_rows(net, problem, lo[None], hi[None], "crown", False)
    prog, out = milp.encode(net.bounded_module, lo.double().numpy(), hi.double().numpy(),
                            net.grid is not None)
    res = milp.solve(prog, out, problem.A64, problem.b64, problem.poly.numpy(),
                     problem.tolerance64(), time_limit=60)
    return res, net, problem


@pytest.mark.parametrize("encoding", sorted(PROGRAM_ENCODINGS))
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_program_agrees_with_enumeration(tmp_path, encoding, seed, kind):
    rng = np.random.default_rng(seed)
    built = PROGRAM_ENCODINGS[encoding](rng)
    spec, truth = grid_instance(rng, built, kind, free=4)
    res, net, problem = _program_verdict(tmp_path, built, spec)
    assert res.status in ("infeasible", "feasible"), res.message
    if truth:
        assert res.status == "feasible"
    if res.status == "infeasible":
        assert not truth
    if res.status == "feasible" and truth:
        # the candidate is a point of the box whose torch margin is (nearly) unsafe
        pt = torch.tensor(np.round(res.point), dtype=torch.float32)[None]
        lo, hi = net.domain_box(problem.lower, problem.upper)
        assert bool(((pt >= lo) & (pt <= hi)).all())


@pytest.mark.parametrize("pool", sorted(POOLS))
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_program_agrees_with_enumeration_on_pools(tmp_path, pool, seed, kind):
    """MaxPool windows (and the -inf Pad in front of an asymmetric one), AveragePool's
    padded depthwise sums, in the program."""
    rng = np.random.default_rng(seed)
    built = pool_net(rng, **POOLS[pool])
    spec, truth = grid_instance(rng, built, kind, free=5)
    res, _, _ = _program_verdict(tmp_path, built, spec)
    assert res.status == ("feasible" if truth else "infeasible"), res.message


def test_unsupported_operations_are_reported(tmp_path):
    """A product of two perturbed tensors (x * x) is not affine: the encoder says so."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from qnn_plugin import compute_bounds

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])],
        "square", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    path = tmp_path / "square.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    net = Network(str(path), torch.device("cpu"))
    lo = torch.zeros(net.n_in)
    compute_bounds(net.bounded_module, lo[None], lo[None] + 1, "crown")
    with pytest.raises(milp.Unsupported, match="two perturbed"):
        milp.encode(net.bounded_module, lo.double().numpy(), lo.double().numpy() + 1, False)


@pytest.mark.parametrize("use_milp", [True, False])
def test_verify_with_and_without_the_program(tmp_path, use_milp):
    """Wide boxes (every coordinate free) with activation branching: the verdict is the
    enumerated truth either way."""
    rng = np.random.default_rng(11)
    for _ in range(6):
        built = ob.random_fixed_point_mlp(rng, sizes=[6, 12, 8, 3])
        spec, truth = grid_instance(rng, built, "random", free=6)
        path = tmp_path / "net.onnx"
        path.write_bytes(built.model.SerializeToString())
        res = verify(str(path), spec, timeout=60, branch="activation", milp=use_milp,
                     attack_starts=0)
        assert res.verdict == ("sat" if truth else "unsat"), (res.verdict, res.message)
        assert use_milp or "time_milp" not in res.stats


def test_program_decides_where_the_search_stalls():
    """qnn_digits' plain-QAT model, digits evaluation sample 88 at 2 pixel levels: branch and
    bound without beta multipliers kept ~150,000 domains open after 60 s (measured); the
    integer program proves it at once (the exact one of intprog: the model has power-of-two
    scales)."""
    from qnn_plugin.benchmarks import verify_robustness
    from qnn_plugin.training.data import load_dataset
    ds = load_dataset("digits")
    px, label = ds.x_test[88].reshape(-1).astype(np.int64), int(ds.y_test[88])
    model = str(Path(__file__).resolve().parents[2] / "vnncomp_benchmarks" / "qnn_digits" / "onnx" / "digits_qat.onnx")
    res = verify_robustness(model, px, label, 10, 2, timeout=30)
    assert res.verdict == "unsat" and "intprog_nodes" in res.stats, (res.verdict, res.stats)
    assert "milp_decided" not in res.stats


def _stalled_search(net, problem, lo, hi, deadline, judge, opts):
    """A search that decides nothing: it only waits to be interrupted."""
    import time

    while time.monotonic() < deadline:
        if opts.interrupt is not None and opts.interrupt():
            return bab.Outcome("interrupted")
        time.sleep(0.01)
    return bab.Outcome("timeout", message="stalled")


def _float_relu(rng):
    from .test_soundness import _relu_mlp

    return _relu_mlp(rng, [20, 16, 16, 3])


def _float_sign(rng):
    """A binarized MLP on float inputs (no input quantizer), float first-layer thresholds."""
    return ob.random_sign_mlp(rng, sizes=[20, 16, 16, 3]).model


def _float_instances(tmp_path, make, radii=(0.05, 0.1, 0.2)):
    """Float networks ``make(rng)`` (no input quantizer, 20 inputs) with robustness boxes of
    a radius among ``radii``: (path, spec, x0, eps, label)."""
    from qnn_plugin.spec import Case, Polytope, Spec

    from .instances import exact_outputs

    for seed in range(12):
        rng = np.random.default_rng(seed)
        model = make(rng)
        path = tmp_path / f"net{seed}.onnx"
        path.write_bytes(model.SerializeToString())
        x0 = rng.uniform(-1, 1, size=20)
        eps = float(rng.choice(radii))
        lab = int(np.argmax(exact_outputs(model, x0.astype(np.float32)[None])[0]))
        polys = tuple(Polytope(np.eye(3)[[lab]] - np.eye(3)[[j]], np.zeros(1))
                      for j in range(3) if j != lab)
        yield str(path), Spec((Case(x0 - eps, x0 + eps, polys),), 20, 3, "<t>"), x0, eps, lab


@pytest.mark.parametrize("make, radii", [(_float_relu, (0.05, 0.1, 0.2)),
                                         (_float_sign, (0.01, 0.02, 0.04))], ids=["relu", "sign"])
def test_float_program_decides_beside_a_stalled_search(tmp_path, monkeypatch, make, radii):
    """Float networks: the float program runs in a child beside the search and its answer
    ends the search; here the search decides nothing, so every verdict is the program's (sat:
    a confirmed counterexample; unsat: checked on 5,000 samples of the box). Without moving
    its solution deep into the unsafe set (milp._deepest), 5 of the 12 ReLU instances ended
    in a timeout: a point on the relaxed face of the polytope, which the exact evaluation
    finds just safe. Sign nets: before the program encoded Sign, none of them had a program."""
    import onnxruntime as ort

    monkeypatch.setattr(bab, "search", _stalled_search)
    verdicts = []
    for path, spec, x0, eps, lab in _float_instances(tmp_path, make, radii):
        res = verify(path, spec, timeout=20, branch="activation", attack_starts=0)
        if "time_milp_build" not in res.stats:   # decided before the program
            continue
        assert res.stats.get("milp_decided") == 1.0, (res.verdict, res.stats)
        verdicts.append(res.verdict)
        if res.verdict == "sat":
            assert res.counterexample is not None
            continue
        assert res.verdict == "unsat", res.message
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        xs = rng.uniform(x0 - eps, x0 + eps, size=(5000, 20)).astype(np.float32)
        name = sess.get_inputs()[0].name
        ys = np.concatenate([sess.run(None, {name: x[None]})[0] for x in xs])
        assert all((ys[:, lab] - ys[:, j] > 0).all() for j in range(3) if j != lab)
    assert {"sat", "unsat"} <= set(verdicts), verdicts


def test_the_deepest_point_is_at_least_as_unsafe(tmp_path):
    """milp.solve's candidates: the point moved deep into the polytope first, no less unsafe
    than the solver's own on the network (and strictly more on some instances), then the
    solver's own; equal on a grid network, whose integer input columns cannot move."""
    deeper = 0
    for path, spec, *_ in _float_instances(tmp_path, _float_relu):
        net = Network(path, torch.device("cpu"))
        problem = Problem.from_case(spec.cases[0], 0, torch.device("cpu"))
        lo, hi = net.domain_box(problem.lower, problem.upper)
        with torch.no_grad():
            problem.set_output_bound(1.0)
            bab.bound_rows(net, problem, lo[None], hi[None], "crown", False)
        prog, out = milp.encode(net.bounded_module, lo.double().numpy(), hi.double().numpy(), False)
        res = milp.solve(prog, out, problem.A64, problem.b64, problem.poly.numpy(),
                         problem.tolerance64(), time_limit=30)
        if res.status != "feasible":
            continue
        assert res.points.shape == (2, net.n_in) and np.array_equal(res.point, res.points[0])
        pts = torch.tensor(res.points, dtype=torch.float32)
        assert bool(((pts >= lo) & (pts <= hi)).all())
        m = problem.margins(net.evaluate(pts))
        assert m[0] <= m[1] + 1e-5, m
        deeper += bool(m[0] < m[1] - 1e-3)
    assert deeper >= 3, deeper
    rng = np.random.default_rng(3)
    built = ob.random_fixed_point_mlp(rng, sizes=[6, 12, 8, 3])
    spec, truth = grid_instance(rng, built, "random", free=6)
    res, net, problem = _program_verdict(tmp_path, built, spec)
    if res.status == "feasible":
        assert np.array_equal(res.points[0], res.points[1])


def test_the_search_does_not_wait_for_the_float_program(tmp_path, monkeypatch):
    """A float program that never answers: the search decides on its own, in its own time."""
    import time

    def stuck(*args, **kwargs):
        time.sleep(60)

    monkeypatch.setattr(milp, "solve", stuck)
    quick = 0
    for path, spec, *_ in _float_instances(tmp_path, _float_relu):
        res = verify(path, spec, timeout=15, branch="activation", attack_starts=0)
        if "time_milp_build" in res.stats and res.verdict in ("sat", "unsat"):
            assert "milp_decided" not in res.stats
            quick += res.stats["time_total"] < 5
    assert quick >= 3, quick


def test_no_fork_leaves_the_search_alone(tmp_path, monkeypatch):
    """A failed fork (out of memory, process limit) is recorded; the search decides alone."""
    from qnn_plugin.verifier import api

    def no_fork(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(api, "Forked", no_fork)
    path, spec, *_ = next(_float_instances(tmp_path, _float_relu))
    res = verify(path, spec, timeout=10, branch="activation", attack_starts=0)
    assert res.stats.get("milp_error") == 1.0, res.stats
    assert res.verdict in ("sat", "unsat", "timeout")


def test_a_failing_float_program_leaves_the_search_alone(tmp_path, monkeypatch):
    """An exception in the float program's child is recorded; the verdict is the search's."""
    def broken(*args, **kwargs):
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(milp, "solve", broken)
    ran = 0
    for path, spec, *_ in _float_instances(tmp_path, _float_relu):
        res = verify(path, spec, timeout=5, branch="activation", attack_starts=0)
        if "time_milp_build" not in res.stats:
            continue
        ran += 1
        assert res.stats.get("milp_error") == 1.0, res.stats
        assert "milp_decided" not in res.stats
        assert res.verdict in ("sat", "unsat", "timeout"), res.message
    assert ran
