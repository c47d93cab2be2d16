"""Round, Floor, Ceil, Clip, Sign, Cast, and the plugin's fused QuantStep / Binarize nodes."""
from __future__ import annotations

import math

import numpy as np
import torch
from onnx import TensorProto
from torch import nn

from ...errors import UnsupportedOperatorError
from ...ops import Binarize, Clip, QuantStep, Sign, TruncToInt
from .quantize import int_type, where
from .registry import PLUGIN_DOMAIN, const, converter, elem_type, result, since_versions

_ROUNDING = {"Round": "half_even", "Floor": "floor", "Ceil": "ceil"}


def _rounding(op_type):
    @converter(op_type, since_versions(op_type, first=6))
    def convert(node, graph):
        return result(QuantStep(1.0, 0.0, -math.inf, math.inf, _ROUNDING[op_type]), node,
                      [node.input_values[0]])

    return convert


for _op in _ROUNDING:
    _rounding(_op)


def clip_limits(node, graph):
    """Constant (lo, hi) of a Clip node at any opset (attributes before 11, inputs after)."""
    if "min" in node.attributes or "max" in node.attributes or len(node.input_values) == 1:
        return (float(node.attributes.get("min", -math.inf)),
                float(node.attributes.get("max", math.inf)))
    lims = []
    for i, default in ((1, -math.inf), (2, math.inf)):
        name = node.input_values[i] if len(node.input_values) > i else ""
        if not name:
            lims.append(default)
            continue
        v = const(graph, name)
        if v is None or np.asarray(v).size != 1:
            raise UnsupportedOperatorError(f"{where(node)}: min/max must be scalar constants")
        lims.append(float(np.asarray(v).reshape(())))
    return tuple(lims)


@converter("Clip", since_versions("Clip", first=6))
def clip(node, graph):
    lo, hi = clip_limits(node, graph)
    return result(Clip(lo, hi), node, [node.input_values[0]])


@converter("Sign", since_versions("Sign", first=9))
def sign(node, graph):
    return result(Sign(), node, [node.input_values[0]])


_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


class Identity(nn.Module):
    def forward(self, x):
        return x


class ToFloat(nn.Module):
    """Cast to float: values are carried in float32 already, except the int64 tensors that
    some onnx2torch converters return (ArgMax, shape arithmetic)."""

    def forward(self, x):
        return x if x.is_floating_point() else x.to(torch.float32)


@converter("Cast", since_versions("Cast", first=6))
def cast(node, graph):
    x = node.input_values[0]
    to = int(node.attributes["to"])
    src = elem_type(graph, x)
    if to in (TensorProto.FLOAT, TensorProto.DOUBLE):
        return result(ToFloat(), node, [x])
    target, source = int_type(to), int_type(src)
    if target is None:
        raise UnsupportedOperatorError(
            f"{where(node)}: Cast to {TensorProto.DataType.Name(to)} is not supported "
            "(supported: float, double and integer types)")
    lo, hi = target.lo, target.hi
    if source is not None:
        if lo <= source.lo and source.hi <= hi:
            return result(Identity(), node, [x])  # widening: value unchanged
        raise UnsupportedOperatorError(
            f"{where(node)}: narrowing integer Cast {TensorProto.DataType.Name(src)} -> "
            f"{TensorProto.DataType.Name(to)} wraps around and is not supported")
    if src not in _FLOAT_TYPES:
        raise UnsupportedOperatorError(f"{where(node)}: Cast from element type {src} is not supported")
    return result(TruncToInt(lo, hi), node, [x])


@converter("QuantStep", [1], domain=PLUGIN_DOMAIN)
def fused_quant_step(node, graph):
    a = node.attributes
    return result(QuantStep(float(a.get("scale", 1.0)), float(a.get("zero_point", 0.0)),
                            float(a.get("lo", -math.inf)), float(a.get("hi", math.inf)),
                            a.get("rounding", "half_even")), node, [node.input_values[0]])


@converter("Binarize", [1], domain=PLUGIN_DOMAIN)
def binarize(node, graph):
    return result(Binarize(), node, [node.input_values[0]])
