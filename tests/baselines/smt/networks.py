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


# the verifier tests' encodings, with MatMulInteger biases on a power-of-two grid, and Sign nets
ENCODINGS = {**BASE, "integer": _dyadic_integer_mlp, "sign": _dyadic_sign_mlp,
             "sign_idiom": lambda rng: _dyadic_sign_mlp(rng, idiom=True)}


def write(tmp_path, built, name="net.onnx") -> str:
    path = tmp_path / name
    path.write_bytes(built.model.SerializeToString())
    return str(path)


def residual_qdq(rng, n=4, n_out=3) -> ob.BuiltModel:
    """A QDQ block with a skip connection (Add of two tensors that both depend on the input),
    weights and biases quantized as onnxruntime's quantizer writes them (int8 / int32 through
    DequantizeLinear), power-of-two scales:
    h = DQ(Q(x)); r = DQ(Q(Relu(h DQ(W1) + DQ(b1)))); y = (r + h) DQ(W2) + DQ(b2)."""
    from onnx import TensorProto, helper, numpy_helper

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
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
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
    graph = helper.make_graph(nodes, "residual_qdq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return ob.BuiltModel(model, "qdq", (n,), s_in, 0, 0, 255, n_out)


ENCODINGS["qdq_residual"] = residual_qdq
