"""Each compatibility fix, exercised through the behaviour that breaks without it."""
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import qnn_plugin as qp
from qnn_plugin import compat
from qnn_plugin.errors import UnsupportedOperatorError
from qnn_plugin.ops import QuantStep


def applied():
    return set(compat.apply())


def needs(name):
    return pytest.mark.skipif(name not in applied(), reason=f"fix {name} not needed on this stack")


def test_apply_is_idempotent_and_every_fix_is_gated():
    first = compat.apply()
    assert compat.apply() == first
    assert all(callable(f.needed) and f.why for f in compat.FIXES)
    assert len({f.name for f in compat.FIXES}) == len(compat.FIXES)


@needs("numpy_arraysetops")
def test_auto_lirpa_imports_on_numpy_2():
    base = importlib.import_module("auto_LiRPA.operators.base")
    assert base.isin(np.array([1, 2]), np.array([2])).tolist() == [False, True]


def test_numpy_bool_available():
    assert np.zeros(2, dtype=np.bool).dtype == np.bool_


@needs("set_opset_version")
def test_set_opset_version_sets_exporter_opset():
    from torch.onnx.symbolic_helper import _set_opset_version

    _set_opset_version(12)
    assert compat.onnx_globals().export_onnx_opset_version == 12


class _Clamp(nn.Module):
    def forward(self, x):
        return torch.clamp(torch.round(x), 0.0, 3.0)


def _traced_kinds(model, x):
    from auto_LiRPA.parse_graph import parse_module

    nodes, _, _, _ = parse_module(model, (x,))
    return [n.op for n in nodes], nodes


@needs("symbolic_opsets")
def test_round_and_clip_trace_as_onnx_ops():
    # without the opset 11+ symbolics, round is emitted as aten::ATen and Clip in its opset-9 form
    kinds, nodes = _traced_kinds(_Clamp(), torch.zeros(1, 2))
    assert "onnx::Round" in kinds
    clip = [n for n in nodes if n.op == "onnx::Clip"][0]
    assert len(clip.inputs) == 3  # opset 11+ form: min and max are inputs


@needs("node_getitem")
def test_node_attributes_readable_tensor_and_float():
    kinds, nodes = _traced_kinds(nn.Sequential(QuantStep(torch.tensor([0.5, 0.25]), 1.0, -8, 7)),
                                 torch.zeros(1, 2))
    step = [n for n in nodes if n.op == "qnn::QuantStep"][0]
    assert step.attr["scale"].tolist() == [0.5, 0.25]
    assert step.attr["lo"] == -8.0 and step.attr["rounding"] == "half_even"


@needs("autograd_inlining")
def test_custom_function_traces_as_one_node():
    kinds, _ = _traced_kinds(nn.Sequential(nn.Linear(2, 2), QuantStep(0.5, 0, -8, 7)), torch.zeros(1, 2))
    assert kinds.count("qnn::QuantStep") == 1


@needs("torch_six")
def test_bounded_module_register_parameter():
    bm = qp.bounded(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2))
    bm.register_parameter("extra", nn.Parameter(torch.zeros(1)))
    assert "extra" in dict(bm.named_parameters(recurse=False))


def test_onnx2torch_imports():
    onnx2torch = importlib.import_module("onnx2torch")
    assert hasattr(onnx2torch, "convert")
    tv = importlib.import_module("torchvision")
    if getattr(tv, "__qnn_plugin_stub__", False):
        with pytest.raises(RuntimeError, match="torchvision is not available"):
            tv.ops.nms(None, None, 0.5)


@needs("named_members")
def test_named_parameters_on_bounded_module():
    bm = qp.bounded(nn.Sequential(nn.Linear(2, 2)), torch.zeros(1, 2))
    assert len(list(bm.parameters())) == 2


class _BufferMLP(nn.Module):
    """Weights as buffers, as onnx2torch makes them; first weight dim 4 = the batch size below."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w1", torch.randn(4, 6, generator=g))
        self.register_buffer("b1", torch.randn(6, generator=g))
        self.register_buffer("w2", torch.randn(6, 3, generator=g))
        self.register_buffer("offset", torch.randn(1, 1, 4, generator=g))

    def forward(self, x):
        x = (x - self.offset).flatten(1)
        return torch.relu(x @ self.w1 + self.b1) @ self.w2


def _check_sound(model, batch=4):
    x = torch.rand(batch, 1, 4)
    bm = qp.bounded(model, x)
    lb, ub = qp.compute_bounds(bm, x - 0.05, x + 0.05, "crown")
    samples = x + (torch.rand(200, batch, 1, 4) - 0.5) * 0.1
    ys = torch.stack([model(s) for s in samples])
    assert torch.all(lb <= ys.min(0).values + 1e-5) and torch.all(ub >= ys.max(0).values - 1e-5)


@needs("parameter_dtype_anchor")
def test_crown_on_model_without_parameters():
    _check_sound(_BufferMLP(), batch=3)


@needs("buffers_batch_dim")
def test_batched_crown_when_batch_equals_a_weight_dim():
    _check_sound(_BufferMLP(), batch=4)


@needs("constant_operand_bias")
def test_crown_through_constant_offset_with_leading_unit_dims():
    _check_sound(_BufferMLP(), batch=2)


class _DivNet(nn.Module):
    """x / c with constants of both signs, then a ReLU layer."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.register_buffer("c", torch.tensor([[[-3.0, 0.5, -0.25, 2.0]]]))
        self.register_buffer("w", torch.randn(4, 5, generator=g))
        self.register_buffer("w2", torch.randn(5, 2, generator=g))

    def forward(self, x):
        return torch.relu((x / self.c).flatten(1) @ self.w) @ self.w2


@needs("div_constant_sign")
def test_bounds_through_division_by_negative_constants():
    _check_sound(_DivNet(), batch=3)
    x = torch.rand(3, 1, 4)
    bm = qp.bounded(_DivNet(), x)
    lb, ub = qp.compute_bounds(bm, x - 0.05, x + 0.05, "ibp")
    samples = x + (torch.rand(200, 3, 1, 4) - 0.5) * 0.1
    ys = torch.stack([_DivNet()(s) for s in samples])
    assert torch.all(lb <= ys.min(0).values) and torch.all(ub >= ys.max(0).values)


@needs("onnx2torch_domain_names")
def test_contrib_domain_node_names_have_no_dot():
    from onnx import helper
    from onnx2torch.onnx_graph import OnnxGraph

    assert "." not in OnnxGraph.generate_node_name(helper.make_node("QGemm", [], [], domain="com.microsoft"))


def test_jit_script_deprecation_silenced():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-W", "default", "-c", "import qnn_plugin.bounded"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch.jit.script` is deprecated" not in out.stderr


def test_alpha_crown_on_mostly_unstable_relu_layer():
    """auto_LiRPA 0.3 crashed (sparse alpha indices with a full alpha) when more than 90% of
    a ReLU layer was unstable; bounded() sets minimum_sparsity=1.0 to avoid it."""
    import qnn_plugin as qp

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.zeros(1, 20)
    bm = qp.bounded(net, x)
    lb, ub = qp.compute_bounds(bm, x - 1.0, x + 1.0, "alpha-crown")
    assert torch.all(lb <= ub)


@needs("bound_setattr")
def test_bound_setattr_keeps_module_semantics():
    """The fast path only takes plain values on plain names; parameters, modules and buffers
    still register as nn.Module does."""
    from auto_LiRPA.operators import Bound

    node = Bound({}, [], 0, {})
    t = torch.ones(2)
    node.lower = t
    assert node.__dict__["lower"] is t and "lower" not in node._buffers
    node.p = nn.Parameter(torch.zeros(1))
    assert "p" in node._parameters and "p" not in node.__dict__
    node.p = None
    assert node._parameters["p"] is None
    node.child = nn.Linear(1, 1)
    assert "child" in node._modules
    node.register_buffer("buf", torch.zeros(1))
    node.buf = torch.ones(1)
    assert torch.equal(node._buffers["buf"], torch.ones(1)) and "buf" not in node.__dict__
    with pytest.raises(TypeError):
        node.p = torch.ones(1)   # a plain tensor onto a parameter's name, as nn.Module refuses


@needs("mul_two_constants")
def test_interval_of_a_product_of_two_constants():
    """auto_LiRPA gave c1 * c1 for c1 * c2; found through a Gemm with transA=1 whose beta * C
    node is such a product (an audit's wrong unsat)."""
    from auto_LiRPA.operators import BoundMul

    a, b = torch.tensor([3.0, -2.0]), torch.tensor([5.0, 4.0])
    lo, hi = BoundMul.interval_propagate_constant((a, a), (b, b))
    assert lo.tolist() == hi.tolist() == [15.0, -8.0]
    x = (torch.tensor([1.0, -1.0]), torch.tensor([2.0, 1.0]))
    lo, hi = BoundMul.interval_propagate_constant(x, (b, b))   # the usual case is untouched
    assert lo.tolist() == [5.0, -4.0] and hi.tolist() == [10.0, 4.0]


class _LeakyNet(nn.Module):
    """LeakyRelu of any slope between two linear layers whose terms cancel."""

    def __init__(self, alpha):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.register_buffer("w", torch.randn(4, 6, generator=g))
        self.register_buffer("w2", torch.randn(6, 3, generator=g))
        self.alpha = alpha

    def forward(self, x):
        return torch.nn.functional.leaky_relu(x.flatten(1) @ self.w, self.alpha) @ self.w2


@needs("leaky_relu_any_slope")
@pytest.mark.parametrize("alpha", [2.5, 1.0, 0.1, -0.5])
def test_leaky_relu_of_any_slope_is_bounded_soundly(alpha):
    """auto_LiRPA's lines assume alpha <= 1 (convex): at 2.5 its chord was taken as an upper
    bound of a concave function (an audit's wrong unsat); at -0.5 its interval missed the
    minimum 0."""
    for batch in (3, 5):
        _check_sound(_LeakyNet(alpha), batch=batch)
    x = torch.rand(8, 1, 4) * 4 - 2
    bm = qp.bounded(_LeakyNet(alpha), x)
    lb, ub = qp.compute_bounds(bm, x - 1.0, x + 1.0, "ibp")
    samples = x + (torch.rand(400, 8, 1, 4) - 0.5) * 2.0
    ys = torch.stack([_LeakyNet(alpha)(s) for s in samples])
    assert torch.all(lb <= ys.min(0).values + 1e-5) and torch.all(ub >= ys.max(0).values - 1e-5)


def _assert_contains(model, lower, upper, methods=("ibp", "crown", "alpha-crown"), samples=400):
    """Bounds of every method contain the model's outputs at the box's ends and random points
    (after a bound computation on another box: no node may keep that box's bounds)."""
    bm = qp.bounded(model, lower)
    qp.compute_bounds(bm, (lower + upper) / 2, upper, methods[-1])
    pts = lower + torch.rand(samples, *lower.shape) * (upper - lower)
    ys = torch.stack([model(p) for p in torch.cat([lower[None], upper[None], pts])])
    for method in methods:
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        tol = 1e-5 * (1 + ys.abs().max())
        assert torch.all(lb <= ys.min(0).values + tol), (method, lb, ys.min(0).values)
        assert torch.all(ub >= ys.max(0).values - tol), (method, ub, ys.max(0).values)


class _SqrtNet(nn.Module):
    def __init__(self, w=None):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("w", torch.rand(4, 5, generator=g) if w is None else w)
        self.register_buffer("w2", torch.randn(5, 2, generator=g))

    def forward(self, x):
        return torch.sqrt(x.flatten(1) @ self.w) @ self.w2


@needs("sqrt_tangent")
def test_sqrt_is_bounded_soundly():
    """auto_LiRPA's upper line of sqrt had the slope of x**-0.5: CROWN put sqrt(x) on [1, 4]
    below 1.78 (an audit's wrong unsat). Both lines hold now, also where the box reaches 0."""
    lo, hi = torch.full((1, 1, 4), 1.0), torch.full((1, 1, 4), 4.0)
    for w in (None, torch.eye(4)[:, :1].repeat(1, 5)):
        _assert_contains(_SqrtNet(w), lo, hi)
        _assert_contains(_SqrtNet(w), torch.zeros(1, 1, 4), torch.full((1, 1, 4), 0.01))


class _DivNets(nn.Module):
    """x0 / x1 (a numerator of either sign), c / x1 with constants of both signs, x0 / sqrt(x1)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("c", torch.tensor([[3.0, -2.0]]))

    def forward(self, x):
        x = x.flatten(1)
        num, den = x[:, :2], x[:, 2:]
        return torch.cat([num / den, self.c / den, num / torch.sqrt(den)], 1)


@needs("div_by_perturbed")
def test_division_by_an_input_dependent_tensor_is_bounded_soundly():
    """auto_LiRPA's interval of x / y held only for x >= 0 ([-2, -1] / [1, 2] gave [-1, -1]),
    c / y was back-substituted as y / c, and a Sqrt divisor got a layer-normalisation formula
    in place of x / y (an audit's wrong unsat)."""
    for lo, hi in (([-2.0, -1.0, 1.0, 1.0], [-1.0, 2.0, 2.0, 3.0]),
                   ([0.5, -3.0, 0.2, 4.0], [2.0, 3.0, 0.3, 9.0])):
        _assert_contains(_DivNets(), torch.tensor([[lo]]), torch.tensor([[hi]]))
    lb, ub = qp.compute_bounds(qp.bounded(_DivNets(), torch.ones(1, 1, 4)),
                               torch.tensor([[[-2.0, -2.0, 1.0, 1.0]]]),
                               torch.tensor([[[-1.0, -1.0, 2.0, 2.0]]]), "ibp")
    assert float(lb[0, 0]) <= -2.0 and float(ub[0, 0]) >= -0.5


class _ConstantOverNet(nn.Module):
    """c / (W x + 5), constants of both signs: nothing else asks for the divisor's bounds."""

    def __init__(self):
        super().__init__()
        self.register_buffer("c", torch.tensor([[3.0, -2.0, 0.5]]))
        self.register_buffer("w", torch.tensor([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0]]))

    def forward(self, x):
        return self.c / (x.flatten(1) @ self.w + 5.0)


@needs("div_by_perturbed")
def test_a_constant_divided_by_an_input_dependent_tensor():
    """c / y was back-substituted as y / c, and its lines read the divisor's bounds, which
    nothing made auto_LiRPA compute for the box at hand."""
    for lo, hi in (([-1.0, -2.0], [1.0, 0.0]), ([2.0, 1.0], [3.0, 4.0])):
        _assert_contains(_ConstantOverNet(), torch.tensor([[lo]]), torch.tensor([[hi]]))


@needs("div_by_perturbed")
def test_division_by_a_range_containing_zero_is_refused():
    bm = qp.bounded(_DivNets(), torch.ones(1, 1, 4))
    with pytest.raises(UnsupportedOperatorError, match="contains 0"):
        qp.compute_bounds(bm, torch.tensor([[[1.0, 1.0, -1.0, 1.0]]]),
                          torch.tensor([[[2.0, 2.0, 1.0, 2.0]]]), "ibp")


class _PowNet(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, x):
        return torch.pow(x.flatten(1), self.n)


@needs("pow_negative_exponent")
@pytest.mark.parametrize("n", [-1, -2, -3])
def test_negative_powers_have_ordered_intervals(n):
    """Pow(x, -1) on [1, 2] was [1, 0.5]; Pow(x, -2) on [-1, 2] was capped at 1."""
    for lo, hi in (([1.0, 0.5], [2.0, 0.6]), ([-3.0, -0.5], [-2.0, -0.1])):
        _assert_contains(_PowNet(n), torch.tensor([[lo]]), torch.tensor([[hi]]), methods=("ibp",))
    bm = qp.bounded(_PowNet(n), torch.ones(1, 1, 2))
    with pytest.raises(UnsupportedOperatorError, match="containing 0"):
        qp.compute_bounds(bm, torch.full((1, 1, 2), -1.0), torch.full((1, 1, 2), 2.0), "ibp")


def _highs_knapsack():
    """A small two-row 0/1 knapsack through highspy; its optimum. Enough for HiGHS 1.16 to
    start its task scheduler."""
    import highspy

    n = 30
    rng = np.random.default_rng(0)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, 2
    lp.col_cost_ = -rng.integers(10, 100, n).astype(float)
    lp.col_lower_, lp.col_upper_ = np.zeros(n), np.ones(n)
    lp.row_lower_, lp.row_upper_ = np.full(2, -highspy.kHighsInf), np.array([n * 20.5, n * 21.5])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * n + 1, 2)
    lp.a_matrix_.index_ = np.tile([0, 1], n).astype(np.int32)
    lp.a_matrix_.value_ = rng.integers(10, 60, (n, 2)).astype(float).reshape(-1)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    h.passModel(lp)
    h.run()
    return h.getInfo().objective_function_value


def test_highspy_solves_in_a_child_forked_after_the_parent_solved():
    """highs_scheduler_after_fork: with highspy 1.16 the child hung in its first MIP (the
    verifier's exact program runs this way; eight tests ran into their 60 s limits)."""
    from qnn_plugin.forked import Forked

    best = _highs_knapsack()
    job = Forked(_highs_knapsack, 30)
    assert job.wait(20), "the child did not answer"
    assert job.result == ("ok", best)


def test_highspy_prints_nothing_when_asked_to_be_quiet(tmp_path):
    """highs_banner: a fresh process that imports qnn_plugin and solves through highspy with
    output_flag off writes nothing to its stdout (1.16 printed a banner there), even a pipe."""
    import subprocess
    import sys

    code = ("import qnn_plugin, tests.test_compat as t; t._highs_knapsack()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
