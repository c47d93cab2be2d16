"""MaxPool and AveragePool against onnxruntime: the imported torch module (converters/pooling.py)
and the reference semantics (semantics.max_pool / average_pool), on every kind of geometry
(kernel, stride, begin/end pads, dilation, ceil mode, auto_pad, count_include_pad), 1-D and 2-D,
at old and new opsets."""
import itertools

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from qnn_plugin.errors import UnsupportedOperatorError
from qnn_plugin.onnx_import import load_onnx
from qnn_plugin.semantics import run_reference

OPSETS = {"MaxPool": (11, 12, 22), "AveragePool": (11, 19, 21)}


def _model(op, attrs, in_shape, opset, out_shape=None, indices=False):
    node = helper.make_node(op, ["x"], ["y", "i"] if indices else ["y"], **attrs)
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)]
    if indices:
        outs.append(helper.make_tensor_value_info("i", TensorProto.INT64, None))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def _cases():
    rng = np.random.default_rng(0)
    grid = list(itertools.product(["MaxPool", "AveragePool"], [1, 2], [1, 2, 3], [1, 2, 3], [1, 2], [0, 1],
                                  ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"], [(0, 0), (1, 0), (0, 1), (1, 2)], [0, 1]))
    picked = rng.choice(len(grid), 160, replace=False)
    for i in picked:
        op, rank, k, s, d, ceil, auto, pads, cip = grid[i]
        if auto != "NOTSET" and pads != (0, 0):
            pads = (0, 0)
        opset = OPSETS[op][int(rng.integers(3))]
        if op == "AveragePool" and opset < 19:
            d = 1
        attrs = dict(kernel_shape=[k] * rank, strides=[s] * rank, ceil_mode=ceil)
        if d > 1:
            attrs["dilations"] = [d] * rank
        if op == "AveragePool":
            attrs["count_include_pad"] = cip
        if auto == "NOTSET":
            attrs["pads"] = [pads[0]] * rank + [pads[1]] * rank
        else:
            attrs["auto_pad"] = auto
        yield pytest.param(op, rank, attrs, opset, id=f"{op}-{rank}d-{i}")


def _ort(model, x):
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})


@pytest.mark.parametrize("op,rank,attrs,opset", list(_cases()))
def test_import_and_reference_agree_with_onnxruntime(op, rank, attrs, opset):
    """Bit for bit on values of a 1/8 grid (window sums exact in any order; the division by the
    window count rounds once, as onnxruntime's)."""
    shape = [1, 2] + [5] * rank
    x = (np.random.default_rng(1).integers(-40, 40, shape) / 8).astype(np.float32)
    model = _model(op, attrs, shape, opset)
    try:
        want = _ort(model, x)[0]
    except Exception:
        pytest.skip("onnxruntime rejects this geometry (pads must be smaller than the kernel)")
    ref = run_reference(model, {"x": x})[0]
    assert ref.shape == want.shape and np.array_equal(ref, want)
    if want.size == 0:
        return
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, list(want.shape)))
    got = load_onnx(model).eval()(torch.tensor(x)).detach().numpy()
    assert got.shape == want.shape and np.array_equal(got, want)


def test_max_pool_reference_follows_onnxruntime_on_nan_ties_and_indices():
    """The Indices output, ties (the first cell wins), NaN (wins only as a window's first
    cell), integer types and storage_order: the reference against onnxruntime."""
    x = np.array([[[1, np.nan, 0, np.nan, np.nan, np.nan, 2, 2, 3]]], np.float32)
    for order in (0, 1):
        model = _model("MaxPool", dict(kernel_shape=[3], storage_order=order), [1, 1, 9], 12,
                       indices=True)
        for a, b in zip(_ort(model, x), run_reference(model, {"x": x})):
            assert np.array_equal(a, b, equal_nan=True)
    xi = np.random.default_rng(2).integers(-128, 128, (2, 3, 4, 5)).astype(np.int8)
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], pads=[1, 0, 0, 1],
                            storage_order=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [2, 3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, None),
                               helper.make_tensor_value_info("i", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    model.ir_version = 9
    for a, b in zip(_ort(model, xi), run_reference(model, {"x": xi})):
        assert np.array_equal(a, b)


def test_indices_output_is_refused_by_name():
    model = _model("MaxPool", dict(kernel_shape=[2, 2]), [1, 1, 4, 4], 12, out_shape=[1, 1, 3, 3],
                   indices=True)
    model.graph.output[1].CopyFrom(helper.make_tensor_value_info("i", TensorProto.INT64, [1, 1, 3, 3]))
    with pytest.raises(UnsupportedOperatorError, match="Indices"):
        load_onnx(model)
