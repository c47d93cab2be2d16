"""QuantizeLinear and DequantizeLinear (QDQ form): per-tensor, per-axis and blocked."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from onnx import TensorProto
from torch import nn

from ... import semantics
from ...errors import UnsupportedOperatorError
from ...ops import QuantStep
from .registry import const, converter, elem_type, rank, result, since_versions

def int_type(onnx_type: int):
    """semantics.QType of an ONNX integer element type, or None for other types."""
    try:
        return semantics.qtype(onnx_type)
    except (ValueError, KeyError, TypeError):
        return None


def where(node) -> str:
    return f"{node.operation_type} node '{node.name or node.unique_name}'"


def axis_shape(scale: np.ndarray, axis: int, x_rank: Optional[int], node, block_size: int = 0,
               x_name: str = "") -> tuple:
    """Shape that broadcasts a per-axis scale against one sample of x (batch dim excluded)."""
    if scale.ndim == 0 or scale.size == 1 and block_size == 0:
        return ()
    if x_rank is None:
        raise UnsupportedOperatorError(
            f"{where(node)}: per-axis quantization needs the rank of input '{x_name}', which shape "
            "inference could not determine")
    axis = axis + x_rank if axis < 0 else axis
    if axis == 0:
        raise UnsupportedOperatorError(
            f"{where(node)}: per-axis quantization along axis 0 (the batch axis) is not supported")
    if block_size:
        raise UnsupportedOperatorError(
            f"{where(node)}: blocked quantization (block_size={block_size}) of a non-constant tensor "
            "is not supported")
    return (scale.size,) + (1,) * (x_rank - axis - 1)


def _scale_zp(node, graph, x_rank):
    inputs = node.input_values
    scale = const(graph, inputs[1])
    if scale is None:
        raise UnsupportedOperatorError(f"{where(node)}: the scale must be a constant")
    zp_name = inputs[2] if len(inputs) > 2 else ""
    zp = const(graph, zp_name)
    if zp_name and zp is None:
        raise UnsupportedOperatorError(f"{where(node)}: the zero point must be a constant")
    attrs = node.attributes
    axis = int(attrs.get("axis", 1))
    block = int(attrs.get("block_size", 0))
    shape = axis_shape(scale, axis, x_rank, node, block, inputs[0])
    scale_t = torch.tensor(scale.astype(np.float32)).reshape(shape)
    zp_t = torch.zeros(shape) if zp is None else torch.tensor(zp.astype(np.float32)).reshape(shape)
    if bool((scale_t <= 0).any()) or not bool(torch.isfinite(scale_t).all()):
        raise UnsupportedOperatorError(f"{where(node)}: scales must be positive and finite")
    return scale_t, zp_t, zp_name


@converter("QuantizeLinear", since_versions("QuantizeLinear", first=10))
def quantize_linear(node, graph):
    x = node.input_values[0]
    scale, zp, zp_name = _scale_zp(node, graph, rank(graph, x))
    attrs = node.attributes
    out_type = elem_type(graph, zp_name) if zp_name else int(attrs.get("output_dtype", 0)) or TensorProto.UINT8
    qt = int_type(out_type)
    if qt is None or not qt.quantizable:
        raise UnsupportedOperatorError(
            f"{where(node)}: quantization to {TensorProto.DataType.Name(out_type)} is not supported "
            "(supported: uint8, int8, uint16, int16, uint4, int4, uint2, int2)")
    if int(attrs.get("saturate", 1)) != 1:
        raise UnsupportedOperatorError(f"{where(node)}: saturate=0 only applies to float8 types")
    if int(attrs.get("precision", 0)) not in (0, TensorProto.FLOAT):
        raise UnsupportedOperatorError(f"{where(node)}: precision attribute other than float32")
    lo, hi = qt.lo, qt.hi
    return result(QuantStep(scale, zp, lo, hi, "half_even"), node, [x])


class Dequantize(nn.Module):
    """(x - zero_point) * scale, in that float32 order."""

    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)
        self.has_zp = bool((zero_point != 0).any())

    def forward(self, x):
        return ((x - self.zero_point) if self.has_zp else x) * self.scale


@converter("DequantizeLinear", since_versions("DequantizeLinear", first=10))
def dequantize_linear(node, graph):
    x = node.input_values[0]
    if const(graph, x) is not None:
        raise UnsupportedOperatorError(
            f"{where(node)}: internal error: constant DequantizeLinear should have been folded")
    scale, zp, _ = _scale_zp(node, graph, rank(graph, x))
    return result(Dequantize(scale, zp), node, [x])
