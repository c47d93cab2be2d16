"""The input cells of a network whose float input goes through steps before anything else.

Some networks have no input quantizer the grid (grid.py) can use, yet every path from the input
passes through a step: ``Sign(x)``, a ``Relu`` before the quantizer, the same input quantized
twice, a ``Mul`` by a zero coefficient before the rounding idiom. Each such path is an
elementwise chain of monotone operations (affine maps by constants, Relu, Clip, Dequantize)
ending in a step (QuantStep, Sign, Binarize, TruncToInt). The network then depends on input
element j only through the *features* phi_j(x_j): the values of those steps at element j. Each
phi_j is monotone in each component (float32 rounding is monotone, so a chain of monotone float
operations is too) and piecewise constant, so the float line of x_j falls into *cells* on which
phi_j is constant, and:

* a box whose every coordinate lies in one cell (phi_j equal at both ends, by monotonicity) has
  a single output, decided by evaluating any one of its points;
* a box is split at the start of a cell (found by bisection over the float32 order), never
  inside one, so each child is a union of cells and splitting ends after finitely many steps.

Without cells, float bisection meets a step edge again in every child that touches it (Sign at
0 takes 149 halvings from a box of width 1 to reach the float next to 0, per coordinate), and a box whose end lies on
an edge never shrinks to one output. The bounds are unchanged: the search still bounds the
float boxes; cells only choose the split points and recognise boxes of one output.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor, fx, nn

from ..onnx_import.converters.quantize import Dequantize
from ..ops import Binarize, Clip, QuantStep, Sign, TruncToInt
from .grid import binary_op, constant_value

_STEPS = (QuantStep, Sign, Binarize, TruncToInt)
_MONOTONE = (nn.ReLU, Clip, Dequantize, nn.Identity)


@dataclass
class InputCells:
    """phi(x) for inputs x (N, n) -> (N, F, n): the F frontier steps' values per element."""

    frontier: fx.GraphModule   # input -> tuple of the step outputs (each of the input's shape)
    shape: Tuple[int, ...]     # one sample's input shape

    def features(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            outs = self.frontier(x.reshape(x.shape[0], *self.shape).float())
        return torch.stack([o.reshape(x.shape[0], -1) for o in outs], dim=1)

    def constant(self, lo: Tensor, hi: Tensor) -> Tensor:
        """(N, n) bool: coordinates on which the boxes [lo, hi] (N, n) lie in one cell."""
        return (self.features(lo) == self.features(hi)).all(dim=1)

    def split_point(self, lo: Tensor, hi: Tensor, dim: Tensor) -> Tensor:
        """(N,) the start of a cell strictly above lo[:, dim] and at most hi[:, dim], near the
        midpoint: the start of the midpoint's cell, or of the next one when the midpoint's cell
        begins at or below lo. The coordinate must not be constant on the box."""
        rows = torch.arange(lo.shape[0], device=lo.device)
        l, h = lo[rows, dim], hi[rows, dim]
        mid = l + (h - l) / 2
        mid = torch.where(torch.isfinite(mid), mid, l / 2 + h / 2)
        mid = torch.where(mid > l, torch.minimum(mid, h), torch.nextafter(l, h))

        def phi(v: Tensor) -> Tensor:   # (N, F): the features of coordinate dim at values v
            x = lo.clone()
            x[rows, dim] = v
            return self.features(x)[rows, :, dim]

        f_mid = phi(mid)
        # the midpoint's cell is an interval of floats; bisect for its lower end (when it lies
        # above l) or its upper end's successor (else; it lies below h, which is in another cell)
        eq_low = (phi(l) == f_mid).all(dim=1)
        k_lo = torch.where(eq_low, _key(mid), _key(l))
        k_hi = torch.where(eq_low, _key(h), _key(mid))
        while True:
            todo = k_hi - k_lo > 1
            if not bool(todo.any()):
                break
            c = torch.where(todo, k_lo + (k_hi - k_lo) // 2, k_lo)
            eq_c = (phi(_from_key(c)) == f_mid).all(dim=1)
            move_lo = todo & (eq_c == eq_low)
            k_lo = torch.where(move_lo, c, k_lo)
            k_hi = torch.where(todo & ~move_lo, c, k_hi)
        return _from_key(k_hi)

    def split(self, lo: Tensor, hi: Tensor, dim: Tensor) -> Tuple[Tensor, Tensor]:
        """Two children per box along ``dim``, at a cell start (see split_point): the left
        child ends on the float before it."""
        b = self.split_point(lo, hi, dim)
        rows = torch.arange(lo.shape[0], device=lo.device)
        lo1, hi1, lo2, hi2 = lo.clone(), hi.clone(), lo.clone(), hi.clone()
        hi1[rows, dim] = _from_key(_key(b) - 1)
        lo2[rows, dim] = b
        c_lo, c_hi = torch.cat([lo1, lo2]), torch.cat([hi1, hi2])
        if not bool((c_lo <= c_hi).all()):
            raise RuntimeError("internal error: a cell split produced an inverted box")
        return c_lo, c_hi

    def to(self, device) -> "InputCells":
        self.frontier.to(device)
        return self


def _key(x: Tensor) -> Tensor:
    """float32 -> int64 keys in the same order, -0 and +0 the same key, consecutive floats
    consecutive keys."""
    i = x.float().contiguous().view(torch.int32).to(torch.int64)
    mag = i & 0x7FFFFFFF
    return torch.where(i < 0, -mag, mag)


def _from_key(k: Tensor) -> Tensor:
    f = k.abs().to(torch.int32).view(torch.float32)
    return torch.where(k < 0, -f, f)


def detect(gm: fx.GraphModule, input_shape: Tuple[int, ...]) -> Optional[InputCells]:
    """The input cells of an onnx2torch GraphModule with one input, or None when some path
    from the input meets anything but an elementwise monotone operation before a step."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return None
    frontier: List[fx.Node] = []
    todo, seen = [placeholders[0]], set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if not node.users:   # the input (or a chain of it) reaches the output without a step
            return None
        for user in node.users:
            kind = _kind(gm, user, node)
            if kind is None:
                return None
            (frontier if kind == "step" else todo).append(user)
    frontier = list(dict.fromkeys(frontier))
    sub = fx.GraphModule(gm, copy.deepcopy(gm.graph))
    names = {n.name: n for n in sub.graph.nodes}
    for node in list(sub.graph.nodes):
        if node.op == "output":
            sub.graph.erase_node(node)
    sub.graph.output(tuple(names[f.name] for f in frontier))
    sub.graph.eliminate_dead_code()
    sub.graph.lint()
    sub.recompile()
    cells = InputCells(sub, tuple(input_shape))
    n = int(math.prod(input_shape))
    for batch in (1, 3):   # elementwise all the way: each step output has the input's shape
        try:
            outs = cells.frontier(torch.zeros(batch, *input_shape))
        except Exception:
            return None
        if not all(isinstance(o, Tensor) and tuple(o.shape) == (batch, *input_shape) for o in outs):
            return None
    return cells if n > 0 else None


def _kind(gm: fx.GraphModule, user: fx.Node, node: fx.Node) -> Optional[str]:
    """'step', 'monotone' (pass through) or None (anything else) for ``user`` of ``node``."""
    if user.op == "call_module":
        mod = gm.get_submodule(user.target)
        single = list(user.args) == [node] and not user.kwargs
        if isinstance(mod, _STEPS):
            return "step" if single else None
        if isinstance(mod, _MONOTONE) or (isinstance(mod, nn.LeakyReLU)
                                          and mod.negative_slope >= 0):
            return "monotone" if single else None
    op = binary_op(gm, user)
    if op is None or len(user.args) != 2 or user.kwargs:
        return None
    x_first = user.args[0] is node
    other = user.args[1] if x_first else user.args[0]
    c = constant_value(gm, other)
    if c is None or not bool(torch.isfinite(c).all()):
        return None
    # c / x is not monotone across 0, x / 0 is not finite
    if op == "div" and (not x_first or bool((c == 0).any())):
        return None
    return "monotone"
