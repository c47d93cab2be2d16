"""An exact mixed-integer program of the network on a box, solved with HiGHS (scipy.optimize.milp).

Branch and bound without beta-CROWN multipliers cannot push an activation split back into earlier
layers, so on high-dimensional quantized inputs it can stall where an integer program decides
at once. The program here encodes, over the verifier's search domain (input codes of a grid
network, or the float box):

* affine operations (MatMul, Gemm, Conv, Add/Sub/Mul/Div by constants, reshapes) exactly, as
  float64 matrices read off the bound graph by evaluating each node on basis vectors;
* a quantization step q = clamp(R(z / s) + zp, lo, hi) with input bounds [l, u] as an integer
  level k in [f(l), f(u)] with (k - zp + d - 1) s - pad <= z <= (k - zp + d) s + pad (d the
  rounding's offset, pad the same outward margin the bound operators use against float32
  error), plus a binary per reachable saturation that releases the edge it passes. Both levels
  of a tie point are allowed: the program over-approximates the network;
* a ReLU with unstable input bounds by the usual binary encoding (exact given the bounds,
  which are widened by the same relative margin first);
* a Sign whose input bounds contain 0 by two binaries (its three values), the 0 allowed only
  within the same margin of 0;
* a MaxPool window whose maximum the bounds do not fix by one binary per element that can be
  the maximum (y >= every element, y <= the chosen one); padding, also the -inf padding that
  onnx2torch puts in front of an asymmetric MaxPool, never takes part.

So every counterexample of the network is a solution: an infeasible program proves the case
(``unsat``), and a solution is only a candidate that the verifier confirms exactly before
answering ``sat``. Each polytope of the unsafe set is one feasibility problem, its rows relaxed
by the same tolerance as a bound-based proof.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import affine_graph
from ..intnet import OutOfTime
from ..bounds import BoundQuantStep, BoundSign
from ..ops import ROUNDINGS, quant_step
from ..pool_bounds import BoundPad, BoundWindowMax, window_table

_WIDEN_REL = 2.0 ** -20   # as bounds._MonotoneBound._margin (ReLU and MaxPool inputs)
_STRICT_MARGIN = 1e-4   # relative: a strict Sign's z this far from 0 keeps its sign in float32


class Unsupported(Exception):
    """The network has an operation the program does not encode."""


def _affine_of(node, exprs):
    try:
        return affine_graph.compose(node, exprs)
    except affine_graph.NotAffine as exc:
        raise Unsupported(str(exc)) from None


@dataclass
class _Program:
    """Variables 0..n_in-1 are the domain inputs; constraints rows lo <= A x <= hi."""

    n_in: int
    lb: List[float] = field(default_factory=list)
    ub: List[float] = field(default_factory=list)
    integer: List[int] = field(default_factory=list)
    rows: List[np.ndarray] = field(default_factory=list)    # dense coefficient rows
    row_lo: List[float] = field(default_factory=list)
    row_hi: List[float] = field(default_factory=list)
    # each Sign's binaries a, b, its z (dense row, constant), margin pad and widened bounds
    # lw, uw: solve's strict program keeps z pad away from 0 at +-1
    signs: List[tuple] = field(default_factory=list)

    def new_var(self, lo: float, hi: float, integer: bool) -> int:
        self.lb.append(lo)
        self.ub.append(hi)
        self.integer.append(1 if integer else 0)
        return len(self.lb) - 1

    def add(self, coef: Dict[int, float], expr: Optional[Tuple[np.ndarray, float]], lo: float,
            hi: float) -> None:
        """lo <= expr + sum coef[v] x_v <= hi (expr: (dense coefficients, constant))."""
        row = np.zeros(0)
        const = 0.0
        if expr is not None:
            row, const = expr[0].copy(), float(expr[1])
        size = max(len(row), max(coef) + 1 if coef else 0)
        if len(row) < size:
            row = np.concatenate([row, np.zeros(size - len(row))])
        for v, a in coef.items():
            row[v] += a
        self.rows.append(row)
        self.row_lo.append(lo - const)
        self.row_hi.append(hi - const)


@dataclass
class MilpResult:
    status: str                      # "infeasible" (case proven), "feasible", "unknown"
    point: Optional[np.ndarray] = None   # a candidate domain point (feasible)
    # feasible: candidates to check, best first (point moved deep into the polytope, then the
    # solver's own, which the move can push onto a level edge that the network rounds away)
    points: Optional[np.ndarray] = None
    message: str = ""
    seconds: float = 0.0


def _input_bounds(inp, widen_abs: float = 0.0, step=None):
    """The bound computation's bounds of ``inp`` (flat float64 arrays), widened: for a step's
    input by the step's own pad (``_MonotoneBound._pad``: the float32 margin and the forward
    pass's float32 error), else by _WIDEN_REL * max(|l|, |u|) + widen_abs:
    (l, u, lw, uw, margin)."""
    l = inp.lower.reshape(-1).double().cpu().numpy()
    u = inp.upper.reshape(-1).double().cpu().numpy()
    with np.errstate(invalid="ignore"):   # MaxPool's -inf padding cells
        if step is not None:
            pad = step._pad(inp.lower, inp.upper).expand_as(inp.lower).reshape(-1).double().cpu().numpy()
        else:
            pad = _WIDEN_REL * np.maximum(np.abs(l), np.abs(u)) + widen_abs
        return l, u, l - pad, u + pad, pad


def _step(node, prog: _Program, M, c):
    """Encode q = QuantStep(z) elementwise; returns (M_q, c_q) over the (grown) variables."""
    inp = node.inputs[0]
    s = torch.broadcast_to(node.scale, inp.lower.shape[1:]).reshape(-1).double().cpu().numpy()
    zp = torch.broadcast_to(node.zero_point, inp.lower.shape[1:]).reshape(-1).double().cpu().numpy()
    d = ROUNDINGS[node.rounding]
    l, u, lw, uw, pad = _input_bounds(inp, step=node)
    n = l.size
    lvl = lambda x, lo, hi: quant_step(torch.as_tensor(x).reshape(inp.lower.shape[1:]).float(),
                                       node.scale, node.zero_point, lo, hi,
                                       node.rounding).reshape(-1).double().cpu().numpy()
    inf = float("inf")
    kl, ku = lvl(lw, node.lo, node.hi), lvl(uw, node.lo, node.hi)
    rl, ru = lvl(lw, -inf, inf), lvl(uw, -inf, inf)          # unclamped levels
    Mq = np.zeros((n, M.shape[1]))
    cq = np.zeros(n)
    for i in range(n):
        if kl[i] == ku[i]:
            cq[i] = kl[i]
            continue
        k = prog.new_var(kl[i], ku[i], True)
        z = (M[i], c[i])
        lo_edge = {k: -s[i]}           # z - (k - zp + d - 1) s >= -pad
        hi_edge = {k: -s[i]}           # z - (k - zp + d) s <= pad
        lo_rhs = (-zp[i] + d - 1) * s[i] - pad[i]
        hi_rhs = (-zp[i] + d) * s[i] + pad[i]
        if rl[i] < node.lo:            # may saturate low: b = 1 forces k = lo, frees the edge
            b = prog.new_var(0, 1, True)
            big = (node.lo - zp[i] + d - 1) * s[i] - lw[i] + 1.0
            lo_edge[b] = big
            prog.add({k: 1.0, b: ku[i] - node.lo}, None, -inf, ku[i])
        if ru[i] > node.hi:            # may saturate high
            b = prog.new_var(0, 1, True)
            big = uw[i] - (node.hi - zp[i] + d) * s[i] + 1.0
            hi_edge[b] = -big
            prog.add({k: 1.0, b: -(node.hi - kl[i])}, None, kl[i], inf)
        prog.add(lo_edge, z, lo_rhs, inf)
        prog.add(hi_edge, z, -inf, hi_rhs)
        Mq = _grow(Mq, len(prog.lb))
        Mq[i, k] = 1.0
    return _grow(Mq, len(prog.lb)), cq


def _relu(node, prog: _Program, M, c):
    inp = node.inputs[0]
    # float32 bounds without outward rounding: widen before they become big-M constants
    _, _, l, u, _ = _input_bounds(inp, 1e-12)
    n = l.size
    Mr = np.zeros((n, M.shape[1]))
    cr = np.zeros(n)
    inf = float("inf")
    for i in range(n):
        if l[i] >= 0:
            Mr = _grow(Mr, len(prog.lb))
            Mr[i, :M.shape[1]] = M[i]
            cr[i] = c[i]
            continue
        if u[i] <= 0:
            continue
        y = prog.new_var(0.0, u[i], False)
        a = prog.new_var(0, 1, True)
        prog.add({y: 1.0}, (-M[i], -c[i]), 0.0, inf)                # y >= z
        prog.add({y: 1.0, a: -l[i]}, (-M[i], -c[i]), -inf, -l[i])   # y <= z - l (1 - a)
        prog.add({y: 1.0, a: -u[i]}, None, -inf, 0.0)               # y <= u a
        Mr = _grow(Mr, len(prog.lb))
        Mr[i, y] = 1.0
    return _grow(Mr, len(prog.lb)), cr


def _sign(node, prog: _Program, M, c):
    """s = Sign(z) elementwise by binaries a >= b, s = a + b - 1 (a: s >= 0, b: s = 1).

    Where z is an integer combination of integer columns (a binarized network's hidden layers:
    float32 computes it exactly), exactly: s = 1 needs z >= 1, s = 0 needs z = 0, s = -1
    needs z <= -1. Elsewhere s = 1 needs
    z >= -pad and s = -1 needs z <= pad, so 0 is allowed only where |z| <= pad (z = 0 exactly
    in the network; pad the bounds' margin against float32 error, as for steps); the Sign is
    recorded for solve's strict program."""
    inp = node.inputs[0]
    l, u, lw, uw, pad = _input_bounds(inp, step=node)
    n = l.size
    Ms = np.zeros((n, M.shape[1]))
    cs = np.zeros(n)
    inf = float("inf")
    for i in range(n):
        if lw[i] > 0 or uw[i] < 0:             # decided on the whole box
            cs[i] = 1.0 if lw[i] > 0 else -1.0
            continue
        a = prog.new_var(0, 1, True)
        b = prog.new_var(0, 1, True)
        prog.add({b: 1.0, a: -1.0}, None, -inf, 0.0)                     # b <= a
        z = (M[i], c[i])
        if _integral(prog, M[i], c[i]):
            lo_z, hi_z = np.floor(lw[i]), np.ceil(uw[i])
            prog.add({a: lo_z, b: -1.0}, z, lo_z, inf)                   # a, b: z >= 0, 1
            prog.add({b: -hi_z, a: -1.0}, z, -inf, -1.0)                 # not a, b: z <= -1, 0
        else:
            prog.add({a: lw[i] + pad[i]}, z, lw[i], inf)                 # a = 1: z >= -pad
            prog.add({b: -(uw[i] - pad[i])}, z, -inf, pad[i])            # b = 0: z <= pad
            prog.signs.append((a, b, (M[i].copy(), float(c[i])), float(pad[i]), float(lw[i]),
                               float(uw[i])))
        Ms = _grow(Ms, len(prog.lb))
        Ms[i, a] = Ms[i, b] = 1.0
        cs[i] = -1.0
    return _grow(Ms, len(prog.lb)), cs


def _integral(prog: _Program, row: np.ndarray, const: float) -> bool:
    """Whether row . x + const is an integer combination of integer columns, with every
    partial sum below 2**24 (exact in float32)."""
    cols = np.flatnonzero(row)
    w = row[cols]
    if not (float(const).is_integer() and np.all(w == np.round(w))
            and all(prog.integer[j] for j in cols)):
        return False
    top = np.maximum(np.abs(np.array(prog.lb)[cols]), np.abs(np.array(prog.ub)[cols]))
    return float(np.abs(w) @ top) + abs(const) < 2.0 ** 24


def _max_pool(node: BoundWindowMax, prog: _Program, M, c):
    """y = max of each window (rows of the input expression whose constant is -inf are padding)."""
    inp = node.inputs[0]
    rank = len(node.kernel)
    in_size, out_size = tuple(inp.output_shape[-rank:]), tuple(node.output_shape[-rank:])
    table = window_table(in_size, out_size, node.kernel, node.stride, node.padding, node.dilation)
    n_sp, n_out = int(np.prod(in_size)), table.shape[0]
    _, _, l, u, _ = _input_bounds(inp, 1e-12)   # -inf padding cells are never read below
    channels = l.size // n_sp
    My = np.zeros((channels * n_out, M.shape[1]))
    cy = np.zeros(channels * n_out)
    inf = float("inf")
    for ch in range(channels):
        for o in range(n_out):
            cells = [ch * n_sp + j for j in table[o] if j < n_sp and np.isfinite(c[ch * n_sp + j])]
            floor = max(l[j] for j in cells)
            cands = [j for j in cells if u[j] >= floor]     # the others are never the maximum
            r = ch * n_out + o
            My = _grow(My, len(prog.lb))
            if len(cands) == 1:
                My[r, :M.shape[1]], cy[r] = M[cands[0]], c[cands[0]]
                continue
            top = max(u[j] for j in cands)
            y = prog.new_var(floor, top, False)
            pick = {}
            for j in cands:
                prog.add({y: 1.0}, (-M[j], -c[j]), 0.0, inf)              # y >= x_j
                pick[j] = prog.new_var(0, 1, True)
                # y <= x_j + (top - l_j)(1 - a_j)
                prog.add({y: 1.0, pick[j]: top - l[j]}, (-M[j], -c[j]), -inf, top - l[j])
            prog.add({a: 1.0 for a in pick.values()}, None, 1.0, 1.0)
            My = _grow(My, len(prog.lb))
            My[r, y] = 1.0
    return _grow(My, len(prog.lb)), cy


def _pad_node(node, M, c):
    """A constant Pad: padded rows are the constant (-inf ones only a MaxPool may read)."""
    shape = node.inputs[0].output_shape[1:]
    n = int(np.prod(shape))
    value = torch.as_tensor(affine_graph.constant(node.inputs[2], node)) if len(node.inputs) > 2 else None
    value = float(value) if value is not None and value.numel() else 0.0   # empty: ONNX's 0
    saved = node.padding, node.value       # BoundPad.forward records its arguments
    try:
        with torch.no_grad():
            src = node.forward(torch.arange(1, n + 1, dtype=torch.float64).reshape(1, *shape),
                               affine_graph.constant(node.inputs[1], node), 0.0).reshape(-1).long().numpy() - 1
    finally:
        node.padding, node.value = saved
    Mp = np.where(src[:, None] >= 0, M[np.maximum(src, 0)], 0.0)
    cp = np.where(src >= 0, c[np.maximum(src, 0)], value)
    return Mp, cp


def _grow(M: np.ndarray, n_var: int) -> np.ndarray:
    if M.shape[1] >= n_var:
        return M
    return np.concatenate([M, np.zeros((M.shape[0], n_var - M.shape[1]))], axis=1)


def encode(bm, lo: np.ndarray, hi: np.ndarray, integer_inputs: bool, deadline: float = math.inf):
    """The program of the bound graph ``bm`` on the domain box [lo, hi] (node bounds must be
    those of a bound computation on that box). Returns (program, output expression (M, c)).
    Raises ``OutOfTime`` when ``deadline`` (time.monotonic()) passes while it builds."""
    n_in = lo.size
    affine_graph.evaluate_constants(bm)
    prog = _Program(n_in)
    for i in range(n_in):
        prog.new_var(float(lo[i]), float(hi[i]), integer_inputs)
    exprs = {}
    for node in bm._modules.values():
        if time.monotonic() > deadline:
            raise OutOfTime("the deadline passed while building the float program")
        kind = type(node).__name__
        if kind == "BoundInput":
            exprs[node.name] = (np.eye(n_in), np.zeros(n_in))
            continue
        if not getattr(node, "perturbed", False):
            continue   # a constant: its forward value enters the nodes that read it
        # bring the inputs' expressions up to the variables created since they were made
        for inp in node.inputs:
            if inp.perturbed:
                exprs[inp.name] = (_grow(exprs[inp.name][0], len(prog.lb)), exprs[inp.name][1])
        ins = [exprs[i.name] for i in node.inputs if i.perturbed]
        if isinstance(node, BoundPad) and len(ins) == 1 and node.inputs[0].perturbed:
            exprs[node.name] = _pad_node(node, *ins[0])
            continue
        if isinstance(node, BoundWindowMax):
            exprs[node.name] = _max_pool(node, prog, *ins[0])
            continue
        if any(not np.all(np.isfinite(e[1])) for e in ins):
            raise Unsupported(f"{kind} ({node.name}) reads -inf padding")
        if isinstance(node, BoundQuantStep):
            if not node._on_lattice or getattr(node, "split_lo", None) is not None:
                raise Unsupported(f"quantization step off its lattice ({node.name})")
            exprs[node.name] = _step(node, prog, *ins[0])
        elif kind == "BoundRelu":
            exprs[node.name] = _relu(node, prog, *ins[0])
        elif isinstance(node, BoundSign):
            exprs[node.name] = _sign(node, prog, *ins[0])
        else:
            exprs[node.name] = _affine_of(node, exprs)
    out = exprs[bm.output_name[0]]
    return prog, (_grow(out[0], len(prog.lb)), out[1])


def solve(prog: _Program, out, A: np.ndarray, b: np.ndarray, poly: np.ndarray, tol: np.ndarray,
          time_limit: float) -> MilpResult:
    """Feasibility of each polytope {y : A_p y <= b_p + tol_p} over the program; the first
    feasible one gives the candidates.

    With Signs, a solution may hold a Sign at +-1 where its z is within the margin of 0 (or
    exactly 0 on an integer sum, where the network's Sign is 0): rarely a counterexample. The
    candidates then come from the strict program, where each Sign's z is at least the margin
    beyond 0 for +-1 and never 0 (fewer points: its "infeasible" proves nothing); a
    polytope whose strict program is infeasible is passed over and the answer is "unknown" if
    no later one has a candidate."""
    t0 = time.monotonic()
    n_var = len(prog.lb)
    M, c = out
    base = (np.stack([_pad(r, n_var) for r in prog.rows]) if prog.rows else np.zeros((0, n_var)),
            np.array(prog.row_lo), np.array(prog.row_hi))
    strict = _stack(base, _strict_sign_rows(prog, n_var)) if prog.signs else None
    edge_only = False
    for p in np.unique(poly):
        left = time_limit - (time.monotonic() - t0)
        if left <= 0.05:
            return MilpResult("unknown", message="time limit", seconds=time.monotonic() - t0)
        rows = A[poly == p] @ M                       # A_p (M x + c) <= b_p + tol
        rhs = b[poly == p] + tol[poly == p] - A[poly == p] @ c
        target = (rows, np.full(len(rhs), -np.inf), rhs)
        status, x = _feasible(prog, _stack(base, target), left)
        if status == "infeasible":                    # this polytope is empty on the box
            continue
        if status == "unknown":
            return MilpResult("unknown", message=x, seconds=time.monotonic() - t0)
        found = [x]
        if strict is not None:
            s_status, sx = _feasible(prog, _stack(strict, target),
                                     time_limit - (time.monotonic() - t0))
            if s_status == "infeasible":              # only points at a Sign's edge
                edge_only = True
                continue
            found = [sx, x] if s_status == "feasible" else found
        deep = _deepest(prog, strict if strict is not None else base, rows, rhs, found[0],
                        time_limit - (time.monotonic() - t0))
        pts = np.stack([v[:prog.n_in] for v in [deep] + found])
        return MilpResult("feasible", pts[0], points=pts, seconds=time.monotonic() - t0)
    if edge_only:
        return MilpResult("unknown", message="solutions only within float32 margins of a Sign's 0",
                          seconds=time.monotonic() - t0)
    return MilpResult("infeasible", seconds=time.monotonic() - t0)


def _stack(*blocks):
    """Row blocks (coefficients, lower, upper) one under the other."""
    return tuple(np.concatenate(parts) for parts in zip(*blocks))


def _feasible(prog: _Program, rows, time_limit: float):
    """("feasible", solution), ("infeasible", None) or ("unknown", HiGHS's message)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    if time_limit <= 0.05:
        return "unknown", "time limit"
    res = milp(np.zeros(len(prog.lb)), integrality=np.array(prog.integer),
               bounds=Bounds(np.array(prog.lb), np.array(prog.ub)),
               constraints=LinearConstraint(csr_matrix(rows[0]), rows[1], rows[2]),
               options=dict(time_limit=time_limit, presolve=True))
    if res.status == 2:
        return "infeasible", None
    if res.x is not None and res.status in (0, 1):
        return "feasible", res.x
    return "unknown", res.message


def _strict_sign_rows(prog: _Program, n_var: int):
    """Each recorded Sign at +1 with z >= m, at -1 with z <= -m, never 0 (a = b): z - (m - lw) a
    >= lw, z - (uw + m) a <= -m, b >= a. The margin m exceeds pad, HiGHS's feasibility
    tolerance (1e-6) and the input's rounding to float32, so the network takes the same sign
    at the solution; a float z that is exactly 0 is left out (the program only looks for
    candidates)."""
    coef, lo, hi = [], [], []
    for a, b, (zrow, zc), pad, lw, uw in prog.signs:
        m = max(pad, _STRICT_MARGIN * max(1.0, abs(lw), abs(uw)))
        row = _pad(zrow, n_var)
        for extra, l, h in (({a: -(m - lw)}, lw - zc, np.inf), ({a: -(uw + m)}, -np.inf, -m - zc),
                            ({b: 1.0, a: -1.0}, 0.0, np.inf)):
            r = row.copy() if b not in extra else np.zeros(n_var)
            for v, w in extra.items():
                r[v] += w
            coef.append(r)
            lo.append(l if b not in extra else 0.0)
            hi.append(h)
    return np.stack(coef), np.array(lo), np.array(hi)


def _deepest(prog: _Program, base, rows, rhs, x, time_limit: float) -> np.ndarray:
    """The program's solution x moved as deep into the unsafe polytope as its integer columns
    (ReLU phases, levels, Signs) allow: the LP over the row block ``base`` with them fixed,
    minimising the largest of the rows A_p y - b_p. A feasibility solution tends to lie on the
    polytope's relaxed face, where the exact evaluation finds the point just safe. x itself
    when the LP fails, and where the input columns are integer (grid networks): fixed, they
    leave the input nothing to move."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    if time_limit <= 0.05 or all(prog.integer[:prog.n_in]):
        return x
    n_var = len(prog.lb)
    fixed = np.array(prog.integer, dtype=bool)
    lb = np.where(fixed, np.round(x), np.array(prog.lb, dtype=float))
    ub = np.where(fixed, np.round(x), np.array(prog.ub, dtype=float))
    # variables (x, t): base rows unchanged; A_p y - t <= rhs; minimise t
    A = np.block([[base[0], np.zeros((base[0].shape[0], 1))], [rows, -np.ones((rows.shape[0], 1))]])
    cons = LinearConstraint(csr_matrix(A), np.concatenate([base[1], np.full(len(rhs), -np.inf)]),
                            np.concatenate([base[2], rhs]))
    cost = np.zeros(n_var + 1)
    cost[-1] = 1.0
    res = milp(cost, bounds=Bounds(np.append(lb, -np.inf), np.append(ub, np.inf)),
               constraints=cons, options=dict(time_limit=time_limit, presolve=True))
    return res.x[:n_var] if res.x is not None and res.status == 0 else x


def _pad(row: np.ndarray, n: int) -> np.ndarray:
    return row if row.size == n else np.concatenate([row, np.zeros(n - row.size)])
