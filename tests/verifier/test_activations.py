"""Activation branching: the split constraints partition a neuron's range, and a constrained
quantization step is exactly the step on the inputs that satisfy the constraint."""
import time

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qnn_plugin import onnx_builders as ob
from qnn_plugin.verifier import activations as act
from qnn_plugin.verifier.network import Network

INF = float("inf")


def _net(tmp_path, built):
    path = tmp_path / "n.onnx"
    path.write_bytes(built.model.SerializeToString())
    return Network(str(path), torch.device("cpu"))


def test_step_layers_found_and_levels_split_in_two(tmp_path):
    net = _net(tmp_path, ob.random_fixed_point_mlp(np.random.default_rng(0), sizes=[5, 7, 6, 3]))
    layers = act.find_layers(net.bounded_module)
    assert [l.kind for l in layers] == [act.STEP, act.STEP]  # the two hidden requantizers
    assert [l.numel for l in layers] == [7, 6]
    state = act.initial_state(layers, torch.device("cpu"))
    state = {k: v.repeat(3, 1) for k, v in state.items()}
    kl = [torch.tensor([[0.0] * 7] * 3), torch.tensor([[2.0] * 6] * 3)]
    ku = [torch.tensor([[5.0] * 7] * 3), torch.tensor([[3.0] * 6] * 3)]
    flat = torch.tensor([0, 6, 7 + 2])  # layer 0 neuron 0, layer 0 neuron 6, layer 1 neuron 2
    kids = act.branch(layers, state, list(zip(kl, ku)), flat)
    # first children keep k_l..m, second children m+1..k_u; other neurons untouched
    assert kids["h0"][0, 0] == 2 and kids["l0"][3, 0] == 3
    assert kids["h0"][1, 6] == 2 and kids["l0"][4, 6] == 3
    assert kids["h1"][2, 2] == 2 and kids["l1"][5, 2] == 3
    assert torch.isinf(kids["h0"][0, 1:]).all() and torch.isinf(kids["l1"][:, :2]).all()


def test_relu_layers_found_and_signs_split(tmp_path):
    from tests.verifier.test_soundness import _relu_mlp

    model = _relu_mlp(np.random.default_rng(1), [4, 5, 3])
    path = tmp_path / "r.onnx"
    path.write_bytes(model.SerializeToString())
    net = Network(str(path), torch.device("cpu"))
    layers = act.find_layers(net.bounded_module)
    assert [l.kind for l in layers] == [act.RELU]
    state = act.initial_state(layers, torch.device("cpu"))
    rng = (torch.full((1, 5), -1.0), torch.full((1, 5), 1.0))
    kids = act.branch(layers, state, [rng], torch.tensor([3]))
    assert kids["r0"][0, 3] == -1 and kids["r0"][1, 3] == 1
    assert (kids["r0"][:, [0, 1, 2, 4]] == 0).all()


def test_constrained_step_bounds_contain_every_satisfying_point(tmp_path):
    """With a level constraint installed, a child's bounds hold for every grid point of the box
    whose hidden level satisfies the constraint (checked by enumeration)."""
    from qnn_plugin.spec import Case, Polytope
    from qnn_plugin.verifier.bab import bound_rows
    from qnn_plugin.verifier.problem import Problem

    checked = 0
    for seed in range(20):
        built = ob.random_fixed_point_mlp(np.random.default_rng(seed), sizes=[2, 3, 2])
        net = _net(tmp_path, built)
        layers = act.find_layers(net.bounded_module)
        case = Case(np.zeros(2), np.ones(2), (Polytope(np.eye(2)[[0]], np.zeros(1)),))
        problem = Problem.from_case(case, 0, torch.device("cpu"))
        lo, hi = torch.tensor([[60.0, 60.0]]), torch.tensor([[180.0, 180.0]])
        state = act.initial_state(layers, torch.device("cpu"))
        base = bound_rows(net, problem, lo, hi, "crown", False, layers, state)
        if base.ranges[0][0][0, 0] == base.ranges[0][1][0, 0]:
            continue  # neuron 0 is settled on this box: nothing to split
        kids = act.branch(layers, state, base.ranges, torch.tensor([0]))
        codes = torch.cartesian_prod(torch.arange(60.0, 181.0), torch.arange(60.0, 181.0))
        rows = net.evaluate(codes) @ problem.C.T
        level = _first_hidden_level(built, codes)
        bm = net.bounded_module
        with torch.no_grad():
            bm(codes)
        z = layers[0].node.inputs[0].forward_value[:, 0]   # the split step's input
        for child in range(2):
            part = {k: v[child:child + 1] for k, v in kids.items()}
            bd = bound_rows(net, problem, lo, hi, "crown", False, layers, part)
            inside = (level >= part["l0"][0, 0]) & (level <= part["h0"][0, 0])
            assert inside.any()
            assert (rows[inside].min(dim=0).values >= bd.lb[0] - 1e-4).all()
            # the split confines the step's input to the levels kept: its bounds hold for
            # every point kept and exclude those of the other child's levels (but for inputs
            # on the edge between them, within the outward widening)
            zl, zu = bd.inputs[0][0][0, 0], bd.inputs[0][1][0, 0]
            assert bool((z[inside] >= zl).all() and (z[inside] <= zu).all())
            tol = 2.0 ** -9 * float(layers[0].node.scale.max()) + 2.0 ** -18 * float(z.abs().max())
            assert bool(((z[~inside] < zl + tol) | (z[~inside] > zu - tol)).all())
            checked += 1
    assert checked >= 4


def _first_hidden_level(built, codes):
    info = built.info
    w, b = torch.tensor(info["weights"][0], dtype=torch.float32), torch.tensor(info["biases"][0], dtype=torch.float32)
    acc = codes @ w + b
    s = info["shifts"][0]
    lvl = torch.clamp(torch.floor(acc * 2.0 ** -s + 0.5), 0, 2 ** info["act_bits"] - 1)
    return lvl[:, 0]


def test_inherited_bounds_are_installed(tmp_path):
    """ReLU splits become reference bounds (0 or +-inf); a parent's input bounds (p, q) are
    handed over by node name for every layer that has them. Layers whose input is affine in
    the network's input keep none (their own bounds are never looser)."""
    from tests.verifier.test_soundness import _relu_mlp

    model = _relu_mlp(np.random.default_rng(1), [4, 5, 5, 3])
    path = tmp_path / "r.onnx"
    path.write_bytes(model.SerializeToString())
    relu = act.find_layers(Network(str(path), torch.device("cpu")).bounded_module)
    state = act.initial_state(relu, torch.device("cpu"), inherit=True)
    assert set(state) == {"r0", "r1", "p1", "q1"}
    state["r1"] = torch.tensor([[1, -1, 0, 0, 0]], dtype=torch.int8)
    state["p1"] = torch.tensor([[-2.0, -3.0, -1.0, 0.5, -INF]])
    state["q1"] = torch.tensor([[3.0, 4.0, 1.0, 2.0, INF]])
    ref, inherited = act.install(relu, state)
    name = relu[1].node.inputs[0].name
    assert set(ref) == {relu[0].node.inputs[0].name, name} and set(inherited) == {name}
    assert ref[name][0].tolist() == [[0.0, -INF, -INF, -INF, -INF]]
    assert ref[name][1].tolist() == [[INF, 0.0, INF, INF, INF]]
    assert inherited[name][0].tolist() == state["p1"].tolist()
    assert inherited[name][1].tolist() == state["q1"].tolist()

    steps = act.find_layers(_net(tmp_path, ob.random_fixed_point_mlp(
        np.random.default_rng(0), sizes=[5, 7, 6, 3])).bounded_module)
    state = act.initial_state(steps, torch.device("cpu"), inherit=True)
    assert set(state) == {"l0", "h0", "l1", "h1", "p1", "q1"}
    state["p1"] = torch.arange(6.0).unsqueeze(0)
    ref, inherited = act.install(steps, state)
    act.uninstall(steps)
    assert ref == {}
    assert inherited[steps[1].node.inputs[0].name][0].tolist() == [list(range(6))]


def _searched_domains(tmp_path, seed, eps, options):
    """A float ReLU MLP (8-16-16-16-3), a robustness box around a random point, the search run
    with ``options`` for up to 3 s; returns (weights, every bound call's boxes, state and
    specification matrix C, the outcome)."""
    from onnx import numpy_helper

    from qnn_plugin.spec import Case, Polytope
    from qnn_plugin.verifier import bab
    from qnn_plugin.verifier.api import _Judge
    from qnn_plugin.verifier.check import Checker
    from qnn_plugin.verifier.problem import Problem
    from tests.verifier.instances import exact_outputs
    from tests.verifier.test_soundness import _relu_mlp

    rng = np.random.default_rng(seed)
    model = _relu_mlp(rng, [8, 16, 16, 16, 3])
    weights = {i.name: torch.tensor(numpy_helper.to_array(i)) for i in model.graph.initializer}
    path = tmp_path / f"r{seed}.onnx"
    path.write_bytes(model.SerializeToString())
    net = Network(str(path), torch.device("cpu"))
    x0 = rng.uniform(-1, 1, size=8)
    lab = int(np.argmax(exact_outputs(model, x0.astype(np.float32)[None])[0]))
    polys = tuple(Polytope(np.eye(3)[[lab]] - np.eye(3)[[j]], np.zeros(1))
                  for j in range(3) if j != lab)
    problem = Problem.from_case(Case(x0 - eps, x0 + eps, polys), 0, torch.device("cpu"))
    problem.set_output_bound(100.0)
    lo, hi = net.domain_box(problem.lower, problem.upper)
    calls, real = [], bab.bound_rows

    def spy(net, problem, lo, hi, method, need_A, layers=None, state=None, *args, **kwargs):
        if state is not None:
            calls.append((lo.clone(), hi.clone(), {k: v.clone() for k, v in state.items()},
                          problem.C.clone()))
        return real(net, problem, lo, hi, method, need_A, layers, state, *args, **kwargs)

    bab.bound_rows = spy
    try:
        out = bab.search(net, problem, lo, hi, time.monotonic() + 3,
                         _Judge(net, problem, Checker(net)), options)
    finally:
        bab.bound_rows = real
    return weights, calls, out


def test_inherited_bounds_hold_on_their_domains(tmp_path):
    """The first 40 bound calls' inherited bounds contain the pre-activations of 2,000 random
    points of each domain's box (the first 64 domains) that meet the domain's ReLU signs: the bounds of the right domain,
    valid there (a domain given its neighbour's bounds, or a midpoint, fails this)."""
    from qnn_plugin.verifier import bab

    checked = rows_checked = 0
    for seed in range(3):
        W, calls, _ = _searched_domains(tmp_path, seed, 0.2, bab.Options(branch="activation",
                                                                             lagrangian=False))
        for lo, hi, state, C in calls[:40]:
            lo, hi, state = lo[:64], hi[:64], {k: v[:64] for k, v in state.items()}
            x = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * torch.rand(lo.shape[0], 2000, 8)
            pre, h = [], x
            for i in range(3):
                pre.append(h @ W[f"W{i}"] + W[f"b{i}"])
                h = torch.relu(pre[-1])
            meets = torch.ones(x.shape[:2], dtype=torch.bool)
            for i, z in enumerate(pre):
                s = state[f"r{i}"].unsqueeze(1)
                meets &= ~(((s > 0) & (z < 0)) | ((s < 0) & (z > 0))).any(dim=2)
            for i, z in enumerate(pre):
                if f"p{i}" not in state:
                    continue
                p, q = state[f"p{i}"].unsqueeze(1), state[f"q{i}"].unsqueeze(1)
                tol = 1e-5 * (1 + z.abs())
                outside = ((z < p - tol) | (z > q + tol)).any(dim=2) & meets
                assert not outside.any(), (seed, i, int(outside.sum()))
                checked += int((meets.unsqueeze(2) & torch.isfinite(p)).sum())
            # the bound of each row a domain carries from its parent holds there too
            rows = (h @ W["W3"] + W["b3"]) @ C.T
            best = state["best_lb"].unsqueeze(1)
            below = ((rows < best - 1e-4 * (1 + rows.abs())).any(dim=2) & meets)
            assert not below.any(), (seed, int(below.sum()))
            rows_checked += int((meets.unsqueeze(2) & torch.isfinite(best)).sum())
    assert checked > 10_000, checked
    assert rows_checked > 10_000, rows_checked


def test_carried_bounds_hold_for_input_splits(tmp_path):
    """With input splitting (strong branching, whose children are bounded before they are
    kept), the row bounds each domain carries from its parent hold on 2,000 random points of
    its box (the first 40 bound calls, 64 domains each)."""
    from qnn_plugin.verifier import bab

    checked = 0
    for seed in (0, 2, 4):   # sat after 13 bound calls, unsat after 22 and 16 (seed 1: sat at once)
        W, calls, _ = _searched_domains(tmp_path, seed, 0.2, bab.Options(branch="input"))
        assert len(calls) > 5
        for lo, hi, state, C in calls[:40]:
            lo, hi, best = lo[:64], hi[:64], state["best_lb"][:64].unsqueeze(1)
            h = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * torch.rand(lo.shape[0], 2000, 8)
            for i in range(3):
                h = torch.relu(h @ W[f"W{i}"] + W[f"b{i}"])
            rows = (h @ W["W3"] + W["b3"]) @ C.T
            assert not (rows < best - 1e-4 * (1 + rows.abs())).any(), seed
            checked += int(torch.isfinite(best).sum()) * 2000
    assert checked > 100_000, checked


def test_search_without_inheritance(tmp_path):
    """``Options(inherit=False)`` (the search before inherited bounds) keeps no bounds in its
    domains and reaches the same verdicts, unsat ones after splits included."""
    from qnn_plugin.verifier import bab

    verdicts = []
    for seed in (0, 1, 4):   # unsat after 11 domains, sat, unsat after ~170
        runs = {}
        for inherit in (True, False):
            _, calls, out = _searched_domains(tmp_path, seed, 0.15, bab.Options(
                branch="activation", inherit=inherit))
            runs[inherit] = out
            assert inherit or not any(k[0] in "pq" for _, _, st, _ in calls for k in st)
        assert runs[True].status == runs[False].status, (seed, runs[True].status, runs[False].status)
        verdicts.append((runs[True].status, runs[True].stats["boxes_bounded"]))
    assert [v for v, _ in verdicts] == ["unsat", "sat", "unsat"], verdicts
    assert verdicts[2][1] > 50, verdicts


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["half_up", "half_even", "floor", "ceil"]),
       st.sampled_from([1.0, 0.25, 2.0 ** -7, 16.0, 0.1, 0.0123, 3.7]),
       st.integers(-3, 3), st.integers(-6, 2), st.integers(0, 8), st.integers(0, 8))
def test_level_limits_hold_for_every_input_of_the_levels(rounding, scale, zp, lo, k0, width):
    """Every float32 input whose level lies in [k_lo, k_hi] lies within level_limits (dense
    float32 grids around every step edge included; scales not powers of two, where x / s
    rounds), and the limits are open exactly where the range reaches the clamp's end."""
    from types import SimpleNamespace

    from qnn_plugin.ops import ROUNDINGS, quant_step

    hi = lo + 10
    node = SimpleNamespace(scale=torch.tensor(scale), zero_point=torch.tensor(float(zp)),
                           delta=ROUNDINGS[rounding], lo=float(lo), hi=float(hi))
    layer = act.Layer(node, act.STEP, (1,), None)
    k_lo, k_hi = float(lo + k0), float(min(hi, lo + k0 + width))
    t_lo, t_hi = act.level_limits(layer, torch.tensor([[k_lo]]), torch.tensor([[k_hi]]))
    # inputs: a sweep of the whole range and every float32 within 64 ulps of each step edge
    # (at (j + 1/2) s when rounding to nearest, at j s for floor and ceil)
    j = torch.arange(lo - 2, hi + 3, dtype=torch.float64) - zp
    edges = torch.cat([(j + 0.5) * scale, j * scale])
    z = torch.cat([torch.linspace((lo - 3 - zp) * scale, (hi + 3 - zp) * scale, 4001)]
                  + [_ulp_neighbourhood(float(e), 64) for e in edges])
    k = quant_step(z, node.scale, node.zero_point, node.lo, node.hi, rounding)
    kept = (k >= k_lo) & (k <= k_hi)
    assert kept.any()
    assert bool((z[kept] >= t_lo[0, 0]).all() and (z[kept] <= t_hi[0, 0]).all())
    # open exactly where the range reaches the clamp's end
    assert bool(torch.isinf(t_lo).item()) == (k_lo == lo)
    assert bool(torch.isinf(t_hi).item()) == (k_hi == hi)
    # and no wider than the levels kept plus the outward widening (the sweep reaches every
    # edge to within an ulp)
    slack = 2.0 ** -9 * scale + 2.0 ** -18 * float(z.abs().max())
    if k_hi < hi:
        assert float(t_hi[0, 0] - z[kept].max()) <= slack
    if k_lo > lo:
        assert float(z[kept].min() - t_lo[0, 0]) <= slack


def _ulp_neighbourhood(x: float, n: int) -> torch.Tensor:
    """The float32 values within n ulps of x (x rounded to float32), as float32."""
    v = np.float32(x)
    out = [v]
    up = down = v
    for _ in range(n):
        up = np.nextafter(up, np.float32(np.inf), dtype=np.float32)
        down = np.nextafter(down, np.float32(-np.inf), dtype=np.float32)
        out += [up, down]
    return torch.from_numpy(np.array(out, dtype=np.float32))


def test_split_choice_prefers_splits_that_leave_a_child_exact(tmp_path):
    """A step's relaxation is about one level wide however many levels it spans: splitting a
    two-level step removes all of it, a wider one's split pays only by cutting off an end
    level (the middle leaves both children as loose as the parent), and branch() splits
    after the level chosen."""
    net = _net(tmp_path, ob.random_fixed_point_mlp(np.random.default_rng(0), sizes=[5, 7, 6, 3]))
    layer = act.find_layers(net.bounded_module)[0]
    node = layer.node
    s, zp = float(node.scale.reshape(-1)[0]), float(node.zero_point.reshape(-1)[0])
    r = 10 - zp
    # input bounds of 7 neurons: two levels; eleven levels; four levels (the top one a
    # sliver); a single level
    l = torch.full((1, 7), (r + 0.2) * s)
    u = torch.tensor([[r + 1.9, r + 10.4, r + 3.05, r + 0.7, r + 1.5, r + 1.5, r + 1.5]]) * s
    wl, wu = node._widen(l, u)
    k_lo, k_hi = node.forward(wl), node.forward(wu)
    assert (k_hi - k_lo).tolist() == [[1, 10, 3, 0, 1, 1, 1]]
    gain, cut = act._split_gain(layer, k_lo, k_hi, l, u)
    assert abs(float(gain[0, 0]) - float(act._gap(node, wl, wu)[0, 0])) < 1e-3  # all of it
    assert 0.3 < float(gain[0, 1]) < float(gain[0, 0]) - 0.3
    assert float(cut[0, 1]) in (float(k_lo[0, 1]), float(k_hi[0, 1]) - 1)       # an end level
    assert float(cut[0, 2]) in (float(k_lo[0, 2]), float(k_hi[0, 2]) - 1)
    state = act.initial_state([layer], torch.device("cpu"))
    kids = act.branch([layer], state, [(k_lo, k_hi)], torch.tensor([1]), [cut])
    assert kids["h0"][0, 1] == cut[0, 1] and kids["l0"][1, 1] == cut[0, 1] + 1
