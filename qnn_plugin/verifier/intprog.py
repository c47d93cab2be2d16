"""The exact integer program of a QNN on its input codes, solved with HiGHS (highspy).

For a network that is exact integer arithmetic on its input codes (``qnn_plugin.intnet``: power-
of-two scales, float32-exact accumulators), every quantity is an integer and so is every
constraint: input codes, quantization levels and ReLU outputs are integer columns, each
activation's defining form Z an integer combination of them. A level k of the step
``clamp(R(Z / 2**t) + zp, lo, hi)`` satisfies, with r = k - zp and s = 2**t,

    floor: s r <= Z <= s r + s - 1          half up: s r - s/2 <= Z <= s r + s/2 - 1
    ceil:  s r - s + 1 <= Z <= s r          half even: s r - s/2 + p <= Z <= s r + s/2 - p

(p the parity of r: a tie belongs to the even level; t <= 0: r = Z * 2**-t), and a binary per
reachable saturation releases the edge it passes (big-M from the exact ranges). ReLU and Sign
get the usual binary encodings, exact given the ranges (a Sign that intnet relaxed, a float bias
within float32's rounding error of 0, may also be 0 there: the program is then a relaxation,
its "infeasible" still a proof, its solutions still checked). Every row has integer coefficients, so
relaxing its bounds by half a unit adds no integer point but keeps HiGHS's tolerances (1e-6)
far from the boundary: the program's integer points are exactly the network's.

Each unsafe polytope {y : A_p y <= b_p} becomes integer rows (``intnet.integer_row``) and the
program minimises t >= max_r (row_r - rhs_r): it stops at the first solution with t <= 0 (a
counterexample candidate, confirmed by the verifier's checker before any ``sat``) and prunes
every node whose bound exceeds 1/2, so "infeasible" proves the polytope empty. The objective
gives HiGHS a bound to prune with; the float program of ``milp.py``, a pure feasibility
problem, stalled on AAAI instances this one decides in seconds. Several polytopes (a
robustness property's other classes) can share one program: a binary z_p per polytope with
sum z_p = 1 and polytope p's rows released by a big-M (their range over the column bounds)
where z_p = 0, so t <= 0 is reachable exactly at points of the union; its "infeasible"
proves every one of them empty at once.

The input codes are first continuous (``solve(inputs="relaxed-first")``): that program has more
points, so its "infeasible" is still a proof, and HiGHS no longer branches on hundreds of input
codes; it proved the AAAI instances 1.7-9.4x faster (median 3.5x; scripts/bench_intprog.py).
Its solutions can have fractional inputs that no integer code realises; those are repaired
(rounded codes; the fractional codes free and the rest held; integer codes under the
solution's levels) or the integer program decides.

Ranges come from exact interval arithmetic, narrowed by the CROWN bounds of the bound graph
where those are tighter (``intnet.extract(pre_bounds=...)``): fewer undecided neurons, smaller
big-M constants.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..intnet import IntNet, integer_row, round_shift

_SLACK = 0.5            # half an integer unit: no integer point gained, tolerances kept away
_INF = float("inf")
# beyond this a row's half-unit margin drowns in HiGHS's scaled tolerances: not attempted
_MAX_COEF = 2.0 ** 40
# a relaxed solution with fractional inputs gets this share of the time left for each repair
# (its rounded codes, then integer codes under its levels); the rest is the integer program's
# ("relaxed-first") or, with "relaxed", left to the integer variant racing beside it
_REPAIR_SHARE = 0.1

Expr = Tuple[Dict[int, int], int]   # {column: integer coefficient}, integer constant


@dataclass
class Program:
    """Columns (bounds, integrality) and rows lo <= sum coef x <= hi, in coordinate form."""

    col_lo: List[float] = field(default_factory=list)
    col_hi: List[float] = field(default_factory=list)
    integer: List[bool] = field(default_factory=list)
    r_idx: List[int] = field(default_factory=list)
    c_idx: List[int] = field(default_factory=list)
    vals: List[float] = field(default_factory=list)
    row_lo: List[float] = field(default_factory=list)
    row_hi: List[float] = field(default_factory=list)
    inputs: List[int] = field(default_factory=list)    # the input codes' columns, in order
    outputs: List[Expr] = field(default_factory=list)  # the output integers Y_k
    exps: List[int] = field(default_factory=list)      # y_k = Y_k * 2**-exps[k]

    def column(self, lo: float, hi: float, integer: bool = True) -> int:
        self.col_lo.append(float(lo))
        self.col_hi.append(float(hi))
        self.integer.append(integer)
        return len(self.col_lo) - 1

    def row(self, terms: Expr, lo: float, hi: float) -> None:
        """lo <= sum coef x + const <= hi, for integer-valued rows (relaxed by half a unit)."""
        coef, const = terms
        r = len(self.row_lo)
        for c, v in coef.items():
            if v:
                self.r_idx.append(r)
                self.c_idx.append(c)
                self.vals.append(float(v))
        self.row_lo.append(lo - const - _SLACK)
        self.row_hi.append(hi - const + _SLACK)


def _combine(parts: Sequence[Tuple[int, Expr]], const: int = 0) -> Expr:
    """sum_i a_i * e_i + const for integer weights a_i and expressions e_i."""
    out: Dict[int, int] = {}
    for a, (coef, c) in parts:
        if not a:
            continue
        const += a * c
        for col, v in coef.items():
            out[col] = out.get(col, 0) + a * v
    return out, const


def build(net: IntNet) -> Program:
    """The program of the integer network (columns for inputs and undecided activations)."""
    prog = Program()
    exprs: List[Expr] = []
    for v in net.vars:
        if v.kind == "input":
            col = prog.column(v.lo, v.hi)
            prog.inputs.append(col)
            exprs.append(({col: 1}, 0))
            continue
        if v.lo == v.hi:                       # decided on the whole box: a constant
            exprs.append(({}, v.lo))
            continue
        f = v.pre
        z = _combine([(int(a), exprs[int(j)]) for j, a in zip(f.cols, f.coef)], int(f.const))
        if v.kind == "relu":
            exprs.append(_relu(prog, z, f.lo, f.hi, v))
        elif v.kind == "sign":
            exprs.append(_sign(prog, z, f.lo, f.hi, v.band))
        elif v.kind == "step":
            st = v.step
            exprs.append(_step(prog, z, f.lo, f.hi, v.lo, v.hi, st.shift, st.zero_point,
                               st.lo, st.hi, st.rounding))
        else:                                  # clip: a step without rounding
            exprs.append(_step(prog, z, f.lo, f.hi, v.lo, v.hi, 0, 0, v.clip[0], v.clip[1],
                               "floor"))
    for o in net.outputs:
        prog.outputs.append(_combine([(int(a), exprs[int(j)]) for j, a in zip(o.cols, o.coef)],
                                     int(o.const)))
        prog.exps.append(o.exp)
    return prog


def _relu(prog: Program, z: Expr, zl: int, zu: int, v) -> Expr:
    if zl >= 0:
        return z
    y = prog.column(v.lo, v.hi)
    a = prog.column(0, 1)
    prog.row(_combine([(1, ({y: 1}, 0)), (-1, z)]), 0, _INF)                      # y >= Z
    prog.row(_combine([(1, ({y: 1, a: -zl}, 0)), (-1, z)]), -_INF, -zl)           # y <= Z - l(1-a)
    prog.row(({y: 1, a: -zu}, 0), -_INF, 0)                                       # y <= u a
    return {y: 1}, 0


def _sign(prog: Program, z: Expr, zl: int, zu: int, band: int = 0) -> Expr:
    """sign(Z) = pos - neg with pos = [Z >= 1], neg = [Z <= -1] (each present when reachable);
    with ``band`` (intnet's relaxed Sign) also 0 where |Z| <= band."""
    out: Dict[int, int] = {}
    if zu >= 1:
        pos = prog.column(0, 1)     # pos = 1 -> Z >= 1; pos = 0 -> Z <= band
        prog.row(_combine([(1, z), (1, ({pos: zl - 1}, 0))]), zl, _INF)
        prog.row(_combine([(1, z), (1, ({pos: -(zu - band)}, 0))]), -_INF, band)
        out[pos] = 1
    if zl <= -1:
        neg = prog.column(0, 1)     # neg = 1 -> Z <= -1; neg = 0 -> Z >= -band
        prog.row(_combine([(1, z), (1, ({neg: zu + 1}, 0))]), -_INF, zu)
        prog.row(_combine([(1, z), (1, ({neg: -(zl + band)}, 0))]), -band, _INF)
        out[neg] = -1
    return out, 0


# the edges of level r's interval of Z, as (low, high) offsets from s * r (t > 0)
def _edges(rounding: str, s: int) -> Tuple[int, int]:
    h = s // 2
    return {"floor": (0, s - 1), "ceil": (-s + 1, 0), "half_up": (-h, h - 1),
            "half_even": (-h, h)}[rounding]


def _step(prog: Program, z: Expr, zl: int, zu: int, kl: int, ku: int, t: int, zp: int,
          lo: Optional[int], hi: Optional[int], rounding: str) -> Expr:
    """A level column k with the rounding edges of Z around s (k - zp), and saturations."""
    k = prog.column(kl, ku)
    if t > 0:   # s (k - zp) + e_lo <= Z <= s (k - zp) + e_hi
        s, mz = 1 << t, 1
        e_lo, e_hi = _edges(rounding, s) if s > 1 else (0, 0)
    else:       # k - zp = Z * 2**-t exactly
        s, mz, e_lo, e_hi = 1, 1 << -t, 0, 0
    gap = _combine([(mz, z), (-s, ({k: 1}, -zp))])     # mz Z - s (k - zp)
    lo_extra: Dict[int, int] = {}
    hi_extra: Dict[int, int] = {}
    if rounding == "half_even" and t > 0:
        # k - zp = 2 u + p; an odd level gives up both ties: e_lo + p, e_hi - p
        p = prog.column(0, 1)
        u = prog.column(np.floor((kl - zp) / 2) - 1, np.ceil((ku - zp) / 2) + 1)
        prog.row(({k: 1, u: -2, p: -1}, 0), zp, zp)
        lo_extra[p], hi_extra[p] = -1, 1
    r_lo = round_shift(zl, t, rounding) + zp          # unclamped levels' range
    r_hi = round_shift(zu, t, rounding) + zp
    g_lo, g_hi = mz * zl - s * (ku - zp), mz * zu - s * (kl - zp)   # range of the gap
    if lo is not None and r_lo < lo:   # b = 1: k = lo, Z below lo's interval is allowed
        b = prog.column(0, 1)
        lo_extra[b] = max(0, e_lo + 1 - g_lo) + 1
        prog.row(({k: 1, b: ku - lo}, 0), -_INF, ku)
    if hi is not None and r_hi > hi:   # b = 1: k = hi, Z above hi's interval is allowed
        b = prog.column(0, 1)
        hi_extra[b] = -(max(0, g_hi - e_hi + 1) + 1)
        prog.row(({k: 1, b: -(hi - kl)}, 0), kl, _INF)
    prog.row(_combine([(1, gap), (1, (lo_extra, 0))]), e_lo, _INF)
    prog.row(_combine([(1, gap), (1, (hi_extra, 0))]), -_INF, e_hi)
    return {k: 1}, 0


@dataclass
class Answer:
    status: str                          # "infeasible" (proven), "feasible", "unknown"
    codes: Optional[np.ndarray] = None   # feasible: the input codes of the solution
    message: str = ""
    nodes: int = 0
    values: Optional[np.ndarray] = None   # feasible: every column's value


INPUT_MODES = ("relaxed-first", "relaxed", "integer")


def solve(prog: Program, A: np.ndarray, b: np.ndarray, rows: Sequence[int],
          time_limit: float, options: Optional[Dict[str, object]] = None,
          inputs: str = "relaxed-first") -> Answer:
    """Is some integer point of the program inside the polytope {y : A[rows] y <= b[rows]}?
    ``rows`` may also be a list of row-index lists: is some point inside their union (one
    program, a binary per polytope)? ``options``: further HiGHS options (name: value).

    ``inputs="relaxed"`` solves with continuous input columns (levels, ReLUs and binaries stay
    integer). That program only has more points, so its "infeasible" is a proof; it decided
    the AAAI instances 1.7-9.4x faster than the integer one, whose branching also picks among the
    hundreds of input codes. A solution of it may have fractional inputs: it is kept if its
    rounded codes are a point of the program, or integer codes near it are (``_repair``);
    otherwise the answer is "unknown". ``"relaxed-first"`` then gives the integer program the
    time that is left; ``"integer"`` solves only that (it found some counterexamples at its
    root that the relaxed program missed for 10 s and more)."""
    if inputs not in INPUT_MODES:
        raise ValueError(f"inputs must be one of {INPUT_MODES}, got {inputs!r}")
    lp = _highs_lp(prog, A, b, rows)
    if isinstance(lp, Answer):
        return lp
    end = time.monotonic() + max(0.01, float(time_limit))
    if inputs == "integer":
        return _run(lp, prog, end, options)
    first = _run(lp, prog, end, options, relax=set(prog.inputs))
    if first.status != "feasible":
        return first

    def quick():
        return min(end, time.monotonic() + _REPAIR_SHARE * (end - time.monotonic()))

    fixed = _repair(lp, prog, first, quick, options)
    if fixed.status == "feasible":
        return Answer("feasible", fixed.codes, nodes=first.nodes + fixed.nodes,
                      values=fixed.values)
    if inputs == "relaxed":
        return Answer("unknown", message="the relaxed solution has no integer codes nearby",
                      nodes=first.nodes + fixed.nodes)
    rest = _run(lp, prog, end, options)
    rest.nodes += first.nodes + fixed.nodes
    return rest


def _repair(lp, prog: Program, first: Answer, quick, options) -> Answer:
    """Integer codes near a solution with fractional input codes, each attempt given
    ``quick()`` as its end: its codes rounded; then the codes that are integers held and the
    fractional ones free (levels free too: on AAAI eps 3 sample 84 this found a counterexample
    in 4 s where the other two failed); then its levels held and every code free."""
    x = first.values[prog.inputs]
    fixed = _run(lp, prog, quick(), options, fix=dict(zip(prog.inputs, np.rint(x))))
    if fixed.status == "feasible":
        return fixed
    integral = np.abs(x - np.rint(x)) <= 1e-6
    if integral.any() and not integral.all():   # (none integral: the integer program itself)
        fixed = _run(lp, prog, quick(), options,
                     fix={c: float(np.rint(v)) for c, v, i in zip(prog.inputs, x, integral) if i})
        if fixed.status == "feasible":
            return fixed
    codes_cols = set(prog.inputs)
    hold = {c: float(np.rint(first.values[c])) for c, i in enumerate(prog.integer)
            if i and c not in codes_cols}
    return _run(lp, prog, quick(), options, fix=hold)


def write_mps(prog: Program, A: np.ndarray, b: np.ndarray, rows: Sequence[int], path: str) -> None:
    """The polytope's program (integer input codes) as an MPS file, for other MIP solvers: it
    minimises t; a solution with t <= 1/2 is a counterexample (t is an integer there), a
    proven lower bound above 1/2 proves the polytope empty."""
    import highspy

    lp = _highs_lp(prog, A, b, rows)
    if isinstance(lp, Answer):
        raise ValueError(lp.message)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    # a warning says only that the columns and rows get generated names
    if h.writeModel(str(path)) == highspy.HighsStatus.kError:
        raise OSError(f"{path}: HiGHS could not write the model")


def _highs_lp(prog: Program, A: np.ndarray, b: np.ndarray, rows):
    """The HighsLp minimising t >= rows - rhs over the program (all columns integer as built),
    or an "unknown" Answer when its coefficients are too large for half-unit margins.

    ``rows``: one polytope's rows, or a list of polytopes' rows: their union, with a binary
    z_p per polytope, sum z_p = 1, and polytope p's rows relaxed by M (1 - z_p), M the row's
    range over the columns' bounds (so t <= 1/2 stays reachable whatever the other rows are)."""
    import highspy
    from scipy.sparse import csc_matrix

    groups = [list(g) for g in rows] if len(rows) and np.ndim(rows[0]) else [list(rows)]
    n = len(prog.col_lo)
    t_col = n                                       # the objective column t
    z_cols = list(range(n + 1, n + 1 + len(groups))) if len(groups) > 1 else []
    r_idx, c_idx, vals = list(prog.r_idx), list(prog.c_idx), list(prog.vals)
    row_lo, row_hi = list(prog.row_lo), list(prog.row_hi)
    col_lo, col_hi = np.array(prog.col_lo), np.array(prog.col_hi)
    for g, group in enumerate(groups):
        for r in group:                             # sum_k c_k Y_k - t <= rhs
            coef, rhs = integer_row(A[r], b[r], prog.exps)
            y = _combine([(int(c), prog.outputs[k]) for k, c in enumerate(coef)])
            i = len(row_lo)
            for col, v in y[0].items():
                if v:
                    r_idx.append(i)
                    c_idx.append(col)
                    vals.append(float(v))
            r_idx.append(i)
            c_idx.append(t_col)
            vals.append(-1.0)
            row_lo.append(-_INF)
            hi = float(rhs - y[1])
            if z_cols:                              # ... + M z_p <= rhs + M
                cols = np.fromiter(y[0].keys(), dtype=np.int64, count=len(y[0]))
                v = np.fromiter(y[0].values(), dtype=np.float64, count=len(y[0]))
                top = float(np.where(v > 0, v * col_hi[cols], v * col_lo[cols]).sum()) \
                    if len(v) else 0.0
                M = max(0.0, top - hi)
                r_idx.append(i)
                c_idx.append(z_cols[g])
                vals.append(M)
                hi += M
            row_hi.append(hi)
    if z_cols:                                      # sum_p z_p = 1
        i = len(row_lo)
        r_idx += [i] * len(z_cols)
        c_idx += z_cols
        vals += [1.0] * len(z_cols)
        row_lo.append(1.0)
        row_hi.append(1.0)
    big = max(np.abs(vals).max(initial=0.0), np.abs(row_hi[len(prog.row_hi):]).max(initial=0.0))
    if big > _MAX_COEF:
        return Answer("unknown", message=f"coefficients up to {big:.3g}: beyond float64 "
                      "rows with half-unit margins")
    lp = highspy.HighsLp()
    m = n + 1 + len(z_cols)
    lp.num_col_, lp.num_row_ = m, len(row_lo)
    cost = np.zeros(m)
    cost[t_col] = 1.0
    lp.col_cost_ = cost
    lp.col_lower_ = np.array(prog.col_lo + [-_INF] + [0.0] * len(z_cols))
    lp.col_upper_ = np.array(prog.col_hi + [_INF] + [1.0] * len(z_cols))
    mat = csc_matrix((vals, (r_idx, c_idx)), shape=(len(row_lo), m))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = mat.indptr
    lp.a_matrix_.index_ = mat.indices
    lp.a_matrix_.value_ = mat.data
    lp.row_lower_ = np.array(row_lo)
    lp.row_upper_ = np.array(row_hi)
    lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                       for i in prog.integer] + [highspy.HighsVarType.kContinuous] \
        + [highspy.HighsVarType.kInteger] * len(z_cols)
    return lp


def _run(lp, prog: Program, end: float, options, relax=(), fix=None) -> Answer:
    """Solve ``lp`` until ``end``, with the columns in ``relax`` continuous and those in ``fix``
    held at the given values."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(0.01, end - time.monotonic()))
    h.passModel(lp)
    if relax:
        idx = np.array(sorted(relax), dtype=np.int32)
        h.changeColsIntegrality(len(idx), idx, np.full(len(idx), int(
            highspy.HighsVarType.kContinuous), dtype=np.uint8))
    if fix:
        idx = np.array(list(fix), dtype=np.int32)
        v = np.array(list(fix.values()), dtype=np.float64)
        h.changeColsBounds(len(idx), idx, v, v)
    # t is an integer at integer points: stop at t <= 1/2 (t <= 0), prune bounds above 1/2
    h.setOptionValue("objective_target", _SLACK)
    h.setOptionValue("objective_bound", _SLACK)
    # RINS and RENS (sub-MIP heuristics) took over half of the root's time on the AAAI
    # instances; without them proofs came 1.6-3x faster and the counterexamples no later
    h.setOptionValue("mip_heuristic_run_rins", False)
    h.setOptionValue("mip_heuristic_run_rens", False)
    for name, value in (options or {}).items():
        h.setOptionValue(name, value)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    nodes = int(info.mip_node_count)      # -1: solved as an LP
    # pruned everywhere by the bound 1/2 (an LP bound past it reads as kObjectiveBound)
    if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kObjectiveBound):
        return Answer("infeasible", nodes=max(nodes, 0))
    feasible = info.primal_solution_status == 2 and info.objective_function_value <= _SLACK
    # solved to optimality (presolve can, before any pruning) with a proven bound above 1/2;
    # with no integer column left HiGHS solves an LP, whose optimum is that bound
    bound = info.mip_dual_bound if nodes >= 0 else info.objective_function_value
    if status == highspy.HighsModelStatus.kOptimal and not feasible and bound > _SLACK:
        return Answer("infeasible", nodes=max(nodes, 0))
    if feasible:
        x = np.asarray(h.getSolution().col_value)
        return Answer("feasible", np.rint(x[prog.inputs]).astype(np.int64), nodes=max(nodes, 0),
                      values=x[:len(prog.col_lo)])
    return Answer("unknown", message=h.modelStatusToString(status), nodes=max(nodes, 0))
