"""Float32 error bounds of the forward pass (qnn_plugin.float_error) against onnxruntime.

The truth: real arithmetic (float64 over the float32 constants) for the value a step reads, and
onnxruntime with default options (graph optimisations fuse MatMul and Add into Gemm, and fold
BatchNormalization) and without them for what the network computes. Weights of mixed
magnitudes and signs make large terms cancel, and a bias puts the step's input next to an
edge: there a margin relative to the step input's own value missed onnxruntime's level."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import qnn_plugin
from qnn_plugin import float_error
from qnn_plugin.bounded import compute_bounds
from qnn_plugin.verifier.network import Network

KINDS = ("matmul", "two_layers", "leaky", "scaled", "batchnorm", "two_steps")


def _weights(rng, shape, exps=(-2, 5)):
    """Signs and magnitudes from 10**exps[0] to 10**exps[1]: sums of large terms that cancel."""
    mag = 10.0 ** rng.uniform(*exps, size=shape)
    return (rng.choice([-1.0, 1.0], size=shape) * mag).astype(np.float32)


def _real(kind, c, x, levels=None):
    """The step's input in float64 (real arithmetic up to 2**-53 relative) for inputs x (k, n);
    for ``two_steps``, from the first step's float32 ``levels`` (onnxruntime's, or real ones)."""
    x = x.astype(np.float64)
    d = {k: v.astype(np.float64) for k, v in c.items()}
    h = x @ d["W1"] + d["b1"]
    if kind == "two_layers":
        h = np.maximum(h, 0) @ d["W2"] + d["b2"]
    elif kind == "leaky":
        h = np.where(h >= 0, h, np.float64(np.float32(0.1)) * h) @ d["W2"] + d["b2"]
    elif kind == "two_steps":
        if levels is None:   # round half to even, saturate to int8, times the scale
            levels = np.clip(np.round(h / d["s1"]), -128, 127) * d["s1"]
        h = levels.astype(np.float64) @ d["W2"] + d["b2"]
    elif kind == "scaled":
        h = h * d["c"] / d["d"]
    elif kind == "batchnorm":
        h = (h - d["mean"]) / np.sqrt(d["var"] + np.float64(np.float32(1e-5))) * d["gamma"] + d["beta"]
    return h


def _nodes(kind):
    node = helper.make_node
    out = [node("MatMul", ["x", "W1"], ["m1"]), node("Add", ["m1", "b1"], ["h1"])]
    last = "h1"
    if kind == "two_layers":
        out += [node("Relu", ["h1"], ["r"]), node("MatMul", ["r", "W2"], ["m2"]),
                node("Add", ["m2", "b2"], ["h2"])]
        last = "h2"
    elif kind == "leaky":   # found by an audit: the analysis stopped here, bounds on the margin alone
        out += [node("LeakyRelu", ["h1"], ["r"], alpha=0.1), node("MatMul", ["r", "W2"], ["m2"]),
                node("Add", ["m2", "b2"], ["h2"])]
        last = "h2"
    elif kind == "two_steps":
        out += [node("QuantizeLinear", ["h1", "s1", "zp"], ["q1"]),
                node("DequantizeLinear", ["q1", "s1", "zp"], ["d1"]),
                node("MatMul", ["d1", "W2"], ["m2"]), node("Add", ["m2", "b2"], ["h2"])]
        last = "h2"
    elif kind == "scaled":
        out += [node("Mul", ["h1", "c"], ["hc"]), node("Div", ["hc", "d"], ["hd"])]
        last = "hd"
    elif kind == "batchnorm":
        out += [node("BatchNormalization", ["h1", "gamma", "beta", "mean", "var"], ["bn"],
                     epsilon=1e-5)]
        last = "bn"
    return out, last


def chain_net(rng, kind, n=None, m=None, exps=(-2, 5), widths=(-7, -3)):
    """(model, model with the step's input as output, constants, box lower, box upper): a float
    input, an affine chain (``kind``, first weights of magnitudes 10**exps), QuantizeLinear /
    DequantizeLinear with a scale of 1; box widths 10**widths relative."""
    n = n or int(rng.integers(2, 7))
    m = m or int(rng.integers(1, 4))
    c = {"W1": _weights(rng, (n, m), exps), "b1": np.zeros(m, np.float32)}
    if kind in ("two_layers", "leaky", "two_steps"):
        c["W2"], c["b2"] = _weights(rng, (m, m)), np.zeros(m, np.float32)
    if kind == "two_steps":   # the first step spans about 100 levels over the weights' terms
        c["s1"] = np.float32(np.abs(c["W1"]).sum() / 100 * rng.uniform(0.5, 2))
    elif kind == "scaled":
        c["c"] = np.float32(rng.uniform(0.1, 3)) * np.ones(m, np.float32)
        c["d"] = np.float32(rng.uniform(0.1, 3))
    elif kind == "batchnorm":
        c.update(gamma=rng.uniform(-2, 2, m).astype(np.float32),
                 beta=rng.normal(0, 3, m).astype(np.float32),
                 mean=rng.normal(0, 1e4, m).astype(np.float32),
                 var=rng.uniform(0.5, 2, m).astype(np.float32))
    x0 = (rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 2, n)).astype(np.float32)
    lo = x0
    hi = (x0 + np.abs(x0) * 10.0 ** rng.uniform(*widths, n)).astype(np.float32)
    # the bias that puts the largest real value sampled just below an edge (k + 1/2)
    z = _real(kind, c, np.concatenate([_corners(c, lo, hi), _samples(rng, lo, hi, 64)]))
    bias = "b2" if kind in ("two_layers", "leaky", "two_steps") else "b1"
    top = z.max(axis=0)
    edge = rng.integers(-3, 3, m) + 0.5                # inside int8's range: no saturation
    shift = (edge - top - rng.uniform(0, 0.05, m)).astype(np.float32)
    if kind == "scaled":
        shift = (shift / (c["c"].astype(np.float64) / np.float64(c["d"]))).astype(np.float32)
    elif kind == "batchnorm":
        c["beta"] = (c["beta"] + shift).astype(np.float32)
        shift = np.zeros(m, np.float32)
    c[bias] = (c[bias] + shift).astype(np.float32)
    body, last = _nodes(kind)
    node = helper.make_node
    tail = [node("QuantizeLinear", [last, "s", "zp"], ["q"]), node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in c.items()]
    inits += [numpy_helper.from_array(np.array(1.0, np.float32), "s"),
              numpy_helper.from_array(np.array(0, np.int8), "zp")]
    x_info = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])]

    def model(nodes, out):
        g = helper.make_graph(nodes, kind, x_info, [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, m])], inits)
        mod = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
        mod.ir_version = 8
        return mod

    return model(body + tail, "y"), model(body, last), c, lo, hi


def _corners(c, lo, hi):
    """The box corners where each first-layer output is largest or smallest."""
    up = c["W1"].T > 0
    return np.concatenate([np.where(up, hi, lo), np.where(up, lo, hi)]).astype(np.float32)


def _samples(rng, lo, hi, k):
    """k float32 points of [lo, hi]: corners, mostly, and points inside."""
    t = rng.uniform(0, 1, size=(k, lo.size))
    t = np.where(rng.uniform(size=t.shape) < 0.7, np.round(t), t)
    return np.clip((lo + (hi - lo) * t).astype(np.float32), lo, hi)


def _output(model, name):
    """``model`` with ``name`` as its output instead."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output[0].name = name
    return m


def _run(model, x, optimise=True):
    opts = ort.SessionOptions()
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"x": xi[None]})[0] for xi in x])


def _net(tmp_path, model):
    path = tmp_path / "net.onnx"
    onnx.save(model, str(path))
    return Network(str(path), torch.device("cpu"))


def _errors(net, lo, hi):
    L, H = torch.tensor(lo)[None], torch.tensor(hi)[None]
    return float_error.analyse(net.bounded_module, L, H, None), L, H


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_the_error_bound_covers_onnxruntime_and_the_bounds_its_levels(tmp_path, kind, seed):
    rng = np.random.default_rng(seed)
    full, pre, c, lo, hi = chain_net(rng, kind)
    net = _net(tmp_path, full)
    errors, L, H = _errors(net, lo, hi)
    assert all(e is not None for e in errors.steps.values()) and errors.unbounded == []
    err = list(errors.steps.values())[-1]   # the last step's (in topological order)
    x = np.concatenate([_corners(c, lo, hi), _samples(rng, lo, hi, 48)])
    for optimise in (True, False):
        levels = _run(_output(pre, "d1"), x, optimise) if kind == "two_steps" else None
        real = _real(kind, c, x, levels)
        z = _run(pre, x, optimise).astype(np.float64)
        assert np.all(np.abs(z - real) <= err.numpy().reshape(1, -1)), (optimise, np.abs(z - real).max(), err)
    float_error.install(net.bounded_module, errors)
    y = _run(full, x, False)
    if kind != "two_steps":
        # onnxruntime's optimiser rewrites DequantizeLinear -> MatMul -> Add -> QuantizeLinear
        # into other arithmetic (an output a level off where the real input is 0.03 from an
        # edge): the verifier detects that separately (check.onnxruntime_disagrees)
        y = np.concatenate([y, _run(full, x, True)])
    for method in ("ibp", "crown"):
        lb, ub = (t.detach().numpy() for t in compute_bounds(net.bounded_module, L, H, method))
        assert np.all(y >= lb) and np.all(y <= ub), (method, lb, ub, y.min(0), y.max(0))


def test_the_margin_alone_missed_onnxruntime_s_level(tmp_path):
    """Found by searching nets like those above: without the error bound, CROWN's and IBP's
    bounds put the output at 0 where onnxruntime gives 1 (the margin relative to the step
    input's own value is about 1e-3; the terms it sums are about 1e6). The error bound
    (``qnn_plugin.widen_for_float_error``, the public entry) is what covers it."""
    misses = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        full, _, c, lo, hi = chain_net(rng, "matmul", n=int(rng.integers(2, 12)), m=1,
                                       exps=(4, 6), widths=(-6, -6))
        net = _net(tmp_path, full)
        L, H = torch.tensor(lo)[None], torch.tensor(hi)[None]
        y = _run(full, np.concatenate([_corners(c, lo, hi), _samples(rng, lo, hi, 200)]))
        ub = float(compute_bounds(net.bounded_module, L, H, "crown")[1].max())
        misses += int(y.max() > ub)
        qnn_plugin.widen_for_float_error(net.bounded_module, L, H)
        assert y.max() <= float(compute_bounds(net.bounded_module, L, H, "crown")[1].max())
    assert misses > 0


def _grid_errors(tmp_path, built):
    net = _net(tmp_path, built.model)
    assert net.grid is not None
    lo, hi = net.domain_box(torch.full((net.n_in,), -10.0), torch.full((net.n_in,), 10.0))
    shape = (1, *net.input_shape)
    return float_error.analyse(net.bounded_module, lo.reshape(shape), hi.reshape(shape), 1.0)


def test_fixed_point_networks_are_exact(tmp_path):
    """Integer codes, power-of-two scales, quantized biases, accumulators below 2**24: every
    step input is computed exactly, so no bound moves (the AAAI network's errors are 0 too).
    Arbitrary scales are not exact."""
    from qnn_plugin import onnx_builders as ob

    for seed in range(5):
        rng = np.random.default_rng(seed)
        for built in (ob.random_fixed_point_mlp(rng, sizes=[4, 6, 3]),
                      ob.random_fixed_point_mlp(rng, sizes=[3, 5, 4, 3], rounding="floor"),
                      ob.random_qdq_mlp(rng, sizes=[4, 6, 3], quantize_bias=True),
                      ob.random_qdq_conv(rng, quantize_bias=True)):
            errors = _grid_errors(tmp_path, built)
            assert errors.steps and errors.exact, {k: v for k, v in errors.steps.items()}
        errors = _grid_errors(tmp_path, ob.random_qdq_mlp(rng, sizes=[4, 6, 3], pow2_scales=False))
        assert not errors.exact and not errors.unbounded


def test_grain():
    assert float_error.grain(np.array([3.0, 0.5, -0.25], np.float32)) == 0.25
    assert float_error.grain(np.array([0.0])) == float("inf")
    assert float_error.grain(np.array([np.inf])) is None
    assert float_error.grain(np.float32(0.1)) == 2.0 ** -27   # 13421773 * 2**-27
    assert float_error.grain(np.array([6.0, 2 ** 30])) == 2.0


def test_a_large_accumulator_is_not_exact(tmp_path):
    """Integer inputs times integer weights are exact only while every partial sum stays below
    2**24: above it float32 rounds, and the bound says so."""
    node = helper.make_node
    W = np.full((4, 1), 2.0 ** 21 + 1, np.float32)   # odd: the grain of the products is 1
    g = helper.make_graph([node("MatMul", ["x", "W"], ["m"]), node("Sign", ["m"], ["y"])], "acc",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                          [numpy_helper.from_array(W, "W")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
    net = _net(tmp_path, model)
    for top, exact in ((1.0, True), (3.0, False)):
        lo, hi = torch.full((1, 4), -top), torch.full((1, 4), top)
        errors = float_error.analyse(net.bounded_module, lo, hi, 1.0)
        assert errors.exact == exact


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_the_error_bound_covers_a_convolution(tmp_path, seed):
    """Conv (3x3, padding 1, two channels, weights from 1e-2 to 1e5 of both signs) then
    MaxPool, on a float image box: onnxruntime's values against real arithmetic (torch's conv
    in float64), within the bound at every sampled point, and the MaxPool carries it."""
    rng = np.random.default_rng(seed)
    W = _weights(rng, (2, 1, 3, 3))
    b = rng.normal(0, 10, 2).astype(np.float32)
    node = helper.make_node
    nodes = [node("Conv", ["x", "W", "b"], ["c"], pads=[1, 1, 1, 1]),
             node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("QuantizeLinear", ["p", "s", "zp"], ["q"]), node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(1.0, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "zp")]

    def model(out, shape):
        g = helper.make_graph(nodes if out == "y" else nodes[:2], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, shape)], inits)
        mod = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
        mod.ir_version = 8
        return mod

    full, pre = model("y", [1, 2, 2, 2]), model("p", [1, 2, 2, 2])
    x0 = rng.uniform(-2, 2, (1, 4, 4)).astype(np.float32)
    lo, hi = x0, (x0 + np.abs(x0) * 10.0 ** rng.uniform(-7, -3, x0.shape)).astype(np.float32)
    net = _net(tmp_path, full)
    L, H = torch.tensor(lo)[None], torch.tensor(hi)[None]
    errors = float_error.analyse(net.bounded_module, L, H, None)
    (err,) = errors.steps.values()
    assert err is not None and not errors.unbounded
    x = _samples(rng, lo.reshape(-1), hi.reshape(-1), 48).reshape(-1, 1, 4, 4)
    conv = torch.nn.functional.conv2d(torch.tensor(x, dtype=torch.float64), torch.tensor(W, dtype=torch.float64),
                                      torch.tensor(b, dtype=torch.float64), padding=1)
    real = torch.nn.functional.max_pool2d(conv, 2).numpy().reshape(len(x), -1)
    for optimise in (True, False):
        z = _run(pre, x, optimise).astype(np.float64).reshape(len(x), -1)
        assert np.all(np.abs(z - real) <= err.numpy().reshape(1, -1)), (optimise, np.abs(z - real).max())


def test_underflow_is_covered(tmp_path):
    """Weights of 2**-149 (float32's smallest subnormal): each product underflows and is off by
    up to 2**-150 however small the terms (an audit's net: onnxruntime's level 4, real 6, with
    a scale of 2**-149). The bound covers onnxruntime's value, and the grain no longer calls
    such sums exact."""
    node = helper.make_node
    W = np.full((4, 2), 2.0 ** -149, np.float32)
    W[:, 1] = 2.0 ** -148
    g = helper.make_graph([node("MatMul", ["x", "W"], ["p"]), node("QuantizeLinear", ["p", "s", "zp"], ["q"]),
                           node("DequantizeLinear", ["q", "s", "zp"], ["y"])], "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                          [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array(2.0 ** -149, np.float32), "s"),
                           numpy_helper.from_array(np.array(0, np.int8), "zp")])
    full = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
    full.ir_version = 8
    pre = _output(full, "p")
    net = _net(tmp_path, full)
    lo = np.full(4, 1.45, np.float32)
    hi = np.nextafter(np.nextafter(lo, np.float32(2)), np.float32(2))
    for grain in (None, 2.0 ** -23):   # float inputs; or inputs on a fine grid
        errors = float_error.analyse(net.bounded_module, torch.tensor(lo)[None], torch.tensor(hi)[None], grain)
        (err,) = errors.steps.values()
        x = _samples(np.random.default_rng(0), lo, hi, 32)
        z = _run(pre, x).astype(np.float64)
        real = x.astype(np.float64) @ W.astype(np.float64)
        assert np.abs(z - real).max() > 2.0 ** -149                 # it does underflow
        assert np.all(np.abs(z - real) <= err.numpy().reshape(1, -1))
