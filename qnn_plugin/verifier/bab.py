"""Batched branch and bound over the input domain (integer codes of a QNN's input quantizer, or
float inputs).

Each round takes the most promising open boxes (lowest bound on the margin first), bounds them in
one batched auto_LiRPA call, drops every box whose unsafe polytopes are all refuted, evaluates
single points exactly, tries the cheapest counterexample candidates of the rest (the box centre
and the corner that minimises the linear lower bound), and splits each remaining box in two along
the dimension with the largest estimated gain |A_d| * width_d (the bound's slack that splitting d
halves; the input-split "smart branching" of alpha-beta-CROWN). Code boxes split at an integer,
so no box ever ends on a rounding tie; float boxes split at the float midpoint and, once two
floats are adjacent, into the two single values, so every box eventually becomes a point.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from ..bounded import _ibp
from .network import Network
from .problem import Problem

from auto_LiRPA import BoundedTensor, PerturbationLpNorm

SPLIT_RULES = ("strong", "gain", "widest")
# bound methods inside the search -> auto_LiRPA's names (crown-ibp: interval bounds for the
# hidden layers, CROWN for the output)
LIRPA_METHODS = {"ibp": "IBP", "crown": "backward", "crown-ibp": "CROWN-IBP"}
_INF = float("inf")


@dataclass
class Options:
    method: str = "crown"          # bound method inside the search: crown | crown-ibp | ibp
    split: str = "strong"          # split rule: strong | gain | widest
    round_seconds: float = 2.0     # a round (pop, bound, split) is sized to take about this long
    batch: Optional[int] = None    # boxes per bound call (None: sized to memory)
    memory_bytes: int = 1 << 30    # budget for one bound call's A matrices
    max_pool_bytes: int = 4 << 30  # open boxes kept at most (then the search gives up: unknown)
    progress: Optional[Callable[[Dict[str, float]], None]] = None


@dataclass
class Outcome:
    status: str                       # unsat | sat | timeout | unknown
    points: Optional[Tensor] = None   # sat: confirmed domain point(s)
    message: str = ""
    stats: Dict[str, float] = field(default_factory=dict)


class _Pool:
    """Open boxes as stacked tensors."""

    def __init__(self, lo: Tensor, hi: Tensor, n_poly: int):
        self.lo, self.hi = lo.unsqueeze(0), hi.unsqueeze(0)
        self.open = torch.ones(1, n_poly, dtype=torch.bool, device=lo.device)
        self.depth = torch.zeros(1, dtype=torch.int64, device=lo.device)
        self.key = torch.full((1,), -_INF, device=lo.device)

    def __len__(self):
        return self.lo.shape[0]

    def pop(self, k: int):
        """The k boxes with the lowest key (worst parent bound): likeliest to hold a violation."""
        if k >= len(self):
            out = (self.lo, self.hi, self.open, self.depth)
            self.lo, self.hi = self.lo[:0], self.hi[:0]
            self.open, self.depth, self.key = self.open[:0], self.depth[:0], self.key[:0]
            return out
        idx = torch.topk(self.key, k, largest=False).indices
        keep = torch.ones(len(self), dtype=torch.bool, device=self.key.device)
        keep[idx] = False
        out = (self.lo[idx], self.hi[idx], self.open[idx], self.depth[idx])
        self.lo, self.hi, self.open = self.lo[keep], self.hi[keep], self.open[keep]
        self.depth, self.key = self.depth[keep], self.key[keep]
        return out

    def push(self, lo, hi, open_, depth, key):
        self.lo, self.hi = torch.cat([self.lo, lo]), torch.cat([self.hi, hi])
        self.open, self.depth = torch.cat([self.open, open_]), torch.cat([self.depth, depth])
        self.key = torch.cat([self.key, key])

    def nbytes(self) -> int:
        return 2 * self.lo.numel() * self.lo.element_size()


def bound_rows(net: Network, problem: Problem, lo: Tensor, hi: Tensor, method: str,
               need_A: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """Lower bounds (N, R) of C y over the domain boxes, and with CROWN the A matrices (N, R, n)
    of the linear lower bounds (None for IBP)."""
    bm = net.bounded_module
    shape = (lo.shape[0],) + net.input_shape
    lo_s, hi_s = lo.reshape(shape), hi.reshape(shape)
    x = BoundedTensor(lo_s, PerturbationLpNorm(x_L=lo_s, x_U=hi_s))
    C = problem.C.unsqueeze(0).expand(lo.shape[0], -1, -1)
    ilb, _ = _ibp(bm, x, C)
    if method == "ibp":
        return ilb, None
    lirpa = LIRPA_METHODS[method]
    if need_A:
        out, inp = bm.output_name[0], bm.input_name[0]
        lb, _, A = bm.compute_bounds(x=(x,), C=C, method=lirpa, bound_upper=False,
                                     return_A=True, needed_A_dict={out: [inp]})
        lA = A[out][inp]["lA"]
        lA = None if lA is None else lA.reshape(lo.shape[0], problem.n_rows, -1)
    else:
        lb, _ = bm.compute_bounds(x=(x,), C=C, method=lirpa, bound_upper=False)
        lA = None
    return torch.maximum(lb, ilb), lA


def split_scores(lo: Tensor, hi: Tensor, lA: Optional[Tensor], worst_row: Tensor, rule: str) -> Tensor:
    """(N, n) split priority; non-splittable (zero-width) dimensions get -1."""
    width = (hi - lo).float()
    if rule == "gain" and lA is not None:
        a = lA.gather(1, worst_row.view(-1, 1, 1).expand(-1, 1, lA.shape[2])).squeeze(1)
        score = a.abs() * width
        # a dimension the bound ignores can still matter (steps saturate): width breaks ties
        score = score + 1e-9 * width / (width.max(dim=1, keepdim=True).values + 1e-30)
    else:
        score = width
    return torch.where(width > 0, score, torch.full_like(score, -1.0))


def split(lo: Tensor, hi: Tensor, dim: Tensor, integer: bool):
    """Two children per box along ``dim``: codes at floor(mid) | floor(mid)+1; floats at the
    midpoint, or into the two values when no float lies strictly between."""
    rows = torch.arange(lo.shape[0], device=lo.device)
    l, h = lo[rows, dim], hi[rows, dim]
    if integer:
        left_hi, right_lo = torch.floor((l + h) / 2), torch.floor((l + h) / 2) + 1
    else:
        mid = l + (h - l) / 2
        inside = (mid > l) & (mid < h)
        left_hi, right_lo = torch.where(inside, mid, l), torch.where(inside, mid, h)
    lo1, hi1, lo2, hi2 = lo.clone(), hi.clone(), lo.clone(), hi.clone()
    hi1[rows, dim] = left_hi
    lo2[rows, dim] = right_lo
    return torch.cat([lo1, lo2]), torch.cat([hi1, hi2])


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
           confirm: Callable[[Tensor], Optional[Tensor]], opts: Options) -> Outcome:
    """Branch and bound on the domain box [lo, hi].

    ``confirm(points)`` checks candidate domain points (most violating first) exactly and
    returns the confirmed ones (empty when none is)."""
    integer = net.grid is not None
    stats = dict(boxes_bounded=0, points_evaluated=0, max_depth=0, rounds=0, candidates=0)
    pool = _Pool(lo, hi, problem.n_poly)
    batch = _batch_size(net, problem, opts)
    disputed = 0
    sec_per_box = None
    last_report = time.monotonic()
    t_round, n_popped = None, 0
    while len(pool):
        if t_round is not None:  # the last round's cost per box, smoothed
            per_box = (time.monotonic() - t_round) / max(n_popped, 1)
            sec_per_box = per_box if sec_per_box is None else 0.5 * (sec_per_box + per_box)
        if time.monotonic() > deadline:
            return Outcome("timeout", stats=stats, message=f"{len(pool)} boxes open")
        if pool.nbytes() > opts.max_pool_bytes:
            return Outcome("unknown", stats=stats, message=f"gave up: {len(pool)} open boxes "
                           f"exceed the memory budget")
        # size the round so that it ends well before the deadline
        left = deadline - time.monotonic()
        take = batch
        if sec_per_box is not None:
            take = int(max(1, min(batch, min(opts.round_seconds, left / 2) / sec_per_box)))
        t_round = time.monotonic()
        b_lo, b_hi, b_open, b_depth = pool.pop(take)
        n_popped = b_lo.shape[0]
        stats["rounds"] += 1
        stats["max_depth"] = max(stats["max_depth"], int(b_depth.max()))
        # single points: evaluate exactly
        point = (b_lo == b_hi).all(dim=1)
        if bool(point.any()):
            pts = b_lo[point]
            m = problem.margins(net.evaluate(pts))
            stats["points_evaluated"] += int(pts.shape[0])
            bad = pts[m <= 0][torch.argsort(m[m <= 0])]
            if bad.shape[0]:
                stats["candidates"] += int(bad.shape[0])
                ok = confirm(bad)
                if ok is not None and ok.shape[0]:
                    return Outcome("sat", ok, stats=stats)
                disputed += int(bad.shape[0])
            keep = ~point
            b_lo, b_hi, b_open, b_depth = b_lo[keep], b_hi[keep], b_open[keep], b_depth[keep]
            if b_lo.shape[0] == 0:
                continue
        try:
            lb, lA = bound_rows(net, problem, b_lo, b_hi, opts.method, opts.split != "widest")
        except RuntimeError as exc:  # out of memory: smaller batches
            if "out of memory" not in str(exc).lower() or batch <= 1:
                raise
            pool.push(b_lo, b_hi, b_open, b_depth, torch.full_like(b_depth, -_INF, dtype=torch.float32))
            batch = max(1, batch // 2)
            continue
        stats["boxes_bounded"] += int(b_lo.shape[0])
        b_open = b_open & ~problem.refuted(lb)
        alive = b_open.any(dim=1)
        b_lo, b_hi, b_open, b_depth, lb = b_lo[alive], b_hi[alive], b_open[alive], b_depth[alive], lb[alive]
        lA = None if lA is None else lA[alive]
        if b_lo.shape[0] == 0:
            continue
        # worst open polytope's best row: the bound that decides this box
        slack = lb - problem.b
        per_poly = problem.poly_max(slack)
        per_poly = torch.where(b_open, per_poly, torch.full_like(per_poly, _INF))
        key, worst_poly = per_poly.min(dim=1)
        row_in_poly = torch.where(problem.poly.unsqueeze(0) == worst_poly.unsqueeze(1), slack,
                                  torch.full_like(slack, -_INF))
        worst_row = row_in_poly.argmax(dim=1)
        # cheap candidates: the corner minimising the decisive row's linear bound, and the centre
        cands = [_centre(b_lo, b_hi, integer)]
        if lA is not None:
            a = lA[torch.arange(lA.shape[0]), worst_row]
            cands.append(torch.where(a > 0, b_lo, b_hi))
        cand = torch.cat(cands)
        m = problem.margins(net.evaluate(cand))
        stats["points_evaluated"] += int(cand.shape[0])
        if bool((m <= 0).any()):
            bad = cand[m <= 0][torch.argsort(m[m <= 0])][:16]
            stats["candidates"] += int(bad.shape[0])
            ok = confirm(bad)
            if ok is not None and ok.shape[0]:
                return Outcome("sat", ok, stats=stats)
        if opts.split == "strong":
            c_lo, c_hi, c_open, c_key = _strong_split(net, problem, b_lo, b_hi, b_open, lA,
                                                      worst_row, opts, integer, batch, stats)
            c_depth = (b_depth + 1).repeat(2)
            alive = c_open.any(dim=1)
            pool.push(c_lo[alive], c_hi[alive], c_open[alive], c_depth[alive], c_key[alive])
        else:
            scores = split_scores(b_lo, b_hi, lA, worst_row, opts.split)
            dim = scores.argmax(dim=1)
            c_lo, c_hi = split(b_lo, b_hi, dim, integer)
            pool.push(c_lo, c_hi, b_open.repeat(2, 1), (b_depth + 1).repeat(2), key.repeat(2))
        if opts.progress is not None and time.monotonic() - last_report > 2.0:
            last_report = time.monotonic()
            opts.progress(dict(stats, open=len(pool)))
    if disputed:
        return Outcome("unknown", stats=stats, message=f"{disputed} grid point(s) violate the "
                       "property on the torch model but onnxruntime or the exact semantics disagree")
    return Outcome("unsat", stats=stats)


def _box_keys(problem: Problem, lb: Tensor, open_: Tensor):
    """Per box: polytopes still open after bounds ``lb``, and the worst open polytope's margin
    bound (+inf when all are refuted)."""
    open_ = open_ & ~problem.refuted(lb)
    per_poly = problem.poly_max(lb - problem.b)
    per_poly = torch.where(open_, per_poly, torch.full_like(per_poly, _INF))
    return open_, per_poly.min(dim=1).values


def _strong_split(net, problem, lo, hi, open_, lA, worst_row, opts, integer, batch, stats):
    """Strong branching: bound both children for each candidate dimension and keep the split
    whose worse child is best. Candidates: every splittable dimension of a low-dimensional
    input, else the best few by estimated gain and by width."""
    n = lo.shape[1]
    width = (hi - lo).float()
    if n <= 8:
        cand = torch.arange(n, device=lo.device).unsqueeze(0).expand(lo.shape[0], -1)
    else:
        k = 3
        by_gain = split_scores(lo, hi, lA, worst_row, "gain").topk(k, dim=1).indices
        by_width = width.topk(k, dim=1).indices
        cand = torch.cat([by_gain, by_width], dim=1)
    k = cand.shape[1]
    N = lo.shape[0]
    kids_lo, kids_hi = [], []
    for j in range(k):
        c_lo, c_hi = split(lo, hi, cand[:, j], integer)
        kids_lo.append(c_lo)
        kids_hi.append(c_hi)
    all_lo, all_hi = torch.cat(kids_lo), torch.cat(kids_hi)          # (k * 2N, n)
    lbs = []
    for i in range(0, all_lo.shape[0], batch):
        lbs.append(bound_rows(net, problem, all_lo[i:i + batch], all_hi[i:i + batch],
                              opts.method, False)[0])
    stats["boxes_bounded"] += int(all_lo.shape[0])
    lb = torch.cat(lbs)
    all_open, keys = _box_keys(problem, lb, open_.repeat(2 * k, 1))
    keys = keys.view(k, 2, N)
    splittable = width.gather(1, cand).T > 0                           # (k, N)
    # mean of the children's (non-positive) margin bounds: splits that leave the worst region's
    # bound alone but halve the box still count (the min of the two would stall on them)
    gain = keys.clamp(max=0).mean(dim=1)
    quality = torch.where(splittable, gain, torch.full_like(gain, -_INF))
    best = quality.argmax(dim=0)                                       # (N,)
    idx = torch.arange(N, device=lo.device)
    pick = torch.cat([best * 2 * N + idx, best * 2 * N + N + idx])     # left kids, right kids
    return all_lo[pick], all_hi[pick], all_open[pick], keys.view(-1)[
        torch.cat([best * 2 * N + idx, best * 2 * N + N + idx])]


def _centre(lo: Tensor, hi: Tensor, integer: bool) -> Tensor:
    mid = lo + (hi - lo) / 2
    return torch.floor(mid) if integer else mid
