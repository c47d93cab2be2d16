"""Cheap counterexample search: random points of the box and PGD with straight-through gradients.

Both return candidate inputs whose margin (see problem.py) is <= 0 on the torch model, most
violating first; the caller confirms them with check.Checker before answering sat.
"""
from __future__ import annotations

import time
from typing import Optional

import torch
from torch import Tensor

from .network import Network
from .problem import Problem


def random_points(net: Network, lo: Tensor, hi: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """n uniform domain points of the domain box [lo, hi] (codes: uniform integers)."""
    u = torch.rand((n, lo.numel()), generator=gen, device="cpu").to(lo.device)
    if net.grid is None:
        return lo + u * (hi - lo)
    return torch.minimum(lo + torch.floor(u * (hi - lo + 1)), hi)


def candidates(net: Network, problem: Problem, points: Tensor, keep: int = 8) -> Tensor:
    """The (at most ``keep``) domain points with margin <= 0, most violating first."""
    m = problem.margins(net.evaluate(points))
    bad = torch.nonzero(m <= 0).flatten()
    if bad.numel() == 0:
        return points[:0]
    order = bad[torch.argsort(m[bad])][:keep]
    return points[order]


def seeds(net: Network, problem: Problem, n: int, keep: int, gen: torch.Generator,
          deadline: Optional[float] = None) -> Tensor:
    """Inputs (at most ``keep``, N x n_in) at the lowest margins among ``n`` random domain
    points of the inner box, lowest first (violating ones included): PGD starts near the
    boundary. On the three ACAS Xu sat instances whose counterexamples PGD from random starts
    missed, a million samples came within 3e-5 to 5e-4 of the boundary, and 100 PGD steps
    from the best 1,024 (first step 0.3% of the box) crossed it in 9 of 9 seeded runs (with
    a quarter of the samples: 6 of 9)."""
    lo, hi = net.domain_box(problem.inner_lower, problem.inner_upper)
    best_pts, best_m = lo.new_zeros(0, lo.numel()), lo.new_zeros(0)
    chunk = 1 << 16
    for start in range(0, n, chunk):
        if deadline is not None and time.monotonic() > deadline:
            break
        pts = random_points(net, lo, hi, min(chunk, n - start), gen)
        m = problem.margins(net.evaluate(pts))
        pts, m = torch.cat([best_pts, pts]), torch.cat([best_m, m])
        order = torch.argsort(m)[:keep]
        best_pts, best_m = pts[order], m[order]
    return net.to_inputs(best_pts, problem.inner_lower, problem.inner_upper)


def pgd(net: Network, problem: Problem, n_starts: int, steps: int, gen: torch.Generator,
        deadline: Optional[float] = None, starts: Optional[Tensor] = None,
        first_step: float = 0.25) -> Tensor:
    """L-inf PGD on the whole network (straight-through gradients through the quantizers) from
    ``n_starts`` random starts inside the inner box, or from the given ``starts`` (inputs,
    e.g. from ``seeds``); the step starts at ``first_step`` x the box width and halves every
    quarter of the steps. Returns violating inputs (N, n_in)."""
    lo, hi = problem.inner_lower, problem.inner_upper
    if steps <= 0 or not bool((lo <= hi).all()):
        return lo.new_zeros(0, lo.numel())
    width = hi - lo
    if starts is None:
        x = lo + torch.rand((max(n_starts, 0), lo.numel()), generator=gen).to(lo.device) * width
    else:
        x = starts.to(lo.device).clone()
    if x.shape[0] == 0:
        return lo.new_zeros(0, lo.numel())
    found = []
    step = width * first_step
    for i in range(steps):
        if deadline is not None and time.monotonic() > deadline:
            break
        x.requires_grad_(True)
        with torch.enable_grad():
            m = problem.margins(net.forward_inputs(x))
            grad, = torch.autograd.grad(m.sum(), x)
        x = x.detach()
        bad = m.detach() <= 0
        if bool(bad.any()):
            found.append(x[bad])
            if sum(f.shape[0] for f in found) >= 8:
                break
        x = torch.minimum(torch.maximum(x - step * grad.sign(), lo), hi)
        if (i + 1) % max(1, steps // 4) == 0:
            step = step * 0.5
    if not found:
        x = x.detach()
        m = problem.margins(net.forward_inputs(x).detach())
        return x[m <= 0]
    return torch.cat(found)
