"""onnxruntime contrib operators (domain com.microsoft, version 1) that onnxruntime's own
quantizer (``quantize_static(..., quant_format=QuantFormat.QOperator)``) emits: QGemm (Gemm
layers) and QLinearAdd (bias adds of MatMul layers, residual adds). docs/semantics.md has the
details and measurements.

**QGemm** is exact integer arithmetic, like QLinearMatMul: ``(A - a_zp) @ (B - b_zp) + C``
carried in float32 (exact while below 2**24), then ``fl(acc * S)`` with the float32 output scale
``S_j = fl(fl(alpha * a_scale) * b_scale[j])`` (``/ y_scale`` when given): requantized by a
:class:`QuantStep` when y_zero_point is given, else returned as float.

**QLinearAdd**: onnxruntime's x86-64 kernel computes ``rne(fma(x, r_x, fma(y, r_y, K)))`` with
two *fused* multiply-adds (:func:`qnn_plugin.semantics.qlinear_add`), which no torch op that
auto_LiRPA bounds is. The module computes plain float32 operations and a scale-1 QuantStep:

* constant operand, variable one first: ``(x*ra + ca) + (x*rb + cb)`` with ``r_x = ra + rb``
  and ``fma(const, r_y, K) = ca + cb`` split so that every operation but the last is exact --
  the last then rounds once, like the fused multiply-add (:func:`_exact_parts`);
* constant operand first: the inner ``fma(x, r_y, K)`` the same way, then ``(t + p1) + p2``
  with ``p1 + p2`` close to ``const * r_x`` (:func:`_calibrate_second_add`);
* two variable operands: the inner multiply-add exact, the outer ``(x*oa + t) + x*ob`` for a
  few splits ``oa + ob`` of ``r_x`` (:func:`_pair_variant`).

The inputs of a QLinearAdd are 8-bit integers, so at import the module's function is compared
with onnxruntime's (the reference) on *every* possible input; free parameters are chosen from
the interval of float32 values that reproduce all outputs (a float32 sum is monotone in each
addend). If no form reproduces every output (only seen with tie-dense scale ratios such as 1/3),
the closest is kept and a RuntimeWarning gives the number of inputs that differ by one quantum.
Which operand onnxruntime's kernel takes first depends on the runtime shapes
(:func:`qnn_plugin.semantics.qlinear_add_swaps`): both variants are prepared and the module
picks one from the shapes it sees.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ... import semantics
from ...errors import UnsupportedOperatorError
from ...ops import QuantStep
from .qoperator import IntegerMatMul, Requantize, _frozen
from .quantize import int_type, where
from .registry import const, converter, elem_type, result

MS_DOMAIN = "com.microsoft"
F32 = np.float32
# how far (in ulps) r' may move from onnxruntime's scale ratio, tried in this order
_R_STEPS = (0, 1, -1, 2, -2, 3, -3, 4, -4, 6, -6, 8, -8)
_R_STEPS_PAIR = (0, 1, -1, 2, -2, 3, -3)
_HALF_RANGE = 1 << 24  # c' is searched within +-2**24 ulps (in float32 order) of its start


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _input(node, i: int) -> str:
    return node.input_values[i] if len(node.input_values) > i else ""


def _const_input(node, graph, i: int, what: str, required: bool = True):
    name = _input(node, i)
    if not name:
        if required:
            raise UnsupportedOperatorError(f"{where(node)}: the {what} input is missing")
        return None
    value = const(graph, name)
    if value is None:
        raise UnsupportedOperatorError(f"{where(node)}: the {what} must be a constant initializer")
    return np.asarray(value)


def _scalar(node, value, what: str):
    if value is None:
        return None
    if np.asarray(value).size != 1:
        raise UnsupportedOperatorError(f"{where(node)}: the {what} must be a scalar (per tensor)")
    return np.asarray(value).reshape(())


def _positive_scale(node, value, what: str):
    v = np.asarray(value, dtype=F32)
    if not bool(np.all(np.isfinite(v))) or not bool(np.all(v > 0)):
        raise UnsupportedOperatorError(f"{where(node)}: the {what} must be positive and finite")
    return v


def _key(f: np.ndarray) -> np.ndarray:
    """float32 -> int64 with the same order (+0 and -0 both 0)."""
    b = np.asarray(f, dtype=F32).view(np.int32).astype(np.int64)
    return np.where(b >= 0, b, -(b & 0x7FFFFFFF))


def _unkey(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.int64)
    bits = np.where(k >= 0, k, (-k) | 0x80000000)
    return bits.astype(np.uint32).view(F32)


def _step_ulps(f: np.ndarray, n: int) -> np.ndarray:
    return _unkey(_key(f) + n)


def _first_true(pred: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray):
    """Per element, the smallest key in [lo, hi] where the monotone (False...True) ``pred``
    holds: ``lo`` where it already holds at lo, ``hi + 1`` where it never does."""
    at_lo, at_hi = pred(lo), pred(hi)
    a, b = lo.copy(), hi.copy()
    while True:
        open_ = (b - a > 1) & ~at_lo & at_hi
        if not open_.any():
            break
        m = (a + b) // 2
        pm = pred(m)
        b = np.where(open_ & pm, m, b)
        a = np.where(open_ & ~pm, m, a)
    return np.where(at_lo, lo, np.where(at_hi, b, hi + 1))


def _feasible_keys(value: Callable[[np.ndarray], np.ndarray], target: np.ndarray,
                   start: np.ndarray, reduce_axes) -> Tuple[np.ndarray, np.ndarray]:
    """For a parameter p entering ``value(key(p))`` monotonically (nondecreasing), the keys of
    p in [start - 2**24, start + 2**24] giving ``value == target`` at every input: per element
    an interval; intersected over ``reduce_axes``. Returns (lo, hi) keys (empty if lo > hi)."""
    shape = np.broadcast_shapes(np.shape(start), target.shape)
    s = np.broadcast_to(start, shape)
    lo, hi = s - _HALF_RANGE, s + _HALF_RANGE
    kmin = _first_true(lambda k: value(k) >= target, lo, hi)
    kmax = _first_true(lambda k: value(k) > target, lo, hi) - 1
    return kmin.max(axis=reduce_axes), kmax.min(axis=reduce_axes)


def _shape(t: torch.Tensor) -> Tuple[int, ...]:
    """A tensor's shape as ints (while auto_LiRPA traces, without the TracerWarning: the operand
    order is then fixed for the traced shapes, as the bounds are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return tuple(int(d) for d in t.shape)


def _fits_int32(v: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(v)) and np.all(np.abs(v.astype(np.float64)) < 2.0 ** 31 - 256))


# ----------------------------------------------------------------------------------------------
# QGemm
# ----------------------------------------------------------------------------------------------
class IntegerGemm(IntegerMatMul):
    """(x - x_zero_point) @ W + bias, all integers carried in float32."""

    def __init__(self, weight: np.ndarray, x_zero_point: float, bias: Optional[np.ndarray]):
        super().__init__(weight, x_zero_point)
        if bias is not None:
            self.linear.bias = _frozen(np.broadcast_to(bias, (weight.shape[1],)))


class OutputScale(nn.Module):
    """fl(acc * scale): QGemm's float output (no y_zero_point)."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, acc):
        return acc * self.scale


@converter("QGemm", [1], domain=MS_DOMAIN)
def qgemm(node, graph):
    a = node.attributes
    x = node.input_values[0]
    if const(graph, x) is not None:
        raise UnsupportedOperatorError(f"{where(node)}: a constant first operand (A) is not supported")
    if int(a.get("transA", 0)):
        raise UnsupportedOperatorError(
            f"{where(node)}: transA=1 (A is the batched input, its first axis must stay the batch)")
    alpha = F32(a.get("alpha", 1.0))
    a_scale = _positive_scale(node, _scalar(node, _const_input(node, graph, 1, "a_scale"), "a_scale"), "a_scale")
    a_zp = _scalar(node, _const_input(node, graph, 2, "a_zero_point"), "a_zero_point")
    w = _const_input(node, graph, 3, "weight (B)")
    if w.ndim != 2:
        raise UnsupportedOperatorError(f"{where(node)}: B must be a 2-D constant")
    if int(a.get("transB", 0)):
        w = w.T
    n = w.shape[1]
    b_scale = _positive_scale(node, _const_input(node, graph, 4, "b_scale"), "b_scale")
    b_zp = _const_input(node, graph, 5, "b_zero_point")
    for what, v in (("b_scale", b_scale), ("b_zero_point", b_zp)):
        if v.size not in (1, n) or v.ndim > 1:
            raise UnsupportedOperatorError(f"{where(node)}: {what} must be a scalar or have N={n} elements")
    bias = _const_input(node, graph, 6, "bias (C)", required=False)
    if bias is not None:
        if not (bias.size == 1 or bias.shape in ((n,), (1, n))):
            raise UnsupportedOperatorError(
                f"{where(node)}: a bias C of shape {bias.shape} depends on the batch row; only "
                f"(), (1,), (N,) and (1, N) are supported")
        bias = bias.reshape(-1).astype(np.float64)
    y_scale = _const_input(node, graph, 7, "y_scale", required=False)
    y_zp = _const_input(node, graph, 8, "y_zero_point", required=False)

    weight = w.astype(np.float64) - b_zp.astype(np.float64).reshape(1, -1)
    mm = IntegerGemm(weight, float(a_zp.astype(np.float64)), bias)
    # float32, in onnxruntime's order: (alpha * a_scale) * b_scale[j], then / y_scale
    scale = (alpha * a_scale.astype(F32)).astype(F32) * b_scale.astype(F32).reshape(-1)
    if y_scale is not None:
        scale = scale / _positive_scale(node, _scalar(node, y_scale, "y_scale"), "y_scale")
    scale = torch.tensor(np.asarray(scale, dtype=F32))
    scale = scale.reshape(()) if scale.numel() == 1 else scale.reshape(-1)
    if y_zp is None:
        return result(nn.Sequential(mm, OutputScale(scale)), node, [x])
    qt = int_type(elem_type(graph, _input(node, 8)))
    if qt is None or qt.name not in ("int8", "uint8"):
        raise UnsupportedOperatorError(f"{where(node)}: y_zero_point must be int8 or uint8")
    y_zp = _scalar(node, y_zp, "y_zero_point")
    req = Requantize(scale, torch.tensor(float(y_zp)), qt.lo, qt.hi)
    return result(nn.Sequential(mm, req), node, [x])


# ----------------------------------------------------------------------------------------------
# QLinearAdd
# ----------------------------------------------------------------------------------------------
def _quantstep_value(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """What QuantStep(scale 1, zero point 0) computes: clamp(rne(v), lo, hi)."""
    return np.clip(np.rint(v), lo, hi)


def _split_ratio(r: np.ndarray, bits: int) -> Tuple[np.ndarray, np.ndarray]:
    """r = hi + lo exactly, hi keeping the leading ``bits`` significant bits of r (so that
    x * hi is exact for 8-bit x when bits <= 16) and lo the rest (at most 24 - bits bits)."""
    r = np.asarray(r, dtype=F32)
    mask = np.uint32((0xFFFFFFFF << (24 - bits)) & 0xFFFFFFFF)
    hi = (r.view(np.uint32) & mask).view(F32)
    return hi, (r - hi).astype(F32)


def _split_const(c: np.ndarray, r: np.ndarray, bits: int) -> Tuple[np.ndarray, np.ndarray]:
    """c = hi + lo exactly, hi the multiple of the grid of x * r_hi nearest to c."""
    r64 = np.abs(np.asarray(r, dtype=np.float64))
    grid = np.exp2(np.floor(np.log2(r64)) - (bits - 1))
    c64 = np.asarray(c, dtype=np.float64)
    hi = (np.round(c64 / grid) * grid).astype(F32)
    lo = (c64 - hi.astype(np.float64)).astype(F32)
    bad = (hi.astype(np.float64) + lo.astype(np.float64)) != c64
    return np.where(bad, F32(0), hi), np.where(bad, np.asarray(c, dtype=F32), lo)


def _parts_value(x, ra, ca, rb, cb) -> np.ndarray:
    """numpy mirror of the module's float32 ops: fl(fl(fl(x*ra) + ca) + fl(fl(x*rb) + cb))."""
    return ((x * ra).astype(F32) + ca).astype(F32) + ((x * rb).astype(F32) + cb).astype(F32)


_SPLIT_BITS = (15, 16, 14, 12, 10, 8)


def _exact_parts(xs: np.ndarray, r: np.ndarray, c: np.ndarray):
    """Per column j, float32 (ra, ca, rb, cb) with fl((x*ra + ca) + (x*rb + cb)) == fma(x, r_j,
    c_j) for every x in ``xs``: split r = ra + rb so both products are exact, c = ca + cb on
    their grids so both partial sums are exact; the last addition then rounds once, like the
    fused multiply-add. Returns the four arrays and the mask of the columns where it holds."""
    x = xs.astype(F32).reshape(-1, 1)
    c = np.asarray(c, dtype=F32).reshape(-1)
    r = np.broadcast_to(np.asarray(r, dtype=F32), c.shape).copy()
    want = semantics.fma32(x, r.reshape(1, -1), c.reshape(1, -1))
    out = [np.zeros_like(c) for _ in range(4)]
    ok = np.zeros(c.shape, dtype=bool)
    for bits in _SPLIT_BITS:
        if ok.all():
            break
        ra, rb = _split_ratio(r, bits)
        ca, cb = _split_const(c, r, bits)
        got = _parts_value(x, ra, ca, rb, cb)
        good = ~ok & np.all(got.view(np.int32) == want.view(np.int32), axis=0)
        for arr, new in zip(out, (ra, ca, rb, cb)):
            arr[good] = new[good]
        ok |= good
    return (*out, ok)


def _calibrate_affine(target: np.ndarray, xs: np.ndarray, r: np.float32, c0: np.ndarray,
                      lo: int, hi: int):
    """Fallback per column j: float32 (r'_j, c'_j) with clamp(rne(fl(fl(x * r'_j) + c'_j))) ==
    target[:, j] for every x, r' within a few ulps of r. Returns (r', c', ok mask)."""
    J = target.shape[1]
    x = xs.astype(F32).reshape(-1, 1)
    r_out = np.full(J, r, dtype=F32)
    c_out = np.asarray(c0, dtype=F32).copy()
    todo = np.ones(J, dtype=bool)
    for step in _R_STEPS:
        if not todo.any():
            break
        cols = np.nonzero(todo)[0]
        rr = _step_ulps(np.full(cols.size, r, dtype=F32), step)
        if not bool(np.all(rr > 0)):
            continue
        prod = (x * rr.reshape(1, -1)).astype(F32)

        def value(k, prod=prod):
            return _quantstep_value((prod + _unkey(k)).astype(F32), lo, hi)

        kmin, kmax = _feasible_keys(value, target[:, cols], _key(c_out[cols]).reshape(1, -1), 0)
        good = kmin <= kmax
        r_out[cols[good]] = rr[good]
        c_out[cols[good]] = _unkey(np.clip(_key(c_out[cols]), kmin, kmax))[good]
        todo[cols[good]] = False
    return r_out, c_out, ~todo


def _offset_splits(P: np.ndarray):
    """Ways to write the exact products P = const_j * r (float64, at most 32 bits) as p1 + p2
    with both float32: the nearest float32 and its remainder, then P rounded to coarser and
    finer power-of-two grids and the remainder."""
    p1 = P.astype(F32)
    yield p1, (P - p1.astype(np.float64)).astype(F32)
    top = int(np.floor(np.log2(max(float(np.abs(P).max()), 2.0 ** -126))))
    for g in range(top + 1, top - 25, -1):
        grid = 2.0 ** g
        hi = (np.round(P / grid) * grid).astype(F32)
        lo = (P - hi.astype(np.float64)).astype(F32)
        if np.all(hi.astype(np.float64) + lo.astype(np.float64) == P):
            yield hi, lo


def _calibrate_second_add(target: np.ndarray, u: np.ndarray, P: np.ndarray, lo: int, hi: int):
    """Per column j float32 (p1_j, p2_j) with clamp(rne(fl(fl(u + p1_j) + p2_j))) ==
    target[:, j] for every input (u per input value, shape (n, 1)), where p1_j + p2_j is close
    to P_j: for each split of P, p2 is taken from the interval of feasible values (fl(w + p2) is
    monotone in p2). Returns (p1, p2, ok mask)."""
    J = target.shape[1]
    p1, p2 = P.astype(F32), (P - P.astype(F32).astype(np.float64)).astype(F32)
    ok = np.zeros(J, dtype=bool)
    for hi_part, lo_part in _offset_splits(P):
        if ok.all():
            break
        cols = np.nonzero(~ok)[0]
        w = (u + hi_part[cols].reshape(1, -1)).astype(F32)

        def value(k, w=w):
            return _quantstep_value((w + _unkey(k)).astype(F32), lo, hi)

        start = _key(lo_part[cols]).reshape(1, -1)
        kmin, kmax = _feasible_keys(value, target[:, cols], start, 0)
        good = kmin <= kmax
        p1[cols[good]] = hi_part[cols[good]]
        p2[cols[good]] = _unkey(np.clip(start.reshape(-1), kmin, kmax))[good]
        ok[cols[good]] = True
    return p1, p2, ok


def _const_variant(target, xs, x_first: bool, r1, r2, k, cvals, lo, hi):
    """Parameters (ra, ca, rb, cb, p1, p2) per column for one operand order, and the number of
    (input, column) pairs the module still gets wrong (0 unless every form failed)."""
    x = xs.astype(F32).reshape(-1, 1)
    J = cvals.size
    p1, p2 = np.zeros(J, dtype=F32), np.zeros(J, dtype=F32)
    if x_first:  # v = fma(x, r1, c_j), c_j = fma(const_j, r2, K): exact by splitting
        c = semantics.fma32(cvals, r2, k)
        ra, ca, rb, cb, ok = _exact_parts(xs, r1, c)
        rx = r1
    else:  # v = fma(const_j, r1, t(x)), t(x) = fma(x, r2, K): t exact by splitting, then
        # (t + p1_j) + p2_j with p1_j + p2_j ~ const_j * r1
        ra, ca, rb, cb, ok_t = _exact_parts(xs, r2, np.asarray([k], dtype=F32))
        ra, ca, rb, cb = (np.repeat(a, J) for a in (ra, ca, rb, cb))
        ok = np.zeros(J, dtype=bool)
        if ok_t.all():
            u = _parts_value(x, ra[:1], ca[:1], rb[:1], cb[:1])
            p1, p2, ok = _calibrate_second_add(target, u, cvals.astype(np.float64) * np.float64(r1),
                                               lo, hi)
        c = (k + (cvals * r1).astype(F32)).astype(F32)
        rx = r2
    if not ok.all():  # fall back to fl(fl(x * r') + c') with calibrated r', c'
        cols = np.nonzero(~ok)[0]
        r_f, c_f, _ = _calibrate_affine(target[:, cols], xs, F32(rx), c[cols], lo, hi)
        ra[cols], ca[cols], rb[cols], cb[cols] = r_f, c_f, 0.0, 0.0
        p1[cols], p2[cols] = 0.0, 0.0
    v = ((_parts_value(x, ra, ca, rb, cb) + p1).astype(F32) + p2).astype(F32)
    return (ra, ca, rb, cb, p1, p2), int((_quantstep_value(v, lo, hi) != target).sum())


def _pair_variant(target, xs, r1, r2, k, lo, hi):
    """Scalars for v = fl(fl(fl(x * oa) + t(y)) + fl(x * ob)), t(y) = fl((y*ya + ka) +
    (y*yb + kb)) the exact inner fused multiply-add; (oa, ob) from a few splits of r1 (and r1
    moved by a few ulps), the first that reproduces every pair, else the closest."""
    x = xs.astype(F32).reshape(-1, 1)
    y = xs.astype(F32).reshape(1, -1)
    ya, ka, yb, kb, ok = _exact_parts(xs, r2, np.asarray([k], dtype=F32))
    if not ok.all():
        ya, ka, yb, kb = (np.asarray([v], dtype=F32) for v in (r2, k, 0.0, 0.0))
    t = _parts_value(y, ya[0], ka[0], yb[0], kb[0])
    best = None
    for step in _R_STEPS_PAIR:
        rr = _step_ulps(F32(r1), step)
        if not rr > 0:
            continue
        forms = [(rr, F32(0))]
        for bits in (15, 12, 10, 8):
            hi_, lo_ = _split_ratio(rr, bits)
            forms += [(hi_, lo_), (lo_, hi_)]
        for oa, ob in forms:
            v = (((x * oa).astype(F32) + t).astype(F32) + (x * ob).astype(F32)).astype(F32)
            bad = int((_quantstep_value(v, lo, hi) != target).sum())
            if best is None or bad < best[0]:
                best = (bad, (F32(oa), F32(ob), ya[0], ka[0], yb[0], kb[0]))
            if bad == 0:
                return best[1], 0
    return best[1], best[0]


def _warn_mismatch(node, bad: int, total: int) -> None:
    if bad:
        warnings.warn(f"{where(node)}: no float32 form found that reproduces onnxruntime's fused "
                      f"multiply-adds on every input; {bad} of {total} integer inputs (over both "
                      f"operand orders) give an output one quantum apart from onnxruntime",
                      RuntimeWarning, stacklevel=2)


class QLinearAddConst(nn.Module):
    """QLinearAdd with one constant operand: QuantStep((((x*ra + ca) + (x*rb + cb)) + p1) + p2),
    the parameters shaped like the constant (p1, p2 only where needed); one set per operand order
    of onnxruntime's kernel, chosen from the input shape at run time."""

    _NAMES = ("ra", "ca", "rb", "cb", "p1", "p2")

    def __init__(self, variants: Dict[bool, Sequence[np.ndarray]], const_shape, x_is_a: bool,
                 lo: int, hi: int, buffer_shape):
        super().__init__()
        self.offsets = {}
        for swap, params in variants.items():
            for name, v in zip(self._NAMES, params):
                v = np.asarray(v, dtype=F32).reshape(-1)
                t = torch.tensor(v[:1]).reshape(()) if bool(np.all(v == v[0])) else \
                    torch.tensor(v).reshape(buffer_shape)
                self.register_buffer(f"{name}{int(swap)}", t)
            self.offsets[bool(swap)] = bool(np.any(np.asarray(params[4]) != 0)
                                            or np.any(np.asarray(params[5]) != 0))
        self.const_shape = tuple(int(d) for d in const_shape)
        self.x_is_a = bool(x_is_a)
        self.step = QuantStep(1.0, 0.0, lo, hi, "half_even")

    def forward(self, x):
        shape = _shape(x)
        if self.x_is_a:
            swap = semantics.qlinear_add_swaps(shape, self.const_shape)
        else:
            swap = semantics.qlinear_add_swaps(self.const_shape, shape)
        ra, ca, rb, cb, p1, p2 = (getattr(self, f"{n}{int(swap)}") for n in self._NAMES)
        v = (x * ra + ca) + (x * rb + cb)
        if self.offsets[bool(swap)]:
            v = (v + p1) + p2
        return self.step(v)


class QLinearAddPair(nn.Module):
    """QLinearAdd of two variable operands, in onnxruntime's kernel order (first, second) for
    the shapes seen: QuantStep((first*oa + ((second*ya + ka) + (second*yb + kb))) + first*ob)."""

    _NAMES = ("oa", "ob", "ya", "ka", "yb", "kb")

    def __init__(self, variants: Dict[bool, Sequence[float]], lo: int, hi: int):
        super().__init__()
        for swap, params in variants.items():
            for name, v in zip(self._NAMES, params):
                self.register_buffer(f"{name}{int(swap)}", torch.tensor(float(v), dtype=torch.float32))
        self.step = QuantStep(1.0, 0.0, lo, hi, "half_even")

    def forward(self, a, b):
        swap = semantics.qlinear_add_swaps(_shape(a), _shape(b))
        first, second = (b, a) if swap else (a, b)
        oa, ob, ya, ka, yb, kb = (getattr(self, f"{n}{int(swap)}") for n in self._NAMES)
        t = (second * ya + ka) + (second * yb + kb)
        return self.step((first * oa + t) + first * ob)


def _qladd_type(node, graph):
    for i in (2, 5, 7, 0, 3):
        name = _input(node, i)
        if name:
            qt = int_type(elem_type(graph, name))
            if qt is not None:
                break
    else:
        qt = None
    if qt is None or qt.name not in ("int8", "uint8"):
        raise UnsupportedOperatorError(f"{where(node)}: QLinearAdd is supported on int8 and uint8 tensors")
    return qt


def _check_range(node, v) -> None:
    if not _fits_int32(v):
        raise UnsupportedOperatorError(
            f"{where(node)}: scale ratios this large overflow onnxruntime's float-to-int32 "
            "conversion (its result is then the type's low end, not a saturation)")


@converter("QLinearAdd", [1], domain=MS_DOMAIN)
def qlinear_add(node, graph):
    qt = _qladd_type(node, graph)
    lo, hi = qt.lo, qt.hi
    params = []
    for i, what in ((1, "A_scale"), (2, "A_zero_point"), (4, "B_scale"), (5, "B_zero_point"),
                    (6, "C_scale"), (7, "C_zero_point")):
        v = _scalar(node, _const_input(node, graph, i, what, required="scale" in what), what)
        if "scale" in what:
            v = _positive_scale(node, v, what)
        params.append(v)
    names = (node.input_values[0], node.input_values[3])
    consts = [const(graph, n) for n in names]
    if consts[0] is not None and consts[1] is not None:
        raise UnsupportedOperatorError(f"{where(node)}: both operands are constant")
    xs = np.arange(lo, hi + 1, dtype=np.int64)
    X = xs.astype(F32).reshape(-1, 1)
    bad_total = total = 0

    if consts[0] is None and consts[1] is None:  # two variable operands
        variants = {}
        for swap in (False, True):
            r1, r2, k = semantics.qlinear_add_terms(*params, swap=swap)
            v = semantics.fma32(X, r1, semantics.fma32(X.reshape(1, -1), r2, k))
            _check_range(node, v)
            target = _quantstep_value(v, lo, hi)
            variants[swap], bad = _pair_variant(target, xs, r1, r2, k, lo, hi)
            bad_total, total = bad_total + bad, total + target.size
        _warn_mismatch(node, bad_total, total)
        return result(QLinearAddPair(variants, lo, hi), node, list(names))

    x_is_a = consts[0] is None
    cval = np.asarray(consts[1] if x_is_a else consts[0])
    if cval.dtype.kind not in "iu":
        raise UnsupportedOperatorError(f"{where(node)}: the constant operand must be int8/uint8")
    const_shape = cval.shape
    dims = list(const_shape)
    while dims and dims[0] == 1:  # leading 1-axes would move the batch axis when broadcast
        dims.pop(0)
    C = cval.reshape(1, -1).astype(F32)
    variants = {}
    for swap in (False, True):
        # onnxruntime's kernel takes A first, or B when swapped; r1/r2 go with first/second
        r1, r2, k = semantics.qlinear_add_terms(*params, swap=swap)
        a_arr, b_arr = (X, C) if x_is_a else (C, X)
        first, second = (b_arr, a_arr) if swap else (a_arr, b_arr)
        v = semantics.fma32(first, r1, semantics.fma32(second, r2, k))
        _check_range(node, v)
        target = _quantstep_value(v, lo, hi)
        variants[swap], bad = _const_variant(target, xs, x_is_a != swap, r1, r2, k,
                                             C.reshape(-1), lo, hi)
        bad_total, total = bad_total + bad, total + target.size
    _warn_mismatch(node, bad_total, total)
    module = QLinearAddConst(variants, const_shape, x_is_a, lo, hi, tuple(dims))
    return result(module, node, [names[0] if x_is_a else names[1]])
