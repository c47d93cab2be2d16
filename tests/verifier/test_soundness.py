"""The verifier's verdicts against exhaustive ground truth on random small QNNs of every encoding.

A wrong unsat (or a sat whose counterexample is not one) fails the test; so does 'unknown' or
'timeout' on these tiny grids, where branch and bound must be complete."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin import onnx_builders as ob
from qnn_plugin.verifier import verify

from .instances import exact_outputs, grid_instance

BUILDERS = {
    "fixed_point": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[4, int(rng.integers(3, 8)), 3]),
    "fixed_point_floor": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[3, 5, 4, 3], rounding="floor"),
    "qdq": lambda rng: ob.random_qdq_mlp(rng, sizes=[4, 6, 3]),
    "qdq_int8": lambda rng: ob.random_qdq_mlp(rng, sizes=[3, 5, 3], input_dtype="int8", act_dtype="int8"),
    "qoperator": lambda rng: ob.random_qoperator_mlp(rng, sizes=[4, 6, 3]),
    "integer": lambda rng: ob.random_integer_mlp(rng, sizes=[4, 6, 3]),
    "qdq_conv": lambda rng: ob.random_qdq_conv(rng),
    "sign_grid": lambda rng: ob.random_sign_mlp(rng, sizes=[4, 6, 3], input_scale=2.0 ** -4),
}


def _check(tmp_path, built, spec, truth):
    path = tmp_path / "net.onnx"
    path.write_bytes(built.model.SerializeToString())
    res = verify(str(path), spec, timeout=60, batch=16)
    assert res.verdict in ("sat", "unsat"), (res.verdict, res.message)
    assert (res.verdict == "sat") == truth, res.stats
    if res.verdict == "sat":
        cex = res.counterexample
        case = spec.cases[cex.case]
        assert np.all(cex.x >= case.lower) and np.all(cex.x <= case.upper)
        y = exact_outputs(built.model, cex.x.reshape(1, *built.input_shape))[0]
        p = case.unsafe[cex.polytope]
        assert np.all(p.A @ y.astype(np.float64) <= p.b)
        np.testing.assert_array_equal(y, cex.y)
    return res


@pytest.mark.parametrize("encoding", sorted(BUILDERS))
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_verdicts_match_exhaustive_enumeration(tmp_path, encoding, seed, kind):
    rng = np.random.default_rng(seed)
    built = BUILDERS[encoding](rng)
    spec, truth = grid_instance(rng, built, kind)
    _check(tmp_path, built, spec, truth)


@pytest.mark.parametrize("split", ["gain", "widest"])
@pytest.mark.parametrize("method", ["crown", "ibp"])
def test_search_options_agree_with_truth(tmp_path, method, split):
    """Wide boxes (every coordinate free) so branch and bound goes deep."""
    rng = np.random.default_rng(7)
    for _ in range(4):
        built = ob.random_fixed_point_mlp(rng, sizes=[3, 6, 3])
        spec, truth = grid_instance(rng, built, "robust", free=3)
        path = tmp_path / "net.onnx"
        path.write_bytes(built.model.SerializeToString())
        res = verify(str(path), spec, timeout=60, method=method, split=split, batch=8)
        assert res.verdict == ("sat" if truth else "unsat"), res.message
