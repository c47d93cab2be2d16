"""qnn_plugin.semantics against onnxruntime, bit for bit, and against exact rational arithmetic.

Every comparison builds a single-node ONNX model (ir_version 10) and runs it with onnxruntime's
CPU provider with graph optimisations disabled. Inputs are random *and* adversarial: values on and
next to rounding ties, values far outside the integer range, +-inf/NaN, extreme integers,
accumulators beyond 2**24, scale triples chosen so that other float32 operation orders would
round differently (each such test also checks that the alternatives do differ).

Opsets: 10, 13, 19, 21, every since-version of QuantizeLinear/DequantizeLinear/QLinearMatMul up
to the newest opset onnxruntime loads, that one, and (one case per test, skipped) the newest onnx
defines. Combinations the ONNX specification does not allow at an opset are not generated;
combinations onnxruntime does not implement carry a reason and are skipped *only if onnxruntime
indeed refuses them* (if it runs them, they are compared). Documented divergences of
onnxruntime from the specification have their own tests (``..._in_ort``, ``..._where_ort_...``).
"""
from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

from qnn_plugin import semantics as S

F32 = np.float32
IR_VERSION = 10
NEWEST = onnx.defs.onnx_opset_version()
SUB_BYTE = ("int4", "uint4", "int2", "uint2")
QTYPES = ("uint8", "int8", "uint16", "int16", "uint4", "int4", "uint2", "int2")


# ----------------------------------------------------------------------------------------------
# onnxruntime harness
# ----------------------------------------------------------------------------------------------
def _vi(name, elem, shape):
    return oh.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, initializers=(), opset=13):
    graph = oh.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], ir_version=IR_VERSION)


def _session(model):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


@lru_cache(maxsize=None)
def _ort_max_opset() -> int:
    """The newest opset at which onnxruntime runs QuantizeLinear and DequantizeLinear (1.32
    loads opset-28 models but has no opset-28 kernels for them: a Relu probe said 28)."""
    for v in range(NEWEST, 9, -1):
        nodes = [oh.make_node("QuantizeLinear", ["x", "s"], ["q"]),
                 oh.make_node("DequantizeLinear", ["q", "s"], ["y"])]
        m = _model(nodes, [_vi("x", TP.FLOAT, [1])], [_vi("y", TP.FLOAT, [1])],
                   [oh.make_tensor("s", TP.FLOAT, [], [1.0])], opset=v)
        try:
            _session(m)
            return v
        except Exception:  # onnxruntime refuses opsets (or their kernels) newer than it knows
            continue
    raise RuntimeError("onnxruntime runs QuantizeLinear at no opset >= 10")


ORT_MAX = _ort_max_opset()


def _since_versions(op: str) -> set:
    out = set()
    for v in range(10, NEWEST + 1):
        try:
            out.add(onnx.defs.get_schema(op, max_inclusive_version=v).since_version)
        except Exception:  # the op does not exist at v
            pass
    return out


# opsets compared with onnxruntime: 10, 13, 19, 21, every version of the quantization operators
# that onnxruntime loads, and the newest it loads
RUN_OPSETS = sorted(v for v in ({10, 13, 19, 21, ORT_MAX} | _since_versions("QuantizeLinear")
                                | _since_versions("DequantizeLinear")
                                | _since_versions("QLinearMatMul")) if v <= ORT_MAX)


def with_newest(params):
    """The given params (pytest.param, opset first), plus -- if onnxruntime cannot load the
    newest onnx opset -- the first of them re-stamped at that opset, which skips with the reason."""
    out, rep = [], None
    for p in params:
        out.append(p)
        if rep is None and NEWEST > ORT_MAX:
            rep = p
    if rep is not None:
        vals = (NEWEST,) + tuple(rep.values[1:])
        out.append(pytest.param(*vals, id=f"opset{NEWEST}-" + rep.id.split("-", 1)[1]))
    return out


def seed(*parts) -> int:
    """A stable seed (Python's str hash is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def opset_gap(opset: int) -> Optional[str]:
    if opset > ORT_MAX:
        return (f"opset {opset} (newest in onnx {onnx.__version__}) is newer than {ORT_MAX}, "
                f"the newest at which onnxruntime {ort.__version__} runs the quantization "
                "operators")
    return None


@dataclass
class Arg:
    name: str
    value: Optional[np.ndarray]
    qt: Optional[S.QType] = None  # the ONNX type when the dtype does not say it (4-/2-bit)
    const: bool = False


def ort_eval(op: str, opset: int, args: Sequence[Arg], attrs=None, out_elem=TP.FLOAT,
             out_qt: Optional[S.QType] = None) -> np.ndarray:
    """Run one ``op`` node. 4-/2-bit inputs are fed as int8/uint8 and Cast in the graph (or
    stored as typed initializers); a 4-/2-bit output is Cast to int8/uint8 (the Python binding
    cannot carry those types)."""
    nodes, inputs, inits, feeds, names = [], [], [], {}, []
    for a in args:
        if a.value is None:
            names.append("")
            continue
        names.append(a.name)
        v = np.asarray(a.value)
        sub = a.qt is not None and a.qt.name in SUB_BYTE
        if a.const:
            if sub:
                inits.append(oh.make_tensor(a.name, a.qt.onnx_type, list(v.shape),
                                            v.astype(np.int64).ravel().tolist()))
            else:
                inits.append(nh.from_array(v, a.name))
        elif sub:
            raw = a.name + "_storage"
            inputs.append(_vi(raw, oh.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)))
            nodes.append(oh.make_node("Cast", [raw], [a.name], to=a.qt.onnx_type))
            feeds[raw] = v
        else:
            inputs.append(_vi(a.name, oh.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)))
            feeds[a.name] = v
    while names and names[-1] == "":
        names.pop()
    nodes.append(oh.make_node(op, names, ["y"], **(attrs or {})))
    out = "y"
    if out_qt is not None:
        out_elem = out_qt.onnx_type
        if out_qt.name in SUB_BYTE:
            out_elem = TP.INT8 if out_qt.signed else TP.UINT8
            nodes.append(oh.make_node("Cast", ["y"], ["y_storage"], to=out_elem))
            out = "y_storage"
    model = _model(nodes, inputs, [_vi(out, out_elem, None)], inits, opset)
    return _session(model).run([out], feeds)[0]


def ort_or_skip(thunk: Callable[[], np.ndarray], gap: Optional[str]) -> np.ndarray:
    """Run ``thunk``; if onnxruntime refuses and ``gap`` says why that is expected, skip."""
    try:
        return thunk()
    except Exception as e:  # onnxruntime's pybind exception classes
        if gap is None or not type(e).__module__.startswith("onnxruntime"):
            raise
        first = str(e).strip().splitlines()[0][:150] if str(e).strip() else type(e).__name__
        pytest.skip(f"onnxruntime {ort.__version__} does not run this: {gap} [{first}]")


def assert_same(ours: np.ndarray, theirs: np.ndarray, dtype=None):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    if dtype is not None:
        assert ours.dtype == np.dtype(dtype), (ours.dtype, dtype)
    if ours.dtype.kind == "f":
        assert ours.dtype == theirs.dtype
        ib = {2: np.uint16, 4: np.uint32, 8: np.uint64}[ours.dtype.itemsize]
        bad = ours.view(ib) != theirs.view(ib)
    else:
        bad = ours.astype(np.int64) != theirs.astype(np.int64)
    if bad.any():
        i = np.argwhere(bad)[:5]
        pytest.fail(f"{int(bad.sum())}/{bad.size} differ; first at {i.tolist()}: "
                    f"ours {ours[tuple(i.T)]} onnxruntime {theirs[tuple(i.T)]}")


# ----------------------------------------------------------------------------------------------
# exact arithmetic
# ----------------------------------------------------------------------------------------------
def rne(q: Fraction) -> int:
    lo = math.floor(q)
    d = q - lo
    if d > Fraction(1, 2):
        return lo + 1
    if d < Fraction(1, 2):
        return lo
    return lo if lo % 2 == 0 else lo + 1


def exact_quantize(x: float, s: float, zp: int, qt: S.QType) -> int:
    if math.isnan(x):
        return qt.lo
    if math.isinf(x):
        return qt.hi if (x > 0) == (s > 0) else qt.lo
    return min(max(rne(Fraction(x) / Fraction(s)) + zp, qt.lo), qt.hi)


def nonpow2_scales(rng, shape, lo=0.004, hi=3.0) -> np.ndarray:
    s = np.exp(rng.uniform(np.log(lo), np.log(hi), size=shape)).astype(F32)
    m, _ = np.frexp(s)
    s = np.where(m == 0.5, s * F32(1.1), s).astype(F32)  # no powers of two
    return s


def nudge(x: np.ndarray, ulps: np.ndarray) -> np.ndarray:
    """Move each float32 of x by ulps[i] in {-3..3} representable steps."""
    x = x.copy()
    for j in range(3):
        x = np.where(ulps > j, np.nextafter(x, F32(np.inf)), x)
        x = np.where(ulps < -j, np.nextafter(x, F32(-np.inf)), x)
    return x.astype(F32)


# ----------------------------------------------------------------------------------------------
# QType
# ----------------------------------------------------------------------------------------------
def test_qtype_table():
    for name in QTYPES + ("int32", "int64", "uint32", "uint64"):
        qt = S.qtype(name)
        assert qt.name == name
        assert qt.onnx_type == getattr(TP, name.upper())
        assert S.qtype(qt.onnx_type) is qt and S.qtype(name.upper()) is qt
        assert S.qtype(f"tensor({name})") is qt
        assert np.iinfo(qt.dtype).min <= qt.lo < qt.hi <= np.iinfo(qt.dtype).max
        assert qt.hi - qt.lo + 1 == 2 ** qt.bits
    assert (S.qtype("int4").lo, S.qtype("int4").hi, S.qtype("int4").dtype) == (-8, 7, np.int8)
    assert (S.qtype("uint4").lo, S.qtype("uint4").hi, S.qtype("uint4").dtype) == (0, 15, np.uint8)
    assert S.qtype(np.int8).name == "int8" and S.qtype(np.dtype("uint16")).name == "uint16"
    import ml_dtypes

    assert S.qtype(ml_dtypes.int4).name == "int4" and S.qtype(ml_dtypes.uint4).name == "uint4"
    with pytest.raises(ValueError):
        S.qtype("float32")
    with pytest.raises(ValueError):
        S.qtype(TP.FLOAT)


# ----------------------------------------------------------------------------------------------
# QuantizeLinear / DequantizeLinear
# ----------------------------------------------------------------------------------------------
def _min_opset(tname: str) -> int:
    if tname in ("uint8", "int8", "int32"):
        return 10
    return 25 if tname in ("uint2", "int2") else 21


MODE_MIN = {"tensor": 10, "axis": 13, "block": 21}


def _qdq_params(types=QTYPES):
    for opset in RUN_OPSETS:
        for t in types:
            for mode in MODE_MIN:
                if opset >= max(_min_opset(t), MODE_MIN[mode]):
                    yield pytest.param(opset, t, mode, id=f"opset{opset}-{t}-{mode}")


@dataclass
class QCase:
    shape: tuple
    axis: int
    block: int
    scale: np.ndarray
    zp: np.ndarray
    s_full: np.ndarray
    zp_full: np.ndarray


def quant_case(mode: str, qt: S.QType, rng, n: int = 600) -> QCase:
    """Independent (test-side) broadcasting of scale / zero point per granularity."""
    if mode == "tensor":
        shape, axis, block, sshape = (3, n), 1, 0, ()
    elif mode == "axis":
        shape, axis, block, sshape = (2, 5, n // 2), -2, 0, (5,)  # negative axis
    else:
        shape, axis, block, sshape = (2, 10, n // 4), 1, 3, (2, 4, n // 4)  # ceil(10/3) = 4
    scale = nonpow2_scales(rng, sshape)
    zp = rng.integers(qt.lo, qt.hi + 1, size=sshape).astype(qt.dtype)
    if mode == "tensor":
        s_full, z_full = np.broadcast_to(scale, shape), np.broadcast_to(zp, shape)
    elif mode == "axis":
        s_full = np.broadcast_to(scale.reshape(1, 5, 1), shape)
        z_full = np.broadcast_to(zp.reshape(1, 5, 1), shape)
    else:
        s_full = np.repeat(scale, block, axis=1)[:, :10]
        z_full = np.repeat(zp, block, axis=1)[:, :10]
    return QCase(shape, axis, block, scale, zp, s_full, z_full)


def ort_quantizes_through_int32(c: QCase, qt: S.QType) -> bool:
    """onnxruntime's kernels for 2-bit outputs and for blocks along a non-last axis."""
    return qt.bits == 2 or bool(c.block and c.axis % len(c.shape) != len(c.shape) - 1)


def tie_inputs(c: QCase, qt: S.QType, rng) -> np.ndarray:
    """x on and next to (k + 1/2) * scale across the whole range, plus random, far out-of-range
    and special values."""
    z = c.zp_full.astype(np.int64)
    k = rng.integers(qt.lo - z - 3, qt.hi - z + 3)
    x = (k.astype(F32) + F32(0.5)) * c.s_full.astype(F32)
    x = nudge(x.astype(F32), rng.integers(-3, 4, size=c.shape))
    r = rng.random(c.shape)
    span = (qt.hi - qt.lo) * c.s_full
    x = np.where(r < 0.1, (rng.uniform(-1.5, 1.5, c.shape) * span).astype(F32), x)
    x = np.where((r >= 0.1) & (r < 0.13), (rng.uniform(-1e6, 1e6, c.shape) * span).astype(F32), x)
    flat = x.reshape(-1)
    specials = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 3e38, -3e38], F32)
    flat[: specials.size] = specials
    x = flat.reshape(c.shape).astype(F32)
    if ort_quantizes_through_int32(c, qt):
        # these onnxruntime kernels convert x/scale to int32 before saturating (undefined beyond
        # 2**31): see test_quantize_beyond_int32_in_ort
        with np.errstate(invalid="ignore", over="ignore"):
            wild = ~(np.abs(x / c.s_full) < 2.0 ** 30)
        x = np.where(wild, np.where(x < 0, F32(-1e9), F32(1e9)) * c.s_full, x).astype(F32)
    return x


@pytest.mark.parametrize("opset,tname,mode", with_newest(_qdq_params()))
def test_quantize_linear_matches_ort(opset, tname, mode):
    qt = S.qtype(tname)
    rng = np.random.default_rng(seed((opset, tname, mode)))
    c = quant_case(mode, qt, rng)
    x = tie_inputs(c, qt, rng)
    ours = S.quantize_linear(x, c.scale, c.zp, axis=c.axis, block_size=c.block, output_dtype=tname)
    attrs = {}
    if mode != "tensor":
        attrs["axis"] = c.axis
    if mode == "block":
        attrs["block_size"] = c.block
    theirs = ort_or_skip(lambda: ort_eval(
        "QuantizeLinear", opset,
        [Arg("x", x), Arg("s", c.scale, const=True), Arg("z", c.zp, qt, const=True)],
        attrs, out_qt=qt), opset_gap(opset))
    assert_same(ours, theirs, qt.dtype)
    assert ours.min() >= qt.lo and ours.max() <= qt.hi


def _nozp_params():
    for opset in RUN_OPSETS:
        for t in ("default", "int8", "uint16", "int4", "uint2"):
            if t == "default" or opset >= max(21, _min_opset(t)):
                yield pytest.param(opset, t, id=f"opset{opset}-{t}")


@pytest.mark.parametrize("opset,tname", with_newest(_nozp_params()))
def test_quantize_linear_without_zero_point(opset, tname):
    """No zero point: uint8 by default, else the output_dtype attribute (opset 21+)."""
    qt = S.qtype("uint8" if tname == "default" else tname)
    rng = np.random.default_rng(5)
    scale = F32(0.0371)
    k = rng.integers(qt.lo - 3, qt.hi + 3, size=4000)
    x = nudge(((k + F32(0.5)) * scale).astype(F32), rng.integers(-2, 3, size=k.size))
    if qt.bits > 2:  # see test_quantize_beyond_int32_in_ort
        x[:3] = [np.nan, -np.inf, np.inf]
    attrs = {} if tname == "default" else {"output_dtype": qt.onnx_type}
    ours = S.quantize_linear(x, scale, output_dtype=None if tname == "default" else tname)
    theirs = ort_or_skip(lambda: ort_eval("QuantizeLinear", opset,
                                          [Arg("x", x), Arg("s", scale, const=True)], attrs,
                                          out_qt=qt), opset_gap(opset))
    assert_same(ours, theirs, qt.dtype)


def test_quantize_beyond_int32_in_ort():
    """Documents an onnxruntime divergence this module does not copy: before onnxruntime 1.32,
    for blocks along a non-last axis and for 2-bit outputs, onnxruntime cast round(x / scale)
    to int32 before adding the zero point and saturating, so |x / scale| >= 2**31, +-inf and
    NaN gave INT32_MIN + zero point, saturated (x86-64); this module saturates as the
    specification says, and onnxruntime 1.32 does the same."""
    x = np.array([[1e30, 3e9, np.inf, -3e9, 100.0, 1e9]] * 2, F32).T.copy()  # (6, 2)
    scale, zp = np.ones((3, 2), F32), np.zeros((3, 2), np.uint8)
    ours = S.quantize_linear(x, scale, zp, axis=0, block_size=2)
    assert ours[:, 0].tolist() == [255, 255, 255, 0, 100, 255]
    theirs = ort_eval("QuantizeLinear", 21, [Arg("x", x), Arg("s", scale, const=True),
                                             Arg("z", zp, const=True)],
                      {"axis": 0, "block_size": 2}, out_qt=S.qtype("uint8"))
    fixed = tuple(int(p) for p in ort.__version__.split(".")[:2]) >= (1, 32)
    assert theirs[:, 0].tolist() == ([255, 255, 255, 0, 100, 255] if fixed
                                     else [0, 0, 0, 0, 100, 255])
    x = np.array([1e30, np.inf, -np.inf, np.nan, 1.0, -1e30], F32)
    int2 = S.qtype("int2")
    ours = S.quantize_linear(x, F32(1), np.int8(0), output_dtype="int2")
    assert ours.tolist() == [1, 1, -2, -2, 1, -2]
    theirs = ort_eval("QuantizeLinear", 25, [Arg("x", x), Arg("s", F32(1), const=True),
                                             Arg("z", np.int8(0), int2, const=True)], out_qt=int2)
    assert theirs.tolist() == ([1, 1, -2, -2, 1, -2] if fixed else [-2, -2, -2, -2, 1, -2])


def test_quantize_linear_divides_like_ort():
    """onnxruntime divides (fl(x / s)); multiplying by fl(1 / s) or exact arithmetic differ
    near ties with non-power-of-two scales: this test must be able to tell them apart."""
    rng = np.random.default_rng(1)
    qt = S.qtype("int16")
    n_rec = n_exact = 0
    for scale in map(F32, (0.1, 0.3, 0.7, 0.017, 1 / 3, 0.0123, 3.3)):
        k = np.arange(-3000, 3000)
        x = nudge(((k + F32(0.5)) * scale).astype(F32), rng.integers(-3, 4, size=k.size))
        ours = S.quantize_linear(x, scale, np.int16(0))
        theirs = ort_eval("QuantizeLinear", 21,
                          [Arg("x", x), Arg("s", scale, const=True),
                           Arg("z", np.int16(0), const=True)], out_qt=qt)
        assert_same(ours, theirs, np.int16)
        rec = np.rint(x * (F32(1) / scale)).astype(np.int64)
        n_rec += int((rec != theirs).sum())
        diff = np.nonzero(np.rint(x / scale) != np.rint(x.astype(np.float64) / float(scale)))[0]
        exact = np.array([exact_quantize(float(x[i]), float(scale), 0, qt) for i in diff])
        n_exact += int((exact != theirs[diff]).sum())
    assert n_rec > 0, "reciprocal multiplication should disagree with onnxruntime near ties"
    assert n_exact > 0, "exact arithmetic should disagree with float32 near ties"


def test_quantize_linear_int32_input_is_not_run_by_ort():
    x = np.arange(-20, 20, dtype=np.int32)
    ours = S.quantize_linear(x, F32(0.5), np.int8(0))
    assert_same(ours, np.clip(np.rint(x / 0.5), -128, 127).astype(np.int8), np.int8)
    theirs = ort_or_skip(lambda: ort_eval("QuantizeLinear", 13,
                                          [Arg("x", x), Arg("s", F32(0.5), const=True),
                                           Arg("z", np.int8(0), const=True)], out_qt=S.qtype("int8")),
                         "QuantizeLinear with int32 x (allowed by the schema)")
    assert_same(ours, theirs, np.int8)


def test_quantize_linear_float16_input_divides_in_float32():
    """onnxruntime widens float16 x and scale and divides in float32 (so does this module),
    although opset 23+ says the scale's type sets the precision."""
    s = np.float16(0.1)
    k = np.arange(-300, 300)
    base = ((k + 0.5) * np.float32(s)).astype(np.float16)
    x = np.concatenate([base, np.nextafter(base, np.float16(np.inf)),
                        np.nextafter(base, np.float16(-np.inf))])
    ours = S.quantize_linear(x, s, np.int16(0))
    theirs = ort_eval("QuantizeLinear", 21, [Arg("x", x), Arg("s", s, const=True),
                                             Arg("z", np.int16(0), const=True)],
                      out_qt=S.qtype("int16"))
    assert_same(ours, theirs, np.int16)
    f16_division = np.rint((x / s).astype(np.float16)).astype(np.int64)
    assert (f16_division != theirs).any()


def test_quantize_linear_errors():
    x = np.zeros((2, 3, 4), F32)
    with pytest.raises(ValueError):
        S.quantize_linear(x, np.ones(4, F32), np.zeros(4, np.int8), axis=1)
    with pytest.raises(ValueError):
        S.quantize_linear(x, np.ones((2, 2, 4), F32), axis=1, block_size=1)
    with pytest.raises(ValueError):
        S.quantize_linear(x, F32(1), np.int8(0), output_dtype="uint8")
    with pytest.raises(ValueError):
        S.quantize_linear(x, F32(1), np.int8(9), output_dtype="int4")  # zero point out of range
    with pytest.raises(ValueError):
        S.quantize_linear(x, F32(1), output_dtype="int32")
    y = S.quantize_linear(x, F32(1), np.int8(3), output_dtype="int4")
    assert y.dtype == np.int8 and (y == 3).all()
    y = S.quantize_linear(x, np.ones((2, 2, 4), F32), axis=1, block_size=2)  # ceil(3/2) = 2
    assert y.dtype == np.uint8 and y.shape == x.shape


def test_untyped_zero_points():
    x = np.array([-3.0, 0.26, 1.5, 300.0], F32)
    assert S.quantize_linear(x, F32(0.5), 3).dtype == np.uint8
    assert S.quantize_linear(x, F32(0.5), 3).tolist() == [0, 4, 6, 255]
    assert S.quantize_linear(x, F32(0.5), -2, output_dtype="int4").tolist() == [-8, -1, 1, 7]
    y = S.qlinear_matmul(np.array([[1, 2]], np.int8), F32(1), 0, np.array([[3], [4]], np.int8),
                         F32(1), 0, F32(2), 5)
    assert y.dtype == np.int8 and y.tolist() == [[11]]  # rne(11 / 2) + 5 = 6 + 5


@pytest.mark.parametrize("opset,tname,mode", with_newest(_qdq_params(QTYPES + ("int32",))))
def test_dequantize_linear_matches_ort(opset, tname, mode):
    qt = S.qtype(tname)
    rng = np.random.default_rng(seed((opset, tname, mode, "dq")))
    c = quant_case(mode, qt, rng)
    zp = c.zp
    if tname == "int32":
        zp = np.zeros_like(c.zp)  # the specification: int32 has no zero point
        x = rng.integers(qt.lo, qt.hi, size=c.shape, endpoint=True, dtype=np.int64)
        near = 2 ** 24 + rng.integers(-8, 9, size=c.shape)
        x = np.where(rng.random(c.shape) < 0.3, near * rng.choice([-1, 1], c.shape), x)
    else:
        x = rng.integers(qt.lo, qt.hi, size=c.shape, endpoint=True)
    x = x.astype(qt.dtype)
    x.reshape(-1)[:2] = [qt.lo, qt.hi]
    ours = S.dequantize_linear(x, c.scale, zp, axis=c.axis, block_size=c.block)
    attrs = {}
    if mode != "tensor":
        attrs["axis"] = c.axis
    if mode == "block":
        attrs["block_size"] = c.block
    theirs = ort_or_skip(lambda: ort_eval(
        "DequantizeLinear", opset,
        [Arg("x", x, qt), Arg("s", c.scale, const=True), Arg("z", zp, qt, const=True)], attrs),
        opset_gap(opset))
    assert_same(ours, theirs, np.float32)


def test_dequantize_linear_order_and_int32():
    """(x - zp) is exact, then one float32 product; ``x*s - zp*s`` would differ. int32 inputs
    beyond 2**24 round when converted to float32 (also with a non-zero zero point)."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=5000).astype(np.int8)
    s, zp = F32(0.0173), np.int8(-37)
    ours = S.dequantize_linear(x, s, zp)
    theirs = ort_eval("DequantizeLinear", 13, [Arg("x", x), Arg("s", s, const=True),
                                               Arg("z", zp, const=True)])
    assert_same(ours, theirs)
    assert (x.astype(F32) * s - F32(zp) * s != theirs).any()
    x32 = np.array([2 ** 24 + 1, 2 ** 24 + 3, 2 ** 25 + 3, -2 ** 24 - 1, 100, 2 ** 30 + 7], np.int32)
    for z in (0, 1, 3, -5):
        ours = S.dequantize_linear(x32, F32(1), np.int32(z))
        theirs = ort_eval("DequantizeLinear", 21, [Arg("x", x32), Arg("s", F32(1), const=True),
                                                   Arg("z", np.int32(z), const=True)])
        assert_same(ours, theirs)
    assert S.dequantize_linear(np.array([2 ** 24 + 1], np.int32), F32(1))[0] == 2 ** 24


def test_dequantize_linear_float16_scale_via_run_reference():
    x = np.arange(-128, 128).astype(np.int8)
    s = np.float16(0.1)
    node = oh.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])
    m = _model([node], [_vi("x", TP.INT8, [256])], [_vi("y", TP.FLOAT16, [256])],
               [nh.from_array(s, "s"), nh.from_array(np.int8(3), "z")], opset=21)
    ours = S.run_reference(m, {"x": x})[0]
    assert_same(ours, _session(m).run(None, {"x": x})[0], np.float16)


# ----------------------------------------------------------------------------------------------
# MatMulInteger / ConvInteger
# ----------------------------------------------------------------------------------------------
I8, U8 = np.int8, np.uint8


def rand_int(rng, dtype, shape):
    i = np.iinfo(dtype)
    v = rng.integers(i.min, i.max, size=shape, endpoint=True, dtype=dtype)
    if v.size >= 16:
        v.reshape(-1)[:4] = [i.min, i.max, i.min, i.max]
    return v


MMI_SHAPES = {"2d-K300": ((5, 300), (300, 3)), "batched": ((2, 4, 5, 7), (7, 3)),
              "broadcast": ((3, 1, 5, 7), (2, 7, 4)), "vector": ((7,), (7, 2))}


def _mmi_params():
    for opset in sorted({10, 13, 21, ORT_MAX}):
        for ta, tb in ((U8, U8), (U8, I8), (I8, U8), (I8, I8)):
            for zmode in ("none", "scalar", "bcol", "arow"):
                for shp in MMI_SHAPES:
                    if zmode == "arow" and (opset != 13 or shp == "vector"):
                        continue
                    if opset != 13 and shp not in ("2d-K300", "batched"):
                        continue
                    yield pytest.param(opset, ta, tb, zmode, shp,
                                       id=f"opset{opset}-{ta.__name__}-{tb.__name__}-{zmode}-{shp}")


@pytest.mark.parametrize("opset,ta,tb,zmode,shp", with_newest(_mmi_params()))
def test_matmul_integer_matches_ort(opset, ta, tb, zmode, shp):
    shapes = MMI_SHAPES[shp]
    rng = np.random.default_rng(seed((opset, ta.__name__, tb.__name__, zmode, shapes)))
    a, b = rand_int(rng, ta, shapes[0]), rand_int(rng, tb, shapes[1])
    za = zb = None
    if zmode != "none":
        za, zb = rand_int(rng, ta, ()), rand_int(rng, tb, ())
    if zmode == "bcol":  # [N], or [..., 1, N] for a batched B
        zb = rand_int(rng, tb, b.shape[:-2] + (1, b.shape[-1]) if b.ndim > 2 else (b.shape[-1],))
    if zmode == "arow":
        za = rand_int(rng, ta, (a.shape[-2],))
    ours = S.matmul_integer(a, b, za, zb)
    gap = opset_gap(opset)
    if zmode == "arow":
        gap = gap or "MatMulInteger with a per-row a_zero_point"
    theirs = ort_or_skip(lambda: ort_eval("MatMulInteger", opset,
                                          [Arg("a", a), Arg("b", b), Arg("za", za, const=True),
                                           Arg("zb", zb, const=True)], out_elem=TP.INT32), gap)
    assert_same(ours, theirs, np.int32)


def test_matmul_integer_overflow_is_reported():
    a = np.full((1, 40000), 255, np.uint8)
    b = np.full((40000, 1), 255, np.uint8)
    with pytest.raises(OverflowError):
        S.matmul_integer(a, b)
    assert S.matmul_integer(a[:, :30000], b[:30000])[0, 0] == 255 * 255 * 30000


CONV_CFGS = {
    "plain": dict(),
    "pads-strides": dict(pads=[1, 0, 2, 1], strides=[2, 1]),
    "group2-dil": dict(group=2, dilations=[2, 1], pads=[2, 1, 2, 1]),
    "depthwise": dict(group=4, pads=[1, 1, 1, 1]),
    "same-upper-s2": dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    "same-lower": dict(auto_pad="SAME_LOWER", strides=[1, 2]),
    "valid": dict(auto_pad="VALID", strides=[2, 2]),
    "1x1": dict(kernel=1),
    "1d": dict(nd=1, pads=[2, 1], strides=[2]),
    "3d": dict(nd=3, pads=[1, 0, 1, 0, 1, 1]),
}


def conv_case(rng, tx, tw, cfg_name, C=4):
    cfg = dict(CONV_CFGS[cfg_name])
    k, nd = cfg.pop("kernel", 3), cfg.pop("nd", 2)
    g = cfg.get("group", 1)
    M = 8 if g != 4 else 4
    sp = {1: (11,), 2: (7, 6), 3: (5, 4, 5)}[nd]
    x = rand_int(rng, tx, (2, C) + sp)
    w = rand_int(rng, tw, (M, C // g) + (k,) * nd)
    return x, w, cfg, M


def _ci_params():
    for opset in sorted({10, 13, 21, ORT_MAX}):
        for tx, tw in ((U8, U8), (U8, I8), (I8, U8), (I8, I8)):
            for cfg in CONV_CFGS:
                for zmode in ("none", "scalar", "perchannel"):
                    if opset != 13 and (cfg != "pads-strides" or zmode != "scalar"):
                        continue  # ConvInteger has one version: full matrix at opset 13
                    if zmode == "perchannel" and cfg != "plain":
                        continue
                    yield pytest.param(opset, tx, tw, cfg, zmode,
                                       id=f"opset{opset}-{tx.__name__}-{tw.__name__}-{cfg}-{zmode}")


@pytest.mark.parametrize("opset,tx,tw,cfg,zmode", with_newest(_ci_params()))
def test_conv_integer_matches_ort(opset, tx, tw, cfg, zmode):
    rng = np.random.default_rng(seed((opset, tx.__name__, tw.__name__, cfg, zmode)))
    x, w, attrs, M = conv_case(rng, tx, tw, cfg)
    zx = zw = None
    if zmode != "none":
        zx, zw = rand_int(rng, tx, ()), rand_int(rng, tw, ())
    if zmode == "perchannel":
        zw = rand_int(rng, tw, (M,))
    ours = S.conv_integer(x, w, zx, zw, **attrs)
    gap = opset_gap(opset) or ("ConvInteger with a per-channel w_zero_point"
                               if zmode == "perchannel" else None)
    theirs = ort_or_skip(lambda: ort_eval("ConvInteger", opset,
                                          [Arg("x", x), Arg("w", w, const=True),
                                           Arg("zx", zx, const=True), Arg("zw", zw, const=True)],
                                          attrs, out_elem=TP.INT32), gap)
    assert_same(ours, theirs, np.int32)


# ----------------------------------------------------------------------------------------------
# QLinearMatMul / QLinearConv
# ----------------------------------------------------------------------------------------------
QL_SUPPORTED = [(U8, U8, U8), (U8, I8, U8), (I8, I8, I8)]
QL_UNSUPPORTED = [(I8, U8, I8), (U8, I8, I8), (I8, I8, U8)]


def _tid(c):
    return "-".join(t.__name__ for t in c)


def _qlmm_params():
    for opset in RUN_OPSETS:
        for combo in QL_SUPPORTED:
            for mode in ("tensor", "bcol", "3d"):
                yield pytest.param(opset, combo, mode, id=f"opset{opset}-{_tid(combo)}-{mode}")
    for combo in QL_UNSUPPORTED:
        yield pytest.param(13, combo, "tensor", id=f"opset13-{_tid(combo)}-tensor")
    yield pytest.param(13, QL_SUPPORTED[1], "arow", id=f"opset13-{_tid(QL_SUPPORTED[1])}-arow")


@pytest.mark.parametrize("opset,combo,mode", with_newest(_qlmm_params()))
def test_qlinear_matmul_matches_ort(opset, combo, mode):
    ta, tb, ty = combo
    rng = np.random.default_rng(seed((opset, _tid(combo), mode)))
    a = rand_int(rng, ta, (4, 6, 40) if mode == "3d" else (6, 40))
    b = rand_int(rng, tb, (40, 5))
    sa, sb = nonpow2_scales(rng, (), 0.01, 0.1), nonpow2_scales(rng, (), 0.01, 0.1)
    za, zb = rand_int(rng, ta, ()), rand_int(rng, tb, ())
    if mode == "bcol":
        sb, zb = nonpow2_scales(rng, (5,), 0.01, 0.1), rand_int(rng, tb, (5,))
    if mode == "arow":
        sa, za = nonpow2_scales(rng, (6,), 0.01, 0.1), rand_int(rng, ta, (6,))
    A = a.astype(np.int64) - (za.reshape(-1, 1) if np.ndim(za) else za)
    real = (A @ (b.astype(np.int64) - zb)) * (sa.reshape(-1, 1) if np.ndim(sa) else sa) * sb
    sy, zy = output_quantizer(real, ty)
    ours = S.qlinear_matmul(a, sa, za, b, sb, zb, sy, zy)
    gap = opset_gap(opset)
    if combo in QL_UNSUPPORTED:
        gap = gap or f"QLinearMatMul for (a, b, y) = {_tid(combo)}"
    if mode == "arow":
        gap = gap or "QLinearMatMul with per-row a_scale / a_zero_point"
    theirs = ort_or_skip(lambda: ort_eval(
        "QLinearMatMul", opset,
        [Arg("a", a), Arg("sa", sa, const=True), Arg("za", za, const=True), Arg("b", b, const=True),
         Arg("sb", sb, const=True), Arg("zb", zb, const=True), Arg("sy", sy, const=True),
         Arg("zy", zy, const=True)], out_elem=oh.np_dtype_to_tensor_dtype(np.dtype(ty))), gap)
    assert_same(ours, theirs, ty)
    assert len(np.unique(ours)) > 10


def output_quantizer(real: np.ndarray, ty):
    """A non-power-of-two y_scale spreading ``real`` over ~240 levels (a few saturate) and a
    zero point centring it."""
    span = float(np.percentile(real, 99.5) - np.percentile(real, 0.5)) or 1.0
    sy = F32(max(span / 240, (abs(float(np.median(real))) + span / 2) / 120) * 1.0123)
    i = np.iinfo(ty)
    mid = (int(i.min) + int(i.max)) / 2 - float(np.median(real)) / float(sy)
    return sy, np.array(int(np.clip(round(mid), i.min, i.max)), ty)


def multiplier_alternatives(s1, s2, sy):
    """Other plausible float32 orders for the requantization multiplier."""
    return {
        "s1*(s2/sy)": F32(s1 * F32(s2 / sy)),
        "(s1/sy)*s2": F32(F32(s1 / sy) * s2),
        "(s1*s2)*(1/sy)": F32(F32(s1 * s2) * F32(F32(1) / sy)),
    }


def tie_accumulators(m: int) -> np.ndarray:
    """Odd multiples of m (on a tie when M = 1/(2m)) and their neighbours, realisable as
    a1 + 100 * a2 with a1 in [-50, 49], a2 in [-128, 127]."""
    kmax = min(12700 // m // 2, 120)
    odd = (2 * np.arange(-kmax, kmax) + 1) * m
    T = np.concatenate([odd, odd - 1, odd + 1])
    return T[(T >= -12850) & (T < 12750)]


def tuned_scale(s1, sy, m: int):
    """The second scale s2 whose multiplier fl(fl(s1 * s2) / sy) is nearest 1/(2m)."""
    target = 1.0 / (2 * m)
    c = F32(float(sy) * target / float(s1))
    cands = [c]
    up = down = c
    for _ in range(8):
        up, down = np.nextafter(up, F32(np.inf)), np.nextafter(down, F32(0))
        cands += [up, down]
    return min(cands, key=lambda v: abs(float(F32(F32(s1 * v) / sy)) - target))


def adversarial_requant(rng, n_cols: int):
    """Shared scales s1, sy and per column (or channel) a scale s2 and accumulators T with
    T * M on or next to half-integers: M ~ 1/(2m), m odd, puts every odd multiple of m on a tie;
    T = a1 + 100 * a2 is realised by operands [a1, a2] and weights [1, 100]."""
    s1, sy = nonpow2_scales(rng, (), 0.01, 0.2), nonpow2_scales(rng, (), 0.01, 0.2)
    cols = []
    for _ in range(n_cols):
        m = int(rng.integers(50, 150)) * 2 + 1
        cols.append((tuned_scale(s1, sy, m), tie_accumulators(m)))
    return s1, sy, cols


def split_acc(T):
    a1 = ((T + 50) % 100) - 50
    a2 = (T - a1) // 100
    assert (a1 + 100 * a2 == T).all()
    return a1, a2


def exact_requant(T, s1, s2, sy, zy, lo, hi):
    f = Fraction(float(s1)) * Fraction(float(s2)) / Fraction(float(sy))
    return np.array([min(max(rne(int(t) * f) + zy, lo), hi) for t in T])


@pytest.mark.parametrize("opset", sorted({10, 21, ORT_MAX}))
@pytest.mark.parametrize("combo", QL_SUPPORTED, ids=_tid)
@pytest.mark.parametrize("percol", [False, True], ids=["tensor", "percolumn"])
def test_qlinear_matmul_requantizes_like_ort(opset, combo, percol):
    """Multiplier fl(fl(a_scale*b_scale)/y_scale) applied to fl(acc) in float32, on inputs that
    separate this from other orders and from exact arithmetic."""
    ta, tb, ty = combo
    rng = np.random.default_rng(17 + percol)
    za = np.array(0 if ta is I8 else 128, ta)
    zb = np.array(0 if tb is I8 else 100, tb)
    zy = np.array(0 if ty is I8 else 128, ty)
    lo, hi = np.iinfo(ty).min, np.iinfo(ty).max
    n_alt = {k: 0 for k in multiplier_alternatives(F32(1), F32(1), F32(1))}
    n_exact = 0
    for _ in range(4):
        s1, sy, cols = adversarial_requant(rng, 3 if percol else 1)
        T = np.concatenate([t for _, t in cols])
        a1, a2 = split_acc(T)
        a = (np.stack([a1, a2], 1) + za.astype(np.int64)).astype(ta)
        b = (np.tile(np.array([[1], [100]]), (1, len(cols))) + zb.astype(np.int64)).astype(tb)
        sb = np.array([c[0] for c in cols], F32) if percol else cols[0][0]
        ours = S.qlinear_matmul(a, s1, za, b, sb, zb, sy, zy)
        theirs = ort_eval("QLinearMatMul", opset,
                          [Arg("a", a), Arg("sa", s1, const=True), Arg("za", za, const=True),
                           Arg("b", b, const=True), Arg("sb", sb, const=True),
                           Arg("zb", zb, const=True), Arg("sy", sy, const=True),
                           Arg("zy", zy, const=True)],
                          out_elem=oh.np_dtype_to_tensor_dtype(np.dtype(ty)))
        assert_same(ours, theirs, ty)
        for j, (sbj, _) in enumerate(cols):
            col = theirs[:, j].astype(np.int64)
            for name, M in multiplier_alternatives(s1, sbj, sy).items():
                alt = np.clip(np.rint(F32(T.astype(F32) * M)) + int(zy), lo, hi)
                n_alt[name] += int((alt != col).sum())
            n_exact += int((exact_requant(T[:300], s1, sbj, sy, int(zy), lo, hi) != col[:300]).sum())
    assert n_alt["s1*(s2/sy)"] > 0 and sum(n_alt.values()) > n_alt["s1*(s2/sy)"], n_alt
    assert n_exact > 0


def test_qlinear_matmul_large_accumulator_rounds_in_float32():
    """|acc| > 2**24: onnxruntime converts the int32 accumulator to float32 first."""
    K = 2049
    lasts = [1, 2, 3, -1, -3, 5, 0]
    a = np.full((len(lasts), K), -128, np.int8)
    a[:, -1] = lasts
    b = np.full((K, 1), -128, np.int8)
    b[-1, 0] = -1
    M = F32(201 * 2.0 ** -26)  # 2**25 * M = 100.5
    args = (a, F32(1), np.int8(0), b, M, np.int8(0), F32(1), np.int8(0))
    ours = S.qlinear_matmul(*args)
    theirs = ort_eval("QLinearMatMul", 13,
                      [Arg("a", a), Arg("sa", F32(1), const=True), Arg("za", np.int8(0), const=True),
                       Arg("b", b, const=True), Arg("sb", M, const=True),
                       Arg("zb", np.int8(0), const=True), Arg("sy", F32(1), const=True),
                       Arg("zy", np.int8(0), const=True)], out_elem=TP.INT8)
    assert_same(ours, theirs, np.int8)
    acc = a.astype(np.int64) @ b.astype(np.int64)
    exact = np.array([rne(Fraction(int(v)) * Fraction(float(M))) for v in acc.ravel()])
    assert (exact != ours.ravel()).any()  # acc = 2**25 + 1 rounds to 2**25 in float32


def _qlconv_params():
    for opset in RUN_OPSETS:
        for combo in QL_SUPPORTED:
            yield pytest.param(opset, combo, "pads-strides", "channel", True,
                               id=f"opset{opset}-{_tid(combo)}-pads-strides-channel-bias")
    for combo in QL_SUPPORTED:
        for cfg in CONV_CFGS:
            for wmode in ("tensor", "channel"):
                for bias in (False, True):
                    yield pytest.param(13, combo, cfg, wmode, bias,
                                       id=f"opset13-{_tid(combo)}-{cfg}-{wmode}-"
                                          f"{'bias' if bias else 'nobias'}")
    for combo in QL_UNSUPPORTED:
        yield pytest.param(13, combo, "plain", "tensor", False, id=f"opset13-{_tid(combo)}")


@pytest.mark.parametrize("opset,combo,cfg,wmode,bias", with_newest(_qlconv_params()))
def test_qlinear_conv_matches_ort(opset, combo, cfg, wmode, bias):
    tx, tw, ty = combo
    rng = np.random.default_rng(seed((opset, _tid(combo), cfg, wmode, bias)))
    x, w, attrs, M = conv_case(rng, tx, tw, cfg)
    sx, zx = nonpow2_scales(rng, (), 0.01, 0.1), rand_int(rng, tx, ())
    if wmode == "tensor":
        sw, zw = nonpow2_scales(rng, (), 0.01, 0.1), rand_int(rng, tw, ())
    else:
        sw, zw = nonpow2_scales(rng, (M,), 0.01, 0.1), rand_int(rng, tw, (M,))
    B = rng.integers(-20000, 20000, size=M).astype(np.int32) if bias else None
    per_channel = (1, M) + (1,) * (x.ndim - 2)
    acc = S.conv_integer(x, w, zx, zw, **attrs).astype(np.int64)
    acc = acc + (0 if B is None else B.reshape(per_channel))
    real = acc * sx * (sw.reshape(per_channel) if np.ndim(sw) else sw)
    sy, zy = output_quantizer(real, ty)
    ours = S.qlinear_conv(x, sx, zx, w, sw, zw, sy, zy, B, **attrs)
    gap = opset_gap(opset)
    if combo in QL_UNSUPPORTED:
        gap = gap or f"QLinearConv for (x, w, y) = {_tid(combo)}"
    theirs = ort_or_skip(lambda: ort_eval(
        "QLinearConv", opset,
        [Arg("x", x), Arg("sx", sx, const=True), Arg("zx", zx, const=True), Arg("w", w, const=True),
         Arg("sw", sw, const=True), Arg("zw", zw, const=True), Arg("sy", sy, const=True),
         Arg("zy", zy, const=True), Arg("B", B, const=True)], attrs,
        out_elem=oh.np_dtype_to_tensor_dtype(np.dtype(ty))), gap)
    assert_same(ours, theirs, ty)
    assert len(np.unique(ours)) > 5


@pytest.mark.parametrize("combo", QL_SUPPORTED, ids=_tid)
@pytest.mark.parametrize("wmode", ["tensor", "channel"])
@pytest.mark.parametrize("group", [1, 2], ids=["dense", "grouped"])
def test_qlinear_conv_requantizes_like_ort(combo, wmode, group):
    """1x1 convolution whose channels [a1, a2] meet weights [1, 100]: accumulators T on ties;
    multiplier fl(fl(x_scale * w_scale[c]) / y_scale) per output channel."""
    tx, tw, ty = combo
    rng = np.random.default_rng(23 + 2 * group + (wmode == "channel"))
    zx = np.array(0 if tx is I8 else 128, tx)
    zw = np.array(0 if tw is I8 else 100, tw)
    zy = np.array(0 if ty is I8 else 128, ty)
    lo, hi = np.iinfo(ty).min, np.iinfo(ty).max
    n_alt = n_exact = 0
    for _ in range(3):
        sx, sy, cols = adversarial_requant(rng, 3 if wmode == "channel" else 1)
        T = np.concatenate([t for _, t in cols])
        a1, a2 = split_acc(T)
        xs = np.stack([a1, a2], 0).reshape(1, 2, 1, T.size) + zx.astype(np.int64)
        x = np.concatenate([xs] * group, axis=1).astype(tx)  # 2 * group input channels
        n_out = len(cols) * group
        w = (np.tile(np.array([1, 100]).reshape(1, 2, 1, 1), (n_out, 1, 1, 1))
             + zw.astype(np.int64)).astype(tw)
        sw_c = np.array([c[0] for c in cols] * group, F32)
        sw = sw_c if wmode == "channel" else sw_c[0]
        ours = S.qlinear_conv(x, sx, zx, w, sw, zw, sy, zy, group=group)
        theirs = ort_eval("QLinearConv", 13,
                          [Arg("x", x), Arg("sx", sx, const=True), Arg("zx", zx, const=True),
                           Arg("w", w, const=True), Arg("sw", sw, const=True),
                           Arg("zw", zw, const=True), Arg("sy", sy, const=True),
                           Arg("zy", zy, const=True)], {"group": group},
                          out_elem=oh.np_dtype_to_tensor_dtype(np.dtype(ty)))
        assert_same(ours, theirs, ty)
        for c in range(n_out):
            got = theirs[0, c, 0].astype(np.int64)
            for M in multiplier_alternatives(sx, sw_c[c], sy).values():
                alt = np.clip(np.rint(F32(T.astype(F32) * M)) + int(zy), lo, hi)
                n_alt += int((alt != got).sum())
            ex = exact_requant(T[:200], sx, sw_c[c], sy, int(zy), lo, hi)
            n_exact += int((ex != got[:200]).sum())
    assert n_alt > 0 and n_exact > 0


def test_qlinear_conv_bias_joins_the_integer_accumulator():
    """The int32 bias is added before the float32 conversion: 2**25 + small rounds as a whole."""
    x = np.arange(-3, 5, dtype=np.int8).reshape(1, 1, 1, 8)
    w = np.ones((1, 1, 1, 1), np.int8)
    B = np.array([2 ** 25], np.int32)
    M = F32(201 * 2.0 ** -26)
    ours = S.qlinear_conv(x, F32(1), np.int8(0), w, M, np.int8(0), F32(1), np.int8(0), B)
    theirs = ort_eval("QLinearConv", 13,
                      [Arg("x", x), Arg("sx", F32(1), const=True), Arg("zx", np.int8(0), const=True),
                       Arg("w", w, const=True), Arg("sw", M, const=True),
                       Arg("zw", np.int8(0), const=True), Arg("sy", F32(1), const=True),
                       Arg("zy", np.int8(0), const=True), Arg("B", B, const=True)], out_elem=TP.INT8)
    assert_same(ours, theirs, np.int8)
    exact = [rne(Fraction(int(v) + 2 ** 25) * Fraction(float(M))) for v in range(-3, 5)]
    assert exact != ours.ravel().tolist()


# ----------------------------------------------------------------------------------------------
# Round / Floor / Ceil / Clip / Relu / Sign / Cast / ArgMax
# ----------------------------------------------------------------------------------------------
FLOAT_SPECIALS = [-2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 0.49999997, -0.49999997, 1e-40,
                  -1e-40, 1e30, -1e30, 8388607.5, -8388607.5, 8388609.0, np.inf, -np.inf, np.nan]


def elementwise_input(dtype, rng, n=3000):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        with np.errstate(over="ignore"):
            v = np.concatenate([np.array(FLOAT_SPECIALS), rng.standard_normal(n) * 100,
                                rng.integers(-300, 300, n) + 0.5]).astype(dt)
        return v
    return rand_int(rng, dt, (n,))


def spec_types(op, opset):
    s = onnx.defs.get_schema(op, max_inclusive_version=opset)
    allowed = [t for t in s.type_constraints if t.type_param_str in ("T", "T1")][0].allowed_type_strs
    return [a[len("tensor("):-1] for a in allowed]


TESTED_TYPES = {"float": np.float32, "double": np.float64, "float16": np.float16,
                "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
                "int32": np.int32, "int64": np.int64, "uint32": np.uint32, "uint64": np.uint64}
ELEMENTWISE_ORT_GAPS = {
    ("Relu", "int16"), ("Relu", "int64"), ("Clip", "int16"), ("Clip", "uint16"),
    ("ArgMax", "int16"), ("ArgMax", "uint16"), ("ArgMax", "uint32"), ("ArgMax", "uint64"),
}
ELEMENTWISE = {"Round": (S.round_half_even, (11, 22)), "Floor": (S.floor, (6, 13)),
               "Ceil": (S.ceil, (6, 13)), "Relu": (S.relu, (6, 13, 14)), "Sign": (S.sign, (9, 13))}


def _elementwise_params():
    for op, (_, versions) in ELEMENTWISE.items():
        for opset in sorted(set(versions) | {ORT_MAX}):
            for t in spec_types(op, opset):
                if t in TESTED_TYPES:
                    yield pytest.param(opset, op, t, id=f"opset{opset}-{op}-{t}")


@pytest.mark.parametrize("opset,op,tname", with_newest(_elementwise_params()))
def test_elementwise_matches_ort(opset, op, tname):
    fn = ELEMENTWISE[op][0]
    x = elementwise_input(TESTED_TYPES[tname], np.random.default_rng(2))
    if op == "Sign" and tname == "float16":
        x = x[~np.isnan(x)]  # onnxruntime's float16 Sign maps NaN to 0 (documented in S.sign)
    ours = fn(x)
    gap = opset_gap(opset)
    if (op, tname) in ELEMENTWISE_ORT_GAPS or (op, opset, tname) == ("Clip", 11, "double"):
        gap = gap or f"{op}({tname})"
    theirs = ort_or_skip(lambda: ort_eval(op, opset, [Arg("x", x)],
                                          out_elem=oh.np_dtype_to_tensor_dtype(x.dtype)), gap)
    assert_same(ours, theirs, x.dtype)


def test_round_floor_ceil_values():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -0.7, 0.7], F32)
    assert S.round_half_even(x).tolist() == [-2, -2, -0, 0, 2, 2, 4, -1, 1]
    assert S.floor(x).tolist() == [-3, -2, -1, 0, 1, 2, 3, -1, 0]
    assert S.ceil(x).tolist() == [-2, -1, -0, 1, 2, 3, 4, -0, 1]
    assert S.sign(np.array([-3.0, -0.0, 0.0, 2.0], F32)).tolist() == [-1, 0, 0, 1]
    assert S.relu(np.array([-1, 0, 3], np.int8)).tolist() == [0, 0, 3]


def _clip_params():
    for opset in sorted({6, 11, 12, 13, ORT_MAX}):
        for t in spec_types("Clip", opset):
            if t in TESTED_TYPES and (opset >= 11 or t == "float"):
                for bounds in ("lo<hi", "lo>hi", "lo-only", "hi-only", "none"):
                    if opset == 6 and bounds == "none":
                        continue
                    yield pytest.param(opset, t, bounds, id=f"opset{opset}-{t}-{bounds}")


@pytest.mark.parametrize("opset,tname,bounds", with_newest(_clip_params()))
def test_clip_matches_ort(opset, tname, bounds):
    dt = np.dtype(TESTED_TYPES[tname])
    rng = np.random.default_rng(4)
    x = elementwise_input(dt, rng)
    if dt.kind == "f":
        lo, hi = dt.type(-3.5), dt.type(20.25)
    else:
        i = np.iinfo(dt)
        lo, hi = dt.type(i.min // 3), dt.type(i.max // 2)
    if bounds == "lo>hi":
        lo, hi = hi, lo
    lo_ = None if bounds in ("hi-only", "none") else lo
    hi_ = None if bounds in ("lo-only", "none") else hi
    if (opset, tname) == (11, "float16") and bounds not in ("lo<hi", "lo>hi"):
        x = x[np.isfinite(x)]  # onnxruntime's Clip-11 float16 leaves +-inf for a missing bound
    if opset < 11:  # Clip-6 attributes default to -+FLT_MAX
        flt_max = float(np.finfo(F32).max)
        ours = S.clip(x, -flt_max if lo_ is None else lo_, flt_max if hi_ is None else hi_)
    else:
        ours = S.clip(x, lo_, hi_)
    if opset < 11:
        attrs = {k: float(v) for k, v in (("min", lo_), ("max", hi_)) if v is not None}
        args = [Arg("x", x)]
    else:
        attrs = {}
        args = [Arg("x", x), Arg("lo", None if lo_ is None else np.array(lo_, dt), const=True),
                Arg("hi", None if hi_ is None else np.array(hi_, dt), const=True)]
    gap = opset_gap(opset)
    if ("Clip", tname) in ELEMENTWISE_ORT_GAPS or (opset == 11 and tname == "double"):
        gap = gap or f"Clip-{opset}({tname})"
    if opset < 11 and bounds == "lo>hi":
        gap = gap or "Clip-6 with min > max (its kernel requires min <= max)"
    theirs = ort_or_skip(lambda: ort_eval("Clip", opset, args, attrs,
                                          out_elem=oh.np_dtype_to_tensor_dtype(dt)), gap)
    assert_same(ours, theirs, dt)


CAST_TARGETS = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


def _cast_params():
    for opset in sorted({6, 13, 19, 21, ORT_MAX}):
        for src in (np.float32, np.float64, np.float16):
            for to in CAST_TARGETS:
                if src is np.float32 or opset == 13:
                    yield pytest.param(opset, to, src, id=f"opset{opset}-{src.__name__}-{to}")


@pytest.mark.parametrize("opset,to,src", with_newest(_cast_params()))
def test_cast_float_to_int_in_range_matches_ort(opset, to, src):
    qt = S.qtype(to)
    rng = np.random.default_rng(6)
    lo, hi = max(qt.lo, -60000), min(qt.hi, 60000)
    v = np.concatenate([rng.uniform(lo - 0.99, hi + 0.99, 3000),
                        np.arange(lo, min(lo + 40, hi)) + 0.5, [lo, hi, -0.0, 0.0, 0.9, -0.9]])
    x = np.clip(v, lo - 0.99, hi + 0.99).astype(src)
    x = x[(np.trunc(x.astype(np.float64)) >= qt.lo) & (np.trunc(x.astype(np.float64)) <= qt.hi)]
    ours = S.cast(x, to)
    theirs = ort_or_skip(lambda: ort_eval("Cast", opset, [Arg("x", x)], {"to": qt.onnx_type},
                                          out_qt=qt), opset_gap(opset))
    assert_same(ours, theirs, qt.dtype)


@pytest.mark.parametrize("to", CAST_TARGETS + ("int4", "uint4"))
def test_cast_int_to_int_wraps_like_ort(to):
    qt = S.qtype(to)
    opset = 21 if to in SUB_BYTE else 13
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 2000), [-129, 128, 256, -1, 2 ** 31 - 1,
                                                                -2 ** 31, 16, -9, 8]]).astype(np.int32)
    ours = S.cast(x, to)
    theirs = ort_eval("Cast", opset, [Arg("x", x)], {"to": qt.onnx_type}, out_qt=qt)
    assert_same(ours, theirs, qt.dtype)


def test_cast_out_of_range_saturates_where_ort_wraps():
    x = np.array([300.7, -300.7, 1e10, -1e10, np.nan, np.inf, -np.inf, 255.9, 127.9, -128.9], F32)
    assert S.cast(x, "int8").tolist() == [127, -128, 127, -128, 0, 127, -128, 127, 127, -128]
    assert S.cast(x, "uint8").tolist() == [255, 0, 255, 0, 0, 255, 0, 255, 127, 0]
    assert S.cast(x, "int32").tolist()[:4] == [300, -300, 2 ** 31 - 1, -2 ** 31]
    assert S.cast(np.array([1e30, -1.0, 5.5]), "uint64").tolist() == [2 ** 64 - 1, 0, 5]
    assert S.cast(np.array([1e30, -1e30]), "int64").tolist() == [2 ** 63 - 1, -2 ** 63]
    assert S.cast(np.array([9.7, -9.7, 2.5, -2.5]), "int4").tolist() == [7, -8, 2, -2]
    # what onnxruntime does instead (documented in the module docstring)
    ort_int8 = ort_eval("Cast", 13, [Arg("x", x)], {"to": TP.INT8}, out_elem=TP.INT8)
    assert ort_int8[[0, 1, 2, 4, 7]].tolist() == [44, -44, 0, 0, -1]
    ort_int4 = ort_eval("Cast", 21, [Arg("x", np.array([2.5, -2.5, 2.7, 7.7], F32))],
                        {"to": TP.INT4}, out_qt=S.qtype("int4"))
    assert ort_int4.tolist() == [3, -3, 3, -8]  # rounds half away from zero, then wraps
    assert S.cast(np.array([2.5, -2.5, 2.7, 7.7], F32), "int4").tolist() == [2, -2, 2, 7]
    assert S.cast(np.array([1.5, 0.0], F32), "float64").dtype == np.float64
    assert S.cast(np.array([True, False]), "int8").tolist() == [1, 0]


def test_argmax_ties_go_to_the_smaller_index():
    y = np.array([[1, 3, 3, 0], [5, 5, 5, 5], [0, 1, 2, 2], [-1, -1, -2, -1]], F32)
    assert S.argmax(y).tolist() == [1, 0, 2, 0]
    assert S.argmax(y, axis=0).tolist() == [1, 1, 1, 1]
    assert S.argmax(y[[2, 0, 1]], axis=0).tolist() == [2, 2, 2, 2]
    assert S.argmax(y, keepdims=True).shape == (4, 1)
    assert S.argmax(np.array([[2, 2]], np.int8)).tolist() == [0]


def _argmax_params():
    for opset in sorted({11, 12, 13, ORT_MAX}):
        for t in ("float", "double", "float16", "int8", "uint8", "int32", "int64", "int16"):
            for axis in (-1, 0, 1):
                if (axis != -1 or t != "float") and opset != 13:
                    continue
                if t == "int16" and axis != -1:
                    continue
                yield pytest.param(opset, t, axis, id=f"opset{opset}-{t}-axis{axis}")


@pytest.mark.parametrize("opset,tname,axis", with_newest(_argmax_params()))
def test_argmax_matches_ort(opset, tname, axis):
    dt = np.dtype(TESTED_TYPES[tname])
    rng = np.random.default_rng(9)
    y = rng.integers(0, 4, size=(40, 6, 5)).astype(dt)  # many ties
    if dt.kind == "f":
        y[0, 0, :3] = np.nan
        y[1, :2, 0] = np.nan
        y[2, 3, :] = np.array([1, np.nan, 3, np.nan, 3])
    ours = S.argmax(y, axis=axis)
    gap = opset_gap(opset)
    if ("ArgMax", tname) in ELEMENTWISE_ORT_GAPS:
        gap = gap or f"ArgMax({tname})"
    theirs = ort_or_skip(lambda: ort_eval("ArgMax", opset, [Arg("data", y)],
                                          {"axis": axis, "keepdims": 0}, out_elem=TP.INT64), gap)
    assert_same(ours, theirs, np.int64)


# ----------------------------------------------------------------------------------------------
# exact arithmetic: power-of-two scales (hypothesis)
# ----------------------------------------------------------------------------------------------
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
qtypes = st.sampled_from(QTYPES)
HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYP
@given(xs=st.lists(finite32, min_size=1, max_size=20), e=st.integers(-30, 30), t=qtypes,
       data=st.data())
def test_quantize_power_of_two_scale_is_exact(xs, e, t, data):
    qt = S.qtype(t)
    zp = data.draw(st.integers(qt.lo, qt.hi))
    x = np.array(xs, F32)
    s = F32(2.0 ** e)
    ours = S.quantize_linear(x, s, np.array(zp, qt.dtype), output_dtype=t)
    assert ours.tolist() == [exact_quantize(float(v), float(s), zp, qt) for v in x]


@HYP
@given(xs=st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=20),
       s=st.floats(float(F32(1e-4)), 1e3, width=32), t=qtypes, data=st.data())
def test_quantize_any_scale_is_exact_away_from_ties(xs, s, t, data):
    """The module docstring's bound: float32 and exact agree unless |x/s - (k+1/2)| <= 2**-24 |x/s|."""
    qt = S.qtype(t)
    zp = data.draw(st.integers(qt.lo, qt.hi))
    x = np.array(xs, F32)
    ours = S.quantize_linear(x, F32(s), np.array(zp, qt.dtype), output_dtype=t)
    for v, o in zip(x, ours.tolist()):
        q = Fraction(float(v)) / Fraction(float(F32(s)))
        tie = Fraction(math.floor(q)) + Fraction(1, 2)
        if abs(q - tie) > abs(q) * Fraction(1, 2 ** 24):
            assert o == exact_quantize(float(v), float(F32(s)), zp, qt)


@HYP
@given(t=st.sampled_from(QTYPES + ("int32",)), e=st.integers(-60, 40), data=st.data())
def test_dequantize_power_of_two_scale_is_exact(t, e, data):
    qt = S.qtype(t)
    lo, hi = (qt.lo, qt.hi) if t != "int32" else (-2 ** 24, 2 ** 24)
    xs = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=20))
    zp = data.draw(st.integers(qt.lo, qt.hi)) if t != "int32" else 0
    ours = S.dequantize_linear(np.array(xs, qt.dtype), F32(2.0 ** e), np.array(zp, qt.dtype))
    assert [Fraction(float(v)) for v in ours] == [(Fraction(v) - zp) * Fraction(2) ** e for v in xs]


@HYP
@given(data=st.data(), k=st.integers(1, 8), ea=st.integers(-12, 0), eb=st.integers(-12, 0),
       ey=st.integers(-20, 4), signed=st.booleans())
def test_qlinear_matmul_power_of_two_scales_is_exact(data, k, ea, eb, ey, signed):
    dt, lo, hi = (np.int8, -128, 127) if signed else (np.uint8, 0, 255)
    ints = st.integers(lo, hi)
    a = np.array(data.draw(st.lists(ints, min_size=3 * k, max_size=3 * k)), dt).reshape(3, k)
    b = np.array(data.draw(st.lists(st.integers(-128, 127), min_size=2 * k, max_size=2 * k)),
                 np.int8).reshape(k, 2)
    za, zb, zy = data.draw(ints), data.draw(st.integers(-128, 127)), data.draw(ints)
    ours = S.qlinear_matmul(a, F32(2.0 ** ea), np.array(za, dt), b, F32(2.0 ** eb),
                            np.int8(zb), F32(2.0 ** ey), np.array(zy, dt))
    acc = (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb)
    f = Fraction(2) ** (ea + eb - ey)
    exact = [[min(max(rne(int(v) * f) + zy, lo), hi) for v in row] for row in acc]
    assert ours.tolist() == exact


@HYP
@given(xs=st.lists(st.integers(-128, 127), min_size=1, max_size=20), e=st.integers(-20, 20),
       zp=st.integers(-128, 127))
def test_dequantize_then_quantize_round_trips(xs, e, zp):
    x = np.array(xs, np.int8)
    s = F32(2.0 ** e)
    y = S.dequantize_linear(x, s, np.int8(zp))
    assert S.quantize_linear(y, s, np.int8(zp)).tolist() == xs


# ----------------------------------------------------------------------------------------------
# run_reference
# ----------------------------------------------------------------------------------------------
def _init(name, v, qt=None):
    if qt is not None and qt.name in SUB_BYTE:
        return oh.make_tensor(name, qt.onnx_type, list(np.shape(v)),
                              np.asarray(v).astype(np.int64).ravel().tolist())
    return nh.from_array(np.asarray(v), name)


def qoperator_model(rng, opset):
    """Q -> QLinearMatMul -> QLinearMatMul -> DequantizeLinear -> ArgMax (non-power-of-two)."""
    d, h, o = 12, 16, 5
    inits = [
        _init("sx", F32(0.0371)), _init("zx", np.uint8(128)),
        _init("w1", rand_int(rng, I8, (d, h))), _init("sw1", nonpow2_scales(rng, (h,), 0.01, 0.05)),
        _init("zw1", np.zeros(h, np.int8)), _init("s1", F32(0.113)), _init("z1", np.uint8(10)),
        _init("w2", rand_int(rng, I8, (h, o))), _init("sw2", F32(0.0231)), _init("zw2", np.int8(0)),
        _init("s2", F32(0.071)), _init("z2", np.uint8(128)),
    ]
    nodes = [
        oh.make_node("QuantizeLinear", ["x", "sx", "zx"], ["qx"]),
        oh.make_node("QLinearMatMul", ["qx", "sx", "zx", "w1", "sw1", "zw1", "s1", "z1"], ["q1"]),
        oh.make_node("QLinearMatMul", ["q1", "s1", "z1", "w2", "sw2", "zw2", "s2", "z2"], ["q2"]),
        oh.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["logits"]),
        oh.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    return _model(nodes, [_vi("x", TP.FLOAT, ["n", d])],
                  [_vi("logits", TP.FLOAT, ["n", o]), _vi("label", TP.INT64, ["n"])], inits, opset)


def fixed_point_model(rng, opset):
    """QDQ with power-of-two scales, int4 (int8 before opset 21) weights, conv, fixed-point
    rescale, sign."""
    int4 = S.qtype("int4" if opset >= 21 else "int8")
    w = rng.integers(-8, 8, size=(4, 1, 3, 3)).astype(int4.dtype)
    inits = [
        _init("sx", F32(2 ** -6)), _init("zx", np.uint8(0)),
        _init("wq", w, int4), _init("sw", np.full(4, 2 ** -3, F32)),
        _init("zw", np.zeros(4, np.int8), int4),
        _init("cw", rand_int(rng, I8, (3, 4, 3, 3))), _init("czx", np.uint8(5)),
        _init("half", F32(2 ** -5)), _init("lo", F32(-6)), _init("hi", F32(5)),
    ]
    nodes = [
        oh.make_node("QuantizeLinear", ["x", "sx", "zx"], ["qx"]),
        oh.make_node("DequantizeLinear", ["qx", "sx", "zx"], ["dx"]),
        oh.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["dw"], axis=0),
        oh.make_node("Conv", ["dx", "dw"], ["c1"], pads=[1, 1, 1, 1]),
        oh.make_node("Relu", ["c1"], ["r1"]),
        oh.make_node("QuantizeLinear", ["r1", "sx", "zx"], ["q1"]),
        oh.make_node("ConvInteger", ["q1", "cw", "czx"], ["acc"], strides=[2, 2]),
        oh.make_node("Cast", ["acc"], ["facc"], to=TP.FLOAT),
        oh.make_node("Mul", ["facc", "half"], ["m"]),
        oh.make_node("Floor", ["m"], ["fl"]),
        oh.make_node("Clip", ["fl", "lo", "hi"], ["cl"]),
        oh.make_node("Round", ["cl"], ["rd"]),
        oh.make_node("Sign", ["rd"], ["sg"]),
        oh.make_node("Cast", ["cl"], ["ci"], to=TP.INT8),
    ]
    return _model(nodes, [_vi("x", TP.FLOAT, ["n", 1, 6, 6])],
                  [_vi("sg", TP.FLOAT, None), _vi("ci", TP.INT8, None), _vi("cl", TP.FLOAT, None)],
                  inits, opset)


@pytest.mark.parametrize("opset", sorted({13, 21, ORT_MAX}))
def test_run_reference_qoperator_model_matches_ort(opset, tmp_path):
    rng = np.random.default_rng(31)
    m = qoperator_model(rng, opset)
    x = (rng.standard_normal((200, 12)) * 3).astype(F32)
    x[:50] = ((rng.integers(-128, 128, (50, 12)) + F32(0.5)) * F32(0.0371)).astype(F32)  # ties
    ours = S.run_reference(m, {"x": x})
    theirs = _session(m).run(None, {"x": x})
    assert len(ours) == 2
    for a, b in zip(ours, theirs):
        assert_same(a, b)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    for a, b in zip(S.run_reference(path, {"x": x}), theirs):
        assert_same(a, b)
    inter = S.run_reference(m, {"x": x}, intermediate=True)
    assert {"qx", "q1", "q2", "logits", "label"} <= set(inter)
    assert inter["q1"].dtype == np.uint8
    assert_same(inter["label"], theirs[1])


@pytest.mark.parametrize("opset", sorted({13, 21, ORT_MAX}))
def test_run_reference_fixed_point_model_matches_ort(opset):
    """int4 weights from opset 21, int8 before."""
    rng = np.random.default_rng(37)
    m = fixed_point_model(rng, opset)
    x = rng.uniform(-0.5, 4.5, size=(64, 1, 6, 6)).astype(F32)
    ours = S.run_reference(m, {"x": x})
    theirs = _session(m).run(None, {"x": x})
    for a, b in zip(ours, theirs):
        assert_same(a, b)
    assert len(np.unique(ours[1])) > 4


def test_run_reference_overrides_matter():
    """On adversarial requantization inputs run_reference agrees with onnxruntime where onnx's
    own reference QLinearMatMul (float64 product) does not."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(41)
    s1, sy, ((s2, T),) = adversarial_requant(rng, 1)
    a1, a2 = split_acc(T)
    a = np.stack([a1, a2], 1).astype(np.int8)
    inits = [_init("sa", s1), _init("za", np.int8(0)), _init("b", np.array([[1], [100]], np.int8)),
             _init("sb", s2), _init("zb", np.int8(0)), _init("sy", sy), _init("zy", np.int8(0))]
    node = oh.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"])
    m = _model([node], [_vi("a", TP.INT8, ["n", 2])], [_vi("y", TP.INT8, None)], inits, 13)
    theirs = _session(m).run(None, {"a": a})[0]
    assert_same(S.run_reference(m, {"a": a})[0], theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ReferenceEvaluator(m).run(None, {"a": a})[0]
    assert (plain != theirs).any()


def _single(op, opset, inputs, attrs, out_elem, inits=()):
    node = oh.make_node(op, [n for n, _ in inputs] + [i.name for i in inits], ["y"], **attrs)
    return _model([node], [_vi(n, oh.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
                           for n, v in inputs], [_vi("y", out_elem, None)], list(inits), opset)


def test_run_reference_operator_attributes_match_ort():
    """The overriding operators read their attributes and opset-dependent defaults right."""
    rng = np.random.default_rng(43)
    x = np.concatenate([rng.standard_normal(200) * 50, [np.inf, -np.inf, np.nan]]).astype(F32)
    y = rng.integers(0, 3, size=(20, 7)).astype(F32)
    models = [
        (_single("Clip", 6, [("x", x)], {"min": -3.0}, TP.FLOAT), {"x": x}),
        (_single("Clip", 13, [("x", x)], {}, TP.FLOAT), {"x": x}),
        (_single("ArgMax", 13, [("d", y)], {"axis": 0, "select_last_index": 1}, TP.INT64), {"d": y}),
        (_single("ArgMax", 13, [("d", y)], {"axis": -1}, TP.INT64), {"d": y}),
        (_single("Cast", 13, [("x", x[:200])], {"to": TP.INT16}, TP.INT16), {"x": x[:200]}),
        (_single("QuantizeLinear", 21, [("x", x)], {"output_dtype": TP.INT16}, TP.INT16,
                 [nh.from_array(F32(0.0173), "s")]), {"x": x}),
        (_single("QuantizeLinear", 13, [("x", x.reshape(-1, 1))], {"axis": -1}, TP.INT8,
                 [nh.from_array(np.array([0.3], F32), "s"),
                  nh.from_array(np.array([3], np.int8), "z")]),
         {"x": x.reshape(-1, 1)}),
        (_single("ConvInteger", 13, [("cx", rand_int(rng, U8, (1, 2, 6, 6)))],
                 {"auto_pad": "SAME_LOWER", "strides": [2, 1]}, TP.INT32,
                 [nh.from_array(rand_int(rng, I8, (3, 2, 2, 3)), "cw")]), None),
    ]
    for model, feeds in models:
        if feeds is None:
            feeds = {"cx": rand_int(rng, U8, (1, 2, 6, 6))}
        ours = S.run_reference(model, feeds)[0]
        theirs = _session(model).run(None, feeds)[0]
        assert_same(ours, theirs)
