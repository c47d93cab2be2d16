"""The bit-vector formula of an integer network (``intnet``) and an unsafe set.

Integer sums become adder trees over sign-extended bit-vectors, steps become exact arithmetic
shifts with the rounding's correction and saturating ``ite``s, ReLU/Sign/Clip become ``ite``s,
and the property's rows become signed comparisons of integers scaled to a common power of two
(exact: the spec's float64 coefficients and every network value are dyadic).

The three speed-ups of Henzinger, Lechner and Zikelic (AAAI 2021) are ``Options`` fields, each
switchable so its effect can be measured:

* ``dead_branches``: a variable whose interval range decides its branch (a ReLU that is always
  active or inactive, a step that cannot saturate on one side, a neuron with a single level) is
  encoded without that branch, or as a constant;
* ``minimal_widths``: each term is as wide as its own interval range needs (else every term
  of the network has the one width its widest term needs);
* ``balanced_sums``: sums are balanced adder trees (else a chain of additions).

Widths always come from exact interval ranges, so no term can overflow in either mode.

The property is decided in exact arithmetic on the spec's float64 coefficients, while the
counterexample checker evaluates ``A y - b`` in float64: for rows whose products need more
than float64's 53 bits the two could part on a point within rounding of the boundary. A model
the checker rejects is then skipped (never a wrong ``sat``); ``unsat`` is the exact answer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from ...intnet import IntNet, Lin, OutOfTime, Var, integer_row, round_shift


@dataclass(frozen=True)
class Options:
    dead_branches: bool = True
    minimal_widths: bool = True
    balanced_sums: bool = True


def bits(lo: int, hi: int) -> int:
    """Width of a two's-complement bit-vector holding every integer of [lo, hi]."""
    b = lambda v: v.bit_length() if v >= 0 else (-v - 1).bit_length()
    return max(b(lo), b(hi)) + 1


class _T(NamedTuple):
    """A term with its width and the range of integers it can take."""

    t: object
    w: int
    lo: int
    hi: int


class Encoder:
    def __init__(self, net: IntNet, backend, opts: Options):
        self.net, self.bk, self.opts = net, backend, opts
        self.W = 0 if opts.minimal_widths else _global_width(net)
        self.terms: List[_T] = []
        self.base: List[int] = []    # each term stands for its variable minus this offset
        self.inputs: List = []       # (term, is a solver variable, offset)
        self.stats = dict(smt_vars=0.0, smt_ites=0.0, smt_adders=0.0, smt_fixed=0.0)

    # ------------------------------------------------------------------ arithmetic on terms
    def width(self, lo: int, hi: int) -> int:
        return max(bits(lo, hi), self.W)

    def fit(self, x: _T, w: int):
        """x as a w-bit term (truncation is exact for ring operations whose result fits)."""
        if x.w == w:
            return x.t
        return self.bk.sext(x.t, w - x.w) if x.w < w else self.bk.extract(x.t, w - 1, 0)

    def const(self, v: int, w: Optional[int] = None) -> _T:
        w = w or self.width(v, v)
        return _T(self.bk.const(v, w), w, v, v)

    def add(self, a: _T, b: _T) -> _T:
        lo, hi = a.lo + b.lo, a.hi + b.hi
        w = self.width(lo, hi)
        self.stats["smt_adders"] += 1
        return _T(self.bk.add(self.fit(a, w), self.fit(b, w)), w, lo, hi)

    def scale(self, x: _T, k: int) -> _T:
        if k == 1:
            return x
        lo, hi = sorted((k * x.lo, k * x.hi))
        w = self.width(lo, hi)
        if k == -1:
            return _T(self.bk.neg(self.fit(x, w)), w, lo, hi)
        return _T(self.bk.mul(self.fit(x, w), self.bk.const(k, w)), w, lo, hi)

    def total(self, parts: Sequence[_T]) -> _T:
        parts = list(parts)
        if self.opts.balanced_sums:
            while len(parts) > 1:
                nxt = [self.add(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
                parts = nxt + ([parts[-1]] if len(parts) % 2 else [])
            return parts[0]
        acc = parts[0]
        for p in parts[1:]:
            acc = self.add(acc, p)
        return acc

    def lin(self, f: Lin) -> _T:
        parts = [self.scale(self.terms[int(j)], int(a)) for j, a in zip(f.cols, f.coef)]
        const = f.const + sum(int(a) * self.base[int(j)] for j, a in zip(f.cols, f.coef))
        if const or not parts:
            parts.append(self.const(const))
        return self.total(parts)

    def lt(self, a: _T, b: _T):
        w = max(a.w, b.w)
        return self.bk.slt(self.fit(a, w), self.fit(b, w))

    def ite(self, c, a: _T, b: _T) -> _T:
        lo, hi = min(a.lo, b.lo), max(a.hi, b.hi)
        w = self.width(lo, hi)
        self.stats["smt_ites"] += 1
        return _T(self.bk.ite(c, self.fit(a, w), self.fit(b, w)), w, lo, hi)

    def shift_right(self, z: _T, t: int) -> _T:
        """floor(z / 2**t), t >= 1."""
        lo, hi = z.lo >> t, z.hi >> t
        r = self.bk.ashr(z.t, self.bk.const(min(t, z.w), z.w))
        return _T(self.fit(_T(r, z.w, lo, hi), self.width(lo, hi)), self.width(lo, hi), lo, hi)

    def clamp(self, q: _T, lo: Optional[int], hi: Optional[int]) -> _T:
        dead = self.opts.dead_branches
        if lo is not None and (not dead or q.lo < lo):
            if dead and q.hi <= lo:
                return self.const(lo)
            c = self.const(lo)
            q = self.ite(self.lt(q, c), c, q)
            q = q._replace(lo=max(q.lo, lo), hi=max(q.hi, lo))
        if hi is not None and (not dead or q.hi > hi):
            if dead and q.lo >= hi:
                return self.const(hi)
            c = self.const(hi)
            q = self.ite(self.lt(c, q), c, q)
            q = q._replace(lo=min(q.lo, hi), hi=min(q.hi, hi))
        return q

    # ------------------------------------------------------------------ the network
    def encode_network(self, deadline: float = float("inf")) -> List[_T]:
        """Terms for every variable; returns the outputs' terms. Raises intnet.OutOfTime once
        ``time.monotonic()`` passes ``deadline`` (checked every 64 variables)."""
        dead = self.opts.dead_branches
        for j, v in enumerate(self.net.vars):
            if j % 64 == 0 and time.monotonic() > deadline:
                raise OutOfTime(f"while encoding variable {j} of {len(self.net.vars)}")
            if v.kind == "input":
                self._input(j, v)
                continue
            self.base.append(0)
            if dead and v.lo == v.hi:           # decided by the intervals: a constant
                self.stats["smt_fixed"] += 1
                self.terms.append(self.const(v.lo))
                continue
            z = self.lin(v.pre)
            self.terms.append(self._activation(v, z))
        return [self.lin(o) for o in self.net.outputs]

    def _input(self, j: int, v: Var) -> None:
        """An input code: a constant if the box fixes it, else a solver variable in [lo, hi];
        with minimal widths, the variable is the offset from lo (fewer bits: the box of an
        L-inf ball spans a few codes of 256), lo going into the affine forms' constants."""
        base = v.lo if self.opts.minimal_widths else 0
        free = not (self.opts.dead_branches and v.lo == v.hi)
        if not free:
            x = self.const(v.lo - base)
        else:
            lo, hi = v.lo - base, v.hi - base
            w = self.width(lo, hi)
            x = _T(self.bk.var(f"x{j}", w), w, lo, hi)
            self.stats["smt_vars"] += 1
            self.bk.assert_(self.bk.sle(self.bk.const(lo, w), x.t))
            self.bk.assert_(self.bk.sle(x.t, self.bk.const(hi, w)))
        self.inputs.append((x, free, base))
        self.terms.append(x)
        self.base.append(base)

    def _activation(self, v: Var, z: _T) -> _T:
        dead = self.opts.dead_branches
        zero = self.const(0)
        if v.kind == "relu":
            if dead and z.lo >= 0:
                return z
            r = self.ite(self.lt(zero, z), z, zero)
            return r._replace(lo=max(r.lo, 0), hi=max(r.hi, 0))
        if v.kind == "sign":
            one, minus = self.const(1), self.const(-1)
            neg = self.ite(self.lt(z, zero), minus, zero)
            return self.ite(self.lt(zero, z), one, neg)._replace(lo=v.lo, hi=v.hi)
        if v.kind == "clip":
            return self.clamp(z, *v.clip)
        st = v.step
        r = self._round(z, st.shift, st.rounding)
        if st.zero_point:
            r = self.add(r, self.const(st.zero_point))
        return self.clamp(r, st.lo, st.hi)

    def _round(self, z: _T, t: int, rounding: str) -> _T:
        """R(z / 2**t) exactly."""
        if t <= 0:
            return self.scale(z, 1 << -t)
        if rounding == "floor":
            return self.shift_right(z, t)
        if rounding == "ceil":
            return self.shift_right(self.add(z, self.const((1 << t) - 1)), t)
        half = 1 << (t - 1)
        r = self.shift_right(self.add(z, self.const(half)), t)
        if rounding == "half_up":
            return r
        # half to even: on an exact tie (low t bits == half) an odd result steps down by one
        if self.opts.dead_branches and z.lo + ((half - z.lo) % (1 << t)) > z.hi:
            return r   # no tie in range
        zt = self.fit(z, max(z.w, t + 1))
        tie = self.bk.eq(self.bk.extract(zt, t - 1, 0), self.bk.const(half, t))
        rw = max(r.w, 2)
        odd = self.bk.eq(self.bk.extract(self.fit(r, rw), 0, 0), self.bk.const(1, 1))
        down = self.add(r, self.const(-1))
        out = self.ite(self.bk.and_(tie, odd), down, r)
        return out._replace(lo=round_shift(z.lo, t, rounding), hi=round_shift(z.hi, t, rounding))

    # ------------------------------------------------------------------ the property
    def unsafe(self, outputs: List[_T], A: np.ndarray, b: np.ndarray, poly: np.ndarray,
               n_poly: int):
        """The formula 'the output lies in some polytope {y : A_p y <= b_p}', p < n_poly
        (exact; a polytope without rows is the whole output space)."""
        dead = self.opts.dead_branches
        polys = []
        for p in range(n_poly):
            rows = []
            for r in np.flatnonzero(poly == p):
                coef, rhs = integer_row(A[r], b[r], [o.exp for o in self.net.outputs])
                parts = [self.scale(outputs[k], c) for k, c in enumerate(coef) if c]
                row = self.total(parts) if parts else self.const(0)
                if dead and row.hi <= rhs:
                    continue                     # always satisfied
                if dead and row.lo > rhs:
                    rows = None                  # never satisfied: the polytope is empty
                    break
                w = max(row.w, bits(rhs, rhs))
                rows.append(self.bk.sle(self.fit(row, w), self.bk.const(rhs, w)))
            if rows is None:
                continue
            if not rows:
                return self.bk.eq(self.bk.const(0, 1), self.bk.const(0, 1))   # true
            polys.append(self.bk.and_(*rows))
        if not polys:
            return self.bk.eq(self.bk.const(0, 1), self.bk.const(1, 1))       # false
        return self.bk.or_(*polys)

    def free_inputs(self) -> List:
        """(term, width) of the inputs that are solver variables, to read from a model."""
        return [(x.t, x.w) for x, free, _ in self.inputs if free]

    def model_codes(self, values: Sequence[int]) -> List[int]:
        """The input codes of a model, given the values of ``free_inputs()``."""
        it = iter(values)
        return [(next(it) if free else x.lo) + base for x, free, base in self.inputs]

    def exclude(self, values: Sequence[int]) -> None:
        """Assert that the free inputs do not all take these values of ``free_inputs()``
        (a model to skip)."""
        diff = [self.bk.not_(self.bk.eq(t, self.bk.const(v, w)))
                for (t, w), v in zip(self.free_inputs(), values)]
        self.bk.assert_(self.bk.or_(*diff) if diff else self.bk.eq(self.bk.const(0, 1), self.bk.const(1, 1)))


def _global_width(net: IntNet) -> int:
    """The width every term gets without ``minimal_widths``: enough for the largest sum of
    absolute values of any form (covers every partial sum), plus rounding offsets."""
    mag = [max(abs(v.lo), abs(v.hi)) for v in net.vars]
    widest = 2
    for f in [v.pre for v in net.vars if v.pre is not None] + list(net.outputs):
        s = sum(abs(int(a)) * mag[int(j)] for j, a in zip(f.cols, f.coef)) + abs(f.const)
        widest = max(widest, bits(-2 * s - 2, 2 * s + 2))
    return widest
