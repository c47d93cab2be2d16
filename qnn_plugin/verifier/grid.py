"""The input grid of a QNN: the finite set of codes its input quantizer can produce.

A QNN whose input goes through an elementwise affine map (Mul/Div/Add/Sub by constants) into a
QuantStep (QuantizeLinear, or the fixed-point Mul -> Round/Floor -> Clip idiom) depends on its
input x only through the integer codes k = QuantStep(a * x + b). Branch and bound then works on
integer boxes of codes, which is finite and therefore complete, and never has to place a split
on a rounding tie: the sub-box [k_lo, k_hi] of codes is bounded on the network *after* the input
quantizer (``domain_net``), with the codes themselves as input.

To turn codes back into inputs, every code k has a representative input ``rep(k)``: the input
that maps to the centre of k's rounding interval, half a quantum away from either tie, so float
error cannot move it to another code. The verifier checks every representative against the
model's own float32 quantizer (``check_representatives``) before trusting the grid; the bounds
never use representatives (they bound the network after the quantizer on the codes), so a
representative that failed would only cost a counterexample, never soundness.
"""
from __future__ import annotations

import copy
import functools
import math
import operator
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor, fx

from ..ops import ROUNDINGS, QuantStep

# the grid is used when its root box has at most this many codes over all coordinates (each one
# is checked once at set-up, about 0.1 s for 5.5 million: an int16 input of 84 values); finer
# grids are verified as float inputs, which is still sound but can time out on a tiny box
MAX_CHECKED_CODES = 64_000_000
_CHUNK_CODES = 2_000_000   # codes checked at once (memory)

_AFFINE_OPS = {torch.add: "add", torch.sub: "sub", torch.mul: "mul", torch.div: "div",
               operator.add: "add", operator.sub: "sub", operator.mul: "mul",
               operator.truediv: "div"}


@dataclass
class InputGrid:
    """codes = clamp(R((a * x + b) / scale) + zero_point, lo, hi), per input element (flat)."""

    a: Tensor           # (n,) float64 slope of the affine pre-map (non-zero)
    b: Tensor           # (n,) float64 offset
    quant: QuantStep    # the model's input quantizer module (scale/zero point broadcast below)
    scale: Tensor       # (n,) float64
    zero_point: Tensor  # (n,) float64
    pre: List[Tuple[str, Tensor, bool]]  # the float32 pre-map as the model computes it
    shape: Tuple[int, ...]

    @property
    def lo(self) -> float:
        return self.quant.lo

    @property
    def hi(self) -> float:
        return self.quant.hi

    def codes(self, x: Tensor) -> Tensor:
        """The model's own float32 input quantizer on inputs x of shape (N, n): the codes."""
        v = x.reshape(x.shape[0], *self.shape).float()
        for op, c, x_first in self.pre:
            v = _apply(op, v, c, x_first)
        return self.quant(v).reshape(x.shape[0], -1)

    def representative(self, k: Tensor) -> Tensor:
        """float32 inputs (N, n) at the centre of the rounding interval of codes k (N, n)."""
        centre = k.double() - self.zero_point + (ROUNDINGS[self.quant.rounding] - 0.5)
        return ((centre * self.scale - self.b) / self.a).float()

    @property
    def increasing(self) -> Tensor:
        """(n,) bool: codes grow with the input (a > 0)."""
        return self.a > 0

    def code_box(self, lower: Tensor, upper: Tensor) -> Tuple[Tensor, Tensor]:
        """Integer codes (as float32) reachable from the input boxes [lower, upper] (N, n)."""
        cl, cu = self.codes(lower), self.codes(upper)
        return torch.minimum(cl, cu), torch.maximum(cl, cu)

    def inputs_for(self, k: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """An input inside [lower, upper] with codes k: the representative, clamped into the box
        (where the representative lies outside, the box edge itself has code k)."""
        return torch.minimum(torch.maximum(self.representative(k), lower), upper)

    def check_representatives(self, k_lo: Tensor, k_hi: Tensor) -> bool:
        """Whether rep(k) has code k for every code in [k_lo, k_hi] (flat (n,) ranges)."""
        n = k_lo.numel()
        span = int((k_hi - k_lo).max().item()) + 1
        step = max(1, _CHUNK_CODES // max(n, 1))
        for start in range(0, span, step):
            stop = min(span, start + step)
            offs = torch.arange(start, stop, dtype=torch.float64).unsqueeze(1)
            k = torch.minimum(k_lo.double().unsqueeze(0) + offs, k_hi.double().unsqueeze(0))
            if not bool((self.codes(self.representative(k)).double() == k).all()):
                return False
        return True


def _apply(op: str, v: Tensor, c: Tensor, x_first: bool) -> Tensor:
    if op == "add":
        return v + c
    if op == "mul":
        return v * c
    if op == "sub":
        return v - c if x_first else c - v
    return v / c if x_first else c / v


def constant_value(gm: fx.GraphModule, node) -> Optional[Tensor]:
    if isinstance(node, (int, float)):
        return torch.tensor(float(node))
    if isinstance(node, fx.Node) and node.op == "get_attr":
        obj = gm
        for part in node.target.split("."):
            obj = getattr(obj, part)
        return obj.detach() if isinstance(obj, Tensor) else None
    return None


@functools.lru_cache(maxsize=1)
def _onnx2torch_ops() -> dict:
    """onnx2torch's functions for ONNX Add/Sub/Mul/Div -> our names. Its Div is a function of
    its own (true division for float operands, as the input is here), not torch.div."""
    try:
        from onnx2torch.node_converters.binary_math_operations import \
            _TORCH_FUNCTION_FROM_ONNX_TYPE as table
    except ImportError:   # another onnx2torch layout: those nodes are not recognised (sound)
        return {}
    return {fn: op.lower() for op, fn in table.items() if op in ("Add", "Sub", "Mul", "Div")}


def binary_op(gm: fx.GraphModule, node: fx.Node) -> Optional[str]:
    """'add'/'sub'/'mul'/'div' for an elementwise binary arithmetic node, else None."""
    if node.op == "call_function":
        return _AFFINE_OPS.get(node.target)
    if node.op == "call_module":
        fn = getattr(gm.get_submodule(node.target), "math_op_function", None)
        if type(gm.get_submodule(node.target)).__name__ == "OnnxBinaryMathOperation":
            return _AFFINE_OPS.get(fn) or _onnx2torch_ops().get(fn)
    return None


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _per_element(t: Tensor, shape: Tuple[int, ...]) -> Tensor:
    """A constant broadcast against one sample (no batch dimension), flattened, float64."""
    t = t.double()
    while t.dim() > len(shape) and t.shape[0] == 1:
        t = t[0]
    return torch.broadcast_to(t, shape).reshape(-1).clone()


def detect(gm: fx.GraphModule, input_shape: Tuple[int, ...]) -> Optional[Tuple[InputGrid, fx.Node]]:
    """The input grid of an onnx2torch GraphModule with one input, and its quantizer's node,
    or None when the input does not feed (only) an affine map into a QuantStep."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return None
    node, pre = placeholders[0], []
    a = torch.ones(int(math.prod(input_shape)), dtype=torch.float64)
    b = torch.zeros_like(a)
    while True:
        nxt = _only_user(node)
        if nxt is None:
            return None
        if nxt.op == "call_module" and isinstance(gm.get_submodule(nxt.target), QuantStep):
            if nxt.args[0] is not node:
                return None
            quant = gm.get_submodule(nxt.target)
            break
        op = binary_op(gm, nxt)
        if op is None or len(nxt.args) != 2 or nxt.kwargs:
            return None
        x_first = nxt.args[0] is node
        c = constant_value(gm, nxt.args[1] if x_first else nxt.args[0])
        if c is None or (not x_first and op == "div"):
            return None
        try:
            cf = _per_element(c, input_shape)
        except RuntimeError:  # the constant broadcasts the input to a larger shape
            return None
        if op == "add":
            b = b + cf
        elif op == "sub":
            a, b = (a, b - cf) if x_first else (-a, cf - b)
        elif op == "mul":
            a, b = a * cf, b * cf
        else:
            a, b = a / cf, b / cf
        pre.append((op, c.float(), x_first))
        node = nxt
    if not bool(torch.all(torch.isfinite(a) & (a != 0) & torch.isfinite(b))):
        return None
    # codes must be integers with a finite range below 2**24 (exact in float32, split at
    # integers): clamp limits and zero point integral, e.g. not Round -> Clip(-0.5, 3)
    if not all(math.isfinite(v) and v == math.floor(v) and abs(v) < 2 ** 24 for v in (quant.lo, quant.hi)):
        return None
    if not bool(torch.all(torch.frac(quant.zero_point) == 0)):
        return None
    try:
        scale = _per_element(quant.scale, input_shape)
        zp = _per_element(quant.zero_point, input_shape)
    except RuntimeError:
        return None
    return InputGrid(a, b, quant, scale, zp, pre, tuple(input_shape)), nxt


def domain_network(gm: fx.GraphModule, quant_node: fx.Node) -> fx.GraphModule:
    """A copy of ``gm`` whose input is the input quantizer's output (the codes)."""
    graph = copy.deepcopy(gm.graph)
    q = next(n for n in graph.nodes if n.name == quant_node.name)
    with graph.inserting_before(next(iter(graph.nodes))):
        codes = graph.placeholder("codes")
    q.replace_all_uses_with(codes)
    # erase the quantizer and the affine chain before it, last first
    dead = [q]
    while dead:
        n = dead.pop()
        if n.users:
            continue
        preds = [a for a in n.all_input_nodes]
        graph.erase_node(n)
        dead.extend(preds)
    graph.lint()
    return fx.GraphModule(gm, graph)
