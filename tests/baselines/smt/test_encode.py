"""The encoding of each activation equals its integer semantics (intnet) on every input of a
range, proven by the solver: 'some x in the range where the term differs' must be unsat. Ranges
include rounding ties, saturation on both sides and zero, so every branch of the encoding is
exercised, with each speed-up on and off."""
import itertools

import numpy as np
import pytest

from qnn_plugin.baselines.smt import solvers
from qnn_plugin.baselines.smt.encode import Encoder, Options, bits
from qnn_plugin.intnet import IntNet, Lin, Step, Var

LO, HI = -40, 40
COEF, CONST = 3, 5          # z = 3 x + 5 over x in [LO, HI]
OPTIONS = [Options(*flags) for flags in itertools.product([True, False], repeat=3)]


def _net(var: Var) -> IntNet:
    z_lo, z_hi = COEF * LO + CONST, COEF * HI + CONST
    var.pre = Lin(np.array([0]), np.array([COEF]), CONST, var.exp, z_lo, z_hi)
    vals = [var.apply(COEF * x + CONST) for x in range(LO, HI + 1)]
    var.lo, var.hi = min(vals), max(vals)
    out = Lin(np.array([1]), np.array([1]), 0, var.exp, var.lo, var.hi)
    return IntNet([Var("input", LO, HI), var], 1, [out])


def _differs_somewhere(net: IntNet, opts: Options, backend: str = "bitwuzla") -> str:
    enc = Encoder(net, solvers.make(backend), opts)
    enc.encode_network()
    bk, (x, base), q = enc.bk, (enc.terms[0], enc.base[0]), enc.terms[1]
    cases = []
    for v in range(LO, HI + 1):
        want = net.vars[1].apply(COEF * v + CONST)
        w = max(q.w, bits(want, want))
        is_v = bk.eq(enc.fit(x, max(x.w, bits(v - base, v - base))), bk.const(v - base, max(x.w, bits(v - base, v - base))))
        cases.append(bk.and_(is_v, bk.not_(bk.eq(enc.fit(q, w), bk.const(want, w)))))
    bk.assert_(bk.or_(*cases))
    return solvers.solve(bk, 30, [])[0]


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "floor", "ceil"])
@pytest.mark.parametrize("shift", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_steps(rounding, shift, opts):
    for zp, lo, hi in [(0, None, None), (3, -6, 9), (-2, 0, 15)]:
        step = Step(shift, zp, lo, hi, rounding)
        assert _differs_somewhere(_net(Var("step", 0, 0, 0, step=step)), opts) == "unsat", (zp, lo, hi)


@pytest.mark.parametrize("kind", ["relu", "sign", "clip"])
@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_relu_sign_clip(kind, opts):
    var = Var(kind, 0, 0, 2 if kind != "sign" else 0, clip=(-17, 31) if kind == "clip" else None)
    assert _differs_somewhere(_net(var), opts) == "unsat"


def test_z3_backend_too():
    step = Step(2, 1, -5, 20, "half_even")
    assert _differs_somewhere(_net(Var("step", 0, 0, 0, step=step)), Options(), "z3") == "unsat"


def test_a_wrong_encoding_is_caught(monkeypatch):
    """The check can fail: half to even encoded as half up differs on the ties."""
    original = Encoder._round
    monkeypatch.setattr(Encoder, "_round", lambda self, z, t, rounding: original(self, z, t, "half_up"))
    step = Step(2, 0, None, None, "half_even")
    assert _differs_somewhere(_net(Var("step", 0, 0, 0, step=step)), Options()) == "sat"
