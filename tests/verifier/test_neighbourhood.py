"""Exact programs on neighbourhoods of near misses (neighbourhood.py): the near-miss store, the
neighbourhoods it builds, the time share and size rules, and the verifier's solver of a
neighbourhood against enumeration (a point only when the box has a counterexample, confirmed;
"infeasible" only when it has none)."""
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin.verifier import api
from qnn_plugin.verifier.check import Checker
from qnn_plugin.verifier.neighbourhood import NearMisses, Neighbourhoods
from tests.baselines.smt.networks import ENCODINGS
from tests.verifier.instances import grid_case


def test_near_misses_keep_the_lowest_distinct_points():
    near = NearMisses(keep=3)
    near.offer(torch.tensor([[0.0, 1], [2, 2], [5, 5]]), torch.tensor([0.5, 0.2, 0.9]))
    near.offer(torch.tensor([[0.0, 1], [3, 3]]), torch.tensor([0.1, 0.3]))
    near.offer(torch.zeros(0, 2), torch.zeros(0))
    assert near.points.tolist() == [[0, 1], [2, 2], [3, 3]]
    assert near.margins.tolist() == pytest.approx([0.1, 0.2, 0.3])


def _box(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo = torch.randint(0, 50, (n,), generator=g).float()
    hi = lo + torch.randint(0, 4, (n,), generator=g).float()   # some coordinates fixed
    return lo, hi


def _points(lo, hi, k, seed=1):
    g = torch.Generator().manual_seed(seed)
    return lo + torch.floor(torch.rand(k, lo.numel(), generator=g) * (hi - lo + 1))


class _Solver:
    """A fake solver answering the given statuses in turn (a point with "feasible")."""

    def __init__(self, *statuses):
        self.statuses, self.boxes = list(statuses), []

    def __call__(self, lo, hi, end):
        self.boxes.append((lo.clone(), hi.clone()))
        status = self.statuses.pop(0)
        return status, (lo.unsqueeze(0) if status == "feasible" else None)


def _ready(lo, hi, solver, **kw):
    nb = Neighbourhoods(lo, hi, solver, start_after=0.0, share=1.0, size=6, min_size=2, **kw)
    pts = _points(lo, hi, 6)
    nb.near.offer(pts, torch.linspace(0.1, 0.6, 6))
    return nb, pts


def test_neighbourhoods_free_size_codes_around_a_near_miss():
    lo, hi = _box()
    nb, pts = _ready(lo, hi, _Solver("infeasible", "unknown", "unknown", "unknown"))
    for _ in range(4):
        size = nb.size
        assert not nb.step(time.monotonic() + 10)
        blo, bhi = nb.solve.boxes[-1]
        free = blo < bhi
        assert int(free.sum()) == size
        assert bool((blo >= lo).all() and (bhi <= hi).all())
        assert bool(((blo == lo) & (bhi == hi))[free].all())   # freed over the whole box
        centre = [p for p in pts if bool((p == blo)[~free].all())]
        assert centre, "the fixed codes are a near miss's"
    # the first neighbourhood frees where the best near misses disagree (as far as size allows)
    first_lo, first_hi = nb.solve.boxes[0]
    disagree = ((pts[:5] != pts[0]).any(dim=0) & (hi > lo))
    freed = first_lo < first_hi
    assert int((freed & disagree).sum()) == min(6, int(disagree.sum()))


def test_size_grows_after_infeasible_and_shrinks_after_unknown():
    lo, hi = _box()
    nb, _ = _ready(lo, hi, _Solver("infeasible", "infeasible", "unknown", "unknown", "unknown",
                                   "unknown", "unknown"))
    sizes = []
    for _ in range(7):
        nb.step(time.monotonic() + 10)
        sizes.append(nb.size)
    assert sizes == [7, 9, 6, 4, 3, 2, 2]
    assert nb.outcomes == {"feasible": 0, "infeasible": 2, "unknown": 5, "error": 0}


def test_a_found_point_ends_the_steps():
    lo, hi = _box()
    solver = _Solver("unknown", "feasible")
    nb, _ = _ready(lo, hi, solver)
    assert not nb.step(time.monotonic() + 10)
    assert nb.step(time.monotonic() + 10)
    assert nb.found is not None and nb.step(time.monotonic() + 10)
    assert len(solver.boxes) == 2


def test_steps_keep_to_their_time_share_and_start():
    lo, hi = _box()
    solver = _Solver(*["unknown"] * 10)

    def slow(lo_, hi_, end):
        time.sleep(0.05)
        return solver(lo_, hi_, end)

    nb = Neighbourhoods(lo, hi, slow, start_after=0.0, share=0.0, size=6)
    nb.near.offer(_points(lo, hi, 3), torch.tensor([0.1, 0.2, 0.3]))
    for _ in range(5):
        nb.step(time.monotonic() + 10)
    assert len(solver.boxes) == 1   # share 0: the first slice spends the budget
    late = Neighbourhoods(lo, hi, slow, start_after=60.0, size=6)
    late.near.offer(_points(lo, hi, 3), torch.tensor([0.1, 0.2, 0.3]))
    assert not late.step(time.monotonic() + 10) and late.tried == 0
    empty = Neighbourhoods(lo, hi, slow, start_after=0.0, size=6)   # no near miss yet
    assert not empty.step(time.monotonic() + 10) and empty.tried == 0
    whole = Neighbourhoods(lo, hi, slow, start_after=0.0, size=lo.numel())
    whole.near.offer(_points(lo, hi, 3), torch.tensor([0.1, 0.2, 0.3]))
    assert not whole.useful and not whole.step(time.monotonic() + 10)
    assert len(solver.boxes) == 1


@pytest.mark.parametrize("encoding", ["fixed_point", "qdq", "integer"])
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["robust", "random"]))
def test_the_verifiers_solver_agrees_with_enumeration(tmp_path, encoding, seed, kind):
    """The solver a verify call gives the neighbourhoods, on whole small boxes: a point only
    where the box has a counterexample (confirmed, inside the box), "infeasible" only where it
    has none."""
    rng = np.random.default_rng(seed)
    net, problem, lo, hi, truth = grid_case(tmp_path, ENCODINGS[encoding](rng), rng, kind)
    solve = api._neighbourhood_solver(net, problem, Checker(net))
    status, point = solve(lo, hi, time.monotonic() + 60)
    assert status in ("feasible", "infeasible", "unknown")
    if status == "infeasible":
        assert not truth
    if point is not None:
        assert truth and status == "feasible"
        assert bool(((point >= lo) & (point <= hi)).all())
        x = net.to_inputs(point, problem.inner_lower, problem.inner_upper)[0]
        assert Checker(net).check(x.numpy(), problem).confirmed
    else:
        assert status != "feasible"


def test_a_failing_solver_stops_the_neighbourhoods_not_the_verification():
    lo, hi = _box()
    calls = []

    def broken(lo_, hi_, end):
        calls.append(1)
        raise RuntimeError("HiGHS failed")

    nb, _ = _ready(lo, hi, broken)
    assert not nb.step(time.monotonic() + 10) and not nb.step(time.monotonic() + 10)
    assert len(calls) == 1 and nb.outcomes["error"] == 1 and not nb.useful
