"""The network under verification: the ONNX model, its torch module, and the search domain.

For a QNN with an input quantizer the search domain is the integer grid of input codes and the
network searched is the part after the quantizer (``grid.domain_network``); otherwise it is the
float input box and the whole network, split at the starts of input cells where every path
from the input meets a step first (``cells``).
"""
from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np
import onnx
import torch
from torch import Tensor

from ..bounded import bounded, compute_bounds, lirpa_unsupported
from ..errors import InputShapeError, ModelLoadError
from ..onnx_import import load_onnx
from . import cells as cells_mod
from . import grid as grid_mod


class Network:
    def __init__(self, path: str, device: torch.device):
        self.path = os.fspath(path)
        self.device = device
        self.module = load_onnx(self.path)
        try:
            self.onnx = onnx.load(self.path)
        except Exception as exc:  # load_onnx read it, so this is unexpected
            raise ModelLoadError(f"{self.path}: {exc}") from None
        if len(self.module.input_names) != 1:
            raise InputShapeError(f"{self.path}: the verifier supports networks with one input, "
                                  f"this one has {len(self.module.input_names)}")
        if len(self.module.output_names) != 1:
            raise InputShapeError(f"{self.path}: the verifier supports networks with one output "
                                  f"tensor, this one has {len(self.module.output_names)} "
                                  f"({', '.join(self.module.output_names)})")
        if len(self.module.input_shapes[0]) < 2:
            raise InputShapeError(f"{self.path}: input '{self.module.input_names[0]}' has shape "
                                  f"{self.module.input_shapes[0]}; the verifier needs a leading "
                                  "batch dimension (e.g. 1 x n)")
        shape = self.module.input_shape
        if any(d is None for d in shape):
            raise InputShapeError(f"{self.path}: input '{self.module.input_names[0]}' has an "
                                  f"unknown dimension {shape}; the verifier needs a fixed shape")
        self.input_shape = tuple(int(d) for d in shape)
        self.n_in = int(math.prod(self.input_shape))
        found = grid_mod.detect(self.module.net, self.input_shape)
        if found is not None and _representatives_ok(found[0], self.n_in):
            self.grid: Optional[grid_mod.InputGrid] = found[0]
            self.domain = grid_mod.domain_network(self.module.net, found[1])
        else:
            self.grid, self.domain = None, self.module
        # float inputs that pass through steps first: the search splits at cell starts
        self.cells = (cells_mod.detect(self.module.net, self.input_shape)
                      if self.grid is None else None)
        if self.cells is not None:
            self.cells.to(device)
        self.module.to(device)
        self.domain.to(device).eval()
        with torch.no_grad():
            y = self.domain(torch.zeros(1, *self.input_shape, device=device))
        if y.dim() < 1 or y.shape[0] != 1:   # e.g. a final Reshape to [m]: boxes come in batches
            raise InputShapeError(f"{self.path}: for one input the output has shape "
                                  f"{tuple(y.shape)}; the verifier needs a leading batch "
                                  "dimension on the output too (e.g. 1 x m)")
        if y.dim() > 2:   # CROWN fails on several ops whose bounds reach a 4-D output
            self.domain = _FlatOutput(self.domain)
        self.n_out = int(y[0].numel())
        self._bm = None

    @property
    def bounded_module(self):
        if self._bm is None:
            example = torch.zeros(1, *self.input_shape, device=self.device)
            bm = bounded(self.domain, example, self.device, source=self.path)
            # one interval pass marks which nodes depend on the input and records their
            # shapes (find_layers and the batch sizing read them)
            with torch.no_grad(), lirpa_unsupported(self.path):
                compute_bounds(bm, example, example, "ibp")
            self._bm = bm
        return self._bm

    def evaluate(self, points: Tensor, chunk: int = 4096) -> Tensor:
        """Domain points (N, n_in): codes for a grid network, inputs otherwise -> outputs (N, n_out)."""
        outs = []
        with torch.no_grad():
            for i in range(0, points.shape[0], chunk):
                p = points[i:i + chunk].reshape(-1, *self.input_shape)
                outs.append(self.domain(p).reshape(p.shape[0], -1))
        return torch.cat(outs) if outs else points.new_zeros(0, self.n_out)

    def forward_inputs(self, x: Tensor) -> Tensor:
        """The whole network on inputs x (N, n_in), differentiable (straight-through)."""
        return self.module(x.reshape(-1, *self.input_shape)).reshape(x.shape[0], -1)

    def domain_box(self, lower: Tensor, upper: Tensor):
        """Input box (n_in,) -> the root box of the search domain."""
        if self.grid is None:
            return lower.clone(), upper.clone()
        lo, hi = self.grid.code_box(lower.unsqueeze(0), upper.unsqueeze(0))
        return lo[0], hi[0]

    def to_inputs(self, points: Tensor, inner_lower: Tensor, inner_upper: Tensor) -> Tensor:
        """Domain points -> float32 inputs inside the inner box (codes: their representatives,
        clamped into the box)."""
        if self.grid is None:
            return torch.minimum(torch.maximum(points, inner_lower), inner_upper)
        return self.grid.inputs_for(points, inner_lower, inner_upper)

    def to_points(self, x: Tensor) -> Tensor:
        """Inputs (N, n_in) -> domain points (codes for a grid network)."""
        return x if self.grid is None else self.grid.codes(x)

    def feed(self, x_flat: np.ndarray) -> dict:
        """An onnxruntime / reference feed for one flat input."""
        inp = self.onnx.graph.input[0]
        dims = inp.type.tensor_type.shape.dim
        batch = dims[0].dim_value if len(dims) and dims[0].HasField("dim_value") else 1
        shape = (batch or 1,) + self.input_shape
        return {self.module.input_names[0]: np.asarray(x_flat, np.float32).reshape(shape)}


class _FlatOutput(torch.nn.Module):
    """The domain network with its output flattened to (N, m): the properties read it
    flattened anyway, and auto_LiRPA's backward passes through Conv, Relu and the steps fail
    (size mismatches) when the output they start from has more than two dimensions."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.inner(x), 1)


def _representatives_ok(grid: grid_mod.InputGrid, n: int) -> bool:
    """Every code's representative maps back to it (checked on all codes when there are at
    most MAX_CHECKED_CODES of them over all coordinates)."""
    span = grid.hi - grid.lo + 1
    if span * n > grid_mod.MAX_CHECKED_CODES:
        return False  # too fine a grid to check: verified as float input instead (sound)
    lo = torch.full((n,), grid.lo)
    return grid.check_representatives(lo, torch.full((n,), grid.hi))
