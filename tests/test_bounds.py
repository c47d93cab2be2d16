"""Soundness of the quantization bound operators.

Relaxation level: for random staircases, intervals (tie points and saturation included) and
slopes, the two lines must enclose f at every step edge, just beside it, and on a dense sample.
Network level: random small QNNs; IBP, CROWN and alpha-CROWN bounds must contain the output
of every point of the enumerated input grid.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import qnn_plugin as qp
from qnn_plugin.bounds import BoundQClip, BoundQuantStep, BoundSign
from qnn_plugin.ops import ROUNDINGS, Clip, QuantStep, Sign

ROUNDING_NAMES = sorted(ROUNDINGS)


def make_step(scale, zp, lo, hi, rounding):
    attr = {"scale": torch.tensor(scale, dtype=torch.float32), "zero_point": torch.tensor(float(zp)),
            "lo": lo, "hi": hi, "rounding": rounding, "device": "cpu"}
    b = BoundQuantStep(attr, [], 0, {})
    b._box_input = False
    return b


def probe_points(b, l, u):
    """Dense samples of [l, u] plus every step edge inside and its float32 neighbours."""
    pts = [torch.linspace(l, u, 2001)]
    if isinstance(b, BoundQuantStep):
        s, z, d = float(b.scale), float(b.zero_point), b.delta
        k0 = math.floor(l / s) - 2
        k1 = math.ceil(u / s) + 2
        if k1 - k0 < 5000:
            edges = (torch.arange(k0, k1 + 1, dtype=torch.float64) - z + d) * s
            pts.append(edges.float())
    else:
        pts.append(torch.tensor([0.0]))
    p = torch.cat(pts)
    p = torch.cat([p, torch.nextafter(p, torch.tensor(math.inf)), torch.nextafter(p, torch.tensor(-math.inf))])
    return p[(p >= l) & (p <= u)]


def check_lines(b, l, u, slopes):
    lt, ut = torch.tensor([l]), torch.tensor([u])
    x = probe_points(b, l, u)
    fx = b.forward(x)
    for a in slopes:
        a = torch.tensor([float(a)])
        lw, lb, uw, ub = b._lines(a, a, lt, ut)
        assert torch.all(lw * x + lb <= fx + 1e-6), (l, u, float(a))
        assert torch.all(uw * x + ub >= fx - 1e-6), (l, u, float(a))
    # CROWN's choice is never looser than the IBP box
    a = b._crown_slope(lt, ut)
    _, inf, _, sup = b._lines(a, a, lt, ut)
    assert float(sup - inf) <= float(b.forward(ut) - b.forward(lt)) + 1e-6


scales = st.one_of(st.sampled_from([2.0 ** -k for k in range(0, 9)]),
                   st.floats(0.003, 3.0, allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(scale=scales, zp=st.integers(-5, 5), lo=st.integers(-20, 0), width=st.integers(0, 40),
       rounding=st.sampled_from(ROUNDING_NAMES), c=st.floats(-30, 30), w=st.floats(0, 30),
       on_edge=st.booleans(), slopes=st.lists(st.floats(0, 20), min_size=1, max_size=3))
def test_quant_step_relaxation_is_sound(scale, zp, lo, width, rounding, c, w, on_edge, slopes):
    b = make_step(scale, zp, float(lo), float(lo + width), rounding)
    l, u = c * scale, (c + w) * scale
    if on_edge:  # interval ends exactly on step edges (rounding ties)
        l = (math.floor(c) - zp + b.delta) * scale
        u = (math.floor(c + w) - zp + b.delta) * scale
    l, u = float(np.float32(l)), float(np.float32(u))
    check_lines(b, l, u, slopes + [1.0 / scale])


def test_quant_step_unclamped_and_saturated():
    b = make_step(0.25, 0, -math.inf, math.inf, "half_even")
    check_lines(b, -3.0, 7.13, [0.0, 4.0, 1.0])
    b = make_step(0.5, 3, -8, 7, "half_up")
    check_lines(b, 10.0, 20.0, [0.0, 1.0, 2.0])  # saturated at hi everywhere
    check_lines(b, -40.0, -20.0, [0.0, 1.0, 2.0])  # saturated at lo everywhere


@settings(max_examples=150, deadline=None)
@given(l=st.floats(-3, 3), w=st.floats(0, 6), slopes=st.lists(st.floats(0, 50), min_size=1, max_size=3))
def test_sign_relaxation_is_sound(l, w, slopes):
    b = BoundSign({"device": "cpu"}, [], 0, {})
    b._box_input = False
    check_lines(b, l, l + w, slopes)
    check_lines(b, 0.0, w, slopes)
    check_lines(b, -w, 0.0, slopes)


@settings(max_examples=150, deadline=None)
@given(lo=st.floats(-3, 3), span=st.floats(0, 4), l=st.floats(-6, 6), w=st.floats(0, 8),
       slopes=st.lists(st.floats(0, 3), min_size=1, max_size=3))
def test_clip_relaxation_is_sound(lo, span, l, w, slopes):
    b = BoundQClip({"lo": lo, "hi": lo + span, "device": "cpu"}, [], 0, {})
    b._box_input = False
    check_lines(b, l, l + w, slopes)


def test_quant_step_ibp_is_exact_image():
    # [q(l), q(u)] on a tie: 0.5 rounds to 0 (half to even), 1.5 to 2
    b = make_step(1.0, 0, -128, 127, "half_even")
    lo, hi = b.interval_propagate((torch.tensor([0.5]), torch.tensor([1.5])))
    assert lo.item() == 0.0 and hi.item() == 2.0


# ------------------------------------------------------------------ network level -------------
LAYER_KINDS = ["quant", "sign", "clip", "relu"]


def random_qnn(rng: np.random.Generator, in_dim: int, kinds):
    """Input quantizer (grid 1/8, levels -8..7) then Linear -> activation blocks -> Linear."""
    layers = [QuantStep(0.125, 0, -8, 7, "half_even")]
    d = in_dim
    for kind in kinds:
        h = int(rng.integers(2, 6))
        lin = nn.Linear(d, h)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(rng.normal(0, 1.0, (h, d)), dtype=torch.float32))
            lin.bias.copy_(torch.tensor(rng.normal(0, 0.3, h), dtype=torch.float32))
        layers.append(lin)
        if kind == "quant":
            rounding = ROUNDING_NAMES[int(rng.integers(len(ROUNDING_NAMES)))]
            scale = float(rng.choice([0.25, 0.5, 0.3, 0.17]))
            lo = float(rng.integers(-4, 1))
            layers.append(QuantStep(scale, int(rng.integers(-2, 3)), lo, lo + float(rng.integers(2, 9)), rounding))
        elif kind == "sign":
            layers.append(Sign())
        elif kind == "clip":
            layers.append(Clip(-0.5, 1.0))
        else:
            layers.append(nn.ReLU())
        d = h
    out = nn.Linear(d, 3)
    with torch.no_grad():
        out.weight.copy_(torch.tensor(rng.normal(0, 1.0, (3, d)), dtype=torch.float32))
    layers.append(out)
    if rng.random() < 0.4:  # a quantized output layer
        layers.append(QuantStep(0.5, 0, -16, 15, "half_even"))
    return nn.Sequential(*layers).eval()


def grid_box(rng, in_dim):
    lo_k = rng.integers(-8, 6, in_dim)
    hi_k = np.minimum(lo_k + rng.integers(0, 4, in_dim), 7)
    # box ends between grid points or on rounding ties, never outside the grid's reach
    lower = torch.tensor(lo_k * 0.125 - rng.choice([0.0, 0.0625, 0.03], in_dim), dtype=torch.float32)
    upper = torch.tensor(hi_k * 0.125 + rng.choice([0.0, 0.0625, 0.03], in_dim), dtype=torch.float32)
    return lower, upper


def all_outputs(net, lower, upper):
    """Exact outputs on the whole input grid inside the box (each input grid level's preimage
    interval intersected with the box is nonempty: use the clamped level centres)."""
    axes = []
    for lo, hi in zip(lower.tolist(), upper.tolist()):
        q = net[0]
        kl, ku = int(q(torch.tensor([lo]))), int(q(torch.tensor([hi])))
        pts = [min(max(k * 0.125, lo), hi) for k in range(kl, ku + 1)]
        axes.append(torch.tensor(pts + [lo, hi]))
    x = torch.cartesian_prod(*axes) if len(axes) > 1 else axes[0][:, None]
    with torch.no_grad():
        return net(x)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 31), kinds=st.lists(st.sampled_from(LAYER_KINDS), min_size=1, max_size=3),
       in_dim=st.integers(1, 3))
def test_network_bounds_contain_every_grid_output(seed, kinds, in_dim):
    rng = np.random.default_rng(seed)
    net = random_qnn(rng, in_dim, kinds)
    boxes = [grid_box(rng, in_dim) for _ in range(3)]
    lower = torch.stack([b[0] for b in boxes])
    upper = torch.stack([b[1] for b in boxes])
    bm = qp.bounded(net, lower)
    C = torch.tensor(rng.normal(0, 1, (3, 2, 3)), dtype=torch.float32)
    for method in ("ibp", "crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        clb, cub = qp.compute_bounds(bm, lower, upper, method, C=C)
        for i in range(len(boxes)):
            y = all_outputs(net, lower[i], upper[i])
            assert torch.all(lb[i] <= y.min(0).values + 1e-4), (method, kinds)
            assert torch.all(ub[i] >= y.max(0).values - 1e-4), (method, kinds)
            cy = y @ C[i].T
            assert torch.all(clb[i] <= cy.min(0).values + 1e-4), (method, kinds)
            assert torch.all(cub[i] >= cy.max(0).values - 1e-4), (method, kinds)


def test_input_quantizer_is_bounded_exactly():
    """A quantizer on the input box is bounded as the box of its grid image (no relaxation gap)."""
    net = nn.Sequential(QuantStep(0.125, 0, -8, 7), nn.Linear(2, 1)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -2.0]]))
        net[1].bias.zero_()
    lower, upper = torch.tensor([[-0.3, 0.1]]), torch.tensor([[0.2, 0.4]])
    bm = qp.bounded(net, lower)
    exact = all_outputs(net, lower[0], upper[0])
    for method in ("crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        assert lb.item() == pytest.approx(exact.min().item(), abs=1e-6)
        assert ub.item() == pytest.approx(exact.max().item(), abs=1e-6)


def test_linear_bounds_never_looser_than_ibp():
    net = nn.Sequential(QuantStep(1 / 16, 0, -128, 127), nn.Linear(3, 8), QuantStep(0.25, 0, 0, 15, "floor"),
                        nn.Linear(8, 4), QuantStep(0.5, 3, -8, 7)).eval()
    torch.manual_seed(0)
    lower = torch.tensor([[-0.3, 0.1, 0.2]])
    upper = lower + torch.tensor([[0.2, 0.25, 0.1]])
    bm = qp.bounded(net, lower)
    ilb, iub = qp.compute_bounds(bm, lower, upper, "ibp")
    for method in ("crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        assert torch.all(lb >= ilb) and torch.all(ub <= iub)
        assert torch.all(ub <= 7) and torch.all(lb >= -8)  # never outside the output clamp


@pytest.mark.parametrize("bad", ["nan", "inverted", "shape"])
def test_bad_boxes_are_rejected(bad):
    net = nn.Sequential(nn.Linear(2, 2))
    bm = qp.bounded(net, torch.zeros(1, 2))
    lower, upper = torch.zeros(1, 2), torch.ones(1, 2)
    if bad == "nan":
        upper[0, 1] = float("nan")
    elif bad == "inverted":
        lower, upper = upper, lower
    else:
        upper = torch.ones(1, 3)
    with pytest.raises(ValueError):
        qp.compute_bounds(bm, lower, upper, "crown")


# ------------------------------------------------------------------ regressions (review) ------
ALL_METHODS = ("ibp", "crown", "crown-ibp", "alpha-crown")


def test_float_rounding_before_a_step_does_not_lose_a_level():
    """0.4f * 1 - 0.4f is exactly 0, but interval arithmetic (mid/radius) lands 1 ulp below:
    floor must still see 0 at the upper end."""
    fc = nn.Linear(1, 1)
    with torch.no_grad():
        fc.weight.fill_(0.4)
        fc.bias.fill_(-0.4)
    net = nn.Sequential(fc, QuantStep(0.125, 0.0, -128, 127, "floor")).eval()
    lo, hi = torch.tensor([[0.8]]), torch.tensor([[1.0]])
    assert net(hi).item() == 0.0
    bm = qp.bounded(net, lo)
    for method in ALL_METHODS:
        lb, ub = qp.compute_bounds(bm, lo, hi, method)
        assert ub.item() >= 0.0 and lb.item() <= net(lo).item(), method


class _OffLattice(nn.Module):
    """y = Q(x) - 2x with clamp limits off the level lattice (Round then Clip(-0.5, 3))."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)
        with torch.no_grad():
            self.fc.weight.fill_(1.0)
            self.fc.bias.zero_()
        self.q = QuantStep(1.0, 0.0, -0.5, 3.0, "half_even")

    def forward(self, x):
        h = self.fc(x)
        return self.q(h) - 2 * h


def test_clamp_limits_off_the_level_lattice():
    net = _OffLattice().eval()
    lo, hi = torch.tensor([[-0.55]]), torch.tensor([[0.6]])
    xs = torch.linspace(-0.55, 0.6, 2001)[:, None]
    y = net(xs).detach()
    bm = qp.bounded(net, lo)
    for method in ALL_METHODS:
        lb, ub = qp.compute_bounds(bm, lo, hi, method)
        assert lb.item() <= y.min().item() + 1e-5 and ub.item() >= y.max().item() - 1e-5, method


def test_alpha_crown_with_relu_between_box_reading_steps():
    net = nn.Sequential(QuantStep(0.25, 0, -8, 7), nn.ReLU(), QuantStep(0.5, 0, 0, 3), nn.Linear(3, 2)).eval()
    lo, hi = torch.tensor([[-0.6, 0.1, 0.4]]), torch.tensor([[0.3, 0.9, 1.2]])
    xs = lo + (hi - lo) * torch.rand(4000, 3)
    y = net(torch.cat([xs, lo, hi])).detach()
    bm = qp.bounded(net, lo)
    for method in ALL_METHODS:
        lb, ub = qp.compute_bounds(bm, lo, hi, method)
        assert torch.all(lb <= y.min(0).values + 1e-5) and torch.all(ub >= y.max(0).values - 1e-5)


class _NothingToOptimise(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = QuantStep(0.25, 0, -8, 7)

    def forward(self, x):
        return x - self.q(x)


def test_alpha_crown_with_nothing_to_optimise_and_batch_one_C():
    net = _NothingToOptimise().eval()
    lo, hi = torch.tensor([[-0.3, 0.1], [0.2, 0.5]]), torch.tensor([[0.3, 0.2], [0.4, 0.9]])
    bm = qp.bounded(net, lo)
    C = torch.tensor([[[1.0, -1.0]]])  # batch 1: applies to every box
    lb, ub = qp.compute_bounds(bm, lo, hi, "alpha-crown", C=C)
    assert lb.shape == (2, 1)
    xs = lo[None] + (hi - lo)[None] * torch.rand(2000, 2, 2)
    cy = (net(xs.reshape(-1, 2)).reshape(2000, 2, 2) @ C[0].T).detach()
    assert torch.all(lb <= cy.min(0).values + 1e-5) and torch.all(ub >= cy.max(0).values - 1e-5)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler")   # the 1-iteration run
def test_alpha_crown_stops_optimising_at_the_deadline(capsys):
    """Past the deadline alpha-CROWN keeps its first iteration's bounds (those of a one-
    iteration run; 20 iterations tighten them on this net), sound, prints nothing, and the
    module's options are left as they were."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 2)).eval()
    lo, hi = -torch.ones(1, 4), torch.ones(1, 4)
    bm = qp.bounded(net, lo)
    qp.compute_bounds(bm, lo, hi, "alpha-crown")
    stop = bm.bound_opts["optimize_bound_args"]["stop_criterion_func"]   # auto_LiRPA's default
    late = qp.compute_bounds(bm, lo, hi, "alpha-crown", deadline=-math.inf)
    assert capsys.readouterr().out == ""   # auto_LiRPA's "all verified at 0th iter"
    full = qp.compute_bounds(bm, lo, hi, "alpha-crown")
    one = qp.compute_bounds(qp.bounded(net, lo, bound_opts={"optimize_bound_args": {"iteration": 1}}),
                            lo, hi, "alpha-crown")
    assert bm.bound_opts["optimize_bound_args"]["stop_criterion_func"] is stop
    assert torch.allclose(late[0], one[0]) and torch.allclose(late[1], one[1])
    assert bool((full[0] > late[0] + 1e-3).any() or (full[1] < late[1] - 1e-3).any())
    y = net(lo + (hi - lo) * torch.rand(4000, 4)).detach()
    assert torch.all(late[0] <= y.min(0).values + 1e-5) and torch.all(late[1] >= y.max(0).values - 1e-5)
    assert capsys.readouterr().out == ""


def test_clip_with_min_above_max_outputs_max():
    assert Clip(3.0, 1.0)(torch.tensor([-5.0, 2.0, 9.0])).tolist() == [1.0, 1.0, 1.0]


def test_chunked_bounds_equal_one_pass():
    torch.manual_seed(1)
    net = nn.Sequential(QuantStep(0.125, 0, -8, 7), nn.Linear(3, 6), QuantStep(0.25, 0, 0, 7, "floor"),
                        nn.Linear(6, 2)).eval()
    lower = torch.rand(5, 3) - 0.5
    upper = lower + 0.2
    bm = qp.bounded(net, lower)
    C = torch.randn(5, 1, 2)
    one = qp.compute_bounds(bm, lower, upper, "crown", C=C, chunk=None)
    parts = qp.compute_bounds(bm, lower, upper, "crown", C=C, chunk=2)
    assert torch.allclose(one[0], parts[0]) and torch.allclose(one[1], parts[1])


def test_lirpa_unsupported_converts_only_auto_lirpa_failures():
    """Failures raised inside auto_LiRPA become UnsupportedOperatorError naming the source;
    the plugin's own exceptions (a bug, not the network) and types outside ``catch`` stay."""
    from auto_LiRPA.operators import BoundDiv, BoundReciprocal

    from qnn_plugin.bounded import lirpa_unsupported
    from qnn_plugin.errors import UnsupportedOperatorError

    def lirpa_failure():   # BoundReciprocal asserts a positive interval
        BoundReciprocal({}, [], 0, {}).interval_propagate((-torch.ones(1), torch.ones(1)))

    with pytest.raises(UnsupportedOperatorError, match=r"^model\.onnx: auto_LiRPA cannot bound this network: AssertionError: Only positive values .* at auto_LiRPA/operators/"):
        with lirpa_unsupported("model.onnx"):
            lirpa_failure()
    with pytest.raises(AssertionError):
        with lirpa_unsupported("model.onnx", catch=(NotImplementedError,)):
            lirpa_failure()
    with pytest.raises(NotImplementedError):
        with lirpa_unsupported("model.onnx"):
            raise NotImplementedError("the plugin's own")
    # compat's replacements of auto_LiRPA's methods count as auto_LiRPA's
    node = BoundDiv({}, [], 0, {})
    node.inputs, node.name = [None, None], "/div"
    with pytest.raises(UnsupportedOperatorError, match=r"contains 0 at qnn_plugin/compat\.py:"):
        with lirpa_unsupported("model.onnx"):
            node.interval_propagate((torch.zeros(1), torch.ones(1)), (-torch.ones(1), torch.ones(1)))
