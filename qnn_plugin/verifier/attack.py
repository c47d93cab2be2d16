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


def pgd(net: Network, problem: Problem, n_starts: int, steps: int, gen: torch.Generator,
        deadline: Optional[float] = None) -> Tensor:
    """L-inf PGD on the whole network (straight-through gradients through the quantizers) from
    ``n_starts`` random starts inside the inner box; returns violating inputs (N, n_in)."""
    lo, hi = problem.inner_lower, problem.inner_upper
    if n_starts <= 0 or steps <= 0 or not bool((lo <= hi).all()):
        return lo.new_zeros(0, lo.numel())
    width = hi - lo
    x = lo + torch.rand((n_starts, lo.numel()), generator=gen).to(lo.device) * width
    found = []
    step = width * 0.25
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
