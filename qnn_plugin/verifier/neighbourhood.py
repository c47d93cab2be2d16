"""Exact programs on small neighbourhoods of the search's near misses (large neighbourhood
search), to find counterexamples that neither the search nor the whole box's program reaches.

The search evaluates thousands of candidate points; the best of them are near misses, safe by a
few output steps. A neighbourhood of one keeps all but K input codes at its values and frees
those K over the box: a program with K free inputs instead of hundreds, whose hidden ranges
are narrow, so HiGHS decides it in about a second where the whole box's program runs for
minutes. Measured on the AAAI 2021 network (eps 3 sample 84, a `sat` instance that neither the
search nor the whole program decided in 240 s): its Gurobi counterexample is 57-97 codes from
the search's 20 best near misses; freeing the ~100 codes where the five best disagree with one
another around the best gives a counterexample (margin -0.07) at the sub-program's root in
0.6 s. On eps 4 sample 10 every such neighbourhood was infeasible or undecided.

Neighbourhoods: first the codes where the best near misses disagree (padded at random to K),
then K random free codes around one of the best three; K grows by 1.3x after an infeasible
neighbourhood (nothing there: look wider) and shrinks after an undecided one. The programs only
look for counterexamples: a neighbourhood's "infeasible" says nothing about the box, and every
point found is confirmed by the verifier's checker before it counts.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch import Tensor

# solve(lo, hi, end) -> (status, confirmed domain point or None): the exact program of the
# code box [lo, hi] until the monotonic time ``end``; status is "feasible", "infeasible" or
# "unknown"
Solver = Callable[[Tensor, Tensor, float], tuple]


class NearMisses:
    """The ``keep`` distinct points with the lowest margins offered so far."""

    def __init__(self, keep: int = 8):
        self.keep = keep
        self.points: Optional[Tensor] = None
        self.margins: Optional[Tensor] = None

    def offer(self, points: Tensor, margins: Tensor) -> None:
        if points.shape[0] == 0:
            return
        idx = torch.argsort(margins)[:self.keep]
        pts, ms = points[idx].detach(), margins[idx].detach().float()
        if self.points is not None:
            pts, ms = torch.cat([self.points, pts]), torch.cat([self.margins, ms])
        pts, inv = torch.unique(pts, dim=0, return_inverse=True)
        best = torch.full((pts.shape[0],), float("inf"), device=ms.device)
        best = best.scatter_reduce(0, inv, ms, reduce="amin")
        order = torch.argsort(best)[:self.keep]
        self.points, self.margins = pts[order], best[order]

    def __len__(self) -> int:
        return 0 if self.points is None else self.points.shape[0]


class Neighbourhoods:
    """Runs neighbourhood programs between the search's rounds, within a share of its time.

    ``step()`` (called once per round) solves at most one neighbourhood, and only from
    ``start_after`` seconds after construction (the whole box's program decides most cases
    sooner, and a slice here would delay the search's noticing it) and while the time spent here
    stays below ``share`` of the time since construction; it returns True once a confirmed
    counterexample is in ``found``."""

    def __init__(self, lo: Tensor, hi: Tensor, solve: Solver, share: float = 0.25,
                 slice_seconds: float = 3.0, start_after: float = 5.0, size: int = 100,
                 min_size: int = 20, seed: int = 0):
        self.lo, self.hi, self.solve = lo, hi, solve
        self.free = torch.nonzero(hi > lo).flatten()
        self.share, self.slice_seconds, self.start_after = share, slice_seconds, start_after
        self.size, self.min_size = size, min_size
        self.near = NearMisses()
        self.found: Optional[Tensor] = None
        self.gen = torch.Generator().manual_seed(seed)
        self.t0, self.spent, self.tried = time.monotonic(), 0.0, 0
        self.outcomes = {"feasible": 0, "infeasible": 0, "unknown": 0, "error": 0}

    @property
    def useful(self) -> bool:
        """Whether a neighbourhood is smaller than the box (else the box's program is it)."""
        return self.free.numel() > self.size

    def step(self, deadline: float) -> bool:
        if self.found is not None:
            return True
        now = time.monotonic()
        if (not self.useful or len(self.near) == 0 or now - self.t0 < self.start_after
                or self.spent > self.share * (now - self.t0)):
            return False
        end = min(deadline, now + self.slice_seconds)
        if end - now < 0.1:
            return False
        lo, hi = self.neighbourhood()
        try:
            status, point = self.solve(lo, hi, end)
        except Exception:   # a helper failing must not end the verification: stop helping
            status, point = "error", None
            self.free = self.free[:0]
        finally:
            self.spent += time.monotonic() - now
        self.tried += 1
        self.outcomes[status] = self.outcomes.get(status, 0) + 1
        if point is not None:
            self.found = point
            return True
        if status == "infeasible":
            self.size = min(int(self.size * 1.3), self.free.numel())
        else:
            self.size = max(self.min_size, int(self.size / 1.3))
        return False

    def neighbourhood(self):
        """(lo, hi) of the next neighbourhood: a near miss with ``size`` codes freed."""
        pts = self.near.points
        centre = pts[self.tried % min(3, pts.shape[0])]
        free = torch.zeros_like(centre, dtype=torch.bool)
        if self.tried < 3:   # where the best near misses disagree
            free = (pts[:5] != centre).any(dim=0) & (self.hi > self.lo)
            if int(free.sum()) > self.size:
                keep = torch.nonzero(free).flatten()
                free[:] = False
                free[keep[torch.randperm(keep.numel(), generator=self.gen)[:self.size]]] = True
        need = self.size - int(free.sum())
        if need > 0:
            rest = self.free[~free[self.free]]
            free[rest[torch.randperm(rest.numel(), generator=self.gen)[:need]]] = True
        lo = torch.where(free, self.lo, centre)
        hi = torch.where(free, self.hi, centre)
        return lo, hi

    def stats(self) -> dict:
        return dict(neighbourhoods=float(self.tried), time_neighbourhoods=self.spent,
                    **{f"neighbourhoods_{k}": float(v) for k, v in self.outcomes.items()})
