"""MaxPool bounds (qnn_plugin.pool_bounds) at every stride, padding, dilation and ceil mode:
the window table against torch's pooling, and IBP / CROWN / alpha-CROWN bounds of small
quantized conv nets against every output of the enumerated input grid."""
import itertools

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import qnn_plugin as qp
from qnn_plugin.onnx_import import load_onnx
from qnn_plugin.ops import QuantStep
from qnn_plugin.pool_bounds import BoundWindowMax, window_table
from tests.verifier.instances import POOLS, pool_net

pool_attrs = st.fixed_dictionaries(dict(
    kernel=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 1),
    dilation=st.integers(1, 2), ceil_mode=st.booleans()))


def _pool(a):
    return nn.MaxPool2d(a["kernel"], a["stride"], a["pad"], a["dilation"], ceil_mode=a["ceil_mode"])


def _valid(a, size):
    """torch's own limits: padding at most half the kernel, a non-empty output."""
    span = a["dilation"] * (a["kernel"] - 1) + 1
    return 2 * a["pad"] <= a["kernel"] and size + 2 * a["pad"] >= span


@settings(max_examples=60, deadline=None)
@given(a=pool_attrs, h=st.integers(3, 6), w=st.integers(3, 6), seed=st.integers(0, 2 ** 31))
def test_window_table_reads_the_windows_torch_pools(a, h, w, seed):
    if not (_valid(a, h) and _valid(a, w)):
        return
    x = torch.tensor(np.random.default_rng(seed).normal(size=(2, 3, h, w)), dtype=torch.float32)
    want = _pool(a)(x)
    k, s, p, d = ([a[n]] * 2 for n in ("kernel", "stride", "pad", "dilation"))
    table = torch.as_tensor(window_table((h, w), tuple(want.shape[-2:]), k, s, p, d))
    padded = torch.cat([x.flatten(2), torch.full((2, 3, 1), -torch.inf)], -1)
    assert torch.equal(padded[..., table].amax(-1), want.flatten(2))


def _grid_outputs(net, lower, upper, step):
    """Outputs on every input code the box reaches (box ends and grid values in between)."""
    axes = []
    for lo, hi in zip(lower.reshape(-1).tolist(), upper.reshape(-1).tolist()):
        inner = [k * step for k in range(int(np.ceil(lo / step)), int(np.floor(hi / step)) + 1)]
        axes.append(sorted({lo, hi, *inner}))
    x = torch.tensor(list(itertools.product(*axes)), dtype=torch.float32)
    with torch.no_grad():
        return net(x.reshape(-1, *lower.shape[1:]))


def _box(rng, shape, free):
    """A box around a grid point (step 0.125) with ``free`` coordinates spanning a few codes."""
    n = int(np.prod(shape))
    centre = rng.integers(-6, 6, n)
    lo, hi = centre * 0.125, centre * 0.125
    for i in rng.choice(n, free, replace=False):
        lo[i] -= int(rng.integers(0, 3)) * 0.125 + rng.choice([0.0, 0.0625, 0.03])
        hi[i] += int(rng.integers(0, 3)) * 0.125 + rng.choice([0.0, 0.0625, 0.03])
    as_t = lambda v: torch.tensor(v, dtype=torch.float32).reshape(1, *shape)
    return as_t(lo), as_t(hi)


def _assert_contains(net, lower, upper, step=0.125):
    y = _grid_outputs(net, lower, upper, step)
    bm = qp.bounded(net, lower)
    for method in ("ibp", "crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        assert torch.all(lb[0] <= y.min(0).values + 1e-4), method
        assert torch.all(ub[0] >= y.max(0).values - 1e-4), method


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=pool_attrs, seed=st.integers(0, 2 ** 31), conv=st.booleans())
def test_bounds_contain_every_grid_output(a, seed, conv):
    size = 5
    if not _valid(a, size - (1 if conv else 0)):
        return
    rng = np.random.default_rng(seed)
    layers = [QuantStep(0.125, 0, -8, 7)]
    if conv:
        layers += [nn.Conv2d(1, 2, 2), nn.ReLU()]
    layers += [_pool(a), nn.Flatten()]
    with torch.no_grad():
        n_flat = nn.Sequential(*layers)(torch.zeros(1, 1, size, size)).shape[1]
    net = nn.Sequential(*layers, nn.Linear(n_flat, 3)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.tensor(rng.normal(size=p.shape), dtype=torch.float32))
    lower, upper = _box(rng, (1, size, size), free=5)
    _assert_contains(net, lower, upper)


def _onnx_pool_net(pads, strides, rng, path):
    """Fake-quantized input -> MaxPool with ONNX ``pads`` (begin..., end...) -> MatMul."""
    s = numpy_helper.from_array(np.float32(0.125), "s")
    out = [(4 + pads[i] + pads[i + 2] - 2) // strides[i] + 1 for i in range(2)]
    w = rng.integers(-2, 3, size=(out[0] * out[1], 2)).astype(np.float32) * 0.5
    nodes = [helper.make_node("Div", ["x", "s"], ["d"]), helper.make_node("Round", ["d"], ["r"]),
             helper.make_node("Clip", ["r", "lo", "hi"], ["c"]), helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("MaxPool", ["m"], ["p"], kernel_shape=[2, 2], strides=strides, pads=pads),
             helper.make_node("Reshape", ["p", "shp"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    inits = [s, numpy_helper.from_array(np.float32(-8), "lo"), numpy_helper.from_array(np.float32(7), "hi"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shp"), numpy_helper.from_array(w, "W")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("pads,strides", [([0, 0, 1, 1], [2, 2]), ([1, 1, 0, 0], [2, 2]),
                                          ([1, 0, 1, 0], [1, 2])])
def test_asymmetric_onnx_padding(tmp_path, pads, strides):
    """onnx2torch pads an asymmetric MaxPool with -inf in a separate Pad node: the padding must
    never carry a coefficient (the Pad's backward pass drops its constant)."""
    rng = np.random.default_rng(sum(pads) + 7 * strides[0])
    net = load_onnx(_onnx_pool_net(pads, strides, rng, tmp_path / "m.onnx")).eval()
    for _ in range(4):
        lower, upper = _box(rng, (1, 4, 4), free=6)
        _assert_contains(net, lower, upper)


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_onnx_pooling_of_every_geometry(pool):
    """The importer's MaxPool / AveragePool modules (onnxruntime's windows) under the bound
    operators, for the geometries the verifier's tests use."""
    rng = np.random.default_rng(len(pool))
    for _ in range(3):
        built = pool_net(rng, **POOLS[pool])
        net = load_onnx(built.model).eval()
        lower, upper = _box(rng, built.input_shape, free=6)
        _assert_contains(net, lower * 2, upper * 2, step=0.25)   # the input grid's step is 1/4


def test_the_lines_are_tight_where_one_element_dominates():
    """A window whose largest lower bound clears every other upper bound is linear: CROWN's
    bounds of the maximum equal that element's bounds."""
    net = nn.Sequential(nn.MaxPool2d(2, 1)).eval()
    lower = torch.tensor([[[[5.0, 0.0], [0.0, 0.0]]]])
    upper = torch.tensor([[[[6.0, 1.0], [1.0, 4.0]]]])
    bm = qp.bounded(net, lower)
    lb, ub = qp.compute_bounds(bm, lower, upper, "crown")
    assert (float(lb.reshape(-1)[0]), float(ub.reshape(-1)[0])) == (5.0, 6.0)
    upper[0, 0, 1, 1] = 7.0    # no longer dominated: the constant upper line max u
    lb, ub = qp.compute_bounds(bm, lower, upper, "crown")
    assert (float(lb.reshape(-1)[0]), float(ub.reshape(-1)[0])) == (5.0, 7.0)


def test_forward_is_torch_pooling():
    attr = dict(kernel_shape=[3, 3], strides=[1, 2], pads=[1, 0, 1, 0], dilations=[1, 1], ceil_mode=1)
    op = BoundWindowMax(attr, [], 0, {})
    x = torch.randn(2, 3, 7, 6)
    assert torch.equal(op.forward(x), F.max_pool2d(x, 3, (1, 2), (1, 0), 1, True))
    with pytest.raises(NotImplementedError, match="asymmetric"):
        BoundWindowMax(dict(attr, pads=[0, 0, 1, 1]), [], 0, {})


def _onnx_pad_net(mode, pads, rng, path):
    """Fake-quantized 1x2x4x4 input -> Pad(``mode``, ONNX ``pads``) -> Conv 3x3 -> MatMul."""
    s = numpy_helper.from_array(np.float32(0.125), "s")
    h, w = 4 + pads[2] + pads[6] - 2, 4 + pads[3] + pads[7] - 2
    extra = {} if mode == "constant" else {"mode": mode}
    nodes = [helper.make_node("Div", ["x", "s"], ["d"]), helper.make_node("Round", ["d"], ["r"]),
             helper.make_node("Clip", ["r", "lo", "hi"], ["c"]), helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("Pad", ["m", "pads"] + (["v"] if mode == "constant" else []), ["p"], **extra),
             helper.make_node("Conv", ["p", "K"], ["q"]),
             helper.make_node("Reshape", ["q", "shp"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    inits = [s, numpy_helper.from_array(np.float32(-8), "lo"), numpy_helper.from_array(np.float32(7), "hi"),
             numpy_helper.from_array(np.array(pads, np.int64), "pads"),
             numpy_helper.from_array(np.float32(1.5), "v"),
             numpy_helper.from_array(rng.normal(size=(2, 2, 3, 3)).astype(np.float32), "K"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shp"),
             numpy_helper.from_array(rng.normal(size=(2 * h * w, 3)).astype(np.float32), "W")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("mode", ["reflect", "edge", "constant"])
def test_pad_modes(tmp_path, mode):
    """reflect and edge copy inputs into the padding: auto_LiRPA's Pad bounded those copies by
    [0, 0] (an audit's wrong unsat); constant mode with a non-zero value puts it in."""
    import onnxruntime as ort

    rng = np.random.default_rng(len(mode))
    path = _onnx_pad_net(mode, [0, 0, 1, 2, 0, 0, 2, 1], rng, tmp_path / "m.onnx")
    net = load_onnx(path).eval()
    x = rng.integers(-8, 8, size=(1, 2, 4, 4)).astype(np.float32) * 0.125
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        assert np.allclose(net(torch.tensor(x)).numpy(), want, atol=1e-5)
    for _ in range(3):
        lower, upper = _box(rng, (2, 4, 4), free=5)
        _assert_contains(net, lower, upper)
