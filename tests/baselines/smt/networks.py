"""Tiny QNNs of every encoding the SMT engine supports (power-of-two scales, quantized input),
for tests against exhaustive enumeration."""
import numpy as np

from qnn_plugin import onnx_builders as ob


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


ENCODINGS = {
    "fixed_point": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[4, 7, 5, 3]),
    "fixed_point_floor": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[3, 6, 3], rounding="floor"),
    "fixed_point_even": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[3, 6, 3], rounding="half_even"),
    "qdq": lambda rng: ob.random_qdq_mlp(rng, sizes=[4, 6, 5, 3]),
    "qdq_int8": lambda rng: ob.random_qdq_mlp(rng, sizes=[3, 5, 3], input_dtype="int8", act_dtype="int8"),
    "qoperator": lambda rng: ob.random_qoperator_mlp(rng, sizes=[4, 6, 3]),
    "integer": _dyadic_integer_mlp,
    "qdq_conv": lambda rng: ob.random_qdq_conv(rng),
    "sign": _dyadic_sign_mlp,
    "sign_idiom": lambda rng: _dyadic_sign_mlp(rng, idiom=True),
}


def write(tmp_path, built, name="net.onnx") -> str:
    path = tmp_path / name
    path.write_bytes(built.model.SerializeToString())
    return str(path)
