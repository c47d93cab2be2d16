"""Regression tests from the independent soundness review of the verifier (each was a wrong
unsat or a crash before its fix)."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from qnn_plugin import onnx_builders as ob
from qnn_plugin.errors import InputShapeError
from qnn_plugin.spec import Case, Polytope, Spec
from qnn_plugin.verifier import verify
from qnn_plugin.verifier.bab import split

from .instances import POOLS, grid_instance, pool_net


def _save(tmp_path, nodes, inits, n_in, n_out, in_shape=None, name="m.onnx"):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape or [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def _ort(path, x):
    return ort.InferenceSession(path).run(None, {"x": np.asarray(x, np.float32)})[0]


def test_clamp_off_the_integer_grid_is_not_an_input_grid(tmp_path):
    """Round -> Clip(-0.5, 3): codes {-0.5, 0, 1, 2, 3} are not integers; treating them as a
    code grid lost the code -0.5 and answered unsat."""
    n = 6
    path = _save(tmp_path, [helper.make_node("Round", ["x"], ["r"]),
                            helper.make_node("Clip", ["r", "lo", "hi"], ["q"]),
                            helper.make_node("MatMul", ["q", "W"], ["y"])],
                 {"lo": np.array(-0.5, np.float32), "hi": np.array(3.0, np.float32),
                  "W": np.ones((n, 1), np.float32)}, n, 1)
    assert _ort(path, np.full((1, n), -0.6))[0, 0] == -3.0
    poly = Polytope(np.array([[1.0], [-1.0]]), np.array([-2.75, 3.25]))  # -3.25 <= y <= -2.75
    spec = Spec((Case(np.full(n, -0.7), np.full(n, 3.0), (poly,)),), n, 1, "<t>")
    res = verify(path, spec, timeout=30, attack_starts=1, attack_steps=1)
    assert res.verdict == "sat"


@pytest.mark.parametrize("box", [(1.0, 1.0), (0.6, 1.4)])
def test_point_margin_below_float32_resolution(tmp_path, box):
    """A row whose coefficient is not a float32 number: the float32 margin of the point says
    safe, the exact one says unsafe."""
    path = _save(tmp_path, [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                            helper.make_node("MatMul", ["d", "W"], ["y"])],
                 {"s": np.array(1.0, np.float32), "z": np.array(0, np.uint8),
                  "W": np.ones((1, 2), np.float32)}, 1, 2)
    a0 = 1 + 1.5 * 2.0 ** -24
    poly = Polytope(np.array([[a0, -1.0]]), np.array([9e-8]))
    spec = Spec((Case(np.array([box[0]]), np.array([box[1]]), (poly,)),), 1, 2, "<t>")
    assert verify(path, spec, timeout=30).verdict == "sat"


def test_bound_within_summation_error_is_not_a_proof(tmp_path):
    """Outputs near 2**24: a CROWN bound of +1 on y0 - y1 is within float32 summation error;
    the point (1, 1) has y0 == y1 (unsafe)."""
    path = _save(tmp_path, [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                            helper.make_node("MatMul", ["d", "W"], ["t"]),
                            helper.make_node("Add", ["t", "c"], ["y"])],
                 {"s": np.array(1.0, np.float32), "z": np.array(0, np.uint8),
                  "W": np.array([[1.0, 0.0], [1.0, 0.0]], np.float32),
                  "c": np.array([2.0 ** 24 - 1, 2.0 ** 24], np.float32)}, 2, 2)
    poly = Polytope(np.array([[1.0, -1.0]]), np.array([0.0]))
    spec = Spec((Case(np.array([1.0, 1.0]), np.array([255.0, 255.0]), (poly,)),), 2, 2, "<t>")
    for method in ("crown", "ibp"):
        res = verify(path, spec, timeout=30, attack_starts=1, attack_steps=1, method=method)
        assert res.verdict == "sat", method


def test_float_split_near_the_float32_limit():
    lo = torch.tensor([[-3e38]])
    hi = torch.tensor([[3e38]])
    c_lo, c_hi = split(lo, hi, torch.tensor([0]), integer=False)
    assert torch.isfinite(c_lo).all() and torch.isfinite(c_hi).all()
    assert c_lo[0, 0] == lo[0, 0] and c_hi[1, 0] == hi[0, 0]
    assert c_hi[0, 0] >= c_lo[1, 0]  # no gap
    assert c_hi[0, 0] < hi[0, 0] and c_lo[1, 0] > lo[0, 0]  # both smaller


def test_no_attack_and_empty_unsafe_set(tmp_path):
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["y"])],
                 {"W": np.ones((2, 1), np.float32)}, 2, 1)
    poly = Polytope(np.array([[1.0]]), np.array([0.5]))
    spec = Spec((Case(np.zeros(2), np.ones(2), (poly,)),), 2, 1, "<t>")
    assert verify(path, spec, timeout=30, attack_starts=0).verdict == "sat"
    empty = Spec((Case(np.zeros(2), np.ones(2), ()),), 2, 1, "<t>")
    assert verify(path, empty, timeout=30).verdict == "unsat"


def test_input_without_batch_dimension_is_a_clear_error(tmp_path):
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["y"])],
                 {"W": np.ones((3, 1), np.float32)}, 3, 1, in_shape=[3])
    spec = Spec((Case(np.zeros(3), np.ones(3), (Polytope(np.array([[1.0]]), np.array([0.0])),)),),
                3, 1, "<t>")
    with pytest.raises(InputShapeError, match="batch"):
        verify(path, spec, timeout=30)


# ---- a second independent audit (hand-built models; each crashed the verifier before its fix)

@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("branch", ["activation", "input"])
def test_pools_of_any_geometry(tmp_path, pool, branch):
    """MaxPool with overlapping windows, padding (asymmetric too), dilation or ceil mode:
    auto_LiRPA's own MaxPool raised on all but k2s2 (and alpha-CROWN on that one too);
    AveragePool at opsets 19 and 21 had no converter."""
    rng = np.random.default_rng(len(pool))
    for _ in range(3):
        built = pool_net(rng, **POOLS[pool])
        spec, truth = grid_instance(rng, built, "random", free=6)
        path = tmp_path / "pool.onnx"
        path.write_bytes(built.model.SerializeToString())
        res = verify(str(path), spec, timeout=60, branch=branch, attack_starts=0)
        assert res.verdict == ("sat" if truth else "unsat"), (res.verdict, res.message)


def test_reshape_with_a_shape_subgraph_in_the_float_program(tmp_path):
    """A Reshape after a fake-quantized input: auto_LiRPA folds its target shape into a
    Split/Squeeze/Concat subgraph whose nodes hold no forward value, and the program beside
    the search crashed reading it."""
    n = 5
    rng = np.random.default_rng(1)
    path = _save(tmp_path, [helper.make_node("Div", ["x", "s"], ["d"]),
                            helper.make_node("Round", ["d"], ["r"]),
                            helper.make_node("Clip", ["r", "lo", "hi"], ["c"]),
                            helper.make_node("Mul", ["c", "s"], ["m"]),
                            helper.make_node("Reshape", ["m", "shape"], ["f"]),
                            helper.make_node("MatMul", ["f", "W1"], ["h"]),
                            helper.make_node("Relu", ["h"], ["y"])],
                 {"s": np.array(0.25, np.float32), "lo": np.array(-8.0, np.float32),
                  "hi": np.array(7.0, np.float32), "shape": np.array([1, n], np.int64),
                  "W1": (rng.integers(-4, 5, (n, 3)) / 4).astype(np.float32)}, n, 3)
    lower, upper = np.full(n, -0.6), np.full(n, 0.6)
    axes = [np.arange(-2, 3) * 0.25] * n          # every code the box reaches
    x = np.array(np.meshgrid(*axes, indexing="ij")).reshape(n, -1).T.astype(np.float32)
    y = np.concatenate([_ort(path, x[i:i + 1]) for i in range(len(x))])
    for threshold in (y[:, 0].max() - 0.125, y[:, 0].max() + 0.125):
        poly = Polytope(np.array([[-1.0, 0.0, 0.0]]), np.array([-threshold]))   # y0 >= t
        spec = Spec((Case(lower, upper, (poly,)),), n, 3, "<t>")
        res = verify(path, spec, timeout=60, branch="activation", attack_starts=0)
        assert res.verdict == ("sat" if threshold < y[:, 0].max() else "unsat"), res.message
        assert "milp_unsupported" not in res.stats


def test_output_without_batch_dimension_is_a_clear_error(tmp_path):
    """Input [1, 4], output Reshape'd to [3]: the message used to say the model had 1 output."""
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["t"]),
                            helper.make_node("Reshape", ["t", "shape"], ["y"])],
                 {"W": np.ones((4, 3), np.float32), "shape": np.array([3], np.int64)}, 4, 3)
    spec = Spec((Case(np.zeros(4), np.ones(4), (Polytope(np.array([[1.0, 0, 0]]), np.array([0.0])),)),),
                4, 3, "<t>")
    with pytest.raises(InputShapeError, match=r"output has shape \(3,\)"):
        verify(path, spec, timeout=30)


def test_two_output_tensors_are_a_clear_error(tmp_path):
    """A graph with two outputs ended in an internal error ('list' object has no attribute
    'dim'; an audit of the tool interface)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Relu", ["x"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])],
        [onnx.numpy_helper.from_array(np.ones((2, 3), np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "two.onnx"))
    spec = Spec((Case(np.zeros(2), np.ones(2), (Polytope(np.array([[1.0, 0, 0]]), np.array([0.0])),)),),
                2, 3, "<t>")
    with pytest.raises(InputShapeError, match=r"one output tensor, this one has 2 \(y, z\)"):
        verify(str(tmp_path / "two.onnx"), spec, timeout=30)


def test_a_polytope_no_output_reaches_is_refuted(tmp_path):
    """Y_0 >= 1 and Y_0 <= 0 on a float network: each row alone holds somewhere in every box,
    and the search split the input for ever (an audit: a timeout with 625,000 open domains)."""
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W"], ["y"])],
                 {"W": np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)}, 2, 2)
    empty = Polytope(np.array([[-1.0, 0.0], [1.0, 0.0]]), np.array([-1.0, 0.0]))
    reached = Polytope(np.array([[-1.0, 0.0]]), np.array([-1.9]))          # Y_0 >= 1.9
    box = (np.zeros(2), np.ones(2))
    res = verify(path, Spec((Case(*box, (empty,)),), 2, 2, "<t>"), timeout=20)
    assert res.verdict == "unsat", (res.verdict, res.message)
    res = verify(path, Spec((Case(*box, (empty, reached)),), 2, 2, "<t>"), timeout=20)
    assert res.verdict == "sat" and res.counterexample.polytope == 1


# ---- a third independent audit (hand-built inexact networks; after the float-error bound)

def test_a_step_whose_float_error_is_not_bounded_is_not_proven(tmp_path):
    """A Sigmoid before a quantization step: the float-error analysis does not cover it, so
    the step's bounds rest on the margin alone (an audit's LeakyRelu nets, before LeakyRelu
    was covered, got four wrong unsat that way). A box every bound proves safe answers
    unknown, naming the step and the operator."""
    rng = np.random.default_rng(0)
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "W1"], ["h"]),
                            helper.make_node("Sigmoid", ["h"], ["s"]),
                            helper.make_node("MatMul", ["s", "W2"], ["z"]),
                            helper.make_node("QuantizeLinear", ["z", "sc", "zp"], ["q"]),
                            helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["y"])],
                 {"W1": rng.normal(size=(3, 4)).astype(np.float32),
                  "W2": rng.normal(size=(4, 2)).astype(np.float32),
                  "sc": np.array(0.5, np.float32), "zp": np.array(0, np.int8)}, 3, 2)
    lower, upper = np.full(3, 0.2), np.full(3, 0.2001)
    y = _ort(path, lower[None])[0]
    poly = Polytope(np.array([[-1.0, 0.0]]), np.array([-(float(y[0]) + 2.0)]))   # y0 >= y0 + 2
    res = verify(path, Spec((Case(lower, upper, (poly,)),), 3, 2, "<t>"), timeout=30)
    assert res.verdict == "unknown", (res.verdict, res.message)
    assert "could not be bounded" in res.message and "Sigmoid" in res.message, res.message
    assert res.stats["float_error_unbounded"] >= 1


def test_a_transposed_matmul_auto_lirpa_cannot_bound_is_an_unsupported_error(tmp_path):
    """x -> Transpose -> MatMul(W, x^T) -> Transpose: auto_LiRPA's Transpose raised a
    RuntimeError in its backward pass, which reached the caller as a crash (an audit)."""
    from qnn_plugin.errors import UnsupportedOperatorError

    rng = np.random.default_rng(0)
    path = _save(tmp_path, [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
                            helper.make_node("MatMul", ["W", "xt"], ["m"]),
                            helper.make_node("Transpose", ["m"], ["mt"], perm=[1, 0]),
                            helper.make_node("QuantizeLinear", ["mt", "sc", "zp"], ["q"]),
                            helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["y"])],
                 {"W": rng.normal(size=(2, 6)).astype(np.float32),
                  "sc": np.array(0.25, np.float32), "zp": np.array(0, np.int8)}, 6, 2)
    lower, upper = np.full(6, -1.0), np.full(6, 1.0)
    poly = Polytope(np.array([[-1.0, 0.0]]), np.array([-100.0]))
    with pytest.raises(UnsupportedOperatorError, match="auto_LiRPA cannot bound"):
        verify(path, Spec((Case(lower, upper, (poly,)),), 6, 2, "<t>"), timeout=30)


def test_a_gemm_with_transposed_input_is_bounded_soundly(tmp_path):
    """x -> Transpose -> Gemm(transA=1, W, C): the module's beta * C is a product of two
    constants, whose interval auto_LiRPA computed as C * C (bounds of 4.9e9 where the network
    computes 3: an audit's wrong unsat), and whose value a later bound pass had lost (a crash
    in the constant-operand fix). Bounds contain onnxruntime's outputs; verify answers."""
    from qnn_plugin.bounded import compute_bounds
    from qnn_plugin.verifier.network import Network

    rng = np.random.default_rng(0)
    path = _save(tmp_path, [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
                            helper.make_node("Gemm", ["xt", "W", "C"], ["g"], transA=1),
                            helper.make_node("QuantizeLinear", ["g", "sc", "zp"], ["q"]),
                            helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["y"])],
                 {"W": rng.normal(size=(4, 2)).astype(np.float32),
                  "C": np.array([30.0, -20.0], np.float32),
                  "sc": np.array(0.5, np.float32), "zp": np.array(0, np.int8)}, 4, 2)
    lower, upper = np.full(4, -1.0), np.full(4, 1.0)
    x = rng.uniform(-1, 1, (300, 4)).astype(np.float32)
    y = np.concatenate([_ort(path, xi[None]) for xi in x])
    net = Network(path, torch.device("cpu"))
    L, H = torch.tensor(lower, dtype=torch.float32)[None], torch.tensor(upper, dtype=torch.float32)[None]
    for method in ("ibp", "crown"):
        lb, ub = (t.detach().numpy() for t in compute_bounds(net.bounded_module, L, H, method))
        assert np.all(lb <= y.min(0)) and np.all(ub >= y.max(0)), (method, lb, ub)
    poly = Polytope(np.array([[-1.0, 0.0]]), np.array([-float(y[:, 0].max())]))   # y0 >= a reached max
    res = verify(path, Spec((Case(lower, upper, (poly,)),), 4, 2, "<t>"), timeout=30)
    assert res.verdict in ("sat", "unknown"), (res.verdict, res.message)


def test_leaky_relu_steeper_than_one_is_not_proven_wrongly(tmp_path):
    """y = LeakyRelu(x - 0.3, 2.5) - 1.75 x on [-1, 1] reaches y(0.3) = -0.525 at x = 0.3; the
    spec y >= -0.525 is sat. auto_LiRPA's LeakyRelu lines assume a slope <= 1 and answered
    unsat (an audit's minimal net)."""
    path = _save(tmp_path, [helper.make_node("Sub", ["x", "c"], ["d"]),
                            helper.make_node("LeakyRelu", ["d"], ["r"], alpha=2.5),
                            helper.make_node("Mul", ["x", "k"], ["kx"]),
                            helper.make_node("Sub", ["r", "kx"], ["y"])],
                 {"c": np.array([0.3], np.float32), "k": np.array([1.75], np.float32)}, 1, 1)
    y_top = float(_ort(path, np.array([[0.3]]))[0, 0])
    poly = Polytope(np.array([[-1.0]]), np.array([-y_top]))
    res = verify(path, Spec((Case(np.array([-1.0]), np.array([1.0]), (poly,)),), 1, 1, "<t>"), timeout=30)
    assert res.verdict == "sat", (res.verdict, res.message)


def test_a_per_channel_step_on_a_4d_tensor_can_branch(tmp_path):
    """Conv -> padded MaxPool -> per-axis QuantizeLinear on the 4-D tensor: choosing an
    activation split broadcast the step's per-channel scale over the flattened domains and
    crashed the search (an audit's net, kept in data/audit6)."""
    from pathlib import Path

    data = Path(__file__).parent / "data" / "audit6"
    d = np.load(data / "maxpoolpad_qlaxis_dn_1.npz")
    spec = Spec((Case(d["lower"].astype(float), d["upper"].astype(float),
                      (Polytope(d["A"].astype(float), d["b"].astype(float)),)),),
                d["lower"].size, d["A"].shape[1], "<audit6>")
    res = verify(str(data / "maxpoolpad_qlaxis_dn_1.onnx"), spec, timeout=10, branch="activation")
    assert res.verdict in ("sat", "unknown", "timeout"), (res.verdict, res.message)


_AUDIT7 = {   # name: (nodes, initializers, n_in, n_out, input shape, box, row a, threshold t)
    # sqrt(x0 + x1) on [0.5, 2]^2 reaches 2 at (2, 2); auto_LiRPA's upper line stopped at 1.9
    "sqrt": ([helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
              helper.make_node("Sqrt", ["s"], ["y"])],
             {"axes": np.array([1], np.int64)}, 2, 1, None, (0.5, 2.0), 1.0, 1.98),
    # (x0 + 1e-3 sum x2..5) / (x1 + 5) on x0, x2..5 in [-2, -1], x1 in [-4, -3] reaches -2.004
    "div": ([helper.make_node("MatMul", ["x", "N"], ["n"]), helper.make_node("MatMul", ["x", "D"], ["d0"]),
             helper.make_node("Add", ["d0", "five"], ["d"]), helper.make_node("Div", ["n", "d"], ["y"])],
            {"N": np.array([[1], [0], [1e-3], [1e-3], [1e-3], [1e-3]], np.float32),
             "D": np.array([[0], [1], [0], [0], [0], [0]], np.float32), "five": np.array([5.0], np.float32)},
            6, 1, None, (-2.0, -1.0), -1.0, 2.0),
    # reflect padding copies x_1 into the first output; auto_LiRPA's Pad bounded it by [0, 0]
    "pad_reflect": ([helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
                     helper.make_node("Reshape", ["p", "shp"], ["y"])],
                    {"pads": np.array([0, 0, 0, 1, 0, 0, 0, 1], np.int64),
                     "shp": np.array([1, 10], np.int64)}, 8, 10, [1, 1, 1, 8], (1.0, 2.0), 1.0, 1.99999),
}


@pytest.mark.parametrize("name", sorted(_AUDIT7))
def test_auto_lirpa_relaxations_an_audit_caught_are_not_proven_wrongly(tmp_path, name):
    """Three wrong unsat of a seventh audit, each from an auto_LiRPA relaxation (compat's
    sqrt_tangent and div_by_perturbed, pool_bounds.BoundOnnxPad): the box holds a point with
    a * y >= t, confirmed on onnxruntime; a threshold past the true extreme is proven."""
    nodes, inits, n_in, n_out, shape, (lo, hi), a, t = _AUDIT7[name]
    path = _save(tmp_path, nodes, inits, n_in, n_out, in_shape=shape)
    lower, upper = np.full(n_in, lo), np.full(n_in, hi)
    if name == "div":
        lower[1], upper[1] = -4.0, -3.0
    row = np.zeros((1, n_out))
    row[0, 0] = -a
    spec = lambda thr: Spec((Case(lower, upper, (Polytope(row, np.array([-thr])),)),), n_in, n_out, "<t>")
    res = verify(path, spec(t), timeout=30)
    assert res.verdict == "sat", (res.verdict, res.message)
    assert a * _ort(path, res.counterexample.x.reshape(shape or [1, n_in]))[0, 0] >= t
    res = verify(path, spec(t + 0.05), timeout=30)
    assert res.verdict == "unsat", (res.verdict, res.message)


def _cut_at(built, cut: str):
    """``built`` ending at the input of its Flatten, or the output of its last Relu (before
    that activation's QDQ step): a 4-D output."""
    import dataclasses

    from onnx.utils import Extractor

    nodes = built.model.graph.node
    end = (next(n.input[0] for n in nodes if n.op_type == "Flatten") if cut == "step"
           else [n.output[0] for n in nodes if n.op_type == "Relu"][-1])
    model = Extractor(onnx.shape_inference.infer_shapes(built.model)).extract_model(
        [built.model.graph.input[0].name], [end])
    model.ir_version = built.model.ir_version
    return dataclasses.replace(built, model=model)


@pytest.mark.parametrize("cut", ["step", "relu"])
def test_a_network_whose_output_is_4d(tmp_path, cut):
    """A QDQ conv network ending at its last conv block (after the activation's QDQ step, or
    at the first step's float input): CROWN failed with a size mismatch in auto_LiRPA's
    backward pass on such outputs; the domain network now flattens its output. Verdicts
    against enumeration."""
    rng = np.random.default_rng(23)
    seen = set()
    for i in range(8):
        built = _cut_at(ob.random_qdq_conv(rng), cut)
        assert len(built.model.graph.output[0].type.tensor_type.shape.dim) == 4
        spec, truth = grid_instance(rng, built, "robust" if i % 4 == 3 else "random", free=5)
        path = tmp_path / f"m{i}.onnx"
        path.write_bytes(built.model.SerializeToString())
        res = verify(str(path), spec, timeout=60, attack_starts=0,
                     branch="activation" if i % 2 else "input")
        assert res.verdict == ("sat" if truth else "unsat"), (res.verdict, res.message)
        seen.add(res.verdict)
    assert seen == {"sat", "unsat"}


def test_a_box_end_just_below_a_tie_is_proven(tmp_path):
    """The box's upper end lies a quarter float32 ulp below a tie of the input quantizer
    (code 5.5, which rounds to 6): every real of the box rounds to a float32 of code <= 5.
    The box was rounded outward to the float32 at the tie, whose code 6 alone is unsafe and
    cannot be confirmed: ``unknown`` (a tenth audit, on an onnxruntime-quantized MLP)."""
    scale = np.float32(1 / 16)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
    path = _save(tmp_path, nodes, {"s": scale, "zp": np.uint8(0)}, 1, 1)
    tie = np.float32(5.5 / 16)
    below = np.nextafter(tie, np.float32(0))
    upper = float(below) + (float(tie) - float(below)) / 4
    assert np.float32(upper) == below and _ort(path, [[tie]])[0, 0] == np.float32(6 / 16)
    box = (np.array([0.0]), np.array([upper]))
    for t, want in ((6 / 16, "unsat"), (5 / 16, "sat")):   # y >= t
        spec = Spec((Case(*box, (Polytope(np.array([[-1.0]]), np.array([-t])),)),), 1, 1, "<t>")
        res = verify(path, spec, timeout=30)
        assert res.verdict == want, (t, res.verdict, res.message)
