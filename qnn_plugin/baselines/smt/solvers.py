"""Bit-vector solver backends: bitwuzla (the default, Boolector's successor) and z3.

The encoder needs a handful of QF_BV operations on terms whose widths it tracks itself; each
backend maps them onto its own API. Values are Python integers (two's complement for negative).
"""
from __future__ import annotations

import time
from typing import List, Sequence, Tuple

from ...forked import Forked

BACKENDS = ("bitwuzla", "z3")


def make(name: str):
    if name == "bitwuzla":
        return Bitwuzla()
    if name == "z3":
        return Z3()
    raise ValueError(f"SMT backend must be one of {BACKENDS}, got {name!r}")


def solve(backend, seconds: float, read: Sequence[Tuple[object, int]]):
    """Check the asserted formula within ``seconds`` of wall-clock time: ('sat', the values of
    the (term, width) pairs in ``read``), ('unsat', None), ('unknown', None) (out of time) or
    ('error', message) (the solver failed or its process died).

    The check runs in a forked child (``qnn_plugin.forked``) that is killed at the deadline:
    neither solver stops on time by itself in every phase."""
    job = Forked(lambda: _check_and_read(backend, seconds, read), seconds)
    try:
        if not job.wait(seconds + 0.25):
            return "unknown", None                  # out of time
    finally:
        job.stop()
    kind, answer = job.result
    if kind == "error":                             # an exception, or the child died
        return "error", f"{backend.name}: {answer}"
    return answer


def _check_and_read(backend, seconds, read):
    status = backend.check(seconds)
    values = [backend.value(t, w) for t, w in read] if status == "sat" else None
    return status, values


class Bitwuzla:
    name = "bitwuzla"

    def __init__(self):
        import bitwuzla as bz

        self.bz = bz
        self.tm = bz.TermManager()
        self._sorts = {}
        self._assertions: List = []
        self.K = bz.Kind

    def _sort(self, w: int):
        if w not in self._sorts:
            self._sorts[w] = self.tm.mk_bv_sort(w)
        return self._sorts[w]

    def var(self, name: str, w: int):
        return self.tm.mk_const(self._sort(w), name)

    def const(self, v: int, w: int):
        return self.tm.mk_bv_value(self._sort(w), str(v % (1 << w)), 10)

    def _op(self, kind, *args, idx=None):
        return self.tm.mk_term(kind, list(args), idx) if idx else self.tm.mk_term(kind, list(args))

    def add(self, a, b):
        return self._op(self.K.BV_ADD, a, b)

    def mul(self, a, b):
        return self._op(self.K.BV_MUL, a, b)

    def neg(self, a):
        return self._op(self.K.BV_NEG, a)

    def ashr(self, a, b):
        return self._op(self.K.BV_ASHR, a, b)

    def sext(self, a, extra: int):
        return self._op(self.K.BV_SIGN_EXTEND, a, idx=[extra])

    def extract(self, a, hi: int, lo: int):
        return self._op(self.K.BV_EXTRACT, a, idx=[hi, lo])

    def ite(self, c, a, b):
        return self._op(self.K.ITE, c, a, b)

    def slt(self, a, b):
        return self._op(self.K.BV_SLT, a, b)

    def sle(self, a, b):
        return self._op(self.K.BV_SLE, a, b)

    def eq(self, a, b):
        return self._op(self.K.EQUAL, a, b)

    def not_(self, f):
        return self._op(self.K.NOT, f)

    def and_(self, *fs):
        return fs[0] if len(fs) == 1 else self._op(self.K.AND, *fs)

    def or_(self, *fs):
        return fs[0] if len(fs) == 1 else self._op(self.K.OR, *fs)

    def assert_(self, f):
        self._assertions.append(f)

    def check(self, seconds: float) -> str:
        """'sat', 'unsat' or 'unknown' (time limit)."""
        opts = self.bz.Options()
        opts.set(self.bz.Option.PRODUCE_MODELS, True)
        opts.set(self.bz.Option.TIME_LIMIT_PER, max(1, int(seconds * 1000)))
        self._solver = self.bz.Bitwuzla(self.tm, opts)
        # the per-check time limit alone is not honoured during preprocessing (measured: 11 s
        # for a 2.5 s limit on an MNIST MLP); the terminator is polled there too
        end = time.monotonic() + seconds
        self._solver.configure_terminator(lambda: time.monotonic() > end)
        for f in self._assertions:
            self._solver.assert_formula(f)
        r = self._solver.check_sat()
        return {self.bz.Result.SAT: "sat", self.bz.Result.UNSAT: "unsat"}.get(r, "unknown")

    def value(self, term, w: int) -> int:
        u = int(self._solver.get_value(term).value(10))
        return u - (1 << w) if u >= 1 << (w - 1) else u


class Z3:
    name = "z3"

    def __init__(self):
        import z3

        self.z3 = z3
        self.solver = z3.SolverFor("QF_BV")

    def var(self, name: str, w: int):
        return self.z3.BitVec(name, w)

    def const(self, v: int, w: int):
        return self.z3.BitVecVal(v % (1 << w), w)

    def add(self, a, b):
        return a + b

    def mul(self, a, b):
        return a * b

    def neg(self, a):
        return -a

    def ashr(self, a, b):
        return a >> b          # z3's >> on bit-vectors is the arithmetic shift

    def sext(self, a, extra: int):
        return self.z3.SignExt(extra, a)

    def extract(self, a, hi: int, lo: int):
        return self.z3.Extract(hi, lo, a)

    def ite(self, c, a, b):
        return self.z3.If(c, a, b)

    def slt(self, a, b):
        return a < b           # signed on bit-vectors

    def sle(self, a, b):
        return a <= b

    def eq(self, a, b):
        return a == b

    def not_(self, f):
        return self.z3.Not(f)

    def and_(self, *fs):
        return fs[0] if len(fs) == 1 else self.z3.And(*fs)

    def or_(self, *fs):
        return fs[0] if len(fs) == 1 else self.z3.Or(*fs)

    def assert_(self, f):
        self.solver.add(f)

    def check(self, seconds: float) -> str:
        self.solver.set("timeout", max(1, int(seconds * 1000)))
        r = self.solver.check()
        return "sat" if r == self.z3.sat else "unsat" if r == self.z3.unsat else "unknown"

    def value(self, term, w: int) -> int:
        v = self.solver.model().eval(term, model_completion=True).as_long()
        return v - (1 << w) if v >= 1 << (w - 1) else v
