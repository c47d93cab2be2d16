"""Input-grid detection: which networks have one, codes and representatives, the domain network."""
import numpy as np
import pytest
import torch

from qnn_plugin import load_onnx
from qnn_plugin import onnx_builders as ob
from qnn_plugin.verifier.grid import detect, domain_network

GRID_BUILDERS = {
    "fixed_point_half_up": lambda r: ob.random_fixed_point_mlp(r, sizes=[5, 4, 3]),
    "fixed_point_floor": lambda r: ob.random_fixed_point_mlp(r, sizes=[5, 4, 3], rounding="floor"),
    "fixed_point_half_even": lambda r: ob.random_fixed_point_mlp(r, sizes=[5, 4, 3], rounding="half_even"),
    "qdq": lambda r: ob.random_qdq_mlp(r, sizes=[5, 4, 3]),
    "qdq_int8_non_pow2": lambda r: ob.random_qdq_mlp(r, sizes=[5, 4, 3], input_dtype="int8", pow2_scales=False),
    "qoperator": lambda r: ob.random_qoperator_mlp(r, sizes=[5, 4, 3]),
    "integer": lambda r: ob.random_integer_mlp(r, sizes=[5, 4, 3]),
    "qdq_conv": lambda r: ob.random_qdq_conv(r),
    "sign_on_grid": lambda r: ob.random_sign_mlp(r, sizes=[5, 4, 3], input_scale=2.0 ** -3),
}


@pytest.mark.parametrize("name", sorted(GRID_BUILDERS))
def test_detected_grid_matches_builder(name):
    rng = np.random.default_rng(0)
    built = GRID_BUILDERS[name](rng)
    m = load_onnx(built.model)
    found = detect(m.net, m.input_shape)
    assert found is not None
    g, node = found
    n = int(np.prod(built.input_shape))
    # the builder's grid values are exactly the representatives of their codes
    codes = torch.arange(built.input_qmin, built.input_qmax + 1, dtype=torch.float32)
    k = codes.unsqueeze(1).expand(-1, n)
    reps = g.representative(k)
    assert torch.equal(g.codes(reps), k)
    assert g.check_representatives(k[0], k[-1])
    # random inputs anywhere (ties and saturation included): domain network on codes equals
    # the whole network on the inputs
    x = rng.uniform(-1.5, 1.5, size=(64, n)) * built.input_scale * (built.input_qmax - built.input_qmin)
    x[:8] = ((np.round(x[:8] / built.input_scale) + 0.5) * built.input_scale)  # ties
    x = torch.tensor(x, dtype=torch.float32)
    dn = domain_network(m.net, node)
    with torch.no_grad():
        y_full = m(x.reshape(-1, *m.input_shape))
        y_dom = dn(g.codes(x).reshape(-1, *m.input_shape))
    assert torch.equal(y_full, y_dom)
    # a box's code range is the image of its ends
    lo, hi = g.code_box(x[:32], x[32:].clone().clamp(min=x[:32]))
    assert torch.all(lo <= hi)


def test_float_input_network_has_no_grid():
    built = ob.random_sign_mlp(np.random.default_rng(1), sizes=[4, 5, 3])
    m = load_onnx(built.model)
    assert detect(m.net, m.input_shape) is None


def test_inputs_for_stays_in_box_and_keeps_codes():
    rng = np.random.default_rng(2)
    built = ob.random_fixed_point_mlp(rng, sizes=[3, 4, 2])
    m = load_onnx(built.model)
    g, _ = detect(m.net, m.input_shape)
    lower = torch.tensor([[0.1003, 0.2, 0.3]])
    upper = torch.tensor([[0.1010, 0.25, 0.3]])
    klo, khi = g.code_box(lower, upper)
    for k in [klo, khi]:
        x = g.inputs_for(k, lower, upper)
        assert torch.all(x >= lower) and torch.all(x <= upper)
        assert torch.equal(g.codes(x), k)
