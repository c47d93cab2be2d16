"""The network as exact integer arithmetic: what the SMT baseline's bit-vector formula and the
verifier's exact integer program (``verifier.intprog``) are built from.

Every value of a QNN with power-of-two scales is a dyadic rational, so the network on the input
codes of one box is written here as integer variables ``N_j`` (value ``N_j * 2**-exp_j``) defined
one after the other:

* ``input``: an input code, in its range of the box;
* ``step``: ``clamp(R(Z / 2**t) + zp, lo, hi)`` of an integer affine form ``Z`` of earlier
  variables (QuantizeLinear, requantization, Floor/Round/Ceil + Clip, the ReLU clamp), with R the
  rounding of the operator (half to even, half up, floor, ceil), computed by an exact shift;
* ``relu``: ``max(Z, 0)``; ``sign``: ``sign(Z)``; ``clip``: ``clamp(Z, lo, hi)``;

and the outputs as integer affine forms. The affine maps are read off the plugin's bound graph
(``affine_graph``: MatMul, Gemm, Conv, constant Add/Mul/Div, reshapes).

Exact in integers means exact in float32 too, or the model would compute something else than
this encoding: each affine node is accepted only when all of its products and partial sums are
multiples of a power of two ``2**-F`` with magnitude below ``2**24 * 2**-F`` over the box, which
makes float32 evaluation (in any summation order) equal to real arithmetic; quantizer scales must
be powers of two. Anything else raises ``NotIntegerError`` naming the node.

Each variable's exact integer range over the box (interval arithmetic in Python integers) comes
with it: the encoders size bit-vectors and big-M constants and remove decided branches with them.
"""
from __future__ import annotations

import math
from fractions import Fraction
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import affine_graph
from .bounded import compute_bounds
from .bounds import BoundQClip, BoundQuantStep, BoundSign
from .errors import NotIntegerError

F32_EXACT = 2.0 ** 24      # float32 integers are exact below this magnitude


def round_shift(z: int, t: int, rounding: str) -> int:
    """R(z / 2**t) for integers, exactly (t <= 0: no rounding)."""
    if t <= 0:
        return z << -t
    if rounding == "floor":
        return z >> t
    if rounding == "ceil":
        return -((-z) >> t)
    half = 1 << (t - 1)
    r = (z + half) >> t
    if rounding == "half_even" and (z & ((1 << t) - 1)) == half and r & 1:
        r -= 1
    return r


@dataclass(frozen=True)
class Step:
    """level = clamp(R(Z / 2**shift) + zero_point, lo, hi) (lo/hi None: unbounded)."""

    shift: int
    zero_point: int
    lo: Optional[int]
    hi: Optional[int]
    rounding: str

    def __call__(self, z: int) -> int:
        q = round_shift(z, self.shift, self.rounding) + self.zero_point
        if self.lo is not None:
            q = max(q, self.lo)
        if self.hi is not None:
            q = min(q, self.hi)
        return q


@dataclass
class Lin:
    """(sum_j coef_j N_cols[j] + const) * 2**-exp, with the range [lo, hi] of the integer
    ``sum + const`` over the box."""

    cols: np.ndarray      # int64 variable indices
    coef: np.ndarray      # int64 coefficients
    const: int
    exp: int
    lo: int = 0
    hi: int = 0


@dataclass
class Var:
    """An integer variable: kind ``input``/``step``/``relu``/``sign``/``clip``, its defining
    form ``pre`` (activations), its range [lo, hi] and its value's exponent."""

    kind: str
    lo: int
    hi: int
    exp: int = 0
    pre: Optional[Lin] = None
    step: Optional[Step] = None
    clip: Optional[Tuple[Optional[int], Optional[int]]] = None   # clip limits in Z's units
    node: str = ""
    band: int = 0   # sign only: for |Z| <= band float32 may give 0 instead of sign(Z) (relaxed)

    def apply(self, z: int) -> int:
        """The variable's value for a value ``z`` of its defining form (a banded sign: the real
        sign, one of the values float32 may give)."""
        if self.kind == "step":
            return self.step(z)
        if self.kind == "relu":
            return max(z, 0)
        if self.kind == "sign":
            return (z > 0) - (z < 0)
        lo, hi = self.clip
        return min(max(z, lo if lo is not None else z), hi if hi is not None else z)


@dataclass
class IntNet:
    vars: List[Var]
    n_in: int
    outputs: List[Lin]

    def evaluate(self, codes) -> List[int]:
        """The outputs' integers (value: out * 2**-exp) for integer input codes: the encoding's
        semantics in plain Python, for tests and model checks."""
        vals: List[int] = []
        for j, v in enumerate(self.vars):
            vals.append(int(codes[j]) if v.kind == "input" else v.apply(_lin_value(v.pre, vals)))
        return [_lin_value(o, vals) for o in self.outputs]


def _lin_value(f: Lin, vals) -> int:
    return sum(int(a) * vals[int(j)] for j, a in zip(f.cols, f.coef)) + f.const


def _frac_exp(v: Fraction) -> int:
    """Least E with v * 2**E an integer (v dyadic)."""
    return 0 if v == 0 else v.denominator.bit_length() - 1 - _twos(v.numerator)


def _twos(n: int) -> int:
    n = abs(n)
    return (n & -n).bit_length() - 1 if n else 0


def integer_row(a: np.ndarray, b: float, exps: Sequence[int]):
    """Integers (c_k, rhs) with sum_k a_k y_k <= b  <=>  sum_k c_k Y_k <= rhs, where
    y_k = Y_k * 2**-exps[k]: the row scaled by the least power of two that makes its
    coefficients integers, and the threshold rounded down (the sum is an integer), so a
    threshold with many bits does not make the numbers large."""
    fa = [Fraction(float(v)) for v in a]
    G = max([_frac_exp(v) + e for v, e in zip(fa, exps) if v] + [0])
    coef = [int(v * Fraction(2) ** (G - e)) for v, e in zip(fa, exps)]
    return coef, math.floor(Fraction(float(b)) * Fraction(2) ** G)


# ---------------------------------------------------------------------------------- extraction

def _dexp(v: np.ndarray) -> np.ndarray:
    """Per element the least E with v * 2**E an integer (-inf for 0); exact for float64."""
    v = np.asarray(v, dtype=np.float64)
    m, e = np.frexp(v)                                  # v = m 2**e, 0.5 <= |m| < 1
    mant = np.abs(m * 2.0 ** 53).astype(np.int64)       # integer mantissa (53 bits)
    low = mant & -mant                                  # lowest set bit
    tz = np.where(mant > 0, np.log2(np.maximum(low, 1)).astype(np.int64), 0)
    out = (53 - e - tz).astype(np.float64)
    return np.where(v == 0, -np.inf, out)


def _row_exp(M: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per row the least E making the row's coefficients and constant integers (0 if none)."""
    E = np.maximum(_dexp(M).max(axis=1, initial=-np.inf) if M.size else np.full(len(c), -np.inf),
                   _dexp(c))
    return np.where(np.isfinite(E), E, 0.0)


class _Builder:
    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        self.vars = [Var("input", int(a), int(b), 0, node="input") for a, b in zip(lo, hi)]
        self._sync()

    def _sync(self):
        self.lo = np.array([v.lo for v in self.vars], dtype=np.int64)
        self.hi = np.array([v.hi for v in self.vars], dtype=np.int64)
        # value magnitude of each variable (columns of M are over the integers N_j)
        self.nmax = np.maximum(np.abs(self.lo), np.abs(self.hi)).astype(np.float64)

    @property
    def n(self) -> int:
        return len(self.vars)

    def grow(self, M: np.ndarray) -> np.ndarray:
        if M.shape[1] == self.n:
            return M
        return np.concatenate([M, np.zeros((M.shape[0], self.n - M.shape[1]))], axis=1)

    def lin(self, Mi: np.ndarray, ci: float, what: str) -> Lin:
        """The exact integer form of one row (M over the variables' integers)."""
        E = int(_row_exp(Mi[None], np.array([ci]))[0])
        cols = np.flatnonzero(Mi)
        scaled = Mi[cols] * 2.0 ** E
        const = ci * 2.0 ** E
        if np.any(np.abs(scaled) >= 2.0 ** 53) or abs(const) >= 2.0 ** 53:
            raise NotIntegerError(f"{what}: coefficients need more than 53 bits")
        coef = scaled.astype(np.int64)
        pos = coef > 0
        vlo, vhi = self.lo[cols], self.hi[cols]
        if float(np.abs(scaled) @ self.nmax[cols]) >= 2.0 ** 62:   # sums in Python integers
            coef, vlo, vhi = coef.astype(object), vlo.astype(object), vhi.astype(object)
        lo = int(np.sum(coef[pos] * vlo[pos]) + np.sum(coef[~pos] * vhi[~pos]))
        hi = int(np.sum(coef[pos] * vhi[pos]) + np.sum(coef[~pos] * vlo[~pos]))
        coef = coef.astype(np.int64)
        return Lin(cols.astype(np.int64), coef, int(const), E, lo + int(const), hi + int(const))

    def add_all(self, new: List[Var]) -> int:
        """Append a layer's variables at once; returns the index of the first."""
        first = self.n
        self.vars.extend(new)
        self._sync()
        return first


def _check_exact(node, parts, offset, infos) -> np.ndarray:
    """Every product and partial sum of the node is a multiple of 2**-F below 2**24 * 2**-F
    (so float32 computes it exactly, in any order), for each output element; or only the
    products and the partial sums of the products are, and the node adds a constant off their
    grid (a float bias). Returns per element a bound on |float32 result - real result|: 0 where
    exact, else ulp(B) for a bound B on every partial sum. (Why ulp(B): the sum of the products
    is exact, so rounding only ever changes the constant's fractional part, to the ulp grid of
    the magnitude reached; later sums at that magnitude are exact, and each larger binade
    rounds it once more: ulp/2 + ulp/4 + ... <= ulp(B), whatever the order of the sum.)"""
    F_terms = np.full(offset.shape, -np.inf)
    bound = np.abs(offset)
    for (K, (E_in, B_in)) in zip([K for _, K in parts], infos):
        dk = _dexp(K) + E_in[None, :]
        F_terms = np.maximum(F_terms, dk.max(axis=1, initial=-np.inf))
        bound = bound + np.abs(K) @ B_in
    F_all = np.maximum(F_terms, _dexp(offset))
    F_all = np.where(np.isfinite(F_all), F_all, 0.0)
    exact = bound * 2.0 ** F_all * (1 + 1e-12) < F32_EXACT       # NaN (a non-finite constant): False
    F_t = np.where(np.isfinite(F_terms), F_terms, 0.0)
    terms_exact = (bound * 2.0 ** F_t * (1 + 1e-12) < F32_EXACT) & np.isfinite(bound)
    bad = np.flatnonzero(~exact & ~terms_exact)
    if bad.size:
        i = int(bad[0])
        raise NotIntegerError(
            f"{type(node).__name__} {node.name}: output element {i} can reach "
            f"{bound[i] * 2.0 ** F_all[i]:.3g} units of its grid 2**-{int(F_all[i])}, beyond float32's exact "
            "range 2**24 (a scale that is not a power of two, or an accumulator too wide): "
            "the float32 model would not compute the exact integer semantics, which is all "
            "the integer encoding represents")
    ulp = 2.0 ** (np.floor(np.log2(np.maximum(bound, 2.0 ** -126))) - 23)
    return np.where(exact, 0.0, ulp)


def _info(M: np.ndarray, c: np.ndarray, nmax: np.ndarray):
    """(E, B) per element: the coefficient grid exponent and a magnitude bound."""
    return _row_exp(M, c), np.abs(M) @ nmax + np.abs(c)


def _narrow(f: Lin, lower: float, upper: float) -> None:
    """Intersect the integer range of ``f`` with [lower, upper] (values, not units); a
    non-finite or crossing bound is ignored."""
    if not (np.isfinite(lower) and np.isfinite(upper) and lower <= upper):
        return
    lo, hi = math.ceil(lower * 2.0 ** f.exp), math.floor(upper * 2.0 ** f.exp)
    if max(lo, f.lo) <= min(hi, f.hi):
        f.lo, f.hi = max(lo, f.lo), min(hi, f.hi)


def _offgrid_lin(b: _Builder, Mi: np.ndarray, ci: float, err: float, edge_exp, known,
                 sign: bool, what: str, relax_signs: bool = False) -> Tuple[Lin, int]:
    """The integer form of a row ``Mi N + ci`` read by an activation that only compares it with
    edges, when ``ci`` is off the grid 2**-E of the row's terms (a float bias) and float32
    computes the row within ``err`` of its real value.

    Seen from the terms' integers S (value S 2**-E), the comparisons change only where ci 2**E
    crosses a multiple of 2**q, q = ``edge_exp(E)`` (the edges minus the integers), so ci is
    replaced by the midpoint between its two neighbouring multiples: an odd integer at
    exponent E + 1 - q, exact in integers. The float32 row compares alike wherever no
    reachable value lies within ``err`` of an edge; where one does (checked over the row's
    reachable S, narrowed by ``known``, for Sign; everywhere for quantizers) the row is refused,
    or for a Sign with ``relax_signs`` given band 1 (returned with the form; 0 otherwise).

    Why the band suffices: float32 only ever rounds the constant's part of the sum, each time
    to the ulp grid of the magnitude reached, and every such grid contains the multiples of
    2**-E (ulp <= 2**-E, checked in ``_check_exact``); rounding to a grid that contains the
    point -S 2**-E never carries the sum across it, it can only land on it. So the float sum has the
    real sum's sign or is 0, and the real sum's sign is sign(Z) for the odd Z built here; the
    ambiguous S are the one or two integers next to -tau, where Z = +-1."""
    f0 = b.lin(Mi, 0.0, what)
    E, lo, hi = f0.exp, f0.lo, f0.hi
    two_E = Fraction(2) ** E
    c = Fraction(ci)
    if known is not None and np.isfinite(known[0]) and np.isfinite(known[1]) and known[0] <= known[1]:
        nlo = max(lo, math.ceil((Fraction(known[0]) - c) * two_E))
        nhi = min(hi, math.floor((Fraction(known[1]) - c) * two_E))
        if nlo <= nhi:
            lo, hi = nlo, nhi
    tau = c * two_E
    q = edge_exp(E)
    P = Fraction(2) ** q
    n = math.floor(tau / P)
    slack = Fraction(err) * two_E   # err covers float32's rounding and float64's in ci
    if sign:   # the one edge at 0: is a reachable S within slack of -tau?
        ambiguous = max(lo, math.ceil(-tau - slack)) <= min(hi, math.floor(-tau + slack))
    else:
        ambiguous = min(tau - n * P, (n + 1) * P - tau) <= slack
    k = 1 - q
    const = 2 * n + 1
    coef = f0.coef * (1 << k)
    f = Lin(f0.cols, coef, const, E + k, lo * (1 << k) + const, hi * (1 << k) + const)
    if ambiguous and sign and relax_signs:
        return f, 1
    if ambiguous:
        raise NotIntegerError(
            f"{what}: the float bias {float(ci)!r} puts a reachable value within float32's "
            f"rounding error ({err:.3g}) of the activation's edge, where float32 and real "
            "arithmetic may compare differently")
    return f, 0


def _power_of_two_exponent(scale: np.ndarray, where: str) -> np.ndarray:
    m, e = np.frexp(scale)
    if np.any(np.abs(m) != 0.5) or np.any(scale <= 0):
        bad = scale[(np.abs(m) != 0.5) | (scale <= 0)].reshape(-1)[0]
        raise NotIntegerError(f"{where}: scale {float(bad)!r} is not a power of two; the integer "
                                  "encoding needs power-of-two scales (exact in integers)")
    return (e - 1).astype(np.int64)


def _integral(v: float, what: str) -> Optional[int]:
    if not np.isfinite(v):
        return None
    if v != np.floor(v):
        raise NotIntegerError(f"{what} {v!r} is not an integer")
    return int(v)


class OutOfTime(Exception):
    """The deadline passed while building the network or its formula."""


def extract(bm, input_shape, lo: np.ndarray, hi: np.ndarray,
            deadline: float = float("inf"), pre_bounds: Optional[dict] = None,
            relax_signs: bool = False) -> IntNet:
    """The integer network of the bound graph ``bm`` (whose input, of shape ``input_shape``
    without the batch dimension, is the code vector) on the code box [lo, hi] (flat).
    Raises OutOfTime once ``time.monotonic()`` passes ``deadline`` (checked per node).

    ``pre_bounds``: optional {activation node name: (lower, upper)}, flat float64 bounds on
    that node's input over the box that are sound as given (already widened against float
    error), e.g. CROWN's; they narrow the interval ranges where they are tighter.

    ``relax_signs``: a Sign whose float bias leaves a reachable value within float32's rounding
    error of 0 is not refused but gets ``band`` 1: there float32 gives the real sign or 0
    (rounding onto the grid never crosses a grid point, see ``_offgrid_lin``). The network is
    then a relaxation, sound for proofs (the verifier's program), not an exact encoding (the
    SMT baseline's)."""
    n_in = int(lo.size)
    # one interval pass on the box marks the perturbed nodes and sets the constants' forward
    # values (read by affine_graph); its float bounds are not used
    box = [torch.as_tensor(np.asarray(v, dtype=np.float32)).reshape(1, *input_shape) for v in (lo, hi)]
    with torch.no_grad():
        compute_bounds(bm, box[0], box[1], "ibp")
        affine_graph.evaluate_constants(bm)
    b = _Builder(lo, hi)
    exprs, infos = {}, {}
    inexact = {}   # node name -> (per-element float error bound, why the node is inexact)
    for node in bm._modules.values():
        kind = type(node).__name__
        if kind == "BoundInput":
            exprs[node.name] = (np.eye(n_in), np.zeros(n_in))
            infos[node.name] = (np.zeros(n_in), b.nmax.copy())
            continue
        if not getattr(node, "perturbed", False):
            continue
        if time.monotonic() > deadline:
            raise OutOfTime(f"while reading node {node.name}")
        for inp in node.inputs:
            if inp.perturbed:
                exprs[inp.name] = (b.grow(exprs[inp.name][0]), exprs[inp.name][1])
        fed = [inexact[i.name] for i in node.inputs if i.perturbed and i.name in inexact]
        if isinstance(node, (BoundQuantStep, BoundSign, BoundQClip)) or kind == "BoundRelu":
            if any(i.perturbed for i in node.inputs[1:]):
                raise NotIntegerError(f"{kind} {node.name}: limits that depend on the input")
            if fed and not isinstance(node, (BoundQuantStep, BoundSign)):
                raise NotIntegerError(f"{fed[0][1]}, and {kind} {node.name} reads its value")
            M, c = exprs[node.inputs[0].name]
            exprs[node.name] = _activation(node, kind, b, M, c, (pre_bounds or {}).get(node.name),
                                           fed[0][0] if fed else None, relax_signs)
        else:
            try:
                parts, offset = affine_graph.local_map(node)
            except affine_graph.NotAffine as exc:
                raise NotIntegerError(str(exc)) from None
            if fed:   # only a reshape may pass an inexact value on (exactly) to a step
                if len(parts) != 1 or not _is_selection(parts[0][1]) or np.any(offset != 0):
                    raise NotIntegerError(f"{fed[0][1]}, and {kind} {node.name} reads its value")
                err = np.abs(parts[0][1]) @ fed[0][0]
            else:
                err = _check_exact(node, parts, offset,
                                   [infos[node.inputs[p].name] for p, _ in parts])
            M = c = None
            for p, K in parts:
                M_in, c_in = exprs[node.inputs[p].name]
                M = K @ M_in if M is None else M + K @ M_in
                c = K @ c_in if c is None else c + K @ c_in
            c = c + offset
            M[:, b.nmax == 0] = 0.0   # variables fixed at 0 contribute nothing (and need no exact coefficient)
            exprs[node.name] = (M, c)
            if np.any(err > 0):
                # the float64 constant c is rounded too: at most n + 1 roundings of 2**-53
                c_mag = np.abs(offset) + sum(np.abs(K) @ np.abs(exprs[node.inputs[p].name][1])
                                             for p, K in parts)
                n_sum = sum(K.shape[1] for _, K in parts) + 1
                err = np.where(err > 0, err + n_sum * 2.0 ** -52 * c_mag, 0.0)
                i = int(np.flatnonzero(err > 0)[0])
                inexact[node.name] = (err, fed[0][1] if fed else (
                    f"{kind} {node.name}: output element {i} adds a constant off its terms' "
                    "grid (a float bias), so float32 rounds the sum; the integer encoding "
                    "represents that only where a Sign or a quantizer reads the sum directly "
                    "and no reachable value lies within the rounding error of its edges"))
        M, c = exprs[node.name]
        if node.name not in inexact:
            infos[node.name] = _info(M, c, b.nmax[:M.shape[1]])
    if bm.output_name[0] in inexact:
        raise NotIntegerError(f"{inexact[bm.output_name[0]][1]}, and it is the network's output")
    M, c = exprs[bm.output_name[0]]
    M = b.grow(M)
    outputs = [b.lin(M[i], c[i], f"output {i}") for i in range(M.shape[0])]
    return IntNet(b.vars, n_in, outputs)


def _is_selection(K: np.ndarray) -> bool:
    """Each output element copies at most one input element (a reshape, flatten or slice)."""
    return bool(np.all((K == 0) | (K == 1)) and np.all((K != 0).sum(axis=1) <= 1))


def _activation(node, kind: str, b: _Builder, M: np.ndarray, c: np.ndarray, known=None,
                err: Optional[np.ndarray] = None, relax_signs: bool = False):
    """New variables for an elementwise activation; returns its (M, c) over the variables.
    ``known``: sound (lower, upper) float bounds of the input, to narrow its ranges; ``err``:
    per element a bound on how far float32 puts the input from the real M N + c (Sign and
    quantizers only, see ``_offgrid_lin``)."""
    n = M.shape[0]
    where = f"{kind} {node.name}"
    shape = node.inputs[0].output_shape[1:]
    if isinstance(node, BoundQuantStep):
        if not node._on_lattice or getattr(node, "split_lo", None) is not None:
            raise NotIntegerError(f"{where}: clamp limits off the zero point's lattice")
        sigma = _power_of_two_exponent(
            torch.broadcast_to(node.scale, shape).reshape(-1).double().cpu().numpy(), where)
        zp = torch.broadcast_to(node.zero_point, shape).reshape(-1).double().cpu().numpy()
        lo_q = _integral(node.lo, f"{where}: lower clamp")
        hi_q = _integral(node.hi, f"{where}: upper clamp")
    elif isinstance(node, BoundQClip):
        clip_lim = node._limits()
    cols, consts, new = [], np.zeros(n), []
    for i in range(n):
        known_i = None if known is None else (float(known[0][i]), float(known[1][i]))
        band = 0
        if err is not None and err[i] > 0:
            if isinstance(node, BoundSign):
                edge_exp = lambda E: 0
            else:   # the step's edges, in units of 2**-E: (k + 1/2) 2**t or k 2**t, t = E + sigma
                half = node.rounding not in ("floor", "ceil")
                edge_exp = lambda E, s=int(sigma[i]): min(0, E + s - half)
            f, band = _offgrid_lin(b, M[i], c[i], float(err[i]), edge_exp, known_i,
                                   isinstance(node, BoundSign), f"{where} element {i}", relax_signs)
        else:
            f = b.lin(M[i], c[i], f"{where} element {i}")
            if known_i is not None:
                _narrow(f, *known_i)
        if kind == "BoundRelu":
            var = Var("relu", max(f.lo, 0), max(f.hi, 0), f.exp, f, node=node.name)
        elif isinstance(node, BoundSign):
            var = Var("sign", (f.lo > band) - (f.lo < -band), (f.hi > band) - (f.hi < -band), 0, f,
                      node=node.name, band=band)
        elif isinstance(node, BoundQClip):
            lim = tuple(None if not np.isfinite(v) else v * 2.0 ** f.exp for v in clip_lim)
            for v in lim:
                if v is not None and v != np.floor(v):
                    raise NotIntegerError(f"{where}: clip limit not on the input's grid")
            lim = tuple(None if v is None else int(v) for v in lim)
            var = Var("clip", 0, 0, f.exp, f, clip=lim, node=node.name)
            var.lo, var.hi = var.apply(f.lo), var.apply(f.hi)
        else:
            st = Step(f.exp + int(sigma[i]), _integral(zp[i], f"{where}: zero point"), lo_q, hi_q,
                      node.rounding)
            var = Var("step", st(f.lo), st(f.hi), 0, f, step=st, node=node.name)
        if f.cols.size == 0:              # a constant element: no variable
            consts[i] = var.lo * 2.0 ** -var.exp
            cols.append(None)
        else:
            cols.append(len(new))
            new.append(var)
    first = b.add_all(new)
    Mo = np.zeros((n, b.n))
    for i, j in enumerate(cols):
        if j is not None:
            Mo[i, first + j] = 2.0 ** -new[j].exp
    return Mo, consts
