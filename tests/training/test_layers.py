"""Trainable QNN layers: formats, fake quantization, straight-through gradients, builders."""
import math

import pytest
import torch

from qnn_plugin.training.layers import QNN, ActQuant, InputQuant, QFormat, QuantLinear


def test_fixed_formats():
    f = QFormat.fixed(8, 8, signed=False)
    assert (f.qmin, f.qmax, f.zero_point, f.scale) == (0, 255, 0, 2 ** -8)
    assert f.pow2 and f.frac == 8 and f.bits == 8 and not f.signed
    s = QFormat.fixed(6, 5, signed=True)
    assert (s.qmin, s.qmax) == (-32, 31) and s.signed and s.bits == 6
    g = QFormat(0.1, 3, 0, 15)
    assert not g.pow2
    with pytest.raises(ValueError, match="power of two"):
        g.frac
    for bad in [lambda: QFormat.fixed(0, 1, True), lambda: QFormat(0.0, 0, 0, 1),
                lambda: QFormat(1.0, 5, 0, 3), lambda: QFormat(1.0, 0, 2, 2)]:
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("rounding,expect", [("half_even", [0, 2, 2, 4]), ("half_up", [1, 2, 3, 4]),
                                             ("floor", [0, 1, 2, 3])])
def test_fake_quantization_rounds_and_clamps(rounding, expect):
    f = QFormat.fixed(3, 1, signed=False)   # codes 0..7, step 0.5
    x = torch.tensor([0.25, 0.75, 1.25, 1.75])   # ties at code 0.5, 1.5, 2.5, 3.5
    assert f.codes(x, rounding).tolist() == expect
    assert f.fake(torch.tensor([-3.0, 100.0]), rounding).tolist() == [0.0, 3.5]


def test_straight_through_gradient_is_clipped_to_the_clamp_range():
    f = QFormat.fixed(4, 2, signed=False)   # codes 0..15, values 0..3.75
    x = torch.tensor([-1.0, 0.5, 2.0, 5.0], requires_grad=True)
    f.fake(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_mlp_is_integer_arithmetic():
    torch.manual_seed(0)
    m = QNN.mlp(6, [5], 3, in_fmt=QFormat.fixed(8, 8, False), w_fmt=QFormat.fixed(6, 5, True),
                act_fmt=QFormat.fixed(6, 3, False), rounding="half_up")
    x = torch.randint(0, 256, (32, 6)).float() / 256
    lin0, act, lin1 = m[1], m[2], m[3]
    (w0, b0), (w1, b1) = lin0.codes(), lin1.codes()
    q0 = torch.round(x.double() * 256)
    acc0 = q0 @ w0.T + b0                                  # units 2**-(8 + 5)
    q1 = torch.clamp(torch.floor(acc0 * 2.0 ** -(8 + 5 - 3) + 0.5), 0, 63)
    acc1 = q1 @ w1.T + b1                                  # units 2**-(3 + 5)
    with torch.no_grad():
        y = m(x)
    assert torch.equal(y.double(), acc1 * 2.0 ** -8)
    assert isinstance(m[0], InputQuant) and isinstance(act, ActQuant) and m.n_out == 3
    assert m.accumulator_bound() < 2 ** 24


def test_conv_builder_shapes_and_errors():
    m = QNN.conv((1, 8, 8), [4, 6], [10], 3, in_fmt=QFormat.fixed(8, 8, False),
                 w_fmt=QFormat.fixed(8, 7, True), act_fmt=QFormat.fixed(8, 5, False))
    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    assert [type(l).__name__ for l in m.affine_layers()] == ["QuantConv2d", "QuantConv2d",
                                                              "QuantLinear", "QuantLinear"]
    with pytest.raises(ValueError, match="rounding"):
        QNN.mlp(2, [], 2, in_fmt=QFormat.fixed(8, 8, False), w_fmt=QFormat.fixed(8, 7, True),
                act_fmt=QFormat.fixed(8, 5, False), rounding="nearest")
    with pytest.raises(ValueError, match="too small"):
        QNN.conv((1, 2, 2), [2, 2, 2, 2], [], 2, in_fmt=QFormat.fixed(8, 8, False),
                 w_fmt=QFormat.fixed(8, 7, True), act_fmt=QFormat.fixed(8, 5, False),
                 padding=0)
    with pytest.raises(ValueError, match="zero point 0"):
        QuantLinear(2, 2, QFormat(0.5, 1, -4, 3))


def test_bias_codes_are_in_accumulator_units():
    m = QNN.mlp(2, [], 1, in_fmt=QFormat.fixed(8, 4, False), w_fmt=QFormat.fixed(8, 3, True),
                act_fmt=QFormat.fixed(8, 5, False))
    lin = m[1]
    with torch.no_grad():
        lin.bias.fill_(0.3)
    _, b = lin.codes()
    assert b.item() == round(0.3 * 2 ** 7) and lin.bias_format().scale == math.ldexp(1, -7)
