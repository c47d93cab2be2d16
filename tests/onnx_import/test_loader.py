"""load_onnx: clear errors for bad input; float VNN-COMP models agree with onnxruntime, batched."""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import qnn_plugin as qp

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "vnncomp"
VNNCOMP_MODELS = sorted(SHARED.glob("acasxu/onnx/*.onnx"))[:3] + sorted(SHARED.glob("mnist_fc/onnx/*.onnx"))


def tiny_model(op="Relu", opset=13, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    node = helper.make_node(op, ["x"], ["y"], name="the_node", **attrs)
    g = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_missing_file(tmp_path):
    with pytest.raises(qp.ModelLoadError, match="no such file"):
        qp.load_onnx(tmp_path / "nope.onnx")


def test_garbage_file(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe" * 10)
    with pytest.raises(qp.ModelLoadError, match=r"bad\.onnx"):
        qp.load_onnx(p)


def test_malformed_graph(tmp_path):
    m = tiny_model()
    m.graph.node[0].input[0] = "undefined_tensor"
    p = tmp_path / "broken.onnx"
    onnx.save(m, p)
    with pytest.raises(qp.ModelLoadError, match="invalid ONNX model"):
        qp.load_onnx(p)


def test_unsupported_operator_names_op_node_opset_and_supported_set(tmp_path):
    p = tmp_path / "det.onnx"
    onnx.save(tiny_model("Hardmax"), p)
    with pytest.raises(qp.UnsupportedOperatorError) as e:
        qp.load_onnx(p)
    msg = str(e.value)
    assert "Hardmax" in msg and "the_node" in msg and "opset 13" in msg
    assert "Supported at opset 13:" in msg and "QuantizeLinear" in msg and "QLinearConv" in msg
    assert str(p) in msg


def test_unknown_domain_is_unsupported():
    m = tiny_model()
    m.graph.node[0].domain = "com.example"
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(qp.UnsupportedOperatorError, match="com.example"):
        qp.load_onnx(m)


def test_input_shape_mismatch():
    net = qp.load_onnx(tiny_model())
    with pytest.raises(qp.InputShapeError, match=r"input 'x' has shape \(2, 4\), expected Nx3"):
        net(torch.zeros(2, 4))
    assert net(torch.zeros(5, 3)).shape == (5, 3)  # batch is free


def run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


@pytest.mark.skipif(not VNNCOMP_MODELS, reason="../shared/vnncomp not present")
@pytest.mark.parametrize("path", VNNCOMP_MODELS, ids=lambda p: p.name)
def test_vnncomp_float_models_agree_with_onnxruntime_and_bound_soundly(path):
    net = qp.load_onnx(path)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (6, *net.input_shape)).astype(np.float32)
    y = net(torch.tensor(x)).detach().numpy()
    ref = run_ort(path, x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    lower, upper = torch.tensor(x) - 0.002, torch.tensor(x) + 0.002
    bm = qp.bounded(net, lower)
    samples = torch.tensor(x) + (torch.rand(64, *x.shape) - 0.5) * 0.004
    ys = torch.stack([net(s) for s in samples]).detach()
    for method in ("ibp", "crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        assert torch.all(lb <= ys.min(0).values + 1e-4) and torch.all(ub >= ys.max(0).values - 1e-4)


def test_bounding_with_wrong_shapes_gives_clear_errors():
    net = qp.load_onnx(tiny_model())
    with pytest.raises(qp.InputShapeError, match="expected Nx3"):
        qp.bounded(net, torch.zeros(1, 5))
    bm = qp.bounded(net, torch.zeros(2, 3))
    with pytest.raises(qp.InputShapeError, match=r"expected \(batch, 3\)"):
        qp.compute_bounds(bm, torch.zeros(2, 4), torch.ones(2, 4))


def test_cast_of_an_integer_tensor_to_float_gives_float():
    """ArgMax gives an int64 tensor in torch; Cast to float must make it float32 (values are
    otherwise carried as float32 already), or the next MatMul fails on mixed dtypes."""
    from onnx import numpy_helper

    w = numpy_helper.from_array(np.array([[0.5, -1.0]], np.float32), "W")
    nodes = [helper.make_node("ArgMax", ["X"], ["a"], axis=1, keepdims=1),
             helper.make_node("Cast", ["a"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["c", "W"], ["Y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    x = np.array([[0.1, 0.9, 0.3], [2.0, -1.0, 0.0], [0.0, 0.0, 5.0]], np.float32)
    y = qp.load_onnx(model)(torch.tensor(x))
    assert y.dtype == torch.float32
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    assert np.array_equal(y.numpy(), want)
