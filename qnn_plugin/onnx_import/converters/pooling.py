"""MaxPool and AveragePool at every version, with onnxruntime's window geometry.

onnx2torch converts MaxPool only up to version 12 and AveragePool up to 11, has no SAME
auto_pad, and lets torch's ceil mode pick windows other than onnxruntime's when the pads are
asymmetric. Here the geometry is ``semantics.pool_geometry`` (checked against onnxruntime on
every combination of kernel, stride, pads, dilation, ceil mode and auto_pad), and the module
reads exactly those windows:

* MaxPool: pad with -inf to the windows' extent (symmetric pads within half the kernel are
  left to torch's own padding argument instead), then torch's max pooling in floor mode. Exact.
* AveragePool: pad with zeros (or the convolution's own padding when symmetric), sum each
  window with a depthwise convolution of ones, divide by the per-output count (cells inside
  the input, or inside the padded input with count_include_pad), as onnxruntime divides. Pad,
  Conv and Div are affine, so the bound operators and the exact program take them as they are.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnsupportedOperatorError
from ...semantics import pool_counts, pool_geometry
from .quantize import where
from .registry import converter, result, since_versions, static_shape

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _padding(in_size, out, kernel, strides, dilations, begin, max_symmetric):
    """(explicit F.pad argument or None, padding for the pooling/conv call): floor-mode pooling
    of the padded input must give exactly ``out`` windows starting at o * stride - begin. The
    end pad reaches the last window's end; trailing cells no window reads (fewer than a
    stride) stay, floor mode skips them. Symmetric pads within ``max_symmetric(kernel)`` go to
    the pooling call itself, which saves a Pad node."""
    ends = [max(0, (o - 1) * s + (k - 1) * d + 1 - n - b)
            for n, o, k, s, d, b in zip(in_size, out, kernel, strides, dilations, begin)]
    if list(begin) == ends and all(b <= max_symmetric(k) for b, k in zip(begin, kernel)):
        return None, list(begin)
    arg: List[int] = []
    for b, e in reversed(list(zip(begin, ends))):   # F.pad: last dim first
        arg += [int(b), int(e)]
    return arg, [0] * len(kernel)


class MaxPool(nn.Module):
    def __init__(self, kernel, strides, dilations, pad, padding, one_d=False):
        super().__init__()
        self.kernel, self.strides, self.dilations = list(kernel), list(strides), list(dilations)
        self.pad, self.padding, self.one_d = pad, padding, one_d

    def forward(self, x):
        if self.one_d:
            x = x.unsqueeze(-2)
        if self.pad is not None:
            x = F.pad(x, self.pad, value=-float("inf"))
        y = _MAX_POOL[len(self.kernel)](x, self.kernel, self.strides, self.padding, self.dilations)
        return y.flatten(-2) if self.one_d else y   # (squeeze exports as an If)


class AveragePool(nn.Module):
    def __init__(self, channels, kernel, strides, dilations, pad, padding, counts: np.ndarray, out,
                 one_d=False):
        super().__init__()
        self.strides, self.dilations = list(strides), list(dilations)
        self.pad, self.padding, self.channels, self.one_d = pad, padding, channels, one_d
        self.register_buffer("ones", torch.ones(channels, 1, *kernel))
        self.register_buffer("counts", torch.tensor(counts, dtype=torch.float32).reshape(1, 1, *out))

    def forward(self, x):
        if self.one_d:
            x = x.unsqueeze(-2)
        if self.pad is not None:
            x = F.pad(x, self.pad)
        conv = _CONV[len(self.dilations)]
        y = conv(x, self.ones, None, self.strides, self.padding, self.dilations, self.channels) / self.counts
        return y.flatten(-2) if self.one_d else y   # (squeeze exports as an If)


def _geometry(node, graph):
    a = node.attributes
    shape = static_shape(graph, node.input_values[0])
    kernel = [int(k) for k in a["kernel_shape"]]
    if shape is None or len(shape) != len(kernel) + 2 or any(d is None for d in shape[1:]):
        raise UnsupportedOperatorError(
            f"{where(node)}: the input's channel and spatial sizes must be known (shape {shape})")
    if len(kernel) not in _MAX_POOL:
        raise UnsupportedOperatorError(f"{where(node)}: {len(kernel)}-D pooling is not supported (1-3)")
    rank_ = len(kernel)
    strides = [int(v) for v in a.get("strides", [1] * rank_)]
    dilations = [int(v) for v in a.get("dilations", [1] * rank_)]
    in_size = [int(d) for d in shape[2:]]
    out, begin, end = pool_geometry(in_size, kernel, strides, a.get("pads"), dilations,
                                    int(a.get("ceil_mode", 0)), a.get("auto_pad", "NOTSET"), ends=True)
    if min(out) < 1:
        raise UnsupportedOperatorError(f"{where(node)}: the pooling output is empty ({out})")
    if rank_ == 1:   # pooled as 2-D over a height of 1: auto_LiRPA bounds Pad and Conv in 2-D only
        return (int(shape[1]), [1] + in_size, [1] + kernel, [1] + strides, [1] + dilations,
                [1] + list(out), [0] + list(begin), [0] + list(end), True)
    return int(shape[1]), in_size, kernel, strides, dilations, out, begin, end, False


@converter("MaxPool", since_versions("MaxPool", first=1))
def max_pool(node, graph):
    if len(node.output_values) > 1 and node.output_values[1]:
        raise UnsupportedOperatorError(f"{where(node)}: MaxPool's Indices output is not supported")
    _, in_size, kernel, strides, dilations, out, begin, _, one_d = _geometry(node, graph)
    # torch pads a max pooling by at most half the kernel
    pad, padding = _padding(in_size, out, kernel, strides, dilations, begin, lambda k: k // 2)
    return result(MaxPool(kernel, strides, dilations, pad, padding, one_d), node,
                  [node.input_values[0]])


@converter("AveragePool", since_versions("AveragePool", first=1))
def average_pool(node, graph):
    channels, in_size, kernel, strides, dilations, out, begin, end, one_d = _geometry(node, graph)
    counts = pool_counts(in_size, out, kernel, strides, begin, end, dilations,
                         bool(int(node.attributes.get("count_include_pad", 0))))
    pad, padding = _padding(in_size, out, kernel, strides, dilations, begin, lambda k: k)
    return result(AveragePool(channels, kernel, strides, dilations, pad, padding, counts, out, one_d),
                  node, [node.input_values[0]])
