"""QA-IBP loss: its margin bounds are sound against exhaustive enumeration, differentiable, and
computed by the plugin's BoundedModule on the model's own parameters."""
import itertools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnn_plugin.bounds import BoundQuantStep
from qnn_plugin.training.layers import QNN, QFormat
from qnn_plugin.training.loss import RobustLoss, margin_matrix


def _tiny(seed, rounding="half_even", n_in=3, act_bits=6):
    torch.manual_seed(seed)
    m = QNN.mlp(n_in, [6, 5], 4, in_fmt=QFormat.fixed(8, 8, False), w_fmt=QFormat.fixed(6, 5, True),
                act_fmt=QFormat.fixed(act_bits, 4, False), rounding=rounding)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.4)
    return m


def test_margin_matrix_rows():
    C = margin_matrix(torch.tensor([0, 2]), 3)
    assert C[0].tolist() == [[1, -1, 0], [1, 0, -1]]
    assert C[1].tolist() == [[-1, 0, 1], [0, -1, 1]]


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 31 - 1), eps=st.integers(1, 3),
       method=st.sampled_from(["ibp", "crown-ibp"]), rounding=st.sampled_from(["half_even", "half_up"]))
def test_margin_bounds_are_sound_on_every_grid_point(seed, eps, method, rounding):
    m = _tiny(seed, rounding)
    g = torch.Generator().manual_seed(seed)
    centre = torch.randint(0, 256, (4, 3), generator=g)
    y = torch.randint(0, 4, (4,), generator=g)
    loss = RobustLoss(m, method=method)
    x = centre.float() / 256
    lb = loss.margin_bounds(x, y, eps / 256).detach()
    C = margin_matrix(y, 4)
    offsets = torch.tensor(list(itertools.product(range(-eps, eps + 1), repeat=3)))
    for i in range(4):
        pts = (centre[i] + offsets).clamp(0, 255).float() / 256
        with torch.no_grad():
            margins = m(pts) @ C[i].T                        # (points, classes - 1)
        assert bool((lb[i] <= margins.min(dim=0).values).all()), (lb[i], margins.min(dim=0).values)
    cert = loss.certified(x, y, eps / 256)
    assert torch.equal(cert, (lb > 0).all(dim=1))


def test_gradients_reach_every_parameter_and_a_step_lowers_the_hinge():
    m = _tiny(3, n_in=8)
    loss = RobustLoss(m)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 8), generator=g).float() / 256
    y = torch.randint(0, 4, (64,), generator=g)
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    terms = loss(x, y, eps=4 / 256, kappa=1.0)
    opt.zero_grad()
    terms.loss.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters())
    hinge0 = float(terms.hinge)
    for _ in range(20):
        terms = loss(x, y, eps=4 / 256, kappa=1.0)
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
    assert float(loss(x, y, eps=4 / 256, kappa=1.0).hinge) < hinge0


def test_loss_terms_and_clean_path():
    m = _tiny(5)
    loss = RobustLoss(m)
    x, y = torch.rand(10, 3), torch.randint(0, 4, (10,))
    plain = loss(x, y, eps=0.0, kappa=0.5)
    assert plain.certified is None and float(plain.hinge) == 0.0
    assert torch.allclose(plain.loss, torch.nn.functional.cross_entropy(m(x), y))
    robust = loss(x, y, eps=2 / 256, kappa=0.5)
    assert torch.equal(robust.logits, m(x).detach())        # the BoundedModule's forward pass
    assert float(robust.loss.detach()) == pytest.approx(float(robust.ce + 0.5 * robust.hinge), rel=1e-6)
    assert all(n.ste for n in loss.bm._modules.values() if isinstance(n, BoundQuantStep))
    with pytest.raises(ValueError, match="bound method"):
        RobustLoss(m, method="alpha-crown")


@pytest.mark.parametrize("form", ["qdq", "fixed_point"])
def test_training_bounds_equal_the_bounds_on_the_exported_onnx(tmp_path, form):
    """The bounds that train are the bounds that verify: RobustLoss's IBP margin bounds on the
    torch QNN equal margin_ibp on its exported ONNX model loaded back by load_onnx."""
    import qnn_plugin as qp
    from qnn_plugin.bounded import margin_ibp
    from qnn_plugin.training.export import export_onnx

    m = _tiny(11, n_in=10, act_bits=8 if form == "qdq" else 6)
    path = tmp_path / "m.onnx"
    export_onnx(m, path, form)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (16, 10), generator=g).float() / 256
    y = torch.randint(0, 4, (16,), generator=g)
    eps = 3 / 256
    train_lb = RobustLoss(m).margin_bounds(x, y, eps).detach()
    net = qp.load_onnx(str(path))
    lo, hi = (x - eps).clamp(0, 255 / 256), (x + eps).clamp(0, 255 / 256)
    onnx_lb = margin_ibp(qp.bounded(net, x[:1]), lo, hi, margin_matrix(y, 4))
    plain_lb, _ = qp.compute_bounds(qp.bounded(net, x[:1]), lo, hi, "ibp", C=margin_matrix(y, 4))
    assert torch.allclose(train_lb, onnx_lb, atol=1e-5), (train_lb - onnx_lb).abs().max()
    assert bool((onnx_lb >= plain_lb - 1e-6).all()) and bool((onnx_lb > plain_lb + 1e-3).any())
