"""Branch-and-bound pieces: splits partition boxes, never on a tie; problem margins."""
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnn_plugin.spec import Case, Polytope
from qnn_plugin.verifier.bab import split
from qnn_plugin.verifier.problem import Problem, float32_box


@settings(max_examples=200, deadline=None)
@given(lo=st.lists(st.integers(-50, 50), min_size=1, max_size=4), data=st.data())
def test_integer_split_partitions_the_codes(lo, data):
    lo_t = torch.tensor([lo], dtype=torch.float32)
    widths = data.draw(st.lists(st.integers(0, 9), min_size=len(lo), max_size=len(lo)))
    hi_t = lo_t + torch.tensor([widths], dtype=torch.float32)
    splittable = [i for i, w in enumerate(widths) if w > 0]
    if not splittable:
        return
    d = data.draw(st.sampled_from(splittable))
    c_lo, c_hi = split(lo_t, hi_t, torch.tensor([d]), integer=True)
    assert torch.all(c_lo == torch.floor(c_lo)) and torch.all(c_hi == torch.floor(c_hi))
    assert torch.all(c_lo <= c_hi)
    # the two children hold every code of the parent exactly once
    parent = set(range(int(lo_t[0, d]), int(hi_t[0, d]) + 1))
    left = set(range(int(c_lo[0, d]), int(c_hi[0, d]) + 1))
    right = set(range(int(c_lo[1, d]), int(c_hi[1, d]) + 1))
    assert left | right == parent and not (left & right)
    other = [i for i in range(len(lo)) if i != d]
    assert torch.equal(c_lo[:, other], lo_t[:, other].expand(2, -1))


@settings(max_examples=200, deadline=None)
@given(a=st.floats(-1e3, 1e3, width=32), w=st.floats(0, 1e3, width=32))
def test_float_split_covers_and_shrinks(a, w):
    lo = torch.tensor([[a]], dtype=torch.float32)
    hi = torch.tensor([[np.float32(a) + np.float32(w)]], dtype=torch.float32)
    if not torch.isfinite(hi).all() or hi[0, 0] <= lo[0, 0]:
        return
    c_lo, c_hi = split(lo, hi, torch.tensor([0]), integer=False)
    assert c_lo[0, 0] == lo[0, 0] and c_hi[1, 0] == hi[0, 0]
    assert c_hi[0, 0] >= c_lo[1, 0] or np.nextafter(np.float32(c_hi[0, 0]), np.float32(np.inf)) == c_lo[1, 0]
    for i in range(2):  # strictly smaller, so every box ends as a point
        assert (c_hi[i, 0] - c_lo[i, 0]) < (hi[0, 0] - lo[0, 0])


@settings(max_examples=300, deadline=None)
@given(a=st.floats(-1e3, 1e3), w=st.floats(0, 1e-4), u=st.lists(st.floats(0, 1), min_size=5,
                                                                   max_size=5))
def test_float32_boxes_round_the_right_way(a, w, u):
    """Inward: float32 values inside the box. The other: exactly the float32 values the box's
    reals round to (nearest, as numpy and the VNN-COMP checker cast), holding the inward box."""
    lower, upper = np.array([a]), np.array([a + w])
    ilo, ihi = float32_box(lower, upper, inward=True)
    olo, ohi = float32_box(lower, upper, inward=False)
    assert np.all(ilo.astype(np.float64) >= lower) and np.all(ihi.astype(np.float64) <= upper)
    reals = np.concatenate([lower, upper, lower + np.array(u) * (upper - lower)])
    r32 = reals.astype(np.float32)
    assert np.all(r32 >= olo) and np.all(r32 <= ohi)
    assert olo[0] == np.float32(a) and ohi[0] == np.float32(a + w)   # both reached
    if ilo[0] <= ihi[0]:
        assert olo[0] <= ilo[0] and ohi[0] >= ihi[0]


def _problem(polys, n_in=2):
    case = Case(np.zeros(n_in), np.ones(n_in), tuple(polys))
    return Problem.from_case(case, 0, torch.device("cpu"))


def test_exact_point_checks_stop_at_the_deadline():
    """Where every safe-looking point goes to the exact checker (a few ms each), a round of
    thousands of points must look at the clock between chunks: an audit's 4,913 points took
    20 s of a 12 s limit."""
    import math
    import time

    from qnn_plugin.verifier.bab import _EXACT_CHUNK, _decide_points

    class Net:
        def evaluate(self, pts):
            return pts[:, :2]

    class Judge:
        check_every_point, calls = True, 0

        def exactly_safe(self, pts):
            self.calls += 1
            return torch.ones(pts.shape[0], dtype=torch.bool)

    p = _problem([Polytope(np.array([[1.0, 0.0]]), np.array([-1.0]))])   # y0 <= -1: all safe
    pts = torch.rand(3 * _EXACT_CHUNK + 1, 2)
    stats = {"points_evaluated": 0}
    judge = Judge()
    assert _decide_points(Net(), p, pts, judge, stats, math.inf) == (None, 0)
    assert judge.calls == 4 and stats["points_checked_exactly"] == pts.shape[0]
    judge = Judge()
    assert _decide_points(Net(), p, pts, judge, stats, time.monotonic() - 1) == (None, None)
    assert judge.calls == 0


def test_margin_is_nonpositive_exactly_on_the_unsafe_set():
    # unsafe: (y0 <= 1 and y1 <= 0) or (y0 >= 3)
    p = _problem([Polytope(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 0.0])),
                  Polytope(np.array([[-1.0, 0.0]]), np.array([-3.0]))])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.5], [3.0, 9.0], [2.0, -1.0], [0.0, -5.0]])
    m = p.margins(y)
    assert (m <= 0).tolist() == [True, False, True, False, True]
    for yi, mi in zip(y.numpy(), m):
        assert (p.violated_exactly(yi) is not None) == bool(mi <= 0)


def test_refuted_needs_every_polytope_and_a_clear_margin():
    p = _problem([Polytope(np.array([[1.0, 0.0]]), np.array([1.0])),
                  Polytope(np.array([[0.0, 1.0]]), np.array([2.0]))])
    lb = torch.tensor([[1.5, 2.5], [1.5, 1.0], [1.0, 2.0], [1.0 + 1e-9, 3.0]])
    ref = p.refuted(lb)
    assert ref.tolist() == [[True, True], [True, False], [False, False], [False, True]]


def test_coefficients_that_are_not_float32_add_slack():
    p = _problem([Polytope(np.array([[0.1, -0.1]]), np.array([0.0]))])
    assert p.coefficient_error[0] > 0
    p.set_output_bound(1e6)
    lb = torch.tensor([[1e-3]])
    assert not p.refuted(lb).any()  # 1e-3 is inside the rounding slack of 0.1 * 1e6-sized outputs
    p.set_output_bound(1.0)
    assert p.refuted(lb).all()


def test_the_lagrangian_minimiser_is_a_candidate(tmp_path):
    """A domain's counterexample candidates include the minimiser of its Lagrangian for the
    decisive row (``Bounds.points``): a counterexample given there is found where the centre
    and the plain bound's corner are safe; NaN rows (no Lagrangian) are skipped."""
    from qnn_plugin import onnx_builders as ob
    from qnn_plugin.verifier.bab import _try_candidates
    from qnn_plugin.verifier.network import Network

    built = ob.random_fixed_point_mlp(np.random.default_rng(1), sizes=[3, 5, 2])
    path = tmp_path / "n.onnx"
    path.write_bytes(built.model.SerializeToString())
    net = Network(str(path), torch.device("cpu"))
    lo, hi = torch.tensor([[10.0, 20.0, 30.0]]), torch.tensor([[14.0, 24.0, 34.0]])
    codes = torch.cartesian_prod(*[torch.arange(a, b + 1) for a, b in zip(lo[0], hi[0])]).float()
    y = net.evaluate(codes).double()
    a = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    m = (y @ a.T)[:, 0]
    # unsafe: the row's minimum over the box, so only its minimisers are counterexamples
    problem = Problem.from_case(Case(np.zeros(3), np.full(3, 255.0),
                                     (Polytope(a.numpy(), np.array([float(m.min())])),)), 0,
                                torch.device("cpu"))
    target = codes[int(m.argmin())]
    lA = torch.zeros(1, 1, 3)    # the plain bound's corner: hi (every coefficient 0)
    safe = problem.margins(net.evaluate(torch.cat([(lo + hi) / 2, hi]).floor())) > 0
    assert safe.all(), "the centre and the corner must be safe for this test to mean anything"
    stats = dict(points_evaluated=0, candidates=0)
    d = dict(lo=lo, hi=hi)
    row = torch.zeros(1, dtype=torch.long)
    assert _try_candidates(net, problem, d, lA, row, True, lambda p: p, stats) is None
    nan = torch.full((1, 1, 3), float("nan"))
    assert _try_candidates(net, problem, d, lA, row, True, lambda p: p, stats, nan) is None
    found = _try_candidates(net, problem, d, lA, row, True, lambda p: p, stats,
                            target.view(1, 1, 3))
    assert found is not None and torch.equal(found[0], target)


@settings(max_examples=60, deadline=None)
@given(widths=st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3), min_size=1, max_size=6),
       cap=st.integers(1, 200))
def test_enumeration_chunks_cover_every_point_once(widths, cap):
    """Small code boxes enumerated in chunks of whole boxes: every point of every box exactly
    once, and no chunk of several boxes above the cap."""
    from qnn_plugin.verifier.bab import _enumerate, _enumerate_chunks

    lo = torch.tensor([[float(i), 0.0, -1.0] for i in range(len(widths))])
    hi = lo + torch.tensor(widths, dtype=torch.float32)
    chunks = list(_enumerate_chunks(lo, hi, cap))
    assert torch.equal(torch.cat(chunks), _enumerate(lo, hi))
    sizes = torch.prod(hi - lo + 1, dim=1) * 3
    for c in chunks:
        assert c.numel() <= cap or c.numel() in sizes.tolist()
