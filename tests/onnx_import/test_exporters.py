"""QNNs made by other tools load exactly and bound soundly: onnxruntime's quantizer
(quantize_static, QDQ format) and torch's ONNX export of fake-quantized modules."""
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from torch import nn

import qnn_plugin as qp
from qnn_plugin import semantics
from tests.grid import assert_bounds_contain, grid_values, random_grid_box, reachable_inputs


def float_model(conv: bool, rng):
    f32 = lambda *s: rng.normal(0, 0.5, s).astype(np.float32)  # noqa: E731
    if conv:
        inits = [numpy_helper.from_array(f32(4, 1, 3, 3), "w1"), numpy_helper.from_array(f32(4), "b1"),
                 numpy_helper.from_array(f32(36, 5), "w2"), numpy_helper.from_array(f32(5), "b2")]
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], strides=[2, 2]),
                 helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
                 helper.make_node("Gemm", ["f", "w2", "b2"], ["y"])]
        shape = (1, 7, 7)
    else:
        inits = [numpy_helper.from_array(f32(6, 8), "w1"), numpy_helper.from_array(f32(8), "b1"),
                 numpy_helper.from_array(f32(8, 4), "w2")]
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["a"]),
                 helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
        shape = (6,)
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), shape


class _Calibration(CalibrationDataReader):
    def __init__(self, shape, rng):
        self.data = iter([{"x": rng.uniform(0, 1, (1, *shape)).astype(np.float32)} for _ in range(16)])

    def get_next(self):
        return next(self.data, None)


def ort_run(model_bytes, x):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def input_quantizer(model):
    """(scale, zero point, qmin, qmax) of the QuantizeLinear that reads the graph input."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    first = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == model.graph.input[0].name)
    zp = inits[first.input[2]]
    qt = semantics.qtype(zp.dtype)
    return float(inits[first.input[1]]), int(zp), qt.lo, qt.hi


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("types", [(QuantType.QUInt8, QuantType.QInt8), (QuantType.QInt8, QuantType.QInt8),
                                   (QuantType.QUInt8, QuantType.QUInt8)], ids=["u8s8", "s8s8", "u8u8"])
@pytest.mark.parametrize("conv", [False, True], ids=["mlp", "conv"])
def test_onnxruntime_quantize_static_qdq(tmp_path, conv, types, per_channel):
    rng = np.random.default_rng(int(conv) * 10 + per_channel)
    model, shape = float_model(conv, rng)
    src, dst = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, src)
    quantize_static(str(src), str(dst), _Calibration(shape, rng), quant_format=QuantFormat.QDQ,
                    activation_type=types[0], weight_type=types[1], per_channel=per_channel)
    net = qp.load_onnx(dst)
    x = rng.uniform(0, 1, (64, *shape)).astype(np.float32)
    np.testing.assert_array_equal(net(torch.tensor(x)).detach().numpy(), ort_run(dst.read_bytes(), x))
    qmodel = onnx.load(dst)
    scale, zp, qmin, qmax = input_quantizer(qmodel)
    lower, upper = random_grid_box(rng, scale, zp, qmin, qmax, shape)
    assert_bounds_contain(qp, net, lower, upper, reachable_inputs(grid_values(scale, zp, qmin, qmax), lower, upper, shape))


class FakeQuant(nn.Module):
    def __init__(self, scale, zero_point, lo, hi):
        super().__init__()
        self.args = (scale, zero_point, lo, hi)

    def forward(self, x):
        return torch.fake_quantize_per_tensor_affine(x, *self.args)


def test_torch_fake_quant_export():
    torch.manual_seed(0)
    net = nn.Sequential(FakeQuant(1 / 64, 0, 0, 255), nn.Linear(6, 8), nn.ReLU(), FakeQuant(0.05, 0, 0, 255),
                        nn.Linear(8, 4)).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, torch.rand(1, 6), buf, opset_version=13, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "N"}})
    imported = qp.load_onnx(onnx.load_from_string(buf.getvalue()))
    x = torch.rand(100, 6)
    with torch.no_grad():
        np.testing.assert_array_equal(imported(x).numpy(), net(x).numpy())
    np.testing.assert_allclose(imported(x).detach().numpy(), ort_run(buf.getvalue(), x.numpy()), rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    lower, upper = random_grid_box(rng, 1 / 64, 0, 0, 255, (6,))
    assert_bounds_contain(qp, imported, lower, upper, reachable_inputs(grid_values(1 / 64, 0, 0, 255), lower, upper, (6,)))


@pytest.mark.parametrize("seed", range(4))
def test_qcdq_loads_exactly(seed):
    """Brevitas's QCDQ export form (QuantizeLinear, Clip of the integers to fewer bits,
    DequantizeLinear; tests/verifier/instances.py builds it by hand) runs like onnxruntime on
    every input code and bounds soundly."""
    from tests.verifier.instances import qcdq_mlp

    rng = np.random.default_rng(seed)
    built = qcdq_mlp(rng)
    net = qp.load_onnx(built.model)
    grid = built.grid_values()
    x = rng.choice(grid, size=(512, *built.input_shape)).astype(np.float32)
    np.testing.assert_array_equal(net(torch.tensor(x)).detach().numpy(),
                                  ort_run(built.model.SerializeToString(), x))
    lower, upper = random_grid_box(rng, built.input_scale, built.input_zero_point,
                                   built.input_qmin, built.input_qmax, built.input_shape)
    assert_bounds_contain(qp, net, lower, upper, reachable_inputs(grid, lower, upper, built.input_shape))
