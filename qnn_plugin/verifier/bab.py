"""Batched branch and bound over a domain: integer codes of a QNN's input quantizer, or float
inputs, optionally with constraints on hidden activations.

Each round takes the most promising open domains (lowest bound on the margin first), bounds them
in one batched auto_LiRPA call, drops every domain whose unsafe polytopes are all refuted,
evaluates small code boxes point by point (exactly), tries the cheapest counterexample
candidates of the rest (the box centre and the corner that minimises the linear lower bound),
and splits each remaining domain in two: on an undecided hidden activation (see
activations.py), or on an input dimension chosen by strong branching (both children bounded for
each candidate dimension, best mean wins) or by the |A_d| * width_d gain estimate. Code boxes
split at an integer, so no box ever ends on a rounding tie; float boxes split at the float
midpoint and, once two floats are adjacent, into the two single values, so every box eventually
becomes a point; float boxes of a network with input cells (cells.py) split at a cell start,
and a box inside one cell per coordinate counts as a point.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from ..bounded import _ibp
from . import activations as act
from .cells import InputCells
from .lagrangian import Lagrangian
from .network import Network
from .problem import Problem

from auto_LiRPA import BoundedTensor, PerturbationLpNorm

SPLIT_RULES = ("strong", "gain", "widest")
BRANCH_MODES = ("auto", "input", "activation")
# bound methods inside the search -> auto_LiRPA's names (crown-ibp: interval bounds for the
# hidden layers, CROWN for the output)
LIRPA_METHODS = {"ibp": "IBP", "crown": "backward", "crown-ibp": "CROWN-IBP"}
_INF = float("inf")


@dataclass
class Options:
    method: str = "crown"          # bound method inside the search: crown | crown-ibp | ibp
    split: str = "strong"          # split rule: strong | gain | widest
    round_seconds: float = 2.0     # a round (pop, bound, split) is sized to take about this long
    root_alpha: bool = True        # with activation branching: alpha-CROWN on the root box
                                   # when CROWN does not prove it (input splitting gains little)
    branch: str = "auto"           # input | activation | auto (activations when the input is big)
    input_split_max_dims: int = 16  # auto: inputs up to this size are split, larger ones not
    enumerate_max: int = 256       # code boxes with at most this many points are enumerated
    enumerate_max_activation: int = 1 << 14  # the same with activation branching, which can
                                   # split hundreds of neurons before input splits shrink a
                                   # box that small (a conv QNN's 324-point box: 60 s open)
    batch: Optional[int] = None    # boxes per bound call (None: sized to memory)
    memory_bytes: int = 1 << 30    # budget for one bound call's A matrices
    max_pool_bytes: int = 4 << 30  # open boxes kept at most (then the search gives up: unknown)
    progress: Optional[Callable[[Dict[str, float]], None]] = None
    interrupt: Optional[Callable[[], bool]] = None  # asked each round: True ends the search
    near_misses: Optional[Callable[[Tensor, Tensor], None]] = None  # given every batch of
                                   # candidate points with their margins (neighbourhood.py)
    lagrangian: bool = True        # splits enter the output bound as input constraints
                                   # (lagrangian.py), while they refute enough to pay
    inherit: bool = True           # children start from their parent's hidden-layer bounds


@dataclass
class Outcome:
    status: str                       # unsat | sat | timeout | unknown | interrupted
    points: Optional[Tensor] = None   # sat: confirmed domain point(s)
    message: str = ""
    stats: Dict[str, float] = field(default_factory=dict)


class _Pool:
    """Open domains as stacked tensors with a common first dimension: the input box (lo, hi),
    the polytopes still open, depth, the ordering key, and the activation constraints."""

    def __init__(self, fields: Dict[str, Tensor]):
        self.f = dict(fields)

    def __len__(self):
        return self.f["lo"].shape[0]

    def pop(self, k: int) -> Dict[str, Tensor]:
        """The k domains with the lowest key (worst parent bound): likeliest to hold a violation."""
        if k >= len(self):
            out, self.f = self.f, {name: v[:0] for name, v in self.f.items()}
            return out
        idx = torch.topk(self.f["key"], k, largest=False).indices
        keep = torch.ones(len(self), dtype=torch.bool, device=idx.device)
        keep[idx] = False
        out = {name: v[idx] for name, v in self.f.items()}
        self.f = {name: v[keep] for name, v in self.f.items()}
        return out

    def push(self, fields: Dict[str, Tensor]) -> None:
        self.f = {name: torch.cat([v, fields[name]]) for name, v in self.f.items()}

    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.f.values())


def _take(fields: Dict[str, Tensor], idx) -> Dict[str, Tensor]:
    return {name: v[idx] for name, v in fields.items()}


@dataclass
class Bounds:
    lb: Tensor                           # (N, R) lower bounds of C y
    lA: Optional[Tensor] = None          # (N, R, n) linear lower bound's input coefficients
    ranges: Optional[list] = None        # per activation layer: (N, numel) settling ranges
    layer_A: Optional[list] = None       # per activation layer: (N, R, numel) or None
    empty: Optional[Tensor] = None       # (N,) bool: domains whose constraints no input meets
    inputs: Optional[list] = None        # per activation layer: (N, numel) input bounds
    points: Optional[Tensor] = None      # (N, R, n) the Lagrangian's minimisers (NaN: none)


def bound_rows(net: Network, problem: Problem, lo: Tensor, hi: Tensor, method: str,
               need_A: bool, layers: Optional[list] = None,
               state: Optional[Dict[str, Tensor]] = None,
               lagrangian: Optional[Lagrangian] = None,
               open_: Optional[Tensor] = None) -> Bounds:
    """Bounds of C y over the domain boxes under the domains' activation constraints
    (``state``, for ``layers``); with ``layers`` also each activation's range and the
    decisive rows' sensitivity to it (for branching); with ``lagrangian`` the splits also
    enter the output bound as constraints on the input (lagrangian.py), for the polytopes
    ``open_`` (N, n_poly) that the plain bound leaves open (default: all)."""
    bm = net.bounded_module
    shape = (lo.shape[0],) + net.input_shape
    lo_s, hi_s = lo.reshape(shape), hi.reshape(shape)
    x = BoundedTensor(lo_s, PerturbationLpNorm(x_L=lo_s, x_U=hi_s))
    C = problem.C.unsqueeze(0).expand(lo.shape[0], -1, -1)
    ref, inherited = act.install(layers, state) if layers else ({}, {})
    bm.qnn_branch_nodes = frozenset(ref)
    bm.qnn_inherited = inherited
    try:
        ilb, _ = _ibp(bm, x, C)
        if method == "ibp":
            return Bounds(ilb)
        out, inp = bm.output_name[0], bm.input_name[0]
        need_A = need_A or lagrangian is not None
        wanted = ([inp] if need_A else []) + [l.consumer for l in layers or [] if l.consumer]
        needed = {out: wanted}
        if lagrangian is not None:
            needed.update({pre: [inp] for pre in lagrangian.needed()})
        kwargs = dict(return_A=True, needed_A_dict=needed) if wanted else {}
        res = bm.compute_bounds(x=(x,), C=C, method=LIRPA_METHODS[method], bound_upper=False,
                                reference_bounds=ref or None, **kwargs)
        lb, A = res[0], (res[2][out] if wanted else {})
        n = lo.shape[0]
        lA = A[inp]["lA"].reshape(n, problem.n_rows, -1) if need_A and A.get(inp, {}).get("lA") is not None else None
        lb = torch.maximum(lb, ilb).detach()
        points = None
        if lagrangian is not None and lA is not None and A[inp].get("lbias") is not None:
            still = ~problem.refuted(lb) & (open_ if open_ is not None else True)
            forms = {pre: res[2][pre][inp] for pre in lagrangian.needed()
                     if inp in res[2].get(pre, {})}
            tight = lagrangian.tighten(lA, A[inp]["lbias"].reshape(n, -1), lo, hi, state,
                                       forms, still[:, problem.poly])
            if tight is None:
                lagrangian.record(0, 0)
            else:
                tight, points = tight
                lb = torch.maximum(lb, tight)
                # the open polytopes of the domains it ran on, and those it refuted alone
                given = still & torch.isfinite(tight).any(dim=1, keepdim=True)
                lagrangian.record(int(given.sum()), int((problem.refuted(lb) & given).sum()))
        bounds = Bounds(lb, None if lA is None else lA.detach(), points=points)
        if layers:
            bounds.ranges = act.ranges(layers, n)
            bounds.empty = act.empty(layers, state, n)
            bounds.inputs = act.input_bounds(layers, n)
            bounds.layer_A = [None if (l.consumer not in A or A[l.consumer]["lA"] is None)
                              else A[l.consumer]["lA"].reshape(n, problem.n_rows, -1).detach()
                              for l in layers]
        return bounds
    finally:
        bm.qnn_branch_nodes = frozenset()
        bm.qnn_inherited = {}
        if layers:
            act.uninstall(layers)


def splittable(lo: Tensor, hi: Tensor, cells: Optional[InputCells] = None) -> Tensor:
    """(N, n) bool: the dimensions a split can divide (non-zero width; with input cells, not
    inside one cell)."""
    can = hi > lo
    return can if cells is None else can & ~cells.constant(lo, hi)


def split_scores(lo: Tensor, hi: Tensor, lA: Optional[Tensor], worst_row: Tensor, rule: str,
                 can: Optional[Tensor] = None) -> Tensor:
    """(N, n) split priority; dimensions that cannot be split (zero width, or ``can`` False)
    get -1."""
    width = (hi - lo).float()
    if rule == "gain" and lA is not None:
        a = lA.gather(1, worst_row.view(-1, 1, 1).expand(-1, 1, lA.shape[2])).squeeze(1)
        score = a.abs() * width
        # a dimension the bound ignores can still matter (steps saturate): width breaks ties
        score = score + 1e-9 * width / (width.max(dim=1, keepdim=True).values + 1e-30)
    else:
        score = width
    can = width > 0 if can is None else can
    return torch.where(can, score, torch.full_like(score, -1.0))


def split(lo: Tensor, hi: Tensor, dim: Tensor, integer: bool, cells: Optional[InputCells] = None):
    """Two children per box along ``dim``: codes at floor(mid) | floor(mid)+1; floats at the
    midpoint, or into the two values when no float lies strictly between; floats with input
    cells at the start of a cell (cells.py)."""
    if cells is not None and not integer:
        return cells.split(lo, hi, dim)
    rows = torch.arange(lo.shape[0], device=lo.device)
    l, h = lo[rows, dim], hi[rows, dim]
    if integer:
        left_hi, right_lo = torch.floor((l + h) / 2), torch.floor((l + h) / 2) + 1
    else:
        mid = l + (h - l) / 2
        mid = torch.where(torch.isfinite(mid), mid, l / 2 + h / 2)  # h - l overflows past 1.7e38
        # no float strictly between l and h: split into the two values; a midpoint lost to
        # rounding otherwise: the next float above l
        adjacent = torch.nextafter(l, h) >= h
        mid = torch.where((mid > l) & (mid < h), mid, torch.nextafter(l, h))
        left_hi, right_lo = torch.where(adjacent, l, mid), torch.where(adjacent, h, mid)
    lo1, hi1, lo2, hi2 = lo.clone(), hi.clone(), lo.clone(), hi.clone()
    hi1[rows, dim] = left_hi
    lo2[rows, dim] = right_lo
    c_lo, c_hi = torch.cat([lo1, lo2]), torch.cat([hi1, hi2])
    if not bool((c_lo <= c_hi).all()):
        raise RuntimeError("internal error: a split produced an inverted box")
    return c_lo, c_hi


def _batch_size(net: Network, problem: Problem, opts: Options) -> int:
    if opts.batch:
        return opts.batch
    if opts.method == "ibp":
        return 4096
    bm = net.bounded_module
    neurons = sum(int(math.prod(n.output_shape[1:])) for n in bm._modules.values()
                  if getattr(n, "perturbed", False) and getattr(n, "output_shape", None))
    per_box = 4 * 4 * net.n_in * (neurons + problem.n_rows)
    return int(max(8, min(2048, opts.memory_bytes // max(per_box, 1))))


def search(net: Network, problem: Problem, lo: Tensor, hi: Tensor, deadline: float,
           judge, opts: Options) -> Outcome:
    """Branch and bound on the domain box [lo, hi].

    ``judge.confirm(points)`` checks candidate domain points (most violating first) exactly
    and returns the confirmed ones (None when none is); ``judge.exactly_safe(points)`` decides
    points whose torch evaluation is too close to the boundary to trust."""
    confirm = judge.confirm
    integer = net.grid is not None
    cells = None if integer else net.cells
    stats = dict(boxes_bounded=0, points_evaluated=0, max_depth=0, rounds=0, candidates=0,
                 input_splits=0, activation_splits=0, empty_domains=0)
    layers = _branching_layers(net, opts)
    fields = dict(lo=lo.unsqueeze(0), hi=hi.unsqueeze(0),
                  open=torch.ones(1, problem.n_poly, dtype=torch.bool, device=lo.device),
                  depth=torch.zeros(1, dtype=torch.int64, device=lo.device),
                  key=torch.full((1,), -_INF, device=lo.device),
                  # the best bound of each row known on the domain: its parent's until it is
                  # bounded (a subset of the parent's inputs), where CROWN can come out looser
                  best_lb=torch.full((1, problem.n_rows), -_INF, device=lo.device))
    fields.update(act.initial_state(layers, lo.device, opts.inherit))
    pool = _Pool(fields)
    if time.monotonic() > deadline:
        return Outcome("timeout", stats=stats, message="no time left for the search")
    if opts.root_alpha and layers and not bool((lo == hi).all()):
        pool.f["open"] = _root_alpha(net, problem, lo, hi, stats, deadline)
        if not bool(pool.f["open"].any()):
            return Outcome("unsat", stats=stats)
    state_keys = [k for k in fields if k not in ("lo", "hi", "open", "depth", "key")]
    lagrangian = (Lagrangian.build(net, layers, lo, hi, deadline)
                  if layers and opts.lagrangian else None)
    batch = _batch_size(net, problem, opts)
    enum_max = opts.enumerate_max_activation if layers else opts.enumerate_max
    disputed = 0
    sec_per_box = None
    last_report = time.monotonic()
    t_round, n_popped, min_round = None, 0, None
    while len(pool):
        if t_round is not None:  # the last round's cost per domain, smoothed
            took = time.monotonic() - t_round
            per_box = took / max(n_popped, 1)
            sec_per_box = per_box if sec_per_box is None else 0.5 * (sec_per_box + per_box)
            min_round = took if min_round is None else min(min_round, took)
        if opts.interrupt is not None and opts.interrupt():   # decided elsewhere
            return Outcome("interrupted", stats=stats, message="decided by another method")
        # stop when even the cheapest round seen so far would end past the deadline
        if time.monotonic() + (min_round or 0.0) > deadline:
            stats["domains_open"] = len(pool)
            stats["open_min_margin"] = float(pool.f["key"].min())
            return Outcome("timeout", stats=stats, message=f"{len(pool)} domains open")
        if pool.nbytes() > opts.max_pool_bytes:
            return Outcome("unknown", stats=stats, message=f"gave up: {len(pool)} open domains "
                           f"exceed the memory budget")
        # size the round so that it ends well before the deadline
        left = deadline - time.monotonic()
        take = min(batch, 32)  # the first round measures the cost of one
        if sec_per_box is not None:
            take = int(max(1, min(batch, min(opts.round_seconds, left / 2) / sec_per_box)))
        t_round = time.monotonic()
        d = pool.pop(take)
        n_popped = d["lo"].shape[0]
        stats["rounds"] += 1
        stats["max_depth"] = max(stats["max_depth"], int(d["depth"].max()))
        # single points: evaluate exactly (whatever the activation constraints say)
        # small code boxes: every point, evaluated exactly, costs less than bounding the box
        point = _small_boxes(d["lo"], d["hi"], enum_max if integer else 1)
        if cells is not None:   # boxes inside one cell per coordinate have a single output
            point |= ~splittable(d["lo"], d["hi"], cells).any(dim=1)
        if bool(point.any()):
            chunks = (_enumerate_chunks(d["lo"][point], d["hi"][point]) if cells is None else
                      [_representatives(problem, d["lo"][point], d["hi"][point])])
            for pts in chunks:
                found, n_disputed = _decide_points(net, problem, pts, judge, stats, deadline)
                if found is not None:
                    return Outcome("sat", found, stats=stats)
                if n_disputed is None:
                    stats["domains_open"] = len(pool) + int(d["lo"].shape[0])
                    return Outcome("timeout", stats=stats, message="out of time while checking "
                                   "single points exactly")
                disputed += n_disputed
            d = _take(d, ~point)
            if d["lo"].shape[0] == 0:
                continue
        state = {k: d[k] for k in state_keys}
        try:
            bd = bound_rows(net, problem, d["lo"], d["hi"], opts.method,
                            opts.split != "widest", layers, state,
                            lagrangian if lagrangian is not None and lagrangian.paying else None,
                            d["open"])
        except RuntimeError as exc:  # out of memory: smaller batches
            if "out of memory" not in str(exc).lower() or batch <= 1:
                raise
            pool.push(d)
            batch = max(1, batch // 2)
            continue
        stats["boxes_bounded"] += int(d["lo"].shape[0])
        bd.lb = d["best_lb"] = torch.maximum(bd.lb, d["best_lb"])
        if lagrangian is not None:
            stats["lagrangian_tried"] = lagrangian.tried
            stats["lagrangian_refuted"] = lagrangian.refuted
        d["open"] = d["open"] & ~problem.refuted(bd.lb)
        if bd.inputs is not None:   # the children start from these bounds (inherit)
            for i, (l, u) in enumerate(bd.inputs):
                if f"p{i}" in d:
                    d[f"p{i}"], d[f"q{i}"] = l, u
        if bd.empty is not None:  # no input meets the domain's activation constraints
            d["open"] &= ~bd.empty.unsqueeze(1)
            stats["empty_domains"] += int(bd.empty.sum())
        alive = d["open"].any(dim=1)
        if not bool(alive.any()):
            continue
        d, bd = _take(d, alive), _take_bounds(bd, alive)
        state = {k: d[k] for k in state_keys}
        # worst open polytope's best row: the bound that decides this domain
        slack = bd.lb - problem.b
        per_poly = problem.poly_max(slack)
        per_poly = torch.where(d["open"], per_poly, torch.full_like(per_poly, _INF))
        key, worst_poly = per_poly.min(dim=1)
        row_in_poly = torch.where(problem.poly.unsqueeze(0) == worst_poly.unsqueeze(1), slack,
                                  torch.full_like(slack, -_INF))
        worst_row = row_in_poly.argmax(dim=1)
        found = _try_candidates(net, problem, d, bd.lA, worst_row, integer, confirm, stats,
                                bd.points, opts.near_misses)
        if found is not None:
            return Outcome("sat", found, stats=stats)
        # activation split where a neuron is undecided, else input split
        by_act = torch.zeros(d["lo"].shape[0], dtype=torch.bool, device=lo.device)
        if layers:
            rows = torch.arange(d["lo"].shape[0], device=lo.device)
            sens = [None if a is None else a[rows, worst_row] for a in bd.layer_A]
            sc, at = act.scores(layers, bd.ranges, state, sens, bd.inputs)
            best, flat = sc.max(dim=1)
            by_act = best > 0
        if bool(by_act.any()):
            sub = _take(d, by_act)
            kids = act.branch(layers, {k: sub[k] for k in state_keys},
                              [(r[0][by_act], r[1][by_act]) for r in bd.ranges], flat[by_act],
                              [None if c is None else c[by_act] for c in at])
            pool.push(dict(lo=sub["lo"].repeat(2, 1), hi=sub["hi"].repeat(2, 1),
                           open=sub["open"].repeat(2, 1), depth=(sub["depth"] + 1).repeat(2),
                           key=key[by_act].repeat(2), **kids))
            stats["activation_splits"] += int(by_act.sum())
        rest = ~by_act
        if bool(rest.any()):
            sub, sub_bd = _take(d, rest), _take_bounds(bd, rest)
            stats["input_splits"] += int(rest.sum())
            pool.push(_input_split(net, problem, sub, sub_bd, worst_row[rest], key[rest],
                                   opts, integer, batch, stats, layers, state_keys, cells))
        if opts.progress is not None and time.monotonic() - last_report > 2.0:
            last_report = time.monotonic()
            opts.progress(dict(stats, open=len(pool)))
    if disputed:
        return Outcome("unknown", stats=stats, message=f"{disputed} point(s) of the search "
                       "look unsafe but no counterexample was confirmed there (onnxruntime and the "
                       "exact semantics disagree, or the point is reachable only from a "
                       "box end rounded to float32)")
    return Outcome("unsat", stats=stats)


def _small_boxes(lo: Tensor, hi: Tensor, max_points: int) -> Tensor:
    """(N,) bool: boxes with at most ``max_points`` points (points only, for float boxes)."""
    if max_points <= 1:
        return (lo == hi).all(dim=1)
    return torch.log(hi.double() - lo.double() + 1).sum(dim=1) <= math.log(max_points) + 1e-9


def _representatives(problem: Problem, lo: Tensor, hi: Tensor) -> Tensor:
    """One point of each float box, inside the spec's inner box where the two meet (where
    a counterexample must lie)."""
    inner = torch.minimum(torch.maximum(lo, problem.inner_lower), problem.inner_upper)
    return torch.minimum(torch.maximum(inner, lo), hi)


def _enumerate_chunks(lo: Tensor, hi: Tensor, max_values: int = 1 << 24):
    """All integer points of the (small) code boxes, in chunks of whole boxes holding at most
    about ``max_values`` coordinates each (a box larger than that alone), so that a round of
    many boxes near the enumeration limit does not materialise them all at once."""
    sizes = (torch.prod(hi.double() - lo.double() + 1, dim=1) * lo.shape[1]).tolist()
    start, held = 0, 0.0
    for i, size in enumerate(sizes):
        if held and held + size > max_values:
            yield _enumerate(lo[start:i], hi[start:i])
            start, held = i, 0.0
        held += size
    if start < len(sizes):
        yield _enumerate(lo[start:], hi[start:])


def _enumerate(lo: Tensor, hi: Tensor) -> Tensor:
    """All integer points of the (small) code boxes, stacked."""
    out = []
    for l, h in zip(lo, hi):
        axes = [torch.arange(a, b + 1, device=lo.device, dtype=lo.dtype)
                for a, b in zip(l.tolist(), h.tolist())]
        out.append(torch.cartesian_prod(*axes).reshape(-1, lo.shape[1]) if len(axes) > 1
                   else axes[0].reshape(-1, 1))
    return torch.cat(out)


# points per exact check between looks at the clock (each takes the checker a few ms)
_EXACT_CHUNK = 64


def _decide_points(net, problem, pts, judge, stats, deadline=math.inf):
    """Single points: unsafe ones are confirmed (returned); safe ones dropped; those whose
    float32 margin lies within the evaluation tolerance of 0 are decided by the exact checker,
    and every safe-looking one where ``judge.check_every_point`` (a network whose float32
    evaluation can put a step's input on the other side of an edge: torch's rounding then
    moves an output by a whole level, far beyond any tolerance). Returns (confirmed points or
    None, number of points left disputed), or (None, None) when the deadline passed first (an
    audit saw 4,913 points checked in one call take 20 s of a 12 s limit)."""
    margin, tol = problem.point_margins(net.evaluate(pts))
    stats["points_evaluated"] += int(pts.shape[0])
    bad = pts[margin <= 0][torch.argsort(margin[margin <= 0])]
    close = pts[(margin > 0) & ((margin <= tol) | bool(getattr(judge, "check_every_point", False)))]
    disputed = 0
    for i in range(0, close.shape[0], _EXACT_CHUNK):
        if time.monotonic() > deadline:
            return None, None
        part = close[i:i + _EXACT_CHUNK]
        stats["points_checked_exactly"] = stats.get("points_checked_exactly", 0) + int(part.shape[0])
        bad = torch.cat([bad, part[~judge.exactly_safe(part)]])
    if bad.shape[0]:
        stats["candidates"] += int(bad.shape[0])
        ok = judge.confirm(bad)
        if ok is not None and ok.shape[0]:
            return ok, 0
        disputed = int(bad.shape[0])
    return None, disputed


def uses_activation_branching(net: Network, opts: Options) -> bool:
    """Whether the search will branch on hidden activations (see _branching_layers)."""
    return bool(_branching_layers(net, opts))


def _branching_layers(net: Network, opts: Options) -> list:
    """The activation layers to branch on: all splittable ones, unless the input is small
    enough for input splitting alone (or the bound method has no intermediate bounds)."""
    if opts.branch == "input" or opts.method == "ibp":
        return []
    if opts.branch == "auto" and net.n_in <= opts.input_split_max_dims:
        return []
    return act.find_layers(net.bounded_module)


def _take_bounds(bd: Bounds, idx) -> Bounds:
    pick = lambda t: None if t is None else t[idx]
    pairs = lambda ps: None if ps is None else [(a[idx], b[idx]) for a, b in ps]
    return Bounds(bd.lb[idx], pick(bd.lA), pairs(bd.ranges),
                  None if bd.layer_A is None else [pick(a) for a in bd.layer_A], pick(bd.empty),
                  pairs(bd.inputs), pick(bd.points))


def _try_candidates(net, problem, d, lA, worst_row, integer, confirm, stats, points=None,
                    near_misses=None):
    """The cheapest counterexample candidates: the centre, the corner minimising the decisive
    row's linear bound and, where the split constraints entered that bound (``points``, see
    lagrangian.py), the corner minimising its Lagrangian. All of them, with their margins, go
    to ``near_misses`` when given. Returns confirmed domain points or None."""
    cands = [_centre(d["lo"], d["hi"], integer)]
    if lA is not None:
        a = lA[torch.arange(lA.shape[0]), worst_row]
        cands.append(torch.where(a > 0, d["lo"], d["hi"]))
    if points is not None:
        p = points[torch.arange(points.shape[0]), worst_row]
        p = p[~torch.isnan(p).any(dim=1)]
        cands.append(torch.round(p) if integer else p)
    cand = torch.cat(cands)
    m = problem.margins(net.evaluate(cand))
    stats["points_evaluated"] += int(cand.shape[0])
    if near_misses is not None:
        near_misses(cand, m)
    if not bool((m <= 0).any()):
        return None
    bad = cand[m <= 0][torch.argsort(m[m <= 0])][:16]
    stats["candidates"] += int(bad.shape[0])
    ok = confirm(bad)
    return ok if ok is not None and ok.shape[0] else None


def _input_split(net, problem, d, bd, worst_row, key, opts, integer, batch, stats, layers,
                 state_keys, cells=None):
    """Children of input splits (the activation constraints are inherited)."""
    state = {k: d[k] for k in state_keys}
    n = d["lo"].shape[0]
    if opts.split == "strong":
        lo, hi, open_, ckey, pick, clb = _strong_split(net, problem, d["lo"], d["hi"], d["open"],
                                                       bd.lA, worst_row, opts, integer, batch,
                                                       stats, layers, state, cells)
        kids = dict(lo=lo, hi=hi, open=open_, depth=(d["depth"] + 1).repeat(2), key=ckey)
        kids.update({k: v[pick % n] for k, v in state.items()})
        if "best_lb" in kids:   # bounded already: their own bounds (no looser than the parent's)
            kids["best_lb"] = clb
        alive = open_.any(dim=1)
        return _take(kids, alive)
    scores = split_scores(d["lo"], d["hi"], bd.lA, worst_row, opts.split,
                          splittable(d["lo"], d["hi"], cells))
    lo, hi = split(d["lo"], d["hi"], scores.argmax(dim=1), integer, cells)
    kids = dict(lo=lo, hi=hi, open=d["open"].repeat(2, 1), depth=(d["depth"] + 1).repeat(2),
                key=key.repeat(2))
    kids.update({k: v.repeat(2, *([1] * (v.dim() - 1))) for k, v in state.items()})
    return kids


def _root_alpha(net: Network, problem: Problem, lo: Tensor, hi: Tensor, stats,
                deadline: float) -> Tensor:
    """Polytopes left open at the root by CROWN, then (where CROWN is not enough and there is
    time for about 30 CROWN passes) by alpha-CROWN, whose optimised slopes are worth their cost
    on one box."""
    from ..bounded import compute_bounds

    t = time.monotonic()
    open_ = torch.ones(1, problem.n_poly, dtype=torch.bool, device=lo.device)
    lb = bound_rows(net, problem, lo.unsqueeze(0), hi.unsqueeze(0), "crown", False).lb
    open_ &= ~problem.refuted(lb)
    crown_time = time.monotonic() - t
    if bool(open_.any()) and deadline - time.monotonic() > 60 * crown_time:
        shape = (1,) + net.input_shape
        bm = net.bounded_module
        try:
            alb, _ = compute_bounds(bm, lo.reshape(shape), hi.reshape(shape), "alpha-crown",
                                    C=problem.C.unsqueeze(0), deadline=deadline)
        finally:  # later CROWN passes must not reuse this one box's optimised slopes
            for node in bm.optimizable_activations:
                node.opt_end()
        open_ &= ~problem.refuted(torch.maximum(lb, alb.detach()))
    stats["time_root_alpha"] = time.monotonic() - t
    return open_


def _box_keys(problem: Problem, lb: Tensor, open_: Tensor):
    """Per box: polytopes still open after bounds ``lb``, and the worst open polytope's margin
    bound (+inf when all are refuted)."""
    open_ = open_ & ~problem.refuted(lb)
    per_poly = problem.poly_max(lb - problem.b)
    per_poly = torch.where(open_, per_poly, torch.full_like(per_poly, _INF))
    return open_, per_poly.min(dim=1).values


def _strong_split(net, problem, lo, hi, open_, lA, worst_row, opts, integer, batch, stats,
                  layers=None, state=None, cells=None):
    """Strong branching: bound both children for each candidate dimension and keep the split
    whose children are best on average. Candidates: every splittable dimension of a
    low-dimensional input, else the best few by estimated gain and by width. Returns the
    children (left ones, then right ones), their open polytopes and keys, for each child the
    index (mod N) of its parent, and the children's bounds (no looser than their parent's
    ``best_lb`` in ``state``, when there)."""
    n = lo.shape[1]
    can = splittable(lo, hi, cells)
    width = torch.where(can, (hi - lo).float(), torch.full_like(lo, -1.0, dtype=torch.float32))
    if n <= 8:
        cand = torch.arange(n, device=lo.device).unsqueeze(0).expand(lo.shape[0], -1)
    else:
        k = 3
        by_gain = split_scores(lo, hi, lA, worst_row, "gain", can).topk(k, dim=1).indices
        by_width = width.topk(k, dim=1).indices
        cand = torch.cat([by_gain, by_width], dim=1)
    # a candidate that cannot be split: try the widest splittable dimension in its place
    widest = width.argmax(dim=1, keepdim=True).expand_as(cand)
    cand = torch.where(can.gather(1, cand), cand, widest)
    k = cand.shape[1]
    N = lo.shape[0]
    kids_lo, kids_hi = [], []
    for j in range(k):
        c_lo, c_hi = split(lo, hi, cand[:, j], integer, cells)
        kids_lo.append(c_lo)
        kids_hi.append(c_hi)
    all_lo, all_hi = torch.cat(kids_lo), torch.cat(kids_hi)          # (k * 2N, n)
    rep = lambda t: t.repeat(2 * k, *([1] * (t.dim() - 1)))
    all_state = {name: rep(v) for name, v in (state or {}).items()}
    lbs, empties = [], []
    for i in range(0, all_lo.shape[0], batch):
        part = {name: v[i:i + batch] for name, v in all_state.items()}
        bd = bound_rows(net, problem, all_lo[i:i + batch], all_hi[i:i + batch],
                        opts.method, False, layers, part)
        lbs.append(bd.lb)
        empties.append(bd.empty if bd.empty is not None
                       else torch.zeros(bd.lb.shape[0], dtype=torch.bool, device=lo.device))
    stats["boxes_bounded"] += int(all_lo.shape[0])
    lb, empty = torch.cat(lbs), torch.cat(empties)
    all_open, keys = _box_keys(problem, lb, rep(open_) & ~empty.unsqueeze(1))
    keys = keys.view(k, 2, N)
    can_split = can.gather(1, cand).T                                  # (k, N)
    # mean of the children's (non-positive) margin bounds: splits that leave the worst region's
    # bound alone but halve the box still count (the min of the two would stall on them)
    gain = keys.clamp(max=0).mean(dim=1)
    if "best_lb" in all_state:   # the parents' bounds hold on their children (kept out of the
        # choice above: there, children's bounds looser than their parent's still rank splits)
        lb = torch.maximum(lb, all_state["best_lb"])
        all_open, keys = _box_keys(problem, lb, rep(open_) & ~empty.unsqueeze(1))
    quality = torch.where(can_split, gain, torch.full_like(gain, -_INF))
    best = quality.argmax(dim=0)                                       # (N,)
    idx = torch.arange(N, device=lo.device)
    pick = torch.cat([best * 2 * N + idx, best * 2 * N + N + idx])     # left kids, right kids
    return all_lo[pick], all_hi[pick], all_open[pick], keys.reshape(-1)[pick], pick, lb[pick]


def _centre(lo: Tensor, hi: Tensor, integer: bool) -> Tensor:
    mid = lo + (hi - lo) / 2
    return torch.floor(mid) if integer else mid
