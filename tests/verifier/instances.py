"""Small verification instances with exhaustive ground truth.

An instance is a random small QNN (any encoding), a box around a random input-grid point, and an
unsafe set; the truth is the exact semantics (onnxruntime with graph optimisations off, which the
foundation's tests show equal to the reference semantics) on every input that realises a code
the box reaches (tests/grid.py)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from qnn_plugin import onnx_builders as ob
from qnn_plugin.spec import Case, Polytope, Spec
from tests.grid import random_grid_box, reachable_inputs


# tiny random QNNs of every encoding (onnx_builders), for tests against enumeration
ENCODINGS = {
    "fixed_point": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[4, 7, 5, 3]),
    "fixed_point_floor": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[3, 6, 3], rounding="floor"),
    "fixed_point_even": lambda rng: ob.random_fixed_point_mlp(rng, sizes=[3, 6, 3], rounding="half_even"),
    "qdq": lambda rng: ob.random_qdq_mlp(rng, sizes=[4, 6, 5, 3]),
    "qdq_int8": lambda rng: ob.random_qdq_mlp(rng, sizes=[3, 5, 3], input_dtype="int8", act_dtype="int8"),
    "qoperator": lambda rng: ob.random_qoperator_mlp(rng, sizes=[4, 6, 3]),
    "integer": lambda rng: ob.random_integer_mlp(rng, sizes=[4, 6, 3]),
    "qdq_conv": lambda rng: ob.random_qdq_conv(rng),
}


def exact_outputs(model, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0].reshape(1, -1)
                           for i in range(len(x))])


def default_outputs(model, x: np.ndarray) -> np.ndarray:
    """onnxruntime with default session options (graph optimisations on, as the VNN-COMP
    checker runs it), one input at a time."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0].reshape(1, -1)
                           for i in range(len(x))])


def unsafe_sets(rng, y: np.ndarray, kind: str):
    """Polytopes over outputs y (N, n_out) observed on the box: a robustness property for the
    label of the first point, or random rows whose thresholds fall inside the observed range."""
    n_out = y.shape[1]
    if kind == "robust":
        lab = int(np.argmax(y[0]))
        polys = []
        for j in range(n_out):
            if j != lab:
                A = np.zeros((1, n_out))
                A[0, lab], A[0, j] = 1.0, -1.0
                polys.append(Polytope(A, np.zeros(1)))
        return tuple(polys)
    polys = []
    for _ in range(int(rng.integers(1, 3))):
        m = int(rng.integers(1, 3))
        A = rng.integers(-2, 3, size=(m, n_out)).astype(np.float64)
        A[A.sum(axis=1) == 0, 0] += 1.0
        v = y @ A.T
        q = rng.uniform(0.0, 0.3, size=m)
        polys.append(Polytope(A, np.quantile(v, q, axis=0).diagonal().copy()))
    return tuple(polys)


def truth_sat(y: np.ndarray, polys) -> bool:
    return any(np.all(y @ p.A.T <= p.b, axis=1).any() for p in polys)


def grid_instance(rng, built, kind: str, free: int = 3):
    """(spec, truth) for a box with up to ``free`` non-point coordinates."""
    lower, upper = random_grid_box(rng, built.input_scale, built.input_zero_point,
                                   built.input_qmin, built.input_qmax, built.input_shape, free)
    grid = built.grid_values()
    x = reachable_inputs(grid, lower, upper, built.input_shape)
    y = exact_outputs(built.model, x)
    polys = unsafe_sets(rng, y, kind)
    lo = lower.numpy().reshape(-1).astype(np.float64)
    hi = upper.numpy().reshape(-1).astype(np.float64)
    spec = Spec((Case(lo, hi, polys),), lo.size, y.shape[1], "<test>")
    return spec, truth_sat(y, polys)


def grid_case(tmp_path, built, rng, kind: str, free: int = 4):
    """(net, problem, lo, hi, truth) of a grid instance of ``built`` (output bound 100, as the
    verifier would set it from the root bound), its model written under tmp_path."""
    import torch

    from qnn_plugin.verifier.network import Network
    from qnn_plugin.verifier.problem import Problem

    spec, truth = grid_instance(rng, built, kind, free=free)
    path = tmp_path / "case.onnx"
    path.write_bytes(built.model.SerializeToString())
    net = Network(str(path), torch.device("cpu"))
    problem = Problem.from_case(spec.cases[0], 0, torch.device("cpu"))
    problem.set_output_bound(100.0)
    lo, hi = net.domain_box(problem.lower, problem.upper)
    return net, problem, lo, hi, truth


def ort_quantized(rng, tmp_path, conv: bool, fmt: str, act_type: str, weight_type: str,
                  per_channel: bool):
    """A QNN made by onnxruntime's own quantizer (quantize_static, QDQ or QOperator format) from
    a random float model (tests/onnx_import/test_exporters.py), in the shape ``grid_instance``
    takes: built independently of the project's builders."""
    import types

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from tests.grid import grid_values
    from tests.onnx_import.test_exporters import _Calibration, float_model, input_quantizer

    model, shape = float_model(conv, rng)
    src, dst = tmp_path / "float.onnx", tmp_path / "quantized.onnx"
    onnx.save(model, src)
    quantize_static(str(src), str(dst), _Calibration(shape, rng), quant_format=QuantFormat[fmt],
                    activation_type=QuantType[act_type], weight_type=QuantType[weight_type],
                    per_channel=per_channel)
    q = onnx.load(dst)
    scale, zp, qmin, qmax = input_quantizer(q)
    return types.SimpleNamespace(model=q, input_scale=scale, input_zero_point=zp, input_qmin=qmin,
                                 input_qmax=qmax, input_shape=shape,
                                 grid_values=lambda: grid_values(scale, zp, qmin, qmax))


def qcdq_mlp(rng, n_in: int = 5, hidden: int = 6, n_out: int = 3):
    """A QCDQ network as Brevitas exports low-bit QNNs: QuantizeLinear to an 8-bit type, Clip
    of the integers to a narrower range (4 bits here, the hidden one signed and sometimes
    narrow), DequantizeLinear; float MatMuls with weights on a 1/8 grid between them. Built
    by hand, not by the project's builders."""
    import types

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.grid import grid_values

    const = lambda a, name: numpy_helper.from_array(np.array(a), name)  # noqa: E731
    h_lo = -7 if rng.random() < 0.5 else -8
    s_in, s_h = np.float32(1 / 16), np.float32(rng.choice([0.125, 0.25, 0.5]))
    inits = [const(s_in, "s_in"), const(s_h, "s_h"), const(np.uint8(0), "zu"),
             const(np.uint8(15), "u_hi"), const(np.int8(0), "z8"), const(np.int8(h_lo), "h_lo"),
             const(np.int8(7), "h_hi"),
             const((rng.integers(-7, 8, (n_in, hidden)) / 8).astype(np.float32), "W1"),
             const((rng.integers(-4, 5, hidden) / 8).astype(np.float32), "b1"),
             const((rng.integers(-7, 8, (hidden, n_out)) / 8).astype(np.float32), "W2")]
    node = helper.make_node
    nodes = [node("QuantizeLinear", ["x", "s_in", "zu"], ["xq"]),
             node("Clip", ["xq", "zu", "u_hi"], ["xc"]),
             node("DequantizeLinear", ["xc", "s_in", "zu"], ["xd"]),
             node("MatMul", ["xd", "W1"], ["m"]), node("Add", ["m", "b1"], ["h"]),
             node("Relu", ["h"], ["hr"]),
             node("QuantizeLinear", ["hr", "s_h", "z8"], ["hq"]),
             node("Clip", ["hq", "h_lo", "h_hi"], ["hc"]),
             node("DequantizeLinear", ["hc", "s_h", "z8"], ["hd"]),
             node("MatMul", ["hd", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "qcdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return types.SimpleNamespace(model=model, input_scale=float(s_in), input_zero_point=0,
                                 input_qmin=0, input_qmax=15, input_shape=(n_in,),
                                 grid_values=lambda: grid_values(float(s_in), 0, 0, 15))


def batchnorm_sign_mlp(rng, n_in: int = 5, hidden: int = 6, n_out: int = 3):
    """A binarized MLP as training frameworks export it: input codes (1/16, uint8), MatMul by
    +-1 weights, a BatchNormalization node (float scales of either sign, float means and
    variances: not integer arithmetic), Sign, MatMul by +-1 weights. Built by hand."""
    import types

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.grid import grid_values

    f32 = lambda a, name: numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)  # noqa: E731
    signs = rng.choice([-1.0, 1.0], size=hidden)
    inits = [f32(1 / 16, "s_in"), numpy_helper.from_array(np.array(0, np.uint8), "zu"),
             f32(rng.choice([-1.0, 1.0], size=(n_in, hidden)), "W1"),
             f32(signs * rng.uniform(0.3, 2.0, hidden), "gamma"), f32(rng.normal(0, 0.5, hidden), "beta"),
             f32(rng.normal(0, 0.6, hidden), "mean"), f32(rng.uniform(0.5, 2.0, hidden), "var"),
             f32(rng.choice([-1.0, 1.0], size=(hidden, n_out)), "W2")]
    node = helper.make_node
    nodes = [node("QuantizeLinear", ["x", "s_in", "zu"], ["xq"]),
             node("DequantizeLinear", ["xq", "s_in", "zu"], ["xd"]),
             node("MatMul", ["xd", "W1"], ["m"]),
             node("BatchNormalization", ["m", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-5),
             node("Sign", ["bn"], ["a"]), node("MatMul", ["a", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "bn_sign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return types.SimpleNamespace(model=model, input_scale=1 / 16, input_zero_point=0,
                                 input_qmin=0, input_qmax=255, input_shape=(n_in,),
                                 grid_values=lambda: grid_values(1 / 16, 0, 0, 255))


def pool_net(rng, kernel: int = 2, stride: int = 2, pads=(0, 0, 0, 0), dilation: int = 1,
             ceil_mode: int = 0, conv: bool = True, size: int = 4, opset: int = 17,
             op: str = "MaxPool", count_include_pad: int = 0):
    """Fake-quantized input (int8 codes, scale 1/4) -> [Conv 2x2, 2 channels -> Relu] ->
    MaxPool or AveragePool with the given attributes -> Flatten -> MatMul to 3 outputs.
    Power-of-two weights, so float32 is exact (an AveragePool whose window counts are not
    powers of two excepted). Built by hand with onnx.helper, not by the project's builders."""
    import types

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.grid import grid_values

    const = lambda a, name: numpy_helper.from_array(np.array(a), name)  # noqa: E731
    inits = [const(np.float32(0.25), "s"), const(np.int8(0), "z")]
    node = helper.make_node
    nodes = [node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             node("DequantizeLinear", ["q", "s", "z"], ["h"])]
    channels, side = 1, size
    if conv:
        inits.append(const((rng.integers(-2, 3, (2, 1, 2, 2)) / 2).astype(np.float32), "K"))
        nodes += [node("Conv", ["h", "K"], ["c"]), node("Relu", ["c"], ["r"])]
        channels, side, last = 2, size - 1, "r"
    else:
        last = "h"
    attrs = dict(kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=list(pads), ceil_mode=ceil_mode)
    if dilation != 1 or op == "MaxPool":
        attrs["dilations"] = [dilation] * 2
    if op == "AveragePool":
        attrs["count_include_pad"] = count_include_pad
    nodes.append(node(op, [last], ["p"], **attrs))
    span = dilation * (kernel - 1) + 1
    out = []
    for d in range(2):
        room = side + pads[d] + pads[d + 2] - span
        n = (-(-room // stride) if ceil_mode else room // stride) + 1
        if ceil_mode and (n - 1) * stride >= side + pads[d]:
            n -= 1   # the last window would start in the end padding
        out.append(n)
    flat = channels * out[0] * out[1]
    inits.append(const((rng.integers(-3, 4, (flat, 3)) / 4).astype(np.float32), "W"))
    nodes += [node("Flatten", ["p"], ["f"], axis=1), node("MatMul", ["f", "W"], ["y"])]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return types.SimpleNamespace(model=model, input_scale=0.25, input_zero_point=0, input_qmin=-128,
                                 input_qmax=127, input_shape=(1, size, size),
                                 grid_values=lambda: grid_values(0.25, 0, -128, 127))


# MaxPool geometries auto_LiRPA's own MaxPool could not bound (overlapping windows, padding,
# asymmetric padding, dilation, ceil mode) and the plain one; AveragePool at opsets onnx2torch
# has no converter for (19: dilations, 21), with and without the padding counted (window
# counts 1, 2 and 4 only: the divisions stay exact, and so does every verdict)
POOLS = {
    "avg_k2s1_op19": dict(op="AveragePool", stride=1, opset=19),
    "avg_k2s1p1_op21": dict(op="AveragePool", stride=1, pads=(1, 1, 1, 1), opset=21),
    "avg_k2s2_count_pad": dict(op="AveragePool", pads=(1, 1, 0, 0), count_include_pad=1,
                               conv=False, size=5),
    "k2s2": dict(),
    "k2s1": dict(stride=1),
    "k3s1p1": dict(kernel=3, stride=1, pads=(1, 1, 1, 1)),
    "k2s2_pad_end": dict(pads=(0, 0, 1, 1)),
    "k2s1_pad_begin": dict(stride=1, pads=(1, 1, 0, 0), conv=False),
    "k2s1_dilated": dict(stride=1, dilation=2, conv=False),
    "k2s2_ceil": dict(ceil_mode=1, conv=False, size=5),
}


# ---- float inputs that go through steps first (no input grid; see verifier/cells.py)

STEP_INPUTS = ("sign", "relu_first", "two_quant", "zero_coef")


def step_input_net(rng, kind: str):
    """A network whose float input reaches a step on every path, yet has no input grid:
    ``sign`` (Sign(x), as binarized networks), ``relu_first`` (Relu before QuantizeLinear),
    ``two_quant`` (x fake-quantized twice: Round at one scale, Floor at another),
    ``zero_coef`` (x * k with k_0 = 0 and k_1 < 0 before the Div -> Round -> Clip idiom).
    Then MatMul -> Add -> Relu -> MatMul to 2 outputs. ``ties(j)`` lists coordinate j's step
    edges in real arithmetic (the float32 ones lie within a few ulps). Built by hand with
    onnx.helper; batch dimension symbolic, so onnxruntime can evaluate many points at once."""
    import types

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node
    n = int(rng.integers(2, 4))
    inits = {}
    const = lambda name, a: inits.__setitem__(name, np.asarray(a)) or name  # noqa: E731

    def fake_quant(x, s, rounding, tag):
        d = node("Div", [x, const(f"s{tag}", np.float32(s))], [f"d{tag}"])
        r = node(rounding, [f"d{tag}"], [f"r{tag}"])
        c = node("Clip", [f"r{tag}", const(f"lo{tag}", np.float32(-8)),
                          const(f"hi{tag}", np.float32(7))], [f"c{tag}"])
        m = node("Mul", [f"c{tag}", f"s{tag}"], [f"f{tag}"])
        return [d, r, c, m], f"f{tag}"

    # scales on a 1/64 grid: every output is then exact in float32, so onnxruntime and the
    # reference semantics agree to the bit where a threshold sits on an observed output
    scale = lambda: float(rng.integers(7, 26)) / 64  # noqa: E731
    if kind == "sign":
        nodes, feat, width = [node("Sign", ["x"], ["f"])], "f", n
        ties = lambda j: [0.0]  # noqa: E731
    elif kind == "relu_first":
        s = scale()
        nodes = [node("Relu", ["x"], ["r"]),
                 node("QuantizeLinear", ["r", const("s", np.float32(s)), const("z", np.uint8(0))], ["q"]),
                 node("DequantizeLinear", ["q", "s", "z"], ["f"])]
        feat, width = "f", n
        ties = lambda j: [0.0] + [(k + 0.5) * s for k in range(255)]  # noqa: E731
    elif kind == "two_quant":
        s1, s2 = scale(), scale()
        a, fa = fake_quant("x", s1, "Round", "a")
        b, fb = fake_quant("x", s2, "Floor", "b")
        nodes = a + b + [node("Concat", [fa, fb], ["f"], axis=1)]
        feat, width = "f", 2 * n
        ties = lambda j: sorted([(k + 0.5) * s1 for k in range(-9, 8)] + [k * s2 for k in range(-8, 9)])  # noqa: E731
    elif kind == "zero_coef":
        s = scale()
        k = rng.uniform(0.5, 2.0, n).astype(np.float32)
        k[0], k[1] = 0.0, -k[1]
        q, feat = fake_quant("xk", s, "Round", "")
        nodes = [node("Mul", ["x", const("k", k)], ["xk"])] + q
        width = n
        ties = lambda j: [] if k[j] == 0 else sorted((m + 0.5) * s / float(k[j]) for m in range(-9, 8))  # noqa: E731
    else:
        raise ValueError(kind)
    h = int(rng.integers(3, 6))
    const("W1", rng.integers(-3, 4, (width, h)).astype(np.float32) / 2)
    const("b1", rng.integers(-2, 3, h).astype(np.float32) / 4)
    const("W2", rng.integers(-3, 4, (h, 2)).astype(np.float32) / 2)
    nodes += [node("MatMul", [feat, "W1"], ["m1"]), node("Add", ["m1", "b1"], ["a1"]),
              node("Relu", ["a1"], ["h1"]), node("MatMul", ["h1", "W2"], ["y"])]
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(v, name) for name, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return types.SimpleNamespace(model=model, n=n, kind=kind, ties=ties)


def _floats_near(t: float, ulps: int) -> list:
    v = np.float32(t)
    out = [v]
    up, down = v, v
    for _ in range(ulps):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        out += [up, down]
    return out


def step_input_box(rng, built):
    """(lower, upper) float32-exact: per coordinate an interval around one of its step edges,
    one to three steps wide, an end sometimes exactly on an edge's float32; sometimes a point."""
    lo, hi = np.zeros(built.n, np.float32), np.zeros(built.n, np.float32)
    for j in range(built.n):
        ties = [t for t in built.ties(j) if abs(t) < 3.0] or [0.0]
        t = float(rng.choice(ties[:40]))
        step = 1e-3 if built.kind == "sign" and rng.random() < 0.5 else 0.3
        a = np.float32(t - step * rng.uniform(0, 1.5))
        b = np.float32(t + step * rng.uniform(0, 1.5))
        u = rng.random()
        if u < 0.2:
            a = np.float32(t)
        elif u < 0.4:
            b = np.float32(t)
        elif u < 0.5:
            a = b = np.float32(rng.uniform(t - step, t + step))
        lo[j], hi[j] = min(a, b), max(a, b)
    return lo, hi


def step_input_instance(rng, built, kind: str):
    """(spec, truth, xs, ys): a box of ``step_input_box``, an unsafe set from ``unsafe_sets``
    (or, for ``kind`` "rare", around the output value the fewest candidates give), and the truth from onnxruntime (optimisations off) on every combination of candidate
    points per coordinate: the box ends, every float32 within 4 ulps of a step edge inside
    the box, and the float32 midpoints between consecutive candidates (the output is constant
    between edges, so every cell of the box has a candidate)."""
    import itertools

    lower, upper = step_input_box(rng, built)
    axes = []
    for j in range(built.n):
        c = {lower[j], upper[j]}
        for t in built.ties(j):
            if lower[j] - 1e-3 <= t <= upper[j] + 1e-3:
                c.update(v for v in _floats_near(t, 4) if lower[j] <= v <= upper[j])
        c = sorted(c)
        mids = [np.float32(a / 2 + b / 2) for a, b in zip(c, c[1:])]
        axes.append(sorted(set(c) | {m for m in mids if lower[j] <= m <= upper[j]}))
    xs = np.array(list(itertools.product(*axes)), np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(built.model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ys = sess.run(None, {"x": xs})[0]
    if kind == "rare":   # unsafe: the output value fewest candidates give (often one cell)
        values, counts = np.unique(ys, axis=0, return_counts=True)
        y = values[int(np.argmin(counts))].astype(np.float64)
        A = np.concatenate([np.eye(2), -np.eye(2)])
        polys = (Polytope(A, np.concatenate([y, -y]) + 1e-3),)
    else:
        polys = unsafe_sets(rng, ys, kind)
    spec = Spec((Case(lower.astype(np.float64), upper.astype(np.float64), polys),), built.n, 2, "<test>")
    return spec, truth_sat(ys, polys), xs, ys
