"""SMT verdicts against exhaustive enumeration, for every supported encoding and with each
speed-up switched off; the SMT engine against the plugin's verifier on wider boxes."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin import onnx_builders as ob
from qnn_plugin.baselines.smt import verify
from qnn_plugin.errors import SmtUnsupportedError
from qnn_plugin.verifier import verify as plugin_verify
from tests.verifier.instances import grid_instance

from .networks import ENCODINGS, write


def _check_answer(res, truth, spec):
    assert res.verdict == ("sat" if truth else "unsat"), (res.verdict, res.message)
    if res.verdict == "sat":
        ce = res.counterexample
        case = spec.cases[ce.case]
        assert np.all(ce.x >= case.lower.astype(np.float32)) and np.all(ce.x <= case.upper.astype(np.float32))
        p = case.unsafe[ce.polytope]
        assert np.all(p.A @ ce.y.astype(np.float64) <= p.b)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_verdict_equals_enumeration(tmp_path, encoding, seed, kind):
    rng = np.random.default_rng(seed)
    built = ENCODINGS[encoding](rng)
    spec, truth = grid_instance(rng, built, kind, free=4)
    _check_answer(verify(write(tmp_path, built), spec, timeout=60), truth, spec)


SWITCHES = {
    "no_dead_branches": dict(dead_branches=False),
    "fixed_width": dict(minimal_widths=False),
    "chain_sums": dict(balanced_sums=False),
    "plain": dict(dead_branches=False, minimal_widths=False, balanced_sums=False),
    "z3": dict(backend="z3"),
    "z3_plain": dict(backend="z3", dead_branches=False, minimal_widths=False, balanced_sums=False),
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), encoding=st.sampled_from(sorted(ENCODINGS)),
       kind=st.sampled_from(["robust", "random"]))
def test_every_encoding_option_and_backend_is_exact(tmp_path, switch, seed, encoding, kind):
    rng = np.random.default_rng(seed)
    built = ENCODINGS[encoding](rng)
    spec, truth = grid_instance(rng, built, kind, free=4)
    res = verify(write(tmp_path, built), spec, timeout=60, **SWITCHES[switch])
    _check_answer(res, truth, spec)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_engines_agree_on_wide_boxes(tmp_path, seed):
    """Every input coordinate free (too many points to enumerate quickly): the two engines,
    independent in everything but the ONNX import, give the same definite verdict."""
    rng = np.random.default_rng(seed)
    built = ob.random_fixed_point_mlp(rng, sizes=[8, 12, 8, 3])
    spec, _ = grid_instance(rng, built, str(rng.choice(["robust", "random"])), free=8)
    path = write(tmp_path, built)
    a = verify(path, spec, timeout=60)
    b = plugin_verify(path, spec, timeout=60)
    assert a.verdict in ("sat", "unsat") and a.verdict == b.verdict, (a.verdict, b.verdict, a.message, b.message)


def test_float_input_networks_are_not_supported(tmp_path):
    rng = np.random.default_rng(0)
    built = ob.random_sign_mlp(rng, sizes=[3, 4, 2])            # no input quantizer
    spec, _ = _any_spec(built)
    with pytest.raises(SmtUnsupportedError, match="not supported by the SMT engine.*input quantizer"):
        verify(write(tmp_path, built), spec, timeout=10)


def _any_spec(built):
    from qnn_plugin.spec import Case, Polytope, Spec

    n_in = int(np.prod(built.input_shape))
    A = np.zeros((1, 2))
    A[0, 0] = 1.0
    lo = np.zeros(n_in)
    return Spec((Case(lo, lo + 0.5, (Polytope(A, np.zeros(1)),)),), n_in, 2, "<test>"), None


def test_timeout_is_respected(tmp_path):
    """A formula the solver cannot finish in time: the answer is timeout, before the deadline."""
    import time

    from pathlib import Path
    root = Path(__file__).resolve().parents[3] / "vnncomp_benchmarks" / "qnn_mnist"
    t0 = time.monotonic()
    res = verify(str(root / "onnx" / "mnist_mlp_qat.onnx"), str(root / "vnnlib" / "prop_0_eps8.vnnlib"),
                 timeout=4)
    assert res.verdict == "timeout" and time.monotonic() - t0 < 4.0 + 1.0, (res.verdict, res.stats)


def test_a_polytope_without_rows_is_the_whole_output_space(tmp_path):
    """Every output is unsafe: sat, whatever the network."""
    from qnn_plugin.spec import Case, Polytope, Spec

    rng = np.random.default_rng(2)
    built = ob.random_fixed_point_mlp(rng, sizes=[3, 5, 2])
    lo = np.zeros(3)
    spec = Spec((Case(lo, lo + 0.5, (Polytope(np.zeros((0, 2)), np.zeros(0)),)),), 3, 2, "<test>")
    res = verify(write(tmp_path, built), spec, timeout=30)
    assert res.verdict == "sat", res.message


def test_every_case_of_a_spec_is_decided(tmp_path):
    """Two input boxes: the first safe, the second not; the answer is sat in case 1."""
    from qnn_plugin.spec import Case, Polytope, Spec

    rng = np.random.default_rng(4)
    built = ob.random_fixed_point_mlp(rng, sizes=[3, 5, 2])
    lo = np.full(3, 0.25)
    never = Polytope(np.array([[1.0, 0.0]]), np.array([-1e6]))     # y_0 <= -1e6: impossible
    always = Polytope(np.array([[1.0, 0.0]]), np.array([1e6]))
    spec = Spec((Case(lo, lo + 0.1, (never,)), Case(lo, lo + 0.1, (always,))), 3, 2, "<test>")
    res = verify(write(tmp_path, built), spec, timeout=30)
    assert res.verdict == "sat" and res.counterexample.case == 1
    spec1 = Spec((Case(lo, lo + 0.1, (never,)),), 3, 2, "<test>")
    assert verify(write(tmp_path, built), spec1, timeout=30).verdict == "unsat"


def test_a_model_reachable_only_through_rounding_is_not_a_counterexample(tmp_path):
    """The lower bound sits just above a rounding tie (k + 1/2) s, k even: the outward float32
    box (which the search must cover) reaches code k, but no float32 input of the box does. An
    unsafe set met only at code k gives a model the checker rejects; the engine excludes it,
    finds no other, and answers unknown, never sat or unsat."""
    from qnn_plugin.spec import Case, Polytope, Spec
    from tests.verifier.instances import exact_outputs

    s, k = 2.0 ** -8, 100
    for seed in range(20):
        rng = np.random.default_rng(seed)
        built = ob.random_qdq_mlp(rng, sizes=[2, 5, 3])
        x = np.array([[k * s, 0.5], [(k + 1) * s, 0.5]], np.float32)
        y = exact_outputs(built.model, x).astype(np.float64)
        j = int(np.argmax(np.abs(y[0] - y[1])))
        if y[0, j] != y[1, j]:
            break
    sign = 1.0 if y[0, j] < y[1, j] else -1.0
    A = np.zeros((1, 3))
    A[0, j] = sign
    lower = np.array([(k + 0.5) * s + 1e-12, 0.5])
    upper = np.array([(k + 1) * s, 0.5])
    spec = Spec((Case(lower, upper, (Polytope(A, np.array([sign * y[0, j]])),)),), 2, 3, "<test>")
    res = verify(write(tmp_path, built), spec, timeout=30)
    assert res.verdict == "unknown" and res.stats["smt_models_rejected"] == 1, (res.verdict, res.message)


def test_networks_not_exact_in_integers_are_refused_naming_file_and_node(tmp_path):
    """Float biases (the random MatMulInteger builder's) make float32 sums round, and a Relu
    reads the rounded sum."""
    rng = np.random.default_rng(3)
    built = ob.random_integer_mlp(rng, sizes=[4, 6, 3])
    spec, _ = grid_instance(rng, built, "robust", free=2)
    with pytest.raises(SmtUnsupportedError,
                       match=r"net\.onnx: Bound\w+ /\S+: .*float bias.*BoundRelu .* reads its value"):
        verify(write(tmp_path, built), spec, timeout=10)


def test_unsat_withheld_where_onnxruntime_computes_other_outputs(tmp_path, monkeypatch):
    """A QCDQ network (hand-built, float weights on a 1/8 grid) whose every grid point is safe
    under the exact semantics, while onnxruntime with default options (the VNN-COMP checker's)
    quantizes its weights and computes other outputs on the box: as the main verifier, the
    engine answers unknown, naming onnxruntime, rather than an unsat that rests on the other
    semantics; without that check it would have answered unsat."""
    from tests.verifier.instances import qcdq_mlp

    rng = np.random.default_rng(208)
    built = qcdq_mlp(rng)
    spec, truth = grid_instance(rng, built, "robust")
    assert not truth
    path = tmp_path / "qcdq.onnx"
    path.write_bytes(built.model.SerializeToString())
    res = verify(str(path), spec, timeout=30)
    assert res.verdict == "unknown" and "onnxruntime" in res.message, (res.verdict, res.message)
    assert res.stats["onnxruntime_disagrees"] == 1.0
    from qnn_plugin.verifier.check import Checker

    monkeypatch.setattr(Checker, "disagreement", lambda self, xs: None)
    assert verify(str(path), spec, timeout=30).verdict == "unsat"
