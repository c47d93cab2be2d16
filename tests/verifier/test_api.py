"""verify(): counterexamples, several cases, float inputs, timeouts and bad input."""
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin import onnx_builders as ob
from qnn_plugin.errors import ModelLoadError, SpecError
from qnn_plugin.spec import Case, Polytope, Spec, parse_vnnlib
from qnn_plugin.verifier import verify

from tests.shared_data import VNNCOMP

from .instances import exact_outputs


def _save(tmp_path, built, name="net.onnx"):
    path = tmp_path / name
    path.write_bytes(built.model.SerializeToString())
    return str(path)


def _vnnlib(lower, upper, rows, n_out):
    """VNN-LIB 1.0 text: the box, and an unsafe set given as a list of (coeffs, b) atoms, all
    of which must hold."""
    lines = [f"(declare-const X_{i} Real)" for i in range(len(lower))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (lo, hi) in enumerate(zip(lower, upper)):
        lines += [f"(assert (>= X_{i} {float(lo)!r}))", f"(assert (<= X_{i} {float(hi)!r}))"]
    for coeffs, b in rows:
        terms = " ".join(f"(* {float(c)!r} Y_{j})" for j, c in enumerate(coeffs) if c)
        lines.append(f"(assert (<= (+ {terms} 0.0) {float(b)!r}))")
    return "\n".join(lines) + "\n"


def test_sat_counterexample_is_in_box_and_confirmed(tmp_path):
    rng = np.random.default_rng(3)
    built = ob.random_fixed_point_mlp(rng, sizes=[4, 8, 3])
    path = _save(tmp_path, built)
    lower, upper = np.full(4, 0.2), np.full(4, 0.6)
    # unsafe: y_0 <= +inf-ish threshold -> trivially sat somewhere
    y = exact_outputs(built.model, np.full((1, 4), 0.4, np.float32))[0]
    spec = parse_vnnlib(_vnnlib(lower, upper, [([1.0, 0.0, 0.0], float(y[0]))], 3))
    res = verify(path, spec, timeout=30)
    assert res.verdict == "sat"
    x = res.counterexample.x
    assert x.dtype == np.float32 and x.shape == (4,)
    assert np.all(x >= 0.2) and np.all(x <= 0.6)
    y_cex = exact_outputs(built.model, x.reshape(1, 4))[0]
    assert y_cex[0] <= y[0]
    assert res.stats["time_total"] > 0


def test_second_case_decides(tmp_path):
    """A spec with two input boxes: the first is safe, the second holds the violation."""
    rng = np.random.default_rng(5)
    built = ob.random_fixed_point_mlp(rng, sizes=[2, 5, 2])
    path = _save(tmp_path, built)
    a = exact_outputs(built.model, np.array([[0.1, 0.1]], np.float32))[0]
    b = exact_outputs(built.model, np.array([[0.9, 0.9]], np.float32))[0]
    if a[0] == b[0]:
        pytest.skip("degenerate network")
    # unsafe: y_0 == b_0 exactly (two rows); first box is the single point 0.1, second 0.9
    poly = Polytope(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([b[0], -b[0]], dtype=np.float64))
    cases = (Case(np.full(2, 0.1), np.full(2, 0.1), (poly,)),
             Case(np.full(2, 0.9), np.full(2, 0.9), (poly,)))
    res = verify(path, Spec(cases, 2, 2, "<t>"), timeout=30)
    assert res.verdict == "sat" and res.counterexample.case == 1


def test_float_input_network_unsat_and_sat(tmp_path):
    """A network without an input quantizer: float branch and bound is sound; a robust box
    around a confidently classified point is proven, a huge box is falsified."""
    rng = np.random.default_rng(11)
    built = ob.random_sign_mlp(rng, sizes=[3, 6, 3])
    path = _save(tmp_path, built)
    x0 = np.zeros((1, 3), np.float32)
    y0 = exact_outputs(built.model, x0)[0]
    lab = int(np.argmax(y0))
    polys = tuple(Polytope(np.eye(3)[[lab]] - np.eye(3)[[j]], np.zeros(1)) for j in range(3) if j != lab)
    tiny = Spec((Case(np.full(3, -1e-7), np.full(3, 1e-7), polys),), 3, 3, "<t>")
    res = verify(path, tiny, timeout=30)
    xs = np.random.default_rng(0).uniform(-1e-7, 1e-7, size=(200, 3)).astype(np.float32)
    ys = exact_outputs(built.model, xs)
    violated = any((ys[:, lab] - ys[:, j] <= 0).any() for j in range(3) if j != lab)
    assert res.verdict in (("sat",) if violated else ("unsat", "sat"))
    big = Spec((Case(np.full(3, -100.0), np.full(3, 100.0), polys),), 3, 3, "<t>")
    res = verify(path, big, timeout=30)
    ys = exact_outputs(built.model, np.random.default_rng(1).uniform(-100, 100, (500, 3)).astype(np.float32))
    if any((ys[:, lab] - ys[:, j] <= 0).any() for j in range(3) if j != lab):
        assert res.verdict == "sat"


ACASXU = VNNCOMP / "acasxu" if VNNCOMP else None


@pytest.mark.skipif(ACASXU is None or not ACASXU.is_dir(), reason="VNN-COMP acasxu benchmark not present")
def test_timeout_is_respected():
    """An instance that takes minutes (acasxu 3_3 property 2): the answer is timeout, on time."""
    t = time.monotonic()
    res = verify(str(ACASXU / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx"),
                 str(ACASXU / "vnnlib" / "prop_2.vnnlib"), timeout=6.0)
    took = time.monotonic() - t
    assert res.verdict == "timeout", res
    assert took < 6.0


def test_spec_model_size_mismatch(tmp_path):
    built = ob.random_fixed_point_mlp(np.random.default_rng(0), sizes=[4, 5, 3])
    path = _save(tmp_path, built)
    spec = parse_vnnlib(_vnnlib(np.zeros(5), np.ones(5), [([1.0, 0.0, 0.0], 0.0)], 3))
    with pytest.raises(SpecError, match="5"):
        verify(path, spec)


def test_missing_model_file(tmp_path):
    spec = parse_vnnlib(_vnnlib(np.zeros(2), np.ones(2), [([1.0], 0.0)], 1))
    with pytest.raises(ModelLoadError, match="nope.onnx"):
        verify(str(tmp_path / "nope.onnx"), spec)


def test_bad_options(tmp_path):
    built = ob.random_fixed_point_mlp(np.random.default_rng(0), sizes=[2, 3, 2])
    path = _save(tmp_path, built)
    spec = parse_vnnlib(_vnnlib(np.zeros(2), np.ones(2), [([1.0, 0.0], 0.0)], 2))
    with pytest.raises(ValueError, match="method"):
        verify(path, spec, method="magic")
    with pytest.raises(ValueError, match="split"):
        verify(path, spec, split="random")


def test_a_model_onnxruntime_cannot_run_is_an_error(tmp_path, monkeypatch):
    """Counterexamples are confirmed by onnxruntime: a model it cannot load (onnxruntime 1.32
    has no opset-28 QuantizeLinear kernel) is a clear error naming the file, never a verdict."""
    import onnxruntime as ort

    from qnn_plugin.errors import UnsupportedOperatorError

    real = ort.InferenceSession

    def refuse(model, *args, **kwargs):
        raise RuntimeError("NOT_IMPLEMENTED : Could not find an implementation for QuantizeLinear(28)")

    built = ob.random_fixed_point_mlp(np.random.default_rng(0), sizes=[3, 4, 2])
    path = _save(tmp_path, built)
    spec = Spec((Case(np.zeros(3), np.ones(3) * 0.01, (Polytope(np.array([[1.0, -1.0]]), np.zeros(1)),)),),
                3, 2, "<t>")
    monkeypatch.setattr(ort, "InferenceSession", refuse)
    with pytest.raises(UnsupportedOperatorError, match=r"net\.onnx: onnxruntime .* cannot run this model"):
        verify(path, spec, timeout=10)
    monkeypatch.setattr(ort, "InferenceSession", real)


def _qdq_then(tmp_path, middle, name):
    """X (N, 2) -> QuantizeLinear -> DequantizeLinear -> MatMul -> ``middle`` nodes (from "h"
    to "m") -> MatMul -> Y (N, 2), saved as ``name``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.uint8(128), "z"),
             numpy_helper.from_array(rng.normal(size=(2, 3)).astype(np.float32), "W1"),
             numpy_helper.from_array(rng.normal(size=(3, 2)).astype(np.float32), "W2")]
    nodes = [helper.make_node("QuantizeLinear", ["X", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("MatMul", ["d", "W1"], ["h"]), *middle,
             helper.make_node("MatMul", ["m", "W2"], ["Y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return str(path)


def _nodes(*specs):
    from onnx import helper

    return [helper.make_node(op, ins, outs, **attrs) for op, ins, outs, attrs in specs]


# operators onnx2torch converts but auto_LiRPA 0.3 cannot bound, each failing at another stage
UNBOUNDABLE = {
    # auto_LiRPA has no bound operator: it refuses the graph when it builds it
    "selu": (_nodes(("Selu", ["h"], ["m"], {})), r"unsupported: onnx::Selu"),
    # ArgMax gives int64, Cast makes it float (the model runs), and auto_LiRPA has no ArgMax
    "argmax": (_nodes(("ArgMax", ["h"], ["a"], {"axis": 1, "keepdims": 1}),
                      ("Cast", ["a"], ["c"], {"to": 1}), ("Add", ["h", "c"], ["m"], {})),
               r"unsupported: onnx::ArgMax"),
    # builds, but has no linear bound: fails on the first CROWN pass
    "softmax": (_nodes(("Softmax", ["h"], ["m"], {"axis": 1})), r"NotImplementedError"),
}


@pytest.mark.parametrize("name", sorted(UNBOUNDABLE))
def test_an_operator_auto_lirpa_cannot_bound_is_an_unsupported_operator_error(tmp_path, name, capsys):
    """A clear error naming the file (and the operator, where auto_LiRPA says which), never a
    raw exception, and nothing of auto_LiRPA's log on stdout (where the CLI prints the verdict)."""
    from qnn_plugin.errors import UnsupportedOperatorError

    nodes, pattern = UNBOUNDABLE[name]
    path = _qdq_then(tmp_path, nodes, f"{name}.onnx")
    spec = Spec((Case(np.full(2, -0.2), np.full(2, 0.2), (Polytope(np.array([[1.0, -1.0]]), np.array([-50.0])),)),),
                2, 2, "<t>")
    with pytest.raises(UnsupportedOperatorError, match=rf"{name}\.onnx.*auto_LiRPA cannot bound.*{pattern}"):
        verify(path, spec, timeout=10)
    assert capsys.readouterr().out == ""


def test_an_unboundable_operator_through_the_cli_writes_error_and_exits_non_zero(tmp_path, capsys):
    """An input error (its message), not an internal one (a traceback and "please report")."""
    from qnn_plugin.cli_verify import main as verify_main

    path = _qdq_then(tmp_path, UNBOUNDABLE["selu"][0], "selu.onnx")
    prop = tmp_path / "p.vnnlib"
    prop.write_text(_vnnlib([-0.2, -0.2], [0.2, 0.2], [([1.0, -1.0], -50.0)], 2))
    rf = tmp_path / "out.txt"
    assert verify_main([path, str(prop), "--timeout", "10", "--results-file", str(rf)]) == 2
    assert rf.read_text().strip() == "error"
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "error"
    assert "selu.onnx: auto_LiRPA cannot bound this network (unsupported: onnx::Selu)" in out.err
    assert "internal error" not in out.err and "Traceback" not in out.err


ORT_REWRITE = Path(__file__).parent / "data" / "ort_rewrite"


def test_unsat_becomes_unknown_where_onnxruntime_computes_another_function(monkeypatch):
    """A QDQ Gemm with a float bias: onnxruntime's default optimisations rewrite it (FusedGemm
    + QGemm, the bias rounded to int32) and its output on the box's one grid point is a
    quantum above the operator-by-operator semantics', inside the unsafe set. The proof is
    about the latter, so the answer must not be unsat."""
    import onnxruntime as ort

    model = str(ORT_REWRITE / "qdq_gemm_float_bias.onnx")
    spec = str(ORT_REWRITE / "one_point.vnnlib")
    res = verify(model, spec, timeout=30)
    assert res.verdict == "unknown", res
    assert "onnxruntime" in res.message, res.message
    # the ground truth of the instance: with default options onnxruntime finds it unsafe
    case = parse_vnnlib(Path(spec).read_text()).cases[0]
    x = ((case.lower + case.upper) / 2).astype(np.float32).reshape(1, -1)
    y = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    assert all(bool(np.all(p.A @ y.reshape(-1) <= p.b)) for p in case.unsafe)
    # two guards keep the proof of the other semantics from being the answer: the float bias
    # makes the network inexact, so the point is decided by the checker (where the two
    # semantics disagree); and the agreement check before an unsat
    from qnn_plugin.verifier import api
    from qnn_plugin.verifier.check import Checker

    assert res.stats["points_checked_by_checker"] == 1.0
    monkeypatch.setattr(api, "_float_sensitive", lambda *a: False)
    res = verify(model, spec, timeout=30)
    assert res.verdict == "unknown" and res.stats["onnxruntime_disagrees"] == 1.0, res
    monkeypatch.setattr(Checker, "disagreement", lambda self, xs: None)
    assert verify(model, spec, timeout=30).verdict == "unsat"


BN_SIGN = Path(__file__).parent / "data" / "bn_sign"


def test_a_point_where_rounding_moves_a_sign_is_decided_by_the_checker():
    """Found by an independent audit: MatMul, BatchNormalization (float scale), Sign, on a box
    of 512 codes. At codes (3, 5, 2) of the free inputs the BatchNormalization's output is 0
    in exact arithmetic (Sign 0, the reference semantics: safe), while onnxruntime's default
    optimisations fuse it into a Gemm whose rounding gives -1 (unsafe) and torch's evaluation
    gives +1 (safe, far from the boundary). The search dropped that point on torch's output
    and answered unsat; on a network that is not exact integer arithmetic every point is now
    decided by the checker, where the two semantics disagree: unknown."""
    import onnxruntime as ort

    model, spec = str(BN_SIGN / "bn_sign_rewrite.onnx"), str(BN_SIGN / "one_level.vnnlib")
    x = np.array([[125, 125, 125, 125, 124, 3, 5, 2]], dtype=np.float32) / 16
    y = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    case = parse_vnnlib(Path(spec).read_text()).cases[0]
    assert any(bool(np.all(p.A @ y.reshape(-1) <= p.b)) for p in case.unsafe), y
    res = verify(model, spec, timeout=30)
    assert res.verdict == "unknown", res
    assert res.stats["points_checked_by_checker"] == 1.0


def test_large_terms_cancelling_near_an_edge_are_not_proven_safe(tmp_path):
    """A float input, z = sum of terms near 1e5 that cancel to just below the edge 0.5 of a
    scale-1 QuantizeLinear, on a box a few ulps wide: the old bounds (a margin relative to z's
    own value, 1e-3) proved y <= 0 and the verifier answered unsat, while onnxruntime rounds z
    past the edge to y = 1 at a corner. The forward pass's error bound (float_error) now widens
    the step's input bounds: the answer is sat (onnxruntime's point, confirmed by the
    reference) or unknown where only onnxruntime's rounding reaches the level, never unsat."""
    from qnn_plugin.verifier.network import Network
    from qnn_plugin.bounded import compute_bounds
    from tests.test_float_error import _corners, _run, _samples, chain_net

    found = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        full, _, c, lo, hi = chain_net(rng, "matmul", n=int(rng.integers(2, 12)), m=1,
                                       exps=(4, 6), widths=(-6, -6))
        path = tmp_path / f"cancel{seed}.onnx"
        path.write_bytes(full.SerializeToString())
        y = _run(full, np.concatenate([_corners(c, lo, hi), _samples(rng, lo, hi, 200)]))
        net = Network(str(path), torch.device("cpu"))
        L, H = torch.tensor(lo)[None], torch.tensor(hi)[None]
        if y.max() <= float(compute_bounds(net.bounded_module, L, H, "crown")[1].max()):
            continue   # the margin alone was enough here
        spec = Spec((Case(lo.astype(np.float64), hi.astype(np.float64),
                          (Polytope(np.array([[-1.0]]), np.array([-float(y.max())])),)),), lo.size, 1, "<t>")
        res = verify(str(path), spec, timeout=20)
        assert res.verdict in ("sat", "unknown", "timeout"), (seed, res.verdict, res.stats)
        assert res.stats["float_error_max"] > 0.1
        found += 1
        if found == 2:
            break
    assert found == 2


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_a_binarized_net_on_a_large_input_runs_the_exact_program(tmp_path_factory, seed, kind):
    """A Sign net with 24 inputs and float thresholds has no layer the search branches on, and
    input splitting alone rarely finishes on 24 dimensions: the exact program (float biases
    read by Signs, intnet) runs beside it. Verdicts against enumeration of the box's points
    (5 free inputs, more than the search enumerates at once)."""
    from tests.verifier.instances import grid_instance

    rng = np.random.default_rng(seed)
    built = ob.random_sign_mlp(rng, sizes=[24, 10, 3], input_scale=2.0 ** -4)
    spec, truth = grid_instance(rng, built, kind, free=5)
    res = verify(_save(tmp_path_factory.mktemp("bnn"), built), spec, timeout=60)
    assert res.verdict == ("sat" if truth else "unsat"), (res.verdict, res.message)
    if res.stats.get("time_bab", 0) > 0:   # the search ran: so did the program, beside it
        assert "time_milp_build" in res.stats and "intprog_unsupported" not in res.stats, res.stats
