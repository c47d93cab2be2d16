"""Graph rewrites: each one fires on its pattern and keeps the model's function."""
import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

import qnn_plugin as qp
from qnn_plugin import onnx_builders as B


def ort_rows(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def batch1_reshape_model(shape):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(12, 3)).astype(np.float32), "w")
    s = numpy_helper.from_array(np.array(shape, dtype=np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, s])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_reshape_hard_coding_batch_one_is_freed():
    for shape in ([1, 12], [1, -1]):
        model = batch1_reshape_model(shape)
        net = qp.load_onnx(model)
        assert net.rewrites["freed_batch_dims"] == 1
        x = np.random.default_rng(1).normal(size=(5, 3, 2, 2)).astype(np.float32)
        np.testing.assert_allclose(net(torch.tensor(x)).detach().numpy(), ort_rows(model, x), rtol=1e-5, atol=1e-5)


def test_rounding_then_clip_is_fused_and_exact():
    built = B.random_fixed_point_mlp(np.random.default_rng(2), opset=13)
    net = qp.load_onnx(built.model)
    assert net.rewrites["fused_rounding_clamps"] >= 2  # input quantizer and hidden requantizer
    x = built.random_inputs(np.random.default_rng(3), 32)
    np.testing.assert_array_equal(net(torch.tensor(x)).detach().numpy(), ort_rows(built.model, x))


def test_sign_sign_idiom_becomes_binarizer():
    rng = np.random.default_rng(4)
    built = B.random_sign_mlp(rng, idiom=True)
    net = qp.load_onnx(built.model)
    assert net.rewrites["fused_binarize"] >= 1
    x = built.random_inputs(rng, 64)
    x[:8] = 0.0  # Sign(0) = 0, but the idiom maps 0 to +1
    np.testing.assert_allclose(net(torch.tensor(x)).detach().numpy(), ort_rows(built.model, x), rtol=1e-5, atol=1e-5)


def test_constant_weights_are_folded():
    built = B.random_qdq_mlp(np.random.default_rng(5))
    net = qp.load_onnx(built.model)
    assert net.rewrites["folded_constant_quantization"] >= 2


def _single_chain(nodes, inits, in_shape, out_shape, opset=21):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def test_int4_constant_quantization_is_converted_not_folded():
    w = numpy_helper.from_array(np.array([[0.3, -0.9], [1.2, 0.05]], dtype=np.float32), "w")
    s = numpy_helper.from_array(np.array(0.25, dtype=np.float32), "s")
    z = helper.make_tensor("z", TensorProto.INT4, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["w", "s", "z"], ["wq"]),
             helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
             helper.make_node("MatMul", ["x", "wd"], ["y"])]
    model = _single_chain(nodes, [w, s, z], ["N", 2], ["N", 2])
    net = qp.load_onnx(model)
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    so = ort.SessionOptions()  # default optimisations fuse DQ+MatMul into a kernel that differs
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(net(torch.tensor(x)).detach().numpy(), sess.run(None, {"x": x})[0], rtol=1e-6)


def test_binarize_idiom_with_a_broadcasting_constant_is_left_alone():
    c = numpy_helper.from_array(np.full((1, 1, 1), 0.1, dtype=np.float32), "c")
    nodes = [helper.make_node("Sign", ["x"], ["s1"]), helper.make_node("Add", ["s1", "c"], ["a"]),
             helper.make_node("Sign", ["a"], ["y"])]
    model = _single_chain(nodes, [c], [1, 4], [1, 1, 4], opset=13)
    net = qp.load_onnx(model)
    assert net.rewrites["fused_binarize"] == 0
    x = np.array([[-1.0, 0.0, 2.0, -0.0]], dtype=np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(net(torch.tensor(x)).detach().numpy(), sess.run(None, {"x": x})[0])


def test_bounds_with_C_when_the_last_node_is_a_matmul():
    built = B.random_qdq_mlp(np.random.default_rng(6))
    net = qp.load_onnx(built.model)
    x = torch.tensor(built.random_inputs(np.random.default_rng(7), 2))
    bm = qp.bounded(net, x)
    n_out = net(x).shape[1]
    C = torch.eye(n_out)[None].repeat(2, 1, 1)
    for method in ("crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, x - 0.01, x + 0.01, method, C=C)
        assert lb.shape == (2, n_out) and torch.all(lb <= ub)
