"""Split constraints in the output bound (lagrangian.py): the first layer's forms are the
network's own pre-activations, the tightened bound holds for every grid point that meets the
constraints (enumeration), on first and deeper layers, and it does tighten."""
import numpy as np
import torch

from qnn_plugin import onnx_builders as ob
from qnn_plugin.spec import Case, Polytope
from qnn_plugin.verifier import activations as act
from qnn_plugin.verifier.bab import bound_rows
from qnn_plugin.verifier.lagrangian import Lagrangian
from qnn_plugin.verifier.network import Network
from qnn_plugin.verifier.problem import Problem


def _net(tmp_path, model):
    path = tmp_path / "n.onnx"
    path.write_bytes(model.SerializeToString())
    return Network(str(path), torch.device("cpu"))


def _hidden(net, layer, codes):
    """The layer's pre-activations and outputs (levels or ReLU values) at the codes, as the
    network computes them."""
    bm = net.bounded_module
    with torch.no_grad():
        bm(codes.reshape(-1, *net.input_shape))
    n = codes.shape[0]
    return (layer.node.inputs[0].forward_value.reshape(n, -1),
            layer.node.forward_value.reshape(n, -1))


def _problem(net, rng):
    rows = rng.normal(size=(1, net.n_out))
    case = Case(np.zeros(net.n_in), np.ones(net.n_in), (Polytope(rows, np.zeros(1)),))
    return Problem.from_case(case, 0, torch.device("cpu"))


def test_forms_are_the_first_layer_pre_activations(tmp_path):
    built = ob.random_fixed_point_mlp(np.random.default_rng(3), sizes=[4, 6, 5, 2])
    net = _net(tmp_path, built.model)
    layers = act.find_layers(net.bounded_module)
    lo, hi = torch.zeros(net.n_in), torch.full((net.n_in,), 255.0)
    lag = Lagrangian.build(net, layers, lo, hi)
    # the first requantizer is exact everywhere; the second reads the first's relaxation and
    # gets per-domain forms from the bound call
    assert list(lag.exact) == [0] and lag.deep == [1]
    assert lag.needed() == [layers[1].node.inputs[0].name]
    W, c = lag.exact[0]
    assert W.shape == (6, 4)
    codes = torch.randint(0, 256, (50, 4)).float()
    pre, _ = _hidden(net, layers[0], codes)
    assert torch.allclose(codes @ W.T + c, pre, atol=1e-3)


def _random_constraints(layers, state, outs, inside, gen):
    """Level (or sign) limits on three random neurons of each layer, all met by one random
    point among ``inside`` (``outs``: per layer, the points' levels or ReLU outputs)."""
    state = {k: v.clone() for k, v in state.items()}
    cand = torch.nonzero(inside).flatten()
    p = cand[torch.randint(0, cand.numel(), (1,), generator=gen).item()].item()
    for i, layer in enumerate(layers):
        for j in torch.randperm(layer.numel, generator=gen)[:3].tolist():
            at = outs[i][p, j].item()
            if layer.kind == act.RELU:
                state[f"r{i}"][0, j] = 1 if at > 0 else -1
            elif torch.rand(1, generator=gen).item() < 0.5:
                state[f"h{i}"][0, j] = at + torch.randint(0, 2, (1,), generator=gen).item()
            else:
                state[f"l{i}"][0, j] = at - torch.randint(0, 2, (1,), generator=gen).item()
    return state


def _meets(layers, state, pres, outs):
    """(points,) bool: the points whose activations meet every constraint of ``state``."""
    ok = torch.ones(outs[0].shape[0], dtype=torch.bool)
    for i, layer in enumerate(layers):
        if layer.kind == act.RELU:
            s = state[f"r{i}"][0]
            ok &= (((s > 0) & (pres[i] < 0)) | ((s < 0) & (pres[i] > 0))).sum(dim=1) == 0
        else:
            ok &= ((outs[i] >= state[f"l{i}"][0]) & (outs[i] <= state[f"h{i}"][0])).all(dim=1)
    return ok


def _sub_box(lo, hi, step, gen):
    """A random sub-box of [lo, hi] on the grid of ``step`` (the whole box for the first)."""
    span = torch.round((hi - lo) / step)
    a = torch.floor(torch.rand(lo.shape, generator=gen) * span / 2)
    b = torch.floor(torch.rand(lo.shape, generator=gen) * span / 2)
    return lo + a * step, hi - b * step


def _check(tmp_path, model, seeds, box, step=1.0):
    """Over random networks: four domains (sub-boxes, each with random splits) bounded in one
    call. The multipliers' own bound (before it is combined with CROWN's) and the final bound
    are below every satisfying grid point's row value of their domain, and equal (to float
    error) to the bounds of each domain bounded alone. Returns how often the multipliers beat
    CROWN, and how many domains were checked."""
    tightened = checked = 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        net = _net(tmp_path, model(rng))
        layers = act.find_layers(net.bounded_module)
        problem = _problem(net, rng)
        lo, hi = box
        lag = Lagrangian.build(net, layers, lo[0], hi[0])
        raw = []
        real = lag.tighten
        lag.tighten = lambda *a, **k: raw.append(real(*a, **k)) or raw[-1]
        axes = [torch.arange(a, b + step / 2, step) for a, b in zip(lo[0].tolist(), hi[0].tolist())]
        codes = torch.cartesian_prod(*axes).float()
        rows = net.evaluate(codes) @ problem.C.T
        pres, outs = zip(*[_hidden(net, layer, codes) for layer in layers])
        gen = torch.Generator().manual_seed(seed)
        boxes = [(lo[0], hi[0])] + [_sub_box(lo[0], hi[0], step, gen) for _ in range(3)]
        insides = [((codes >= a) & (codes <= b)).all(dim=1) for a, b in boxes]
        states = [_random_constraints(layers, act.initial_state(layers, torch.device("cpu")),
                                      outs, inside, gen) for inside in insides]
        d_lo, d_hi = torch.stack([a for a, _ in boxes]), torch.stack([b for _, b in boxes])
        state = {k: torch.cat([st[k] for st in states]) for k in states[0]}
        plain = bound_rows(net, problem, d_lo, d_hi, "crown", True, layers, state)
        tight = bound_rows(net, problem, d_lo, d_hi, "crown", True, layers, state, lag)
        own, points = raw[-1] if raw[-1] is not None else (None, None)
        if points is not None:   # the minimisers: in their domain's box, NaN where not computed
            computed = torch.isfinite(own).any(dim=1)
            assert torch.isnan(points[~computed]).all() and not torch.isnan(points[computed]).any()
            assert ((points >= d_lo.unsqueeze(1)) & (points <= d_hi.unsqueeze(1)))[computed].all()
        for d, (inside, st) in enumerate(zip(insides, states)):
            meets = inside & _meets(layers, st, pres, outs)
            assert meets.any()
            truth = rows[meets].min(dim=0).values
            assert (truth >= tight.lb[d] - 1e-3).all(), (seed, d)
            if own is not None:
                assert (truth >= own[d] - 1e-3).all(), (seed, d)
            alone = bound_rows(net, problem, d_lo[d:d + 1], d_hi[d:d + 1], "crown", True, layers,
                               {k: v[d:d + 1] for k, v in state.items()}, lag)
            assert torch.allclose(alone.lb[0], tight.lb[d], rtol=1e-4, atol=1e-3), (seed, d)
            tightened += int((tight.lb[d] > plain.lb[d] + 1e-3).any())
            checked += 1
    return tightened, checked


def test_tightened_step_bounds_hold_for_every_satisfying_point(tmp_path):
    box = (torch.tensor([[40.0, 60.0, 70.0]]), torch.tensor([[80.0, 100.0, 95.0]]))
    tightened, checked = _check(
        tmp_path, lambda rng: ob.random_fixed_point_mlp(rng, sizes=[3, 6, 4, 3]).model,
        range(12), box)
    assert checked == 48 and tightened >= 5


def test_tightened_relu_bounds_hold_for_every_satisfying_point(tmp_path):
    from tests.verifier.test_soundness import _relu_mlp

    box = (torch.tensor([[-1.0, -2.0, 0.0]]), torch.tensor([[2.0, 1.0, 3.0]]))
    # a float ReLU net: a grid of step 1/8 on the box
    tightened, checked = _check(tmp_path, lambda rng: _relu_mlp(rng, [3, 8, 6, 3]), range(12), box,
                                step=0.125)
    assert checked == 48 and tightened >= 5


def test_it_switches_itself_off_when_it_refutes_too_little():
    from qnn_plugin.verifier import lagrangian as lg

    lag = Lagrangian([], {})
    assert lag.paying                                  # on until it has been tried enough
    lag.record(lg.TRIAL, int(lg.PAYS * lg.TRIAL))
    assert lag.paying
    lag.record(lg.TRIAL, 0)                            # half the share: off
    assert not lag.paying


def test_the_search_uses_it_and_reports_it(tmp_path, monkeypatch):
    """An activation-branching search on a ReLU net calls it and reports its work; with
    lagrangian=False it is never built."""
    from qnn_plugin.spec import Spec
    from qnn_plugin.verifier import lagrangian as lg, verify
    from tests.verifier.test_soundness import _relu_mlp
    from tests.verifier.instances import exact_outputs

    calls = []
    real = lg.Lagrangian.tighten
    monkeypatch.setattr(lg.Lagrangian, "tighten",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    rng = np.random.default_rng(5)
    model = _relu_mlp(rng, [20, 16, 16, 3])
    path = tmp_path / "relu.onnx"
    path.write_bytes(model.SerializeToString())
    x0 = rng.uniform(-1, 1, size=20)
    lab = int(np.argmax(exact_outputs(model, x0.astype(np.float32)[None])[0]))
    polys = tuple(Polytope(np.eye(3)[[lab]] - np.eye(3)[[j]], np.zeros(1))
                  for j in range(3) if j != lab)
    spec = Spec((Case(x0 - 0.2, x0 + 0.2, polys),), 20, 3, "<t>")
    res = verify(str(path), spec, timeout=6, branch="activation", milp=False, attack_starts=0)
    assert res.stats.get("boxes_bounded", 0) > 0, res.verdict     # the search ran
    assert calls and res.stats["lagrangian_tried"] > 0
    calls.clear()
    res = verify(str(path), spec, timeout=6, branch="activation", milp=False, attack_starts=0,
                 lagrangian=False)
    assert res.stats.get("boxes_bounded", 0) > 0 and not calls
    assert "lagrangian_tried" not in res.stats


def test_tightened_qdq_bounds_hold_for_every_satisfying_point(tmp_path):
    """QDQ networks requantize after each ReLU: the steps' limits pass through the ReLU (with a
    zero point above the clamp's bottom, so that a lower limit at or below ReLU's 0 occurs and
    must be dropped)."""
    box = (torch.tensor([[100.0, 90.0, 120.0]]), torch.tensor([[140.0, 125.0, 150.0]]))
    tightened, checked = _check(
        tmp_path, lambda rng: ob.random_qdq_mlp(rng, sizes=[3, 6, 4, 3], act_zero_point=3).model,
        range(12), box)
    assert checked == 48 and tightened >= 5


def test_per_channel_step_limits_are_per_neuron():
    """A step with one scale per channel (shape (C, 1, 1), as a per-axis QuantizeLinear on conv
    activations gives) yields one limit per neuron at its channel's level edge."""
    from types import SimpleNamespace

    scale = torch.tensor([0.5, 2.0]).reshape(2, 1, 1)
    node = SimpleNamespace(scale=scale, zero_point=torch.zeros(2, 1, 1), delta=0.5, lo=0.0,
                           hi=255.0, inputs=[SimpleNamespace(name="pre")])
    layer = act.Layer(node, act.STEP, (2, 3, 3), None)
    lag = Lagrangian([layer], {})
    state = {"l0": torch.full((4, 18), -float("inf")), "h0": torch.full((4, 18), float("inf"))}
    state["l0"][:, 0] = 3.0     # channel 0: level >= 3 starts at 2.5 * 0.5
    state["h0"][:, 17] = 3.0    # channel 1: level <= 3 ends at 3.5 * 2
    t_lo, t_hi = lag._limits(0, state)
    assert t_lo.shape == t_hi.shape == (4, 18)
    assert torch.allclose(t_lo[:, 0], torch.tensor(1.25), atol=1e-2) and (t_lo[:, 0] < 1.25).all()
    assert torch.allclose(t_hi[:, 17], torch.tensor(7.0), atol=1e-2) and (t_hi[:, 17] > 7.0).all()
    assert torch.isinf(t_lo[:, 1:]).all() and torch.isinf(t_hi[:, :17]).all()
