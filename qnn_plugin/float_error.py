"""Bounds on the float32 rounding error of a network's forward pass, at each step's input.

auto_LiRPA bounds a network's real-arithmetic function: an affine layer's output is
``sum_i w_i x_i + b`` exactly. onnxruntime and the torch module compute it in float32,
rounding every product and partial sum, each in its own order. Before a step (QuantizeLinear,
Floor, Sign, ...) that difference can carry the value past an edge and move the output by a
whole level, so a step's input bounds must be widened by it. A margin relative to the step
input's own value is not enough: large terms that cancel near an edge leave a small value with
a large error (found by constructing such nets: bounds that excluded onnxruntime's level).

The bound used, per element, for a sum of ``n`` products computed in float32 in *any* order,
with or without fused multiply-adds, is ``gamma_n * sum |terms|`` with ``gamma_n = n u / (1 -
n u)``, ``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
section 3.1). Along a chain of affine nodes the error of a node's input is carried through
``|K|`` (its matrix's absolute values) and its own rounding is added; ReLU, Clip and MaxPool
carry an error unchanged (they are monotone and 1-Lipschitz per element), LeakyRelu scales it by
at most max(1, alpha) and adds its product's rounding; a step's output is an
exact level, so the error starts again at 0 after it. The terms' magnitudes come from an
interval pass over the whole box, in float64.

Underflow: a product that lands among float32's subnormals is off by up to ``2**-150`` however
small the terms, so each rounding adds ``2**-149`` (an audit built weights of ``2**-149``).

It is exact where float32 is: a node whose inputs are integer multiples of a power of two ``g``
(a grid's codes, a step's levels, a power-of-two scale) and whose constants are multiples of
powers of two computes every product and partial sum exactly while they stay below ``2**24``
times their common grain (and the grain is at least ``2**-149``), so its error is 0 and the
bounds of fixed-point networks do not move.

Assumptions (stated in docs/semantics.md): every affine node is evaluated as a sum of products
(onnxruntime's CPU kernels are; a Winograd or FFT convolution is not), and fusions of an affine
chain into one node (Conv with BatchNormalization, MatMul with Add) are covered by the error
counts below. auto_LiRPA's own bound arithmetic is float32 without directed rounding; the bound
operators' relative margin still stands for it (``bounds._MonotoneBound._pad``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor

from .affine_graph import NotAffine, constant, evaluate_constants
from .ops import quant_step

U = 2.0 ** -24                # float32's unit roundoff
_EXACT_LIMIT = 2.0 ** 24      # integers up to this are float32 numbers
_SLACK64 = 2.0 ** -40         # relative error of this module's own float64 arithmetic, generously
_TINY = 2.0 ** -149           # float32's smallest subnormal: a product that underflows is off by
                              # up to half of it, however small the terms (an audit's 2**-149 weights)

_WEIGHTED = ("BoundMatMul", "BoundLinear", "BoundConv")   # input 0 perturbed, input 1 a weight
_ELEMENTWISE = ("BoundAdd", "BoundSub", "BoundMul", "BoundDiv")
# exact: each output is one input element (or its negation); Concat may take several inputs
_REARRANGE = ("BoundReshape", "BoundFlatten", "BoundSqueeze", "BoundUnsqueeze", "BoundNeg",
              "BoundIdentity", "BoundTranspose", "BoundSlice", "BoundGather", "BoundConcat")
_LIPSCHITZ = ("BoundRelu", "BoundQClip", "BoundWindowMax", "BoundMaxPool", "BoundLeakyRelu")
_STEPS = ("BoundQuantStep", "BoundSign")
# roundings per output element beyond the products: a bias add, Gemm's alpha and beta, and for
# BatchNormalization its own (x - mean) / sqrt(var + eps) * gamma + beta
_EXTRA_TERMS = {"BoundMatMul": 3, "BoundLinear": 3, "BoundConv": 3, "BoundBatchNormalization": 6}


def gamma(n: Tensor) -> Tensor:
    return n * U / (1.0 - n * U)


@dataclass
class _Val:
    """A node's values over the box: the real function in [lo, hi] (float64, batch kept), the
    float32 evaluation within ``err`` of it, and every float32 value an integer multiple of
    ``grain`` (a power of two; None where unknown)."""
    lo: Tensor
    hi: Tensor
    err: Tensor
    grain: Optional[float]

    @property
    def mag(self) -> Tensor:
        return torch.maximum(self.lo.abs(), self.hi.abs()) + self.err


@dataclass
class FloatErrors:
    """Per step node's name, the bound on |float32 input - real input| (shape (1, *input
    shape), float64), None where a node on the way is not one this module can bound; and the
    same for the network's output."""
    steps: Dict[str, Optional[Tensor]] = field(default_factory=dict)
    output: Optional[Tensor] = None
    unbounded: List[str] = field(default_factory=list)   # "Kind (node)" met on the way

    @property
    def exact(self) -> bool:
        """Every step reads exactly what real arithmetic gives (error 0 everywhere)."""
        return all(e is not None and not bool(e.any()) for e in self.steps.values())


def grain(a) -> Optional[float]:
    """The largest power of two dividing every element of ``a`` (inf if all are 0; None if one
    is not finite)."""
    a = torch.as_tensor(a).double().flatten()
    if not bool(torch.isfinite(a).all()):
        return None
    a = a[a != 0]
    if a.numel() == 0:
        return math.inf
    m, e = torch.frexp(a)                       # a = m * 2**e, 1/2 <= |m| < 1
    mi = (m.abs() * 2.0 ** 53).to(torch.int64)  # an integer: float64 has 53 bits
    low = torch.log2((mi & -mi).double())       # its lowest set bit
    return 2.0 ** float((e - 53 + low).min())


def analyse(bm, lo: Tensor, hi: Tensor, input_grain: Optional[float]) -> FloatErrors:
    """Float32 error bounds at every perturbed step's input of ``bm`` over the box [lo, hi]
    (one box, with its batch dimension). ``input_grain``: the input's values are integer
    multiples of it (1 for a grid of integer codes), None for float inputs."""
    out = FloatErrors()
    if not any(type(n).__name__ in _STEPS and getattr(n, "perturbed", False)
               for n in bm._modules.values()):
        return out   # nothing to widen; outputs keep the verifier's relative margin
    evaluate_constants(bm)
    vals: Dict[str, Optional[_Val]] = {}
    with torch.no_grad():
        for node in _topological(bm):
            kind = type(node).__name__
            ins = [vals.get(i.name) if getattr(i, "perturbed", False) else None for i in node.inputs]
            pert_missing = any(getattr(i, "perturbed", False) and vals.get(i.name) is None
                               for i in node.inputs)
            if kind == "BoundInput":
                l, h = lo.double(), hi.double()
                vals[node.name] = _Val(l, h, torch.zeros_like(l), input_grain)
                continue
            if pert_missing:
                vals[node.name] = None
                if kind in _STEPS:
                    out.steps[node.name] = None
                continue
            try:
                if kind in _STEPS:
                    out.steps[node.name] = ins[0].err.max(dim=0, keepdim=True).values
                    vals[node.name] = _step(node, ins[0])
                elif kind in _LIPSCHITZ or kind == "BoundOnnxPad":
                    vals[node.name] = _lipschitz(node, kind, ins)
                else:
                    vals[node.name] = _affine(node, kind, ins)
            except (_Unbounded, NotAffine):
                out.unbounded.append(f"{kind} ({node.name})")
                vals[node.name] = None
            except Exception as exc:   # an operator's forward refusing float64 or a shape:
                # the steps after it keep the bound operators' margin alone (reported)
                out.unbounded.append(f"{kind} ({node.name}): {type(exc).__name__}: {exc}")
                vals[node.name] = None
    final = vals.get(bm.final_name)
    out.output = None if final is None else final.err.max(dim=0, keepdim=True).values
    return out


def install(bm, errors: FloatErrors) -> None:
    """Give every step node of ``bm`` its error bound (``float_err``, float32 rounded up),
    which its input bounds are widened by (``bounds._MonotoneBound._pad``)."""
    for node in bm._modules.values():
        if type(node).__name__ in _STEPS:
            e = errors.steps.get(node.name)
            node.float_err = None if e is None else (e * (1 + 2.0 ** -20)).float()


class _Unbounded(Exception):
    """A node whose float32 error this module does not bound."""


def _topological(bm):
    order, seen = [], set()
    for root in bm._modules.values():
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node.name in seen:
                continue
            seen.add(node.name)
            stack.append((node, True))
            stack.extend((i, False) for i in node.inputs if i.name not in seen)
    return [n for n in order if getattr(n, "perturbed", False)]


def _f32_outward(x: Tensor, up: bool) -> Tensor:
    """The float32 at or beyond ``x`` (float64) in the given direction."""
    y = x.float()
    inf = torch.tensor(float("inf") if up else -float("inf"))
    wrong = (y.double() < x) if up else (y.double() > x)
    return torch.where(wrong, torch.nextafter(y, inf.expand_as(y)), y)


def _step(node, v: _Val) -> _Val:
    """A step's output levels over its input's values widened by the error (and by the bound
    operators' margin); exact levels, so no error after it."""
    pad = node._margin(v.lo.float(), v.hi.float()).double()
    if type(node).__name__ == "BoundSign":
        f = torch.sign
    else:   # not node.forward: that applies the search's level splits, if any are installed
        f = lambda x: quant_step(x, node.scale, node.zero_point, node.lo, node.hi, node.rounding)
    lo = f(_f32_outward(v.lo - v.err - pad, up=False)).double()
    hi = f(_f32_outward(v.hi + v.err + pad, up=True)).double()
    g = 1.0
    if type(node).__name__ == "BoundQuantStep":
        whole = lambda t: bool(torch.all(torch.frac(torch.as_tensor(t, dtype=torch.float64)) == 0))
        limits = [t for t in (node.lo, node.hi) if math.isfinite(t)]
        g = 1.0 if whole(node.zero_point) and all(whole(t) for t in limits) else None
    return _Val(lo, hi, torch.zeros_like(lo), g)


def _lipschitz(node, kind: str, ins) -> _Val:
    v = ins[0]
    consts = [None] + [constant(i, node) for i in node.inputs[1:]]
    f = lambda x, *rest: node.forward(x, *rest).double()
    rest = [c.double() if torch.is_tensor(c) and c.is_floating_point() else c for c in consts[1:]]
    lo, hi = f(v.lo, *rest), f(v.hi, *rest)
    if kind == "BoundOnnxPad":
        pads = rest[:1]   # padded cells hold the constant (no error) or copy an input (its error)
        err = f(v.err, *pads, 0.0)
        value = rest[1] if len(rest) > 1 else 0.0
        value = (float(value) if value.numel() else 0.0) if torch.is_tensor(value) else float(value)
        g = v.grain if not math.isfinite(value) or v.grain is None else _min(v.grain, grain(value))
        return _Val(lo, hi, err, g)
    if kind == "BoundQClip":
        err = v.err   # clamping moves two values at most as far apart as they were
        limits = [t for t in node._limits() if math.isfinite(t)]
        g = v.grain
        for t in limits:
            g = None if g is None else _min(g, grain(t))
        return _Val(lo, hi, err, g)
    if kind == "BoundLeakyRelu":
        # x or fl(alpha * x): monotone for alpha >= 0, an input error scaled by at most
        # max(1, alpha), plus the product's rounding
        alpha = float(node.alpha)
        if not alpha >= 0:
            raise _Unbounded
        mag = torch.maximum(v.lo.abs(), v.hi.abs()) + v.err
        ga = grain(alpha)
        exact = alpha == 0 or (v.grain is not None and ga is not None and v.grain * ga >= _TINY
                               and bool((alpha * mag < _EXACT_LIMIT * v.grain * ga).all()))
        err = max(1.0, alpha) * v.err + (0.0 if exact else 2 * U * alpha * mag + _TINY)
        if not exact:
            g = None
        else:
            g = v.grain if alpha == 0 else _min(v.grain, v.grain * grain(alpha))
        return _Val(lo, hi, err, g)
    err = f(v.err, *rest) if kind in ("BoundWindowMax", "BoundMaxPool") else v.err
    return _Val(lo, hi, err, v.grain)


def _min(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else min(a, b)


def _affine(node, kind: str, ins) -> _Val:
    pert = [i for i, v in enumerate(ins) if v is not None]
    if kind not in _WEIGHTED + _ELEMENTWISE + _REARRANGE + ("BoundBatchNormalization",):
        raise _Unbounded
    if (kind in _WEIGHTED or kind in _REARRANGE) and pert != [0] and kind != "BoundConcat":
        raise _Unbounded
    if kind in ("BoundMul", "BoundDiv") and (len(pert) != 1 or (kind == "BoundDiv" and pert != [0])):
        raise _Unbounded
    consts = []
    for i, v in enumerate(ins):
        c = None if v is not None else constant(node.inputs[i], node)
        consts.append(c.double() if torch.is_tensor(c) and c.is_floating_point() else c)

    def f(xs: Dict[int, Tensor], swap: Optional[Dict[int, object]] = None) -> Tensor:
        args = [xs[i] if i in xs else (swap or {}).get(i, consts[i]) for i in range(len(ins))]
        return node.forward(*args).double()

    zeros = {p: torch.zeros_like(ins[p].lo) for p in pert}
    offset = f(zeros)

    def abs_k(p: int, x: Tensor) -> Tensor:
        """|K_p| x for x >= 0."""
        xs = dict(zeros)
        xs[p] = x
        if kind in _WEIGHTED:
            swap = {1: consts[1].abs()}
            if len(ins) > 2:
                swap[2] = torch.zeros_like(consts[2])
            return (f(xs, swap) - f(zeros, swap)).abs()
        return (f(xs) - offset).abs()   # at most one non-zero per row of K: |K| x = |K x|

    mid = f({p: (ins[p].lo + ins[p].hi) / 2 for p in pert})
    rad = sum(abs_k(p, (ins[p].hi - ins[p].lo) / 2) for p in pert)
    terms = sum(abs_k(p, ins[p].mag) for p in pert) + _offset_magnitude(node, kind, f, zeros, offset)
    carried = sum(abs_k(p, ins[p].err) for p in pert)
    g = _grain_out(node, kind, ins, pert, consts, terms)
    if g is not None:
        err = carried          # every product and partial sum is a float32 number
    else:
        n = _terms(node, kind, f, zeros, consts)
        err = carried + gamma(n) * terms + n * _TINY + _SLACK64 * terms
    slack = _SLACK64 * terms   # this pass's own float64 rounding, outward
    return _Val(mid - rad - slack, mid + rad + slack, err, g)


def _offset_magnitude(node, kind, f, zeros, offset) -> Tensor:
    """An upper bound on the constants' magnitudes per output (sum of each constant's |.|,
    so a fused evaluation that adds them separately is covered)."""
    if kind == "BoundBatchNormalization":   # beta - mean * gamma / sqrt(var + eps), both parts
        w, b = node.inputs[1], node.inputs[2]
        cw, cb = constant(w, node).double(), constant(b, node).double()
        shift = f(zeros, {2: torch.zeros_like(cb)}).abs()
        beta = f(zeros, {1: torch.zeros_like(cw)}).abs()
        return shift + beta
    return offset.abs()


def _terms(node, kind, f, zeros, consts) -> Tensor:
    """Roundings per output element: the non-zero products summed, plus the node's others."""
    if kind in _WEIGHTED:
        swap = {1: (consts[1] != 0).double()}
        if len(consts) > 2:
            swap[2] = torch.zeros_like(consts[2])
        ones = {0: torch.ones_like(zeros[0])}
        n = (f(ones, swap) - f(zeros, swap)).abs() / abs(float(getattr(node, "alpha", 1.0)) or 1.0)
        return n.round() + _EXTRA_TERMS[kind]
    if kind in _REARRANGE:
        return torch.zeros(())
    return torch.tensor(float(_EXTRA_TERMS.get(kind, 2)))


def _grain_out(node, kind, ins, pert, consts, terms) -> Optional[float]:
    """The output's grain where the node is exact in float32 (every product and partial sum a
    multiple of it and below 2**24 times it), else None."""
    gs = [ins[p].grain for p in pert]
    if any(g is None for g in gs):
        return None
    if kind in _REARRANGE:
        return min(gs)
    if kind == "BoundBatchNormalization":
        return None
    if kind in _WEIGHTED:
        if float(getattr(node, "alpha", 1.0)) != 1.0 or float(getattr(node, "beta", 1.0)) != 1.0:
            return None
        g = _min(gs[0] * grain(consts[1]) if grain(consts[1]) is not None else None,
                 grain(consts[2]) if len(consts) > 2 and consts[2] is not None else math.inf)
    elif kind in ("BoundAdd", "BoundSub"):
        g = min(gs) if len(pert) == 2 else _min(gs[0], grain(consts[1 - pert[0]]))
    elif kind == "BoundMul":
        gc = grain(consts[1 - pert[0]])
        g = None if gc is None else gs[0] * gc
    else:   # Div by a constant: exact only by powers of two
        c = consts[1].abs() if torch.is_tensor(consts[1]) else torch.tensor(abs(float(consts[1])))
        m, _ = torch.frexp(c.double())
        if not bool(((m == 0.5) & torch.isfinite(c)).all()):
            return None
        g = gs[0] / float(c.max())
    if g is None or g == 0 or not math.isfinite(g):
        return None if g != math.inf else gs[0]
    if g < _TINY:   # multiples of g below float32's subnormal spacing are not all float32s
        return None
    return g if bool((terms < _EXACT_LIMIT * g).all()) else None
