"""The integer network against onnxruntime: the semantics the SMT formula encodes is the model's,
on every grid point of random boxes, for every supported encoding."""
from fractions import Fraction
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin import onnx_builders as ob
from qnn_plugin import intnet
from qnn_plugin.errors import NotIntegerError
from qnn_plugin.verifier.network import Network
from tests.grid import random_grid_box, reachable_inputs
from tests.verifier.instances import exact_outputs

from tests.baselines.smt.networks import ENCODINGS, write


def _reference_round(z: int, t: int, rounding: str) -> int:
    x = Fraction(z, 2 ** t) if t >= 0 else Fraction(z * 2 ** -t)
    if rounding == "floor":
        return math.floor(x)
    if rounding == "ceil":
        return math.ceil(x)
    if rounding == "half_up":
        return math.floor(x + Fraction(1, 2))
    return round(x)   # Python rounds Fractions half to even


@pytest.mark.parametrize("rounding", ["floor", "ceil", "half_up", "half_even"])
def test_round_shift_is_exact(rounding):
    for t in range(-2, 6):
        for z in range(-70, 71):
            assert intnet.round_shift(z, t, rounding) == _reference_round(z, t, rounding), (z, t)


def _net_and_box(tmp_path, built, rng):
    net = Network(write(tmp_path, built), torch.device("cpu"))
    lower, upper = random_grid_box(rng, built.input_scale, built.input_zero_point,
                                   built.input_qmin, built.input_qmax, built.input_shape, free=4)
    lo, hi = net.domain_box(lower.reshape(-1), upper.reshape(-1))
    return net, lower, upper, lo, hi


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_integer_network_equals_onnxruntime(tmp_path, encoding, seed):
    rng = np.random.default_rng(seed)
    built = ENCODINGS[encoding](rng)
    net, lower, upper, lo, hi = _net_and_box(tmp_path, built, rng)
    inet = intnet.extract(net.bounded_module, net.input_shape, lo.numpy().astype(np.int64),
                          hi.numpy().astype(np.int64))
    x = reachable_inputs(built.grid_values(), lower, upper, built.input_shape)
    y = exact_outputs(built.model, x).astype(np.float64)
    codes = net.to_points(torch.tensor(x.reshape(len(x), -1))).numpy().astype(np.int64)
    # onnxruntime as the counterexample checker runs it (default options, which may fuse or
    # drop Q/DQ pairs) on the codes' representatives, the inputs counterexamples are made of
    sess = ort.InferenceSession(built.model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    reps = net.to_inputs(torch.tensor(codes, dtype=torch.float32), lower.reshape(-1),
                         upper.reshape(-1)).numpy().reshape(len(x), *built.input_shape)
    for k in range(len(x)):
        got = [Fraction(v) / Fraction(2) ** o.exp for v, o in zip(inet.evaluate(codes[k]), inet.outputs)]
        assert got == [Fraction(v) for v in y[k]], (k, codes[k])
        y_default = sess.run(None, {name: reps[k:k + 1]})[0].reshape(-1).astype(np.float64)
        assert got == [Fraction(v) for v in y_default], (k, codes[k])
    # the variables' ranges contain every value they take on the box
    for f, yk in zip(inet.outputs, y.T):
        units = yk * 2.0 ** f.exp
        assert f.lo <= units.min() and units.max() <= f.hi


def test_float_bias_on_the_output_is_rejected_with_the_node(tmp_path):
    """A float bias makes float32 round the output: not exact in integers, so not encoded."""
    built = ob.sign_mlp([np.ones((4, 2)), np.ones((2, 1))], [np.zeros(2), np.array([0.3])],
                        input_scale=2.0 ** -4)
    net = Network(write(tmp_path, built), torch.device("cpu"))
    lo = np.zeros(net.n_in, np.int64)
    with pytest.raises(NotIntegerError, match=r"BoundAdd .*float bias.*network's output"):
        intnet.extract(net.bounded_module, net.input_shape, lo, lo + 15)


def test_float_bias_read_by_a_relu_is_rejected(tmp_path):
    rng = np.random.default_rng(3)
    built = ob.random_integer_mlp(rng, sizes=[4, 6, 3])
    net = Network(write(tmp_path, built), torch.device("cpu"))
    lo = np.zeros(net.n_in, np.int64)
    with pytest.raises(NotIntegerError, match=r"BoundAdd .*float bias.*BoundRelu .* reads its value"):
        intnet.extract(net.bounded_module, net.input_shape, lo, lo + 15)


def _sign_net_with_bias(tmp_path, bias: float):
    """x (codes 0-255, scale 1/16) -> x @ W + b -> Sign -> sum: one neuron."""
    built = ob.sign_mlp([np.ones((4, 1)), np.ones((1, 1))], [np.array([bias]), np.zeros(1)],
                        input_scale=2.0 ** -4)
    return Network(write(tmp_path, built), torch.device("cpu"))


def test_a_float_bias_within_rounding_error_of_a_reachable_edge_is_rejected(tmp_path):
    """-b = 3/16 - 2**-19: the sum 3/16 of the codes' values is 2**-19 above the edge. On codes
    0-255 the sums reach about 64, where float32's rounding error bound is ulp(64) = 2**-18, so
    the float sign could differ from the real one: refused while the sum 3/16 is reachable. On
    codes 0-3 (sums below 1, error bound 2**-24) and on codes 1-255 (sums from 4/16) it is
    accepted."""
    net = _sign_net_with_bias(tmp_path, -(3 / 16 - 2.0 ** -19))
    lo = np.zeros(4, np.int64)
    with pytest.raises(NotIntegerError, match="rounding error"):
        intnet.extract(net.bounded_module, net.input_shape, lo, lo + 255)
    # the verifier's relaxation: the sign may be 0 where |Z| <= 1, and Z = 1 is the sum 3/16
    relaxed = intnet.extract(net.bounded_module, net.input_shape, lo, lo + 255, relax_signs=True)
    (sign,) = [v for v in relaxed.vars if v.kind == "sign"]
    assert sign.band == 1 and (sign.lo, sign.hi) == (-1, 1)
    assert intnet._lin_value(sign.pre, [3, 0, 0, 0]) == 1
    assert intnet._lin_value(sign.pre, [2, 0, 0, 0]) == -1
    for a, b in ((0, 3), (1, 255)):
        inet = intnet.extract(net.bounded_module, net.input_shape, lo + a, lo + b)
        for codes in ([a] * 4, [b] * 4, [3, 0, 0, 0] if a == 0 else [1, 1, 1, 1]):
            x = (np.array([codes]) * 2.0 ** -4).astype(np.float32)
            want = Fraction(float(exact_outputs(net.onnx, x)[0, 0]))
            assert Fraction(inet.evaluate(codes)[0]) / Fraction(2) ** inet.outputs[0].exp == want


@pytest.mark.parametrize("bias", [-(3 / 16) + 2.0 ** -9, -(3 / 16) - 2.0 ** -9, -0.1, -0.3])
def test_float_bias_before_a_sign_is_exact_on_every_code(tmp_path, bias):
    """Every code of [0, 3]^4 (sums 0 to 12/16 around the edges): the encoding's sign equals
    onnxruntime's and the reference's."""
    net = _sign_net_with_bias(tmp_path, bias)
    lo = np.zeros(4, np.int64)
    inet = intnet.extract(net.bounded_module, net.input_shape, lo, lo + 3)
    codes = np.array(np.meshgrid(*[range(4)] * 4)).reshape(4, -1).T
    x = (codes * 2.0 ** -4).astype(np.float32)
    y = exact_outputs(net.onnx, x)[:, 0]
    assert set(np.sign(y)) <= {-1.0, 1.0} and len(set(y)) == 2
    for k in range(len(codes)):
        got = Fraction(inet.evaluate(codes[k])[0]) / Fraction(2) ** inet.outputs[0].exp
        assert got == Fraction(float(y[k])), codes[k]


def test_scales_that_are_not_powers_of_two_are_rejected(tmp_path):
    rng = np.random.default_rng(5)
    built = ob.random_qdq_mlp(rng, sizes=[3, 4, 2], pow2_scales=False)
    net = Network(write(tmp_path, built), torch.device("cpu"))
    lo = np.zeros(net.n_in, np.int64)
    with pytest.raises(NotIntegerError, match="not a power of two|2\\*\\*24"):
        intnet.extract(net.bounded_module, net.input_shape, lo, lo + 3)
