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


# elementwise affine pre-maps before the input quantizer, as ONNX writes them: (op, constant,
# input first); Div is onnx2torch's own function, negative constants reverse the code order
PRE_MAPS = {
    "div_negative": [("Div", -3.0, True)],
    "div_vector": [("Div", [0.5, -2.0, 4.0, -0.25], True)],
    "mul_negative": [("Mul", [-1.5, 2.0, -0.5, 1.0], True)],
    "constant_minus_x": [("Sub", 0.25, False)],
    "add_then_div": [("Add", 0.1, True), ("Div", -0.5, True)],
}


def _premap_qnn(pre, seed: int = 0):
    """X (N, 4) -> pre-map -> QuantizeLinear (scale 0.05, uint8, zero point 128) ->
    DequantizeLinear -> MatMul (4 x 3) -> Y."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes, cur = [], [], "X"
    for i, (op, c, x_first) in enumerate(pre):
        inits.append(numpy_helper.from_array(np.asarray(c, np.float32), f"c{i}"))
        args = [cur, f"c{i}"] if x_first else [f"c{i}", cur]
        nodes.append(helper.make_node(op, args, [f"p{i}"]))
        cur = f"p{i}"
    inits += [numpy_helper.from_array(np.float32(0.05), "s"),
              numpy_helper.from_array(np.uint8(128), "z"),
              numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")]
    nodes += [helper.make_node("QuantizeLinear", [cur, "s", "z"], ["q"]),
              helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
              helper.make_node("MatMul", ["d", "W"], ["Y"])]
    graph = helper.make_graph(nodes, "premap", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("name", sorted(PRE_MAPS))
def test_affine_pre_map_gives_a_grid(name):
    model = _premap_qnn(PRE_MAPS[name])
    m = load_onnx(model)
    found = detect(m.net, m.input_shape)
    assert found is not None, f"{name}: no grid detected"
    g, node = found
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.uniform(-1.0, 1.0, size=(200, 4)), dtype=torch.float32)
    dn = domain_network(m.net, node)
    with torch.no_grad():
        assert torch.equal(m(x), dn(g.codes(x)))
    k = torch.tensor([[120.0, 128.0, 130.0, 140.0]])
    assert torch.equal(g.codes(g.representative(k)), k)


@pytest.mark.parametrize("name", sorted(PRE_MAPS))
def test_affine_pre_map_verdicts_match_enumeration(name, tmp_path):
    """The verifier searches the codes (input_grid 1) and its verdicts on Y_0 >= t match
    onnxruntime on one input per reachable code combination: sat just below the largest Y_0,
    unsat just above it (not at it: onnxruntime's sums differ in their last bits between a
    batch and one input, and the counterexample is checked on one)."""
    import itertools

    import onnxruntime as ort

    from qnn_plugin.spec import Case, Polytope, Spec
    from qnn_plugin.verifier import verify

    model = _premap_qnn(PRE_MAPS[name], seed=1)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    m = load_onnx(model)
    g, _ = detect(m.net, m.input_shape)
    # box ends exact in float32: a float64 end like 0.3 lies between two float32s, and a code
    # reached only beyond it (at the outward float32) is no counterexample (the verifier
    # answers unknown for it)
    r = 0.296875
    lower, upper = torch.full((1, 4), -r), torch.full((1, 4), r)
    klo, khi = g.code_box(lower, upper)
    combos = torch.tensor(list(itertools.product(*[range(int(a), int(b) + 1)
                                                   for a, b in zip(klo[0], khi[0])])),
                          dtype=torch.float32)
    x = g.inputs_for(combos, lower.expand_as(combos), upper.expand_as(combos))
    assert torch.equal(g.codes(x), combos)      # one input in the box per code combination
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    top = float(sess.run(None, {"X": x.numpy()})[0][:, 0].max())
    lo, hi = np.full(4, -r), np.full(4, r)
    gap = 1e-3 * (1 + abs(top))
    for t, want in ((top - gap, "sat"), (top + gap, "unsat")):
        spec = Spec((Case(lo, hi, (Polytope(np.array([[-1.0, 0.0, 0.0]]), np.array([-t])),)),),
                    4, 3, "<test>")
        res = verify(path, spec, timeout=30)
        assert res.verdict == want, (name, t, res.verdict, res.message)
        assert res.stats["input_grid"] == 1.0


def test_an_int16_input_of_84_values_keeps_its_grid(tmp_path):
    """84 x 65,536 codes (5.5 million) are checked at set-up (about 0.1 s): before the limit
    was raised from 5 million the grid was dropped and an audit's box of 3,087 codes timed
    out as a float input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from qnn_plugin.verifier import grid as grid_mod
    from qnn_plugin.verifier.network import Network

    n = 84
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(2.0 ** -8, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int16), "zp"),
             numpy_helper.from_array(rng.integers(-3, 4, (n, 3)).astype(np.float32), "W")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["d"]),
             helper.make_node("MatMul", ["d", "W"], ["y"])]
    graph = helper.make_graph(nodes, "int16_in", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    path = tmp_path / "int16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))
    net = Network(str(path), torch.device("cpu"))
    assert 65_536 * n > 5_000_000 and 65_536 * n <= grid_mod.MAX_CHECKED_CODES
    assert net.grid is not None and (net.grid.lo, net.grid.hi) == (-32768, 32767)
