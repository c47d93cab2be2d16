"""Activation branching: the split constraints partition a neuron's range, and a constrained
quantization step is exactly the step on the inputs that satisfy the constraint."""
import numpy as np
import torch

from qnn_plugin import onnx_builders as ob
from qnn_plugin.verifier import activations as act
from qnn_plugin.verifier.network import Network


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
        for child in range(2):
            part = {k: v[child:child + 1] for k, v in kids.items()}
            bd = bound_rows(net, problem, lo, hi, "crown", False, layers, part)
            inside = (level >= part["l0"][0, 0]) & (level <= part["h0"][0, 0])
            assert inside.any()
            assert (rows[inside].min(dim=0).values >= bd.lb[0] - 1e-4).all()
            checked += 1
    assert checked >= 4


def _first_hidden_level(built, codes):
    info = built.info
    w, b = torch.tensor(info["weights"][0], dtype=torch.float32), torch.tensor(info["biases"][0], dtype=torch.float32)
    acc = codes @ w + b
    s = info["shifts"][0]
    lvl = torch.clamp(torch.floor(acc * 2.0 ** -s + 0.5), 0, 2 ** info["act_bits"] - 1)
    return lvl[:, 0]
