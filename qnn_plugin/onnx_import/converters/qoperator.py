"""QOperator form: QLinearMatMul, QLinearConv, MatMulInteger, ConvInteger.

Each becomes exact integer arithmetic carried in float32 (x - x_zero_point, a Linear or Conv2d
with the integer weights minus their zero point, the int32 bias) followed, for the QLinear ops,
by the requantization round((acc) * (x_scale * w_scale / y_scale)) + y_zero_point, saturated.
The accumulator is exact while |acc| < 2**24 (see docs/semantics.md).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnsupportedOperatorError
from ...ops import QuantStep
from .quantize import int_type, where
from .registry import const, converter, elem_type, result, since_versions, static_shape


def _frozen(t: np.ndarray) -> nn.Parameter:
    # weights as (frozen) Parameters: auto_LiRPA bounds Linear/Conv with parameter weights best
    return nn.Parameter(torch.tensor(np.asarray(t, dtype=np.float32)), requires_grad=False)


class IntegerMatMul(nn.Module):
    """(x - x_zero_point) @ W (+ bias), W already minus its zero point."""

    def __init__(self, weight: np.ndarray, x_zero_point: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(weight.shape[0], weight.shape[1], bias=False)
        self.linear.weight = _frozen(weight.T)
        self.x_zero_point = float(x_zero_point)

    def forward(self, x):
        if self.x_zero_point:
            x = x - self.x_zero_point
        return self.linear(x)


class IntegerConv2d(nn.Module):
    """conv(x - x_zero_point, W) (+ bias) with ONNX padding (the zero point pads, so 0 after
    the shift)."""

    def __init__(self, weight: np.ndarray, bias: Optional[np.ndarray], x_zero_point: float,
                 strides, pads, dilations, group):
        super().__init__()
        out_c, in_c_g, kh, kw = weight.shape
        self.conv = nn.Conv2d(in_c_g * group, out_c, (kh, kw), stride=tuple(strides),
                              dilation=tuple(dilations), groups=group, bias=bias is not None)
        self.conv.weight = _frozen(weight)
        if bias is not None:
            self.conv.bias = _frozen(bias)
        top, left, bottom, right = pads
        if top == bottom and left == right:
            self.conv.padding = (top, left)
            self.pad = None
        else:
            self.pad = (left, right, top, bottom)
        self.x_zero_point = float(x_zero_point)

    def forward(self, x):
        if self.x_zero_point:
            x = x - self.x_zero_point
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.conv(x)


class Requantize(nn.Module):
    """saturate(round_half_even(acc * multiplier) + y_zero_point)."""

    def __init__(self, multiplier: torch.Tensor, y_zero_point: torch.Tensor, lo: float, hi: float):
        super().__init__()
        self.register_buffer("multiplier", multiplier)
        self.step = QuantStep(1.0, y_zero_point, lo, hi, "half_even")

    def forward(self, acc):
        return self.step(acc * self.multiplier)


def _need_const(node, graph, index, what):
    name = node.input_values[index] if len(node.input_values) > index else ""
    value = const(graph, name)
    if name and value is None:
        raise UnsupportedOperatorError(f"{where(node)}: the {what} must be a constant initializer")
    return value


def _scalar(node, value, what) -> float:
    if value is None:
        return 0.0
    if np.asarray(value).size != 1:
        raise UnsupportedOperatorError(f"{where(node)}: a per-row {what} is not supported")
    return float(np.asarray(value).reshape(()))


def _matmul_weight(node, graph, w_index, w_zp):
    w = _need_const(node, graph, w_index, "weight (second) operand")
    if w.ndim != 2:
        raise UnsupportedOperatorError(f"{where(node)}: only a 2-D constant weight operand is supported")
    w = w.astype(np.float64)
    if w_zp is not None:
        w = w - np.asarray(w_zp, dtype=np.float64).reshape(1, -1)
    return w


def _conv_attrs(node, weight_shape, x_shape=None):
    a = node.attributes
    if len(weight_shape) != 4:
        raise UnsupportedOperatorError(f"{where(node)}: only 2-D convolutions are supported")
    kh, kw = weight_shape[2:]
    strides = list(a.get("strides", [1, 1]))
    dilations = list(a.get("dilations", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    auto_pad = a.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if x_shape is None:
            raise UnsupportedOperatorError(f"{where(node)}: auto_pad={auto_pad} needs a static input shape")
        pads = [0, 0, 0, 0]
        for i, (size, k) in enumerate(zip(x_shape[-2:], (kh, kw))):
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + (k - 1) * dilations[i] + 1 - size)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    # ONNX pads: [top, left, bottom, right]
    return strides, pads, dilations, int(a.get("group", 1))


def _requantize(node, graph, x_scale, w_scale, y_scale, y_zp_index, per_channel_shape):
    y_zp = _need_const(node, graph, y_zp_index, "output zero point")
    qt = int_type(elem_type(graph, node.input_values[y_zp_index]))
    lo, hi = qt.lo, qt.hi
    # float32, in the order (x_scale * w_scale) / y_scale
    mult = (np.float32(x_scale) * np.asarray(w_scale, dtype=np.float32)) / np.float32(y_scale)
    mult = torch.tensor(np.asarray(mult, dtype=np.float32))
    if mult.numel() > 1:
        mult = mult.reshape(per_channel_shape)
    else:
        mult = mult.reshape(())
    return Requantize(mult, torch.tensor(float(np.asarray(y_zp).reshape(()))), lo, hi)


@converter("QLinearMatMul", since_versions("QLinearMatMul", first=10))
def qlinear_matmul(node, graph):
    x = node.input_values[0]
    a_scale = _need_const(node, graph, 1, "a_scale")
    a_zp = _scalar(node, _need_const(node, graph, 2, "a_zero_point"), "a_zero_point")
    b_scale = _need_const(node, graph, 4, "b_scale")
    b_zp = _need_const(node, graph, 5, "b_zero_point")
    y_scale = _need_const(node, graph, 6, "y_scale")
    if np.asarray(a_scale).size != 1 or np.asarray(y_scale).size != 1:
        raise UnsupportedOperatorError(f"{where(node)}: a_scale and y_scale must be scalars")
    w = _matmul_weight(node, graph, 3, b_zp)
    mm = IntegerMatMul(w, a_zp)
    req = _requantize(node, graph, a_scale, b_scale, y_scale, 7, (-1,))
    return result(nn.Sequential(mm, req), node, [x])


@converter("MatMulInteger", since_versions("MatMulInteger", first=10))
def matmul_integer(node, graph):
    x = node.input_values[0]
    a_zp = _scalar(node, _need_const(node, graph, 2, "a_zero_point"), "a_zero_point")
    b_zp = _need_const(node, graph, 3, "b_zero_point")
    w = _matmul_weight(node, graph, 1, b_zp)
    return result(IntegerMatMul(w, a_zp), node, [x])


def _conv_weight(node, graph, w_index, w_zp):
    w = _need_const(node, graph, w_index, "weight").astype(np.float64)
    if w_zp is not None:
        w = w - np.asarray(w_zp, dtype=np.float64).reshape(-1, *([1] * (w.ndim - 1)))
    return w


@converter("QLinearConv", since_versions("QLinearConv", first=10))
def qlinear_conv(node, graph):
    x = node.input_values[0]
    x_scale = _need_const(node, graph, 1, "x_scale")
    x_zp = _scalar(node, _need_const(node, graph, 2, "x_zero_point"), "x_zero_point")
    w_scale = _need_const(node, graph, 4, "w_scale")
    w_zp = _need_const(node, graph, 5, "w_zero_point")
    y_scale = _need_const(node, graph, 6, "y_scale")
    bias = _need_const(node, graph, 8, "bias") if len(node.input_values) > 8 else None
    w = _conv_weight(node, graph, 3, w_zp)
    strides, pads, dil, group = _conv_attrs(node, w.shape, static_shape(graph, x))
    conv = IntegerConv2d(w, None if bias is None else bias.astype(np.float64), x_zp, strides, pads, dil, group)
    req = _requantize(node, graph, x_scale, w_scale, y_scale, 7, (-1, 1, 1))
    return result(nn.Sequential(conv, req), node, [x])


@converter("ConvInteger", since_versions("ConvInteger", first=10))
def conv_integer(node, graph):
    x = node.input_values[0]
    x_zp = _scalar(node, _need_const(node, graph, 2, "x_zero_point"), "x_zero_point")
    w_zp = _need_const(node, graph, 3, "w_zero_point")
    w = _conv_weight(node, graph, 1, w_zp)
    strides, pads, dil, group = _conv_attrs(node, w.shape, static_shape(graph, x))
    return result(IntegerConv2d(w, None, x_zp, strides, pads, dil, group), node, [x])
