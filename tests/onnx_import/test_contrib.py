"""onnxruntime's contrib operators QGemm and QLinearAdd (domain com.microsoft), as
``onnxruntime.quantization.quantize_static(..., QuantFormat.QOperator)`` emits them.

1. single-node models: ``semantics.qgemm`` / ``semantics.qlinear_add`` and the imported torch
   modules against onnxruntime (CPU, graph optimisations disabled), bit for bit, on random inputs,
   rounding ties, saturation, per-column scales, transB, alpha, every bias shape, float output,
   every broadcast pattern of QLinearAdd and (for QLinearAdd) every possible integer input;
2. quantize_static QOperator exports of a small MLP and a small conv net, for three
   activation/weight type pairs, per tensor and per channel: ``load_onnx`` equals onnxruntime on
   64 random inputs, and IBP / CROWN / alpha-CROWN bounds contain every output of an enumerated
   input-grid box.
"""
import warnings
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

import qnn_plugin as qp
from qnn_plugin import semantics as S
from tests.grid import grid_values, random_grid_box, reachable_inputs

F32 = np.float32
MS = "com.microsoft"
ELEM = {np.uint8: TP.UINT8, np.int8: TP.INT8}


def _session(model):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    # one thread, no spin-waiting pool: an idle spinning onnxruntime pool slows torch down
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _model(nodes, inputs, outputs, inits, ms_version=1):
    g = oh.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13), oh.make_opsetid(MS, ms_version)],
                         ir_version=8)


def _scale_sets(rng, n):
    """Scale triples: arbitrary floats, and ratios that put many results on or next to ties."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append([F32(rng.uniform(0.001, 0.1)) for _ in range(3)])
        elif kind == 1:  # simple fractions of powers of two: exact ties
            out.append([F32(2.0 ** rng.integers(-8, -2) * rng.choice([1, 1.5, 1.25, 3, 0.75]))
                        for _ in range(3)])
        elif kind == 2:  # ratios 1/3, 2, 3/2, ...: values within an ulp of ties
            s = F32(rng.uniform(0.001, 0.1))
            out.append([s, F32(s * rng.choice([0.5, 2, 1, 3])), F32(s * rng.choice([0.5, 2, 0.25, 3]))])
        else:  # small C_scale: saturation
            out.append([F32(rng.uniform(0.01, 0.1)), F32(rng.uniform(0.01, 0.1)),
                        F32(rng.uniform(0.0005, 0.002))])
    return out


# ----------------------------------------------------------------------------------------------
# QLinearAdd
# ----------------------------------------------------------------------------------------------
def qladd_model(T, sa, za, sb, zb, sc, zc, a_shape=None, b_shape=None, a_const=None, b_const=None,
                out_shape=None):
    inputs, inits = [], []
    for name, v, d in (("sa", sa, F32), ("za", za, T), ("sb", sb, F32), ("zb", zb, T), ("sc", sc, F32)):
        inits.append(nh.from_array(np.array(v, dtype=d), name))
    names = ["A", "sa", "za", "B", "sb", "zb", "sc"]
    if zc is not None:  # only the trailing zero point may be omitted (onnxruntime)
        inits.append(nh.from_array(np.array(zc, dtype=T), "zc"))
        names.append("zc")
    for name, shape, c in (("A", a_shape, a_const), ("B", b_shape, b_const)):
        if c is None:
            inputs.append(oh.make_tensor_value_info(name, ELEM[T], shape))
        else:
            inits.append(nh.from_array(np.asarray(c, dtype=T), name))
    out = oh.make_tensor_value_info("C", ELEM[T], out_shape)
    node = oh.make_node("QLinearAdd", names, ["C"], domain=MS, name="qladd")
    return _model([node], inputs, [out], inits)


SHAPES = [((64, 8), (8,)), ((64, 8), (64, 8)), ((64, 8), (1,)), ((1,), (64, 8)), ((64, 1), (1, 8)),
          ((1, 1), (1,)), ((3, 1), (1,)), ((1,), (3, 1)), ((64, 1), (64, 8)), ((2, 4, 1), (4, 1)),
          ((1, 5), (5, 1)), ((3, 1, 1), (1, 1)), ((5, 1), ()), ((5,), ()), ((), (5,)), ((), ())]


@pytest.mark.parametrize("T", [np.uint8, np.int8], ids=["uint8", "int8"])
def test_qlinear_add_semantics_is_onnxruntime_bit_for_bit(T):
    rng = np.random.default_rng(11)
    qt = S.qtype(T)
    unfused_differs = 0
    for shapes_i, (a_shape, b_shape) in enumerate(SHAPES):
        for sa, sb, sc in _scale_sets(rng, 8):
            za, zb = (T(rng.integers(qt.lo, qt.hi + 1)) for _ in range(2))
            zc = None if rng.random() < 0.2 else T(rng.integers(qt.lo, qt.hi + 1))
            sess = _session(qladd_model(T, sa, za, sb, zb, sc, zc, list(a_shape), list(b_shape)))
            for _ in range(4):
                A = rng.integers(qt.lo, qt.hi + 1, size=a_shape).astype(T)
                B = rng.integers(qt.lo, qt.hi + 1, size=b_shape).astype(T)
                want = sess.run(None, {"A": A, "B": B})[0]
                got = S.qlinear_add(A, sa, za, B, sb, zb, sc, zc)
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_array_equal(got, want, err_msg=f"shapes {a_shape} + {b_shape}")
                # the fused multiply-adds matter: the same formula without fusing differs
                r1, r2, k = S.qlinear_add_terms(sa, za, sb, zb, sc, zc,
                                                S.qlinear_add_swaps(a_shape, b_shape))
                x, y = (B, A) if S.qlinear_add_swaps(a_shape, b_shape) else (A, B)
                x, y = np.broadcast_arrays(x.astype(F32), y.astype(F32))
                unfused = (x * r1).astype(F32) + ((y * r2).astype(F32) + k).astype(F32)
                unfused_differs += int((np.clip(np.rint(unfused), qt.lo, qt.hi) != want).sum())
    assert unfused_differs > 0


@pytest.mark.parametrize("T", [np.uint8, np.int8], ids=["uint8", "int8"])
def test_qlinear_add_semantics_on_every_pair(T):
    rng = np.random.default_rng(12)
    qt = S.qtype(T)
    v = np.arange(qt.lo, qt.hi + 1).astype(T)
    A, B = (a.copy() for a in np.meshgrid(v, v))
    for sa, sb, sc in _scale_sets(rng, 8):
        za, zb, zc = (T(rng.integers(qt.lo, qt.hi + 1)) for _ in range(3))
        sess = _session(qladd_model(T, sa, za, sb, zb, sc, zc, [256, 256], [256, 256]))
        np.testing.assert_array_equal(S.qlinear_add(A, sa, za, B, sb, zb, sc, zc),
                                      sess.run(None, {"A": A, "B": B})[0])


def _load_quietly(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = qp.load_onnx(model)
    return net, [w for w in caught if "QLinearAdd" in str(w.message)]


@pytest.mark.parametrize("T", [np.uint8, np.int8], ids=["uint8", "int8"])
@pytest.mark.parametrize("layout", ["bias", "bias-row", "const-first", "scalar-bias", "pair"])
def test_qlinear_add_module_equals_onnxruntime_on_every_integer_input(T, layout):
    """The torch module reproduces onnxruntime's fused multiply-adds exactly; with arbitrary
    float scales always, with contrived tie-dense ratios up to a warned, rare one-quantum gap."""
    rng = np.random.default_rng(13)
    qt = S.qtype(T)
    v = np.arange(qt.lo, qt.hi + 1).astype(T)
    for i, (sa, sb, sc) in enumerate(_scale_sets(rng, 12)):
        za, zb, zc = (T(rng.integers(qt.lo, qt.hi + 1)) for _ in range(3))
        cst = rng.integers(qt.lo, qt.hi + 1, size=12).astype(T)
        if layout == "bias":  # A (N, 12) + B const (12,)
            m = qladd_model(T, sa, za, sb, zb, sc, zc, [None, 12], None, b_const=cst, out_shape=[None, 12])
            feeds = {"A": np.repeat(v.reshape(-1, 1), 12, axis=1)}
        elif layout == "bias-row":  # A (N, 1) + B const (1, 12): A is onnxruntime's scalar
            m = qladd_model(T, sa, za, sb, zb, sc, zc, [None, 1], None, b_const=cst.reshape(1, 12),
                            out_shape=[None, 12])
            feeds = {"A": v.reshape(-1, 1)}
        elif layout == "const-first":  # A const (12,) + B (N, 12)
            m = qladd_model(T, sa, za, sb, zb, sc, zc, None, [None, 12], a_const=cst, out_shape=[None, 12])
            feeds = {"B": np.repeat(v.reshape(-1, 1), 12, axis=1)}
        elif layout == "scalar-bias":  # one output unit: A (1, 1) + B const (1,), batch 1
            m = qladd_model(T, sa, za, sb, zb, sc, zc, [None, 1], None, b_const=cst[:1],
                            out_shape=[None, 1])
            feeds = {"A": v.reshape(-1, 1, 1)}  # one batch-1 call per value
        else:  # two variable operands, every pair
            m = qladd_model(T, sa, za, sb, zb, sc, zc, [None, 256], [None, 256], out_shape=[None, 256])
            A, B = np.meshgrid(v, v)
            feeds = {"A": A.copy(), "B": B.copy()}
        net, warned = _load_quietly(m)
        sess = _session(m)
        if layout == "scalar-bias":
            want = np.stack([sess.run(None, {"A": a})[0] for a in feeds["A"]])
            with torch.no_grad():
                got = np.stack([net(torch.tensor(a.astype(F32))).numpy() for a in feeds["A"]])
        else:
            want = sess.run(None, feeds)[0]
            with torch.no_grad():
                got = net(*[torch.tensor(a.astype(F32)) for a in feeds.values()]).numpy()
        bad = got != want.astype(F32)
        if i % 4 in (0, 3):  # arbitrary float scales: exact, no warning
            assert not warned and not bad.any(), f"scales {sa, sb, sc}"
        elif bad.any():  # tie-dense ratios: a warning, and only one quantum, rarely
            assert warned
            assert np.abs(got - want.astype(F32))[bad].max() == 1.0
            assert bad.mean() < 2e-3


def test_qlinear_add_of_two_branches_is_exact_and_bounds_soundly():
    """A residual block x_q + QLinearMatMul(x_q): both QLinearAdd operands vary."""
    rng = np.random.default_rng(17)
    T = np.uint8
    w = rng.integers(-40, 40, size=(4, 4)).astype(np.int8)
    inits = [nh.from_array(np.array(v, dtype=d), n) for n, v, d in (
        ("sx", 0.02, F32), ("zx", 128, T), ("sw", 0.013, F32), ("zw", 0, np.int8),
        ("sh", 0.031, F32), ("zh", 120, T), ("sy", 0.047, F32), ("zy", 125, T))]
    inits.append(nh.from_array(w, "W"))
    nodes = [oh.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             oh.make_node("QLinearMatMul", ["xq", "sx", "zx", "W", "sw", "zw", "sh", "zh"], ["hq"]),
             oh.make_node("QLinearAdd", ["hq", "sh", "zh", "xq", "sx", "zx", "sy", "zy"], ["yq"],
                          domain=MS),
             oh.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    m = _model(nodes, [oh.make_tensor_value_info("x", TP.FLOAT, [None, 4])],
               [oh.make_tensor_value_info("y", TP.FLOAT, [None, 4])], inits)
    net, warned = _load_quietly(m)
    assert not warned
    x = rng.uniform(-2.6, 2.6, size=(256, 4)).astype(F32)
    with torch.no_grad():
        got = net(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(got, _session(m).run(None, {"x": x})[0])
    lower, upper = random_grid_box(rng, 0.02, 128, 0, 255, (4,), free=3)
    xs = reachable_inputs(grid_values(0.02, 128, 0, 255), lower, upper, (4,))
    with torch.no_grad():
        y = net(torch.tensor(xs))
    bm = qp.bounded(net, lower, bound_opts={"optimize_bound_args": {"iteration": 5}})
    for method in ("ibp", "crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        assert torch.all(lb[0] <= y.min(0).values + 1e-4), method
        assert torch.all(ub[0] >= y.max(0).values - 1e-4), method


# ----------------------------------------------------------------------------------------------
# QGemm
# ----------------------------------------------------------------------------------------------
QGEMM_TYPES = [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]  # onnxruntime's kernels


def qgemm_case(rng, TA, TB, M, K, N, trans_b=0, alpha=1.0, per_col=False, c_shape=(None,),
               y_scale=True, y_zp=True, ties=False):
    ai, bi = np.iinfo(TA), np.iinfo(TB)
    B = rng.integers(bi.min, bi.max + 1, size=(N, K) if trans_b else (K, N)).astype(TB)
    nb = N if per_col else 1
    if ties:  # powers of two: acc * M lands exactly on halves
        sb = (2.0 ** rng.integers(-8, -4, nb)).astype(F32)
        sa = F32(2.0 ** -6)
        sy = F32(2.0 ** rng.integers(-6, -2))
    else:
        sb = rng.uniform(0.001, 0.05, nb).astype(F32)
        sa = F32(rng.uniform(0.001, 0.05))
        sy = F32(rng.uniform(0.01, 0.3))
    zb = rng.integers(bi.min, bi.max + 1, nb).astype(TB) if rng.random() < 0.5 else np.zeros(nb, TB)
    if not per_col:
        sb, zb = sb.reshape(()), zb.reshape(())
    za = TA(rng.integers(ai.min, ai.max + 1))
    zy = TA(rng.integers(ai.min, ai.max + 1))
    C = None if c_shape == (None,) else rng.integers(-4000, 4000, size=c_shape).astype(np.int32)
    consts = {"sa": np.array(sa, F32), "za": np.array(za, TA), "B": B, "sb": sb, "zb": zb}
    names = ["A", "sa", "za", "B", "sb", "zb", "", "", ""]
    if C is not None:
        consts["C"], names[6] = C, "C"
    if y_scale:
        consts["sy"], names[7] = np.array(sy, F32), "sy"
    if y_zp:
        consts["zy"], names[8] = np.array(zy, TA), "zy"
    while names[-1] == "":
        names.pop()
    attrs = {"transB": 1} if trans_b else {}
    if alpha != 1.0:
        attrs["alpha"] = alpha
    node = oh.make_node("QGemm", names, ["Y"], domain=MS, name="qgemm", **attrs)
    out = oh.make_tensor_value_info("Y", ELEM[TA] if y_zp else TP.FLOAT, [None, N])
    model = _model([node], [oh.make_tensor_value_info("A", ELEM[TA], [None, K])], [out],
                   [nh.from_array(v, k) for k, v in consts.items()])
    ref = dict(a_scale=sa, a_zero_point=za, b=B, b_scale=sb, b_zero_point=zb, c=C,
               y_scale=sy if y_scale else None, y_zero_point=zy if y_zp else None, alpha=alpha,
               trans_b=trans_b)
    return model, ref


def _qgemm_cases():
    cases = []
    for TA, TB in QGEMM_TYPES:
        for trans_b in (0, 1):
            for per_col in (False, True):
                for c_shape in ((None,), (7,), (1, 7), (), (1,)):
                    cases.append(dict(TA=TA, TB=TB, trans_b=trans_b, per_col=per_col, c_shape=c_shape))
        cases.append(dict(TA=TA, TB=TB, alpha=0.7, per_col=True, c_shape=(7,)))
        cases.append(dict(TA=TA, TB=TB, ties=True, per_col=True, c_shape=(7,)))
        cases.append(dict(TA=TA, TB=TB, ties=True, c_shape=(None,)))
        cases.append(dict(TA=TA, TB=TB, y_scale=False, y_zp=False, c_shape=(7,)))  # float output
        cases.append(dict(TA=TA, TB=TB, y_scale=True, y_zp=False, per_col=True))  # float, / y_scale
    return cases


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype.kind == "f":
        return np.array_equal(a.view(np.int32), b.view(np.int32))
    return np.array_equal(a, b)


@pytest.mark.parametrize("case", _qgemm_cases(),
                         ids=lambda c: "-".join(f"{k}={getattr(v, '__name__', v)}" for k, v in c.items()))
def test_qgemm_semantics_and_module_are_onnxruntime(case):
    rng = np.random.default_rng(zlib.crc32(repr(sorted(case.items(), key=str)).encode()))
    TA = case["TA"]
    model, ref = qgemm_case(rng, M=64, K=19, N=7, **case)
    ai = np.iinfo(TA)
    A = rng.integers(ai.min, ai.max + 1, size=(64, 19)).astype(TA)
    want = _session(model).run(None, {"A": A})[0]
    assert _same_bits(S.qgemm(A, **ref), want)
    net = qp.load_onnx(model)
    with torch.no_grad():
        got = net(torch.tensor(A.astype(F32))).numpy()
    assert _same_bits(got, want.astype(F32))


def test_qgemm_ties_and_saturation_are_exercised():
    """The tie cases put accumulators exactly on halves, and small y_scale saturates."""
    rng = np.random.default_rng(5)
    model, ref = qgemm_case(rng, np.uint8, np.int8, 256, 19, 7, per_col=True, c_shape=(7,), ties=True)
    A = rng.integers(0, 256, size=(256, 19)).astype(np.uint8)
    want = _session(model).run(None, {"A": A})[0]
    acc = (A.astype(np.int64) - int(ref["a_zero_point"])) @ (ref["b"].astype(np.int64) - ref["b_zero_point"].astype(np.int64)) + ref["c"]
    mult = (ref["a_scale"] * ref["b_scale"]).astype(F32) / ref["y_scale"]
    v = acc.astype(F32) * mult
    assert (v == np.floor(v) + 0.5).any()  # ties
    assert ((v + int(ref["y_zero_point"]) > 255) | (v + int(ref["y_zero_point"]) < 0)).any()  # saturation
    assert _same_bits(S.qgemm(A, **ref), want)


def test_qgemm_trans_a_is_refused():
    rng = np.random.default_rng(0)
    model, _ = qgemm_case(rng, np.uint8, np.int8, 4, 5, 3)
    model.graph.node[0].attribute.append(oh.make_attribute("transA", 1))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 5
    with pytest.raises(qp.UnsupportedOperatorError, match="transA"):
        qp.load_onnx(model)


# ----------------------------------------------------------------------------------------------
# the loader
# ----------------------------------------------------------------------------------------------
def test_unsupported_contrib_operator_is_named_with_the_supported_ones():
    x = oh.make_tensor_value_info("x", TP.UINT8, [1, 3])
    y = oh.make_tensor_value_info("y", TP.UINT8, [1, 3])
    inits = [nh.from_array(np.array(0.1, F32), "s"), nh.from_array(np.array(3, np.uint8), "z")]
    node = oh.make_node("QLinearSigmoid", ["x", "s", "z", "s", "z"], ["y"], domain=MS, name="sig")
    with pytest.raises(qp.UnsupportedOperatorError) as e:
        qp.load_onnx(_model([node], [x], [y], inits))
    msg = str(e.value)
    assert "QLinearSigmoid" in msg and MS in msg and "sig" in msg
    assert "QGemm (com.microsoft)" in msg and "QLinearAdd (com.microsoft)" in msg


def test_contrib_operator_of_an_unknown_domain_version_is_unsupported():
    m = qladd_model(np.uint8, 0.1, 1, 0.1, 2, 0.2, 3, [1, 4], [1, 4], out_shape=[1, 4])
    for o in m.opset_import:
        if o.domain == MS:
            o.version = 2
    with pytest.raises(qp.UnsupportedOperatorError, match="version 2"):
        qp.load_onnx(m)


# ----------------------------------------------------------------------------------------------
# quantize_static QOperator exports
# ----------------------------------------------------------------------------------------------
def float_mlp(rng):
    """6-8-4 MLP: MatMul + Add + Relu, MatMul + Add."""
    w1, b1 = rng.normal(size=(6, 8)).astype(F32) * 0.5, rng.normal(size=8).astype(F32) * 0.1
    w2, b2 = rng.normal(size=(8, 4)).astype(F32) * 0.5, rng.normal(size=4).astype(F32) * 0.1
    nodes = [oh.make_node("MatMul", ["x", "W1"], ["h1"]), oh.make_node("Add", ["h1", "b1"], ["h2"]),
             oh.make_node("Relu", ["h2"], ["h3"]), oh.make_node("MatMul", ["h3", "W2"], ["h4"]),
             oh.make_node("Add", ["h4", "b2"], ["y"])]
    inits = [nh.from_array(a, n) for a, n in ((w1, "W1"), (b1, "b1"), (w2, "W2"), (b2, "b2"))]
    g = oh.make_graph(nodes, "mlp", [oh.make_tensor_value_info("x", TP.FLOAT, [1, 6])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, [1, 4])], inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)], ir_version=8), (6,)


def float_convnet(rng):
    """Conv (1x7x7 -> 2x5x5) -> Relu -> Flatten -> Gemm (50 -> 3)."""
    w, b = rng.normal(size=(2, 1, 3, 3)).astype(F32) * 0.5, rng.normal(size=2).astype(F32) * 0.1
    g_w, g_b = rng.normal(size=(3, 50)).astype(F32) * 0.3, rng.normal(size=3).astype(F32) * 0.1
    nodes = [oh.make_node("Conv", ["x", "W", "b"], ["c1"]), oh.make_node("Relu", ["c1"], ["c2"]),
             oh.make_node("Flatten", ["c2"], ["f"]),
             oh.make_node("Gemm", ["f", "G", "c"], ["y"], transB=1)]
    inits = [nh.from_array(a, n) for a, n in ((w, "W"), (b, "b"), (g_w, "G"), (g_b, "c"))]
    g = oh.make_graph(nodes, "conv", [oh.make_tensor_value_info("x", TP.FLOAT, [1, 1, 7, 7])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, [1, 3])], inits)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)], ir_version=8), (1, 7, 7)


def quantize(tmp_path, name, model, input_shape, act, weight, per_channel):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            r = np.random.default_rng(1)
            self.data = iter([{"x": r.uniform(-1, 1, size=(1, *input_shape)).astype(F32)}
                              for _ in range(16)])

        def get_next(self):
            return next(self.data, None)

    src, dst = tmp_path / f"{name}.float.onnx", tmp_path / f"{name}.onnx"
    onnx.save(model, src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QOperator,
                        activation_type=act, weight_type=weight, per_channel=per_channel)
    return onnx.load(dst)


TYPE_PAIRS = [("QUInt8", "QInt8"), ("QInt8", "QInt8"), ("QUInt8", "QUInt8")]


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
@pytest.mark.parametrize("types", TYPE_PAIRS, ids=lambda t: f"{t[0]}-{t[1]}")
@pytest.mark.parametrize("net_kind", ["mlp", "conv"])
def test_quantize_static_qoperator_exports(tmp_path, net_kind, types, per_channel):
    from onnxruntime.quantization import QuantType

    rng = np.random.default_rng(21)
    model, input_shape = (float_mlp if net_kind == "mlp" else float_convnet)(rng)
    q = quantize(tmp_path, net_kind, model, input_shape, QuantType[types[0]], QuantType[types[1]],
                 per_channel)
    ops = {(n.domain, n.op_type) for n in q.graph.node}
    assert ((MS, "QLinearAdd") if net_kind == "mlp" else (MS, "QGemm")) in ops

    net, warned = _load_quietly(q)
    assert not warned
    # the imported module equals onnxruntime (batch-1 runs) on 64 random inputs
    x = np.random.default_rng(4).uniform(-1.3, 1.3, size=(64, *input_shape)).astype(F32)
    sess = _session(q)
    want = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        got = net(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.concatenate(S.run_reference(q, {"x": x[:1]})), want[:1])

    # bounds contain every output of an enumerated input-grid box
    inits = {t.name: nh.to_array(t) for t in q.graph.initializer}
    quant = next(n for n in q.graph.node if n.op_type == "QuantizeLinear")
    scale, zp = float(inits[quant.input[1]]), int(inits[quant.input[2]])
    info = np.iinfo(inits[quant.input[2]].dtype)
    lower, upper = random_grid_box(np.random.default_rng(8), scale, zp, info.min, info.max,
                                   input_shape, free=3)
    xs = reachable_inputs(grid_values(scale, zp, info.min, info.max), lower, upper, input_shape)
    with torch.no_grad():
        y = net(torch.tensor(xs))
    # a few alpha-CROWN iterations: soundness, not tightness, is checked here
    bm = qp.bounded(net, lower, bound_opts={"optimize_bound_args": {"iteration": 5}})
    for method in ("ibp", "crown", "alpha-crown"):
        lb, ub = qp.compute_bounds(bm, lower, upper, method)
        # 1e-4: the final dequantization's linear bound is float32 arithmetic (tests/grid.py)
        assert torch.all(lb[0] <= y.min(0).values + 1e-4), method
        assert torch.all(ub[0] >= y.max(0).values - 1e-4), method
