"""Tiny QNNs of every encoding the SMT engine supports (power-of-two scales, quantized input),
for tests against exhaustive enumeration."""
import numpy as np

from qnn_plugin import onnx_builders as ob
from tests.verifier.instances import ENCODINGS as BASE


def _dyadic_integer_mlp(rng):
    """MatMulInteger MLP whose biases sit on a power-of-two grid (the random builder's float
    biases are not exact in integers)."""
    dims = [3, 5, 3]
    ws = [rng.integers(-20, 21, size=(dims[i], dims[i + 1])) for i in range(2)]
    bs = [rng.integers(-64, 65, size=dims[i + 1]) * 2.0 ** -6 for i in range(2)]
    return ob.integer_mlp(ws, [2.0 ** -4, 2.0 ** -5], [2.0 ** -3], bs, input_scale=2.0 ** -4)


def _dyadic_sign_mlp(rng, idiom=False):
    dims = [4, 6, 3]
    s = 2.0 ** -4
    ws = [rng.choice(np.array([-1, 1]), size=(dims[i], dims[i + 1])) for i in range(2)]
    bs = [rng.integers(-40, 40, size=dims[1]) * s, rng.integers(-2, 3, size=dims[2]).astype(float)]
    return ob.sign_mlp(ws, bs, input_scale=s, idiom=idiom)


def _float_bias_sign_mlp(rng, idiom=False):
    """Sign net whose first-layer biases are float32 values between the grid's points (at least
    1/20 of a step from them): float32 rounds the sums, the signs stay exact (intnet)."""
    dims = [4, 6, 3]
    s = 2.0 ** -4
    ws = [rng.choice(np.array([-1, 1]), size=(dims[i], dims[i + 1])) for i in range(2)]
    b0 = (rng.integers(-40, 40, size=dims[1]) + rng.uniform(0.05, 0.95, size=dims[1])) * s
    bs = [b0, rng.integers(-2, 3, size=dims[2]).astype(float)]
    return ob.sign_mlp(ws, bs, input_scale=s, idiom=idiom)


def _qdq_model(nodes, arrays, name: str, n: int, n_out: int, s_in: float) -> ob.BuiltModel:
    """Graph x [1, n] -> y [1, n_out] of ``nodes`` with ``arrays`` as initializers (opset 13),
    its input quantized to uint8 codes of scale ``s_in``."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return ob.BuiltModel(model, "qdq", (n,), s_in, 0, 0, 255, n_out)


def float_bias_quant_mlp(rng, n=4, hidden=5, n_out=3, bias=None) -> ob.BuiltModel:
    """A float bias read directly by a quantizer (no Relu between):
    y = DQ(Q(-DQ(Q(x)) W1 + b1)) W2 + b2, power-of-two scales, b1 float32 between the grid's
    points (``bias`` overrides it), b2 on the grid. Without the Neg, onnxruntime's default
    MatMulAddFusion would rewrite DQ -> MatMul -> Add -> Q into a Gemm whose weights and bias
    it quantizes (the bias to int32 on the grid s_in s_w): another function."""
    from onnx import helper

    s_in, s_h = 2.0 ** -4, 2.0 ** -2
    w1 = rng.integers(-6, 7, size=(n, hidden)) * 2.0 ** -3
    b1 = ((rng.integers(-40, 40, size=hidden) + rng.uniform(0.05, 0.95, size=hidden)) * 2.0 ** -7
          if bias is None else np.asarray(bias, np.float64))
    arrays = {
        "s_in": np.array(s_in, np.float32), "s_h": np.array(s_h, np.float32),
        "zp": np.array(0, np.uint8), "zp_h": np.array(0, np.int8),
        "w1": w1.astype(np.float32), "b1": b1.astype(np.float32),
        "w2": (rng.integers(-6, 7, size=(hidden, n_out)) * 2.0 ** -2).astype(np.float32),
        "b2": (rng.integers(-16, 17, size=n_out) * 2.0 ** -4).astype(np.float32),
    }
    node = helper.make_node
    nodes = [
        node("QuantizeLinear", ["x", "s_in", "zp"], ["q"]),
        node("DequantizeLinear", ["q", "s_in", "zp"], ["h"]),
        node("Neg", ["h"], ["nh"]),   # keeps onnxruntime from quantizing W1 and b1 (below)
        node("MatMul", ["nh", "w1"], ["m1"]),
        node("Add", ["m1", "b1"], ["a1"]),
        node("QuantizeLinear", ["a1", "s_h", "zp_h"], ["q1"]),
        node("DequantizeLinear", ["q1", "s_h", "zp_h"], ["r1"]),
        node("MatMul", ["r1", "w2"], ["m2"]),
        node("Add", ["m2", "b2"], ["y"]),
    ]
    return _qdq_model(nodes, arrays, "float_bias_quant", n, n_out, s_in)


# the verifier tests' encodings, with MatMulInteger biases on a power-of-two grid, Sign nets,
# and float biases read by a Sign or a quantizer
ENCODINGS = {**BASE, "integer": _dyadic_integer_mlp, "sign": _dyadic_sign_mlp,
             "sign_idiom": lambda rng: _dyadic_sign_mlp(rng, idiom=True),
             "sign_float_bias": _float_bias_sign_mlp,
             "sign_float_bias_idiom": lambda rng: _float_bias_sign_mlp(rng, idiom=True),
             "quant_float_bias": lambda rng: float_bias_quant_mlp(rng)}


def write(tmp_path, built, name="net.onnx") -> str:
    path = tmp_path / name
    path.write_bytes(built.model.SerializeToString())
    return str(path)


def residual_qdq(rng, n=4, n_out=3) -> ob.BuiltModel:
    """A QDQ block with a skip connection (Add of two tensors that both depend on the input),
    weights and biases quantized as onnxruntime's quantizer writes them (int8 / int32 through
    DequantizeLinear), power-of-two scales:
    h = DQ(Q(x)); r = DQ(Q(Relu(h DQ(W1) + DQ(b1)))); y = (r + h) DQ(W2) + DQ(b2)."""
    from onnx import helper

    s_in, s_h, s_w = 2.0 ** -4, 2.0 ** -3, 2.0 ** -3
    arrays = {
        "s_in": np.array(s_in, np.float32), "s_h": np.array(s_h, np.float32),
        "s_w": np.array(s_w, np.float32), "zp": np.array(0, np.uint8),
        "zp_w": np.array(0, np.int8), "zp_b": np.array(0, np.int32),
        "s_b1": np.array(s_in * s_w, np.float32), "s_b2": np.array(s_h * s_w, np.float32),
        "w1_q": rng.integers(-8, 9, size=(n, n)).astype(np.int8),
        "w2_q": rng.integers(-8, 9, size=(n, n_out)).astype(np.int8),
        "b1_q": rng.integers(-64, 65, size=n).astype(np.int32),
        "b2_q": rng.integers(-64, 65, size=n_out).astype(np.int32),
    }
    node = helper.make_node
    nodes = [
        node("QuantizeLinear", ["x", "s_in", "zp"], ["q"]),
        node("DequantizeLinear", ["q", "s_in", "zp"], ["h"]),
        node("DequantizeLinear", ["w1_q", "s_w", "zp_w"], ["w1"]),
        node("DequantizeLinear", ["b1_q", "s_b1", "zp_b"], ["b1"]),
        node("DequantizeLinear", ["w2_q", "s_w", "zp_w"], ["w2"]),
        node("DequantizeLinear", ["b2_q", "s_b2", "zp_b"], ["b2"]),
        node("MatMul", ["h", "w1"], ["m1"]),
        node("Add", ["m1", "b1"], ["a1"]),
        node("Relu", ["a1"], ["r1"]),
        node("QuantizeLinear", ["r1", "s_h", "zp"], ["q1"]),
        node("DequantizeLinear", ["q1", "s_h", "zp"], ["r"]),
        node("Add", ["r", "h"], ["skip"]),
        node("MatMul", ["skip", "w2"], ["m2"]),
        node("Add", ["m2", "b2"], ["y"]),
    ]
    return _qdq_model(nodes, arrays, "residual_qdq", n, n_out, s_in)


ENCODINGS["qdq_residual"] = residual_qdq
