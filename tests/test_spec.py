"""Tests of qnn_plugin.spec: VNN-LIB 1.0 / 2.0 text -> Spec (input boxes + unsafe polytopes)."""
from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin.errors import SpecError
from qnn_plugin.spec import Case, Polytope, Spec, parse_vnnlib, read_vnnlib

from tests.shared_data import VNNCOMP

BENCH_FILES = sorted(glob.glob(os.path.join(VNNCOMP, "*", "vnnlib", "*.vnnlib"))) if VNNCOMP else []

DECL = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + \
    "".join(f"(declare-const Y_{j} Real)\n" for j in range(2))
BOX = "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= X_1 1))\n(assert (>= X_1 -1))\n"


def rows(spec: Spec):
    """[(lower, upper, [(A, b), ...]), ...] as plain lists, for comparisons."""
    return [(c.lower.tolist(), c.upper.tolist(), [(p.A.tolist(), p.b.tolist()) for p in c.unsafe])
            for c in spec.cases]


# ---------------------------------------------------------------------------------------------
# Real VNN-COMP files
# ---------------------------------------------------------------------------------------------

needs_bench = pytest.mark.skipif(not BENCH_FILES, reason=f"no benchmark files under {VNNCOMP}")


@needs_bench
def test_every_benchmark_file_parses():
    for path in BENCH_FILES:
        spec = read_vnnlib(path)
        assert spec.source == path and spec.cases
        for case in spec.cases:
            assert case.lower.shape == case.upper.shape == (spec.n_inputs,)
            assert np.all(np.isfinite(case.lower)) and np.all(case.lower <= case.upper)
            for p in case.unsafe:
                assert p.A.shape == (p.b.shape[0], spec.n_outputs) and p.A.dtype == np.float64


def bench(name: str) -> str:
    if VNNCOMP is None:
        pytest.skip("no shared VNN-COMP folder (set QNN_SHARED_DIR)")
    path = os.path.join(VNNCOMP, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} absent")
    return path


def test_acasxu_prop_1_by_hand():
    spec = read_vnnlib(bench("acasxu/vnnlib/prop_1.vnnlib"))
    assert (spec.n_inputs, spec.n_outputs, len(spec.cases)) == (5, 5, 1)
    case = spec.cases[0]
    np.testing.assert_array_equal(case.lower, [0.6, -0.5, -0.5, 0.45, -0.5])
    np.testing.assert_array_equal(case.upper, [0.679857769, 0.5, 0.5, 0.5, -0.45])
    (poly,) = case.unsafe  # (assert (>= Y_0 3.991125645861615))
    np.testing.assert_array_equal(poly.A, [[-1.0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(poly.b, [-3.991125645861615])


def test_acasxu_prop_2_separate_asserts_form_one_polytope():
    spec = read_vnnlib(bench("acasxu/vnnlib/prop_2.vnnlib"))
    (case,) = spec.cases
    (poly,) = case.unsafe  # (<= Y_k Y_0) for k = 1..4, four separate asserts: one conjunction
    expected = {(-1.0, *(1.0 if j == k else 0.0 for j in range(1, 5))) for k in range(1, 5)}
    assert {tuple(r) for r in poly.A.tolist()} == expected
    np.testing.assert_array_equal(poly.b, np.zeros(4))


def test_acasxu_prop_6_or_of_input_boxes():
    spec = read_vnnlib(bench("acasxu/vnnlib/prop_6.vnnlib"))
    assert len(spec.cases) == 2
    x1 = sorted((c.lower[1], c.upper[1]) for c in spec.cases)
    assert x1 == [(-0.499999896, -0.11140846), (0.11140846, 0.499999896)]
    for case in spec.cases:
        np.testing.assert_array_equal(case.lower[[0, 2, 3, 4]], [-0.129289109, -0.499999896,
                                                                 -0.5, -0.5])
        assert len(case.unsafe) == 4  # unsafe if Y_0 is not minimal: Y_k <= Y_0 for some k
        for p, k in zip(sorted(case.unsafe, key=lambda p: int(np.argmax(p.A[0]))), range(1, 5)):
            expected = np.zeros(5)
            expected[[0, k]] = [-1.0, 1.0]
            np.testing.assert_array_equal(p.A, [expected])
            np.testing.assert_array_equal(p.b, [0.0])


def test_acasxu_prop_7_or_of_ands_over_outputs():
    spec = read_vnnlib(bench("acasxu/vnnlib/prop_7.vnnlib"))
    (case,) = spec.cases
    assert case.lower[0] == -0.328422877 and case.upper[0] == 0.679857769
    assert sorted(p.A.shape for p in case.unsafe) == [(3, 5), (3, 5)]
    y = np.array([1.0, 1.0, 1.0, 0.0, 2.0])  # Y_3 minimal among Y_0..Y_2: unsafe
    assert case.is_unsafe(y) and not case.is_unsafe(np.array([0.0, 1, 1, 1, 1]))


def test_mnist_fc_by_hand():
    spec = read_vnnlib(bench("mnist_fc/vnnlib/prop_0_0.03.vnnlib"))
    assert (spec.n_inputs, spec.n_outputs, len(spec.cases)) == (784, 10, 1)
    case = spec.cases[0]
    assert (case.lower[0], case.upper[0]) == (0.0, 0.029999999329447746)
    assert (case.lower[300], case.upper[300]) == (0.9543137550354004, 1.0)
    assert len(case.unsafe) == 9  # label 4: unsafe if Y_i >= Y_4 for some i != 4
    for p in case.unsafe:
        (row,) = p.A
        assert row[4] == 1.0 and sorted(row.tolist()).count(0.0) == 8 and row.min() == -1.0
        assert p.b.tolist() == [0.0]
    assert sorted(int(np.argmin(p.A[0])) for p in case.unsafe) == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_check_model():
    spec = parse_vnnlib(DECL + BOX, "p.vnnlib")
    spec.check_model(2, 2)
    with pytest.raises(SpecError, match=r"p\.vnnlib.*2 inputs and 2 outputs.*3 inputs and 2"):
        spec.check_model(3, 2)


# ---------------------------------------------------------------------------------------------
# Supported 1.0 forms
# ---------------------------------------------------------------------------------------------

def test_scientific_notation_crlf_comments_and_declaration_order():
    text = ("; header\r\n(declare-const Y_1 Real) ; trailing\r\n\r\n(declare-const X_1 Real)\r\n"
            "(declare-const Y_0 Real)\r\n(declare-const X_0 Real)\r\n"
            "(assert (<= X_0 1e-3)) (assert (>= X_0 -2.5E+01))\r\n"
            "(assert (>= 1.5 X_1)) ; reversed: upper bound\r\n"
            "(assert (<= .5e1 (+ X_1 10))) ; lower bound -5\r\n"
            "(assert (<= (+ Y_0 (* -1.0 Y_1)) 0))\r\n")
    (case,) = parse_vnnlib(text).cases
    assert case.lower.tolist() == [-25.0, -5.0] and case.upper.tolist() == [0.001, 1.5]
    assert [(p.A.tolist(), p.b.tolist()) for p in case.unsafe] == [([[1.0, -1.0]], [0.0])]


def test_repeated_bounds_take_the_intersection():
    text = DECL + BOX + "(assert (<= X_0 0.5)) (assert (<= X_0 2)) (assert (>= X_1 -3))\n" \
        "(assert (and (>= X_1 -0.25) (>= X_0 0.125)))"
    (case,) = parse_vnnlib(text).cases
    assert case.lower.tolist() == [0.125, -0.25] and case.upper.tolist() == [0.5, 1.0]
    assert [p.A.shape for p in case.unsafe] == [(0, 2)]  # no output constraint: all unsafe


def test_equality_gives_both_rows_and_strict_is_closed():
    text = DECL + "(assert (= X_0 0.5)) (assert (<= X_1 1)) (assert (>= X_1 0))\n" \
        "(assert (= Y_0 Y_1)) (assert (< Y_0 2))"
    (case,) = parse_vnnlib(text).cases
    assert case.lower.tolist() == [0.5, 0.0] and case.upper.tolist() == [0.5, 1.0]
    (p,) = case.unsafe
    assert sorted(map(tuple, np.c_[p.A, p.b].tolist())) == \
        [(-1.0, 1.0, 0.0), (1.0, -1.0, 0.0), (1.0, 0.0, 2.0)]
    assert case.is_unsafe(np.array([2.0, 2.0]))  # boundary of `<` is in the (closed) set


def test_several_top_level_ors_are_distributed():
    # vnnlib 1.0.2 alone gets this wrong (unbounded input, spurious case): the one-`and` wrap
    text = DECL + BOX + "(assert (or (<= Y_0 0) (>= Y_0 3)))\n(assert (or (<= Y_1 1) (>= Y_1 4)))"
    (case,) = parse_vnnlib(text).cases
    assert case.lower.tolist() == [0.0, -1.0] and case.upper.tolist() == [1.0, 1.0]
    assert len(case.unsafe) == 4
    for y0, y1, unsafe in [(0, 1, True), (3, 4, True), (0, 4, True), (1, 1, False), (0, 2, False)]:
        assert case.is_unsafe(np.array([y0, y1], float)) == unsafe


def test_v2_text():
    text = ("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float64 [1,2])\n"
            "  (declare-output Y float64 [3]))\n; comment\n"
            "(assert (and (<= X[0,0] 1.0) (>= X[0,0] 0.0)))\n(assert (<= X[0,1] 2.0))\n"
            "(assert (>= X[0,1] 1.0))\n(assert (or (== Y[0] Y[1]) (>= Y[2] 2.5)))\n")
    spec = parse_vnnlib(text, "v2.vnnlib")
    assert (spec.n_inputs, spec.n_outputs, spec.source) == (2, 3, "v2.vnnlib")
    (case,) = spec.cases
    assert case.lower.tolist() == [0.0, 1.0] and case.upper.tolist() == [1.0, 2.0]
    assert sorted(p.A.shape[0] for p in case.unsafe) == [1, 2]  # == kept both rows


def test_v2_scientific_notation():
    """The package rejects exponents; 2.0 numbers with one are passed on as plain decimals."""
    text = ("(vnnlib-version <2.0>)\n(declare-network N\n  (declare-input X float64 [2])\n"
            "  (declare-output Y float64 [2]))\n"
            "(assert (and (>= X[0] -1.5e-1) (<= X[0] 1.0e0) (>= X[1] 2.5E+1) (<= X[1] 3e1)))\n"
            "(assert (<= Y[0] (* 1e-3 Y[1])))\n")
    (case,) = parse_vnnlib(text, "v2.vnnlib").cases
    assert case.lower.tolist() == [-0.15, 25.0] and case.upper.tolist() == [1.0, 30.0]
    (poly,) = case.unsafe
    assert poly.A.tolist() == [[1.0, -0.001]] and poly.b.tolist() == [0.0]


def test_read_vnnlib_file(tmp_path):
    path = tmp_path / "p.vnnlib"
    path.write_bytes((DECL + BOX + "(assert (<= Y_0 Y_1))").replace("\n", "\r\n").encode())
    spec = read_vnnlib(path)
    assert spec.source == str(path) and len(spec.cases) == 1


# ---------------------------------------------------------------------------------------------
# Round trips: random specs written as text, parsed, compared pointwise with the truth
# ---------------------------------------------------------------------------------------------

def fmt_v1(v: float, style: int) -> str:
    """A few spellings of the same number, as VNN-COMP files and SMT-LIB writers produce."""
    if style == 1 and v == int(v):
        return str(int(v))
    if style == 2:
        return f"{v:.3e}"  # e.g. 1.500e+00
    if style == 3:
        return f"{v * 10:g}E-1"
    return repr(float(v))


def term_text(coeffs, const, var, num) -> str:
    """sum(c * var(j)) + const, written with +, * and - in several shapes."""
    parts = []
    for j, c in coeffs:
        parts.append(var(j) if c == 1 else f"(- {var(j)})" if c == -1 else f"(* {num(c)} {var(j)})")
    if const:
        parts.append(num(const))
    return parts[0] if len(parts) == 1 else f"(+ {' '.join(parts)})"


@st.composite
def atoms(draw, n_out):
    """(op, coeffs, const, rhs_var): sum(coeffs) + const  op  rhs (a number or a variable)."""
    k = draw(st.integers(1, min(2, n_out)))
    js = draw(st.lists(st.integers(0, n_out - 1), min_size=k, max_size=k, unique=True))
    coeffs = [(j, draw(st.sampled_from([1.0, -1.0, 2.0, -0.5]))) for j in js]
    const = draw(st.sampled_from([0.0, 0.0, 1.0, -1.5]))
    free = [j for j in range(n_out) if j not in js]
    rhs = draw(st.one_of(st.sampled_from([-1.0, 0.0, 0.5, 2.0]).map(lambda v: ("num", v)),
                         *([st.sampled_from(free).map(lambda j: ("var", j))] if free else [])))
    op = draw(st.sampled_from(["<=", ">=", "<", ">", "=", "<="]))
    return ("atom", op, coeffs, const, rhs)


def formulas(n_out, depth):
    leaf = atoms(n_out)
    if depth == 0:
        return leaf
    sub = formulas(n_out, depth - 1)
    return st.one_of(leaf, st.tuples(st.sampled_from(["and", "or"]),
                                     st.lists(sub, min_size=1, max_size=3)))


def truth(f, y) -> bool:
    """The formula on y, with < and > read as <= and >= (the closure, as documented)."""
    if f[0] in ("and", "or"):
        vals = [truth(g, y) for g in f[1]]
        return all(vals) if f[0] == "and" else any(vals)
    _, op, coeffs, const, rhs = f
    lhs = sum(c * y[j] for j, c in coeffs) + const
    r = rhs[1] if rhs[0] == "num" else y[rhs[1]]
    return {"<=": lhs <= r, "<": lhs <= r, ">=": lhs >= r, ">": lhs >= r, "=": lhs == r}[op]


def text_of(f, var, num, eq) -> str:
    if f[0] in ("and", "or"):
        return f"({f[0]} {' '.join(text_of(g, var, num, eq) for g in f[1])})"
    _, op, coeffs, const, rhs = f
    r = num(rhs[1]) if rhs[0] == "num" else var(rhs[1])
    return f"({eq if op == '=' else op} {term_text(coeffs, const, var, num)} {r})"


@st.composite
def specs(draw):
    n_in, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n_boxes = draw(st.integers(1, 3))
    boxes = []
    for _ in range(n_boxes):
        lo = draw(st.lists(st.sampled_from([-1.0, -0.5, 0.0]), min_size=n_in, max_size=n_in))
        hi = [v + draw(st.sampled_from([0.0, 0.5, 1.0])) for v in lo]
        boxes.append((lo, hi))
    ys = draw(st.lists(formulas(n_out, 2), min_size=n_boxes, max_size=n_boxes))
    extra = draw(st.lists(formulas(n_out, 1), max_size=2))  # more top-level asserts (single box)
    style = draw(st.integers(0, 3))
    return n_in, n_out, boxes, ys, extra if n_boxes == 1 else [], style


def box_atoms(lo, hi, xvar, num):
    out = []
    for i, (l, h) in enumerate(zip(lo, hi)):
        out += [f"(>= {xvar(i)} {num(l)})", f"(<= {xvar(i)} {num(h)})",
                f"(<= {xvar(i)} {num(h + 1.0)})"]  # a looser repeat: intersection keeps h
    return out


def write_spec(n_in, n_out, boxes, ys, extra, v2, style) -> str:
    if v2:
        xvar, yvar = (lambda i: f"X[{i}]"), (lambda j: f"Y[{j}]")
        # float literals only (2.0 types them), with or without an exponent
        num, eq = (lambda v: fmt_v1(v, style) if style in (2, 3) else repr(float(v))), "=="
        head = (f"(vnnlib-version <2.0>)\n(declare-network net\n  (declare-input X float64 "
                f"[{n_in}])\n  (declare-output Y float64 [{n_out}]))\n")
    else:
        xvar, yvar = (lambda i: f"X_{i}"), (lambda j: f"Y_{j}")
        num, eq = (lambda v: fmt_v1(v, style)), "="
        names = [f"X_{i}" for i in range(n_in)] + [f"Y_{j}" for j in range(n_out)]
        head = "".join(f"(declare-const {n} Real)\n" for n in sorted(names, reverse=style == 2))
    ytexts = [text_of(f, yvar, num, eq) for f in ys] + [text_of(f, yvar, num, eq) for f in extra]
    if len(boxes) == 1:
        asserts = box_atoms(*boxes[0], xvar, num) + ytexts
        return head + "".join(f"; a comment\n(assert {a})\n" for a in asserts)
    disjuncts = [f"(and {' '.join(box_atoms(lo, hi, xvar, num))} {yt})"
                 for (lo, hi), yt in zip(boxes, ytexts)]
    return head + "(assert (or\n  " + "\n  ".join(disjuncts) + "))\n"


def violated(spec: Spec, x, y) -> bool:
    return any(np.all(c.lower <= x) and np.all(x <= c.upper) and c.is_unsafe(y)
               for c in spec.cases)


def check_round_trip(data, v2):
    n_in, n_out, boxes, ys, extra, style = data
    spec = parse_vnnlib(write_spec(n_in, n_out, boxes, ys, extra, v2, style))
    assert (spec.n_inputs, spec.n_outputs) == (n_in, n_out)
    rng = np.random.default_rng(0)
    grid = np.array([-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    for _ in range(60):
        x = rng.choice(grid[:7], n_in)
        y = rng.choice(grid, n_out) if rng.random() < 0.7 else rng.normal(0, 2, n_out)
        expected = any(np.all(np.array(lo) <= x) and np.all(x <= np.array(hi))
                       and truth(f, y) and all(truth(g, y) for g in extra)
                       for (lo, hi), f in zip(boxes, ys))
        assert violated(spec, x, y) == expected, (x, y)
    # every case box is one of the written boxes
    written = {(tuple(lo), tuple(hi)) for lo, hi in boxes}
    assert {(tuple(c.lower), tuple(c.upper)) for c in spec.cases} <= written


SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(specs())
def test_round_trip_v1(data):
    check_round_trip(data, v2=False)


@SETTINGS
@given(specs())
def test_round_trip_v2(data):
    check_round_trip(data, v2=True)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

def at(line: int, col: int) -> str:
    return rf"^bad\.vnnlib:{line}:{col}: "


BAD_POSITIONED = [  # (text, line, col, what the message says)
    (DECL + BOX + "(assert (<= Y_0 Y_1)", 9, 1, r"'\(' is never closed.*expected '\)'"),
    (DECL + BOX + "(assert (<= Y_0 Y_1)))", 9, 22, r"unexpected '\)'"),
    (DECL + BOX + "(assert (<== Y_0 Y_1))", 9, 9, r"unknown operator '<=='.*expected"),
    (DECL + BOX + "(assert (<= Y_0 Y_7))", 9, 17, r"undeclared output variable Y_7"),
    (DECL + BOX + "(assert\n  (<= X_2 1.0))", 10, 7, r"undeclared input variable X_2"),
    (DECL + BOX + "(assert (<= Y_0 abc))", 9, 17, r"expected a number.*'abc'"),
    (DECL + BOX + "(assert (<= Y_0 1.2.3))", 9, 17, r"expected a number.*'1\.2\.3'"),
    (DECL + BOX + "(assert (<= Y_0 1e400))", 9, 17, r"out of float64 range"),
    (DECL + BOX + "(assert (<= Y_0 Y_1 Y_0))", 9, 9, r"exactly 2 arguments"),
    (DECL + BOX + "(assert (or))", 9, 9, r"\(or\) needs at least one argument"),
    (DECL + BOX + "(assert Y_0)", 9, 9, r"expected a constraint"),
    (DECL + BOX + "(assert (<= (/ Y_0 2) 1))", 9, 13, r"unsupported term"),
    (DECL + BOX + "(check-sat)\n(frobnicate)", 10, 1, r"unknown command 'frobnicate'"),
    (DECL + "X_0", 5, 1, r"expected '\(' at top level"),
    ("(declare-const X_0 Int)", 1, 20, r"expected type Real"),
    ("(declare-const Z_0 Real)", 1, 16, r"unsupported variable name 'Z_0'"),
    (DECL + "(declare-const X_1 Real)", 5, 16, r"X_1 is declared twice"),
    (DECL + BOX + "(assert (<= X_0 Y_1))", 9, 9, r"mixes inputs \(X\) and outputs \(Y\)"),
    (DECL + BOX + "(assert (<= (* Y_0 (+ Y_1 1)) 1))", 9, 13, r"non-linear"),
    (DECL + BOX + "(assert (<= (+ X_0 X_1) 1))", 9, 9, r"must bound a single variable"),
    # 2.0 text: errors of the package, positions mapped back to the original text
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [2]) "
     "(declare-output Y float64 [1]))\n(assert (and (<= X[0] 1.0) (>= X[0] 0.0)))\n"
     "(assert (and (<= X[1] 1.0) (>= Z[1] 0.0)))", 4, 32, r"Undeclared variable at 'Z'"),
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [2]) "
     "(declare-output Y float64 [1]))\n(assert (and (<= X[0] 1.0) (>= X[0] 0.0)))\n"
     "(assert (and (<= X[1] 1.0) (>= X[1] 0)))", 4, 37, r"Type mismatch"),
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [2]) "
     "(declare-output Y float64 [1]))\n(assert (and (<= X[0] 1.0) (>= X[0] 0.0)))\n"
     "(assert (and (<= X[1] 1.0)\n  (foo X[1] 0.0)))", 5, 4, r"syntax error at 'foo'"),
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [2]) "
     "(declare-output Y float64 [1]))\n(assert (and (<= X[0] 1.0) (>= X[0] 0.0)))\n"
     "(assert (and (<= X[1] 1e999) (>= X[1] 0.0)))", 4, 23, r"out of float64 range"),
]


@pytest.mark.parametrize("text,line,col,what", BAD_POSITIONED)
def test_bad_input_names_line_and_column(text, line, col, what):
    with pytest.raises(SpecError, match=at(line, col) + ".*" + what):
        parse_vnnlib(text, "bad.vnnlib")


BAD_BOX = [  # (text, what the message says)
    (DECL + "(assert (<= X_0 1))\n(assert (<= X_1 1))\n(assert (>= X_1 0))",
     r"X_0 has no lower bound in input box 1 \(bounds on lines 5-7\)"),
    (DECL + "(assert (>= X_0 1))\n(assert (<= X_1 1))\n(assert (>= X_1 0))",
     r"X_0 has no upper bound in input box 1"),
    (DECL + "(assert (<= X_0 0))\n(assert (>= X_0 1))\n(assert (<= X_1 1))\n(assert (>= X_1 0))",
     r"empty input box: X_0 has lower bound 1\.0 \(line 6\) > upper bound 0\.0 \(line 5\) "
     r"in input box 1"),
    (DECL + "(assert (or (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0) (<= Y_0 0))\n"
     "            (and (<= X_0 1) (>= X_0 0) (<= X_1 -1) (>= X_1 0) (<= Y_1 0))))",
     r"empty input box: X_1 has lower bound 0\.0 \(line 6\) > upper bound -1\.0 \(line 6\) "
     r"in input box 2"),
    (DECL + "(assert (or (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (>= X_1 0) (<= Y_0 0))\n"
     "            (and (<= X_0 1) (>= X_0 0) (<= X_1 1) (<= Y_1 0))))",
     r"X_1 has no lower bound in input box 2 \(bounds on line 6\)"),
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [1,2]) "
     "(declare-output Y float64 [1]))\n(assert (and (<= X[0,0] 1.0) (>= X[0,0] 0.0)))\n"
     "(assert (<= X[0,1] 1.0))", r"X\[0, 1\] has no lower bound in input box 1"),
]


@pytest.mark.parametrize("text,what", BAD_BOX)
def test_bad_box_names_variable_and_case(text, what):
    with pytest.raises(SpecError, match=r"^bad\.vnnlib: .*" + what):
        parse_vnnlib(text, "bad.vnnlib")


BAD_OTHER = [
    ("(declare-const X_0 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)\n"
     "(assert (<= X_0 1))", r"input declarations have gaps: X_1 not declared although X_2 is"),
    ("(declare-const X_0 Real)\n(declare-const Y_1 Real)\n(assert (<= X_0 1))",
     r"output declarations have gaps: Y_0"),
    ("", r"no input variables declared"),
    ("(declare-const X_0 Real)", r"no output variables declared"),
    (DECL, r"no assertions"),
    (DECL + BOX + "(assert (<= 3 2))", r"Unsatisfiable constraint"),
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [2]) "
     "(declare-output Y float64 [1]))\n(assert (<= X[0] Y[0]))", r"mixed constraints"),
    ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X float64 [2]) "
     "(declare-output Y float64 [1]))", r"no assertions"),
]


@pytest.mark.parametrize("text,what", BAD_OTHER)
def test_bad_input_other(text, what):
    with pytest.raises(SpecError, match=r"^bad\.vnnlib: .*" + what):
        parse_vnnlib(text, "bad.vnnlib")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mangled_text_gives_spec_error_only(data):
    """Random edits of valid 1.0 and 2.0 text: a Spec or a SpecError, never another exception."""
    base = data.draw(st.sampled_from([
        DECL + BOX + "(assert (or (and (<= Y_0 Y_1) (>= Y_0 0.5)) (<= (+ Y_1 (* -2 Y_0)) 1e-2)))",
        write_spec(2, 2, [([0.0, 0.0], [1.0, 1.0]), ([-1.0, 0.0], [0.0, 0.5])],
                   [("atom", "=", [(0, 1.0)], 0.0, ("var", 1)),
                    ("atom", "<", [(1, 2.0)], 1.0, ("num", 0.5))], [], v2=True, style=0)]))
    text = list(base)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        new = data.draw(st.sampled_from(["", "(", ")", " ", "X", "_7", "1e", "-", "and", "\n", ";"]))
        text[pos:pos + data.draw(st.integers(0, 3))] = [new]
    try:
        parse_vnnlib("".join(text), "m.vnnlib")
    except SpecError as exc:
        assert str(exc).startswith("m.vnnlib")


def test_missing_and_unreadable_files(tmp_path):
    missing = tmp_path / "nope.vnnlib"
    with pytest.raises(SpecError, match=re.escape(str(missing))):
        read_vnnlib(missing)
    with pytest.raises(SpecError, match=re.escape(str(tmp_path))):
        read_vnnlib(tmp_path)  # a folder
    binary = tmp_path / "bin.vnnlib"
    binary.write_bytes(b"\xff\xfe(assert")
    with pytest.raises(SpecError, match=r"bin\.vnnlib.*not UTF-8"):
        read_vnnlib(binary)


def test_types_are_the_internal_form():
    spec = parse_vnnlib(DECL + BOX + "(assert (<= Y_0 Y_1))")
    assert isinstance(spec.cases, tuple) and isinstance(spec.cases[0], Case)
    assert isinstance(spec.cases[0].unsafe, tuple) and isinstance(spec.cases[0].unsafe[0], Polytope)
    assert spec.cases[0].lower.dtype == np.float64 and spec.source == "<string>"
    with pytest.raises(AttributeError):
        spec.n_inputs = 3  # frozen
