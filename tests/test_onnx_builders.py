"""Tests for qnn_plugin.onnx_builders: validity at several opsets, onnxruntime runs, and
independent numpy references (exact on the whole input grid for the fixed-point MLP)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import shape_inference

from qnn_plugin import onnx_builders as ob

OPSETS = (10, 13, 19, 21)


# --------------------------------------------------------------------------- helpers

def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _run(built: ob.BuiltModel, x: np.ndarray) -> np.ndarray:
    return _session(built.model).run(None, {"input": np.asarray(x, np.float32)})[0]


def _run_with_hidden(model: onnx.ModelProto, names, x):
    """Run ``model`` also returning the tensors ``names`` (typed by shape inference)."""
    inferred = shape_inference.infer_shapes(model)
    infos = {vi.name: vi for vi in inferred.graph.value_info}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        m.graph.output.append(infos[n])
    outs = _session(m).run(None, {"input": np.asarray(x, np.float32)})
    return outs[0], outs[1:]


def _outputs_of(model, op_type):
    return [n.output[0] for n in model.graph.node if n.op_type == op_type]


def _round_half_even(v):
    return np.round(v)  # numpy rounds half to even


# --------------------------------------------------------------------------- variants

# (builder name, random-builder options, minimum opset for these options)
VARIANTS = [
    ("fixed_point_mlp", {"rounding": "half_up"}, 10),
    ("fixed_point_mlp", {"rounding": "floor", "float_logits": True}, 10),
    ("fixed_point_mlp", {"rounding": "half_even"}, 11),
    ("qdq_mlp", {}, 10),
    ("qdq_mlp", {"per_axis": True}, 13),
    ("qdq_mlp", {"pow2_scales": False}, 10),
    ("qdq_mlp", {"quantize_bias": False}, 10),
    ("qdq_mlp", {"act_dtype": "int8", "input_dtype": "int8", "use_gemm": True,
                 "quantize_bias": True}, 10),
    ("qdq_mlp", {"per_axis": True, "quantize_bias": True, "output_scale": 2.0 ** -4}, 13),
    ("qdq_conv", {}, 10),
    ("qdq_conv", {"per_axis": True, "quantize_bias": False}, 13),
    ("qdq_conv", {"pow2_scales": False, "act_dtype": "int8"}, 10),
    ("qoperator_mlp", {}, 10),
    ("qoperator_mlp", {"act_dtype": "int8", "per_axis": True}, 10),
    ("qoperator_mlp", {"pow2_scales": False}, 10),
    ("qoperator_conv", {}, 10),
    ("qoperator_conv", {"act_dtype": "int8", "per_axis": True}, 10),
    ("qoperator_conv", {"pow2_scales": False}, 10),
    ("integer_mlp", {}, 10),
    ("integer_mlp", {"per_axis": True, "weight_dtype": "uint8"}, 10),
    ("integer_mlp", {"act_dtype": "int8", "pow2_scales": False}, 10),
    ("integer_conv", {}, 10),
    ("integer_conv", {"per_axis": True, "act_dtype": "int8", "weight_dtype": "uint8"}, 10),
    ("sign_mlp", {}, 10),
    ("sign_mlp", {"idiom": True}, 10),
    ("sign_mlp", {"idiom": True, "input_scale": 2.0 ** -8}, 10),
]

ENCODING = {"fixed_point_mlp": "fixed_point", "qdq_mlp": "qdq", "qdq_conv": "qdq",
            "qoperator_mlp": "qoperator", "qoperator_conv": "qoperator",
            "integer_mlp": "qoperator", "integer_conv": "qoperator", "sign_mlp": "sign"}


def _variant_id(v):
    name, opts, _ = v
    return name + ("-" + ",".join(f"{k}={w}" for k, w in opts.items()) if opts else "")


def _build(name, opts, opset, seed=0, **extra):
    rng = np.random.default_rng(seed)
    return getattr(ob, "random_" + name)(rng, opset=opset, **opts, **extra)


# --------------------------------------------------------------------------- validity + ORT

@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_builds_checks_and_runs(variant, opset):
    name, opts, min_opset = variant
    if opset < min_opset:
        with pytest.raises(ValueError, match="opset"):
            _build(name, opts, opset)
        return
    for seed in range(3):
        built = _build(name, opts, opset, seed)
        m = built.model
        onnx.checker.check_model(m, full_check=True)
        assert m.ir_version == 8
        assert [(o.domain, o.version) for o in m.opset_import] == [("", opset)]
        assert built.encoding == ENCODING[name] and built.info["builder"] == name
        (inp,), (out,) = m.graph.input, m.graph.output
        assert inp.name == "input" and out.name == "output"
        dims = inp.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert tuple(d.dim_value for d in dims[1:]) == built.input_shape
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert out.type.tensor_type.shape.dim[1].dim_value == built.output_dim
        if name == "sign_mlp" and "input_scale" not in opts:
            assert built.input_scale is None and not built.has_input_grid
        else:
            assert built.input_scale > 0 and built.input_qmin < built.input_qmax
        rng = np.random.default_rng(100 + seed)
        x = built.random_inputs(rng, 7)
        assert x.shape == (7,) + built.input_shape and x.dtype == np.float32
        y = _run(built, x)
        assert y.shape == (7, built.output_dim) and y.dtype == np.float32
        assert np.all(np.isfinite(y))


@pytest.mark.parametrize("variant", VARIANTS[::3], ids=_variant_id)
def test_fixed_batch_one(variant):
    name, opts, min_opset = variant
    built = _build(name, opts, max(13, min_opset), batch=1)
    dims = built.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1 and not dims[0].dim_param
    assert built.model.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 1
    x = built.random_inputs(np.random.default_rng(1), 1)
    assert _run(built, x).shape == (1, built.output_dim)


# hidden quantizer outputs, per builder (the input quantizer and the logits excluded)
def _hidden_tensors(built):
    m, name = built.model, built.info["builder"]
    if name == "fixed_point_mlp":
        return _outputs_of(m, "Clip")[1:]
    if name in ("qdq_mlp", "qdq_conv", "integer_mlp", "integer_conv"):
        qs = _outputs_of(m, "QuantizeLinear")[1:]
        return qs[:-1] if built.info.get("output_scale") is not None else qs
    if name in ("qoperator_mlp", "qoperator_conv"):
        return (_outputs_of(m, "QLinearConv") + _outputs_of(m, "QLinearMatMul"))[:-1]
    return _outputs_of(m, "Sign")[1::2] if built.info["idiom"] else _outputs_of(m, "Sign")


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_random_models_use_their_quantizers(variant):
    """Hidden quantizers of random models are neither dead nor saturated on random inputs."""
    name, opts, min_opset = variant
    for seed in range(4):
        built = _build(name, opts, max(13, min_opset), seed)
        names = _hidden_tensors(built)
        assert names
        x = built.random_inputs(np.random.default_rng(seed), 64)
        y, hidden = _run_with_hidden(built.model, names, x)
        assert len(np.unique(y.round(6))) > (1 if name == "sign_mlp" else 8)  # logits vary
        for h in hidden:
            vals = np.unique(h)
            if name == "sign_mlp":
                assert {-1.0, 1.0} <= set(vals.tolist())
                continue
            assert len(vals) >= 4, (names, vals)
            if name == "fixed_point_mlp":
                top = 2 ** built.info["act_bits"] - 1
            else:
                top = np.iinfo(h.dtype).max
            assert np.mean(h == top) < 0.35


# --------------------------------------------------------------------------- fixed point exact

def _ref_fixed_point(x, weights, biases, in_frac_bits, in_bits, w_frac_bits, act_bits,
                     act_frac_bits, rounding, float_logits=False):
    """Independent float64 evaluation of the fixed-point semantics (exact: small integers)."""
    rnd = {"floor": np.floor, "half_up": lambda v: np.floor(v + 0.5),
           "half_even": _round_half_even}[rounding]
    n = len(weights)
    wf = w_frac_bits if isinstance(w_frac_bits, (list, tuple)) else [w_frac_bits] * n
    af = act_frac_bits if isinstance(act_frac_bits, (list, tuple)) else [act_frac_bits] * (n - 1)
    q = np.clip(rnd(np.asarray(x, np.float64) * 2.0 ** in_frac_bits), 0, 2 ** in_bits - 1)
    frac = in_frac_bits
    for i, (w, b) in enumerate(zip(weights, biases)):
        a = q @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        if i == n - 1:
            return a * 2.0 ** -(frac + wf[i]) if float_logits else a
        q = np.clip(rnd(a * 2.0 ** -(frac + wf[i] - af[i])), 0, 2 ** act_bits - 1)
        frac = af[i]


TINY = dict(weights=[np.array([[3, -2, 1, 2], [1, 2, -3, 1], [-1, 1, 2, -2]]),
                     np.array([[2, -1, 1], [-2, 3, 0], [1, 1, -1], [0, -2, 3]])],
            biases=[np.array([1, -3, 2, 0]), np.array([0, 1, -1])],
            in_frac_bits=3, in_bits=3, w_frac_bits=1, act_bits=3, act_frac_bits=3)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("rounding", ob.ROUNDINGS)
@pytest.mark.parametrize("float_logits", [False, True])
def test_fixed_point_exact_on_whole_grid(rounding, opset, float_logits):
    if rounding == "half_even" and opset < 11:
        with pytest.raises(ValueError, match="opset"):
            ob.fixed_point_mlp(**TINY, rounding=rounding, opset=opset)
        return
    built = ob.fixed_point_mlp(**TINY, rounding=rounding, opset=opset,
                               float_logits=float_logits)
    assert built.input_scale == 2.0 ** -3 and built.input_zero_point == 0
    assert (built.input_qmin, built.input_qmax) == (0, 7)
    assert built.grid_size == 8 ** 3 and built.info["exact_float32"]
    x = np.concatenate(list(built.iter_grid(chunk=100)))
    assert x.shape == (512, 3) and len(np.unique(x, axis=0)) == 512
    expected = _ref_fixed_point(x, rounding=rounding, float_logits=float_logits, **TINY)
    got = _run(built, x)
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    # the hidden rescale (shift 1) must hit rounding ties, else the roundings are not tested
    a = x.astype(np.float64) * 8 @ TINY["weights"][0] + TINY["biases"][0]
    assert np.any(a % 2 == 1)
    # off-grid inputs: half-way points (input rounding ties) and out-of-range values
    rng = np.random.default_rng(0)
    k = rng.integers(-3, 11, size=(200, 3))
    off = ((k + rng.choice([0.0, 0.5, 0.25], size=k.shape)) / 8).astype(np.float32)
    np.testing.assert_array_equal(
        _run(built, off),
        _ref_fixed_point(off, rounding=rounding, float_logits=float_logits, **TINY)
        .astype(np.float32))


def test_fixed_point_roundings_differ():
    x = np.concatenate(list(ob.fixed_point_mlp(**TINY).iter_grid()))
    outs = [_run(ob.fixed_point_mlp(**TINY, rounding=r), x) for r in ob.ROUNDINGS]
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_fixed_point_graph_idiom():
    m = ob.fixed_point_mlp(**TINY, rounding="half_up", opset=13).model
    ops = [n.op_type for n in m.graph.node]
    assert ops == ["Mul", "Add", "Floor", "Clip", "MatMul", "Add", "Mul", "Add", "Floor", "Clip",
                   "MatMul", "Add"]
    ops10 = [n.op_type for n in ob.fixed_point_mlp(**TINY, rounding="floor",
                                                   opset=10).model.graph.node]
    assert "Round" not in ops10 and ops10.count("Floor") == 2
    clip10 = [n for n in ob.fixed_point_mlp(**TINY, opset=10).model.graph.node
              if n.op_type == "Clip"][0]
    assert {a.name for a in clip10.attribute} == {"min", "max"} and len(clip10.input) == 1
    assert "Round" in [n.op_type for n in ob.fixed_point_mlp(**TINY, rounding="half_even",
                                                            opset=11).model.graph.node]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1), rounding=st.sampled_from(ob.ROUNDINGS),
       opset=st.sampled_from((13, 21)), float_logits=st.booleans())
def test_random_fixed_point_matches_reference_on_grid(seed, rounding, opset, float_logits):
    rng = np.random.default_rng(seed)
    d_in = int(rng.integers(2, 4))
    in_bits = 3 if d_in == 3 else 4
    built = ob.random_fixed_point_mlp(rng, sizes=(d_in, int(rng.integers(2, 6)), 3),
                                      in_bits=in_bits, in_frac_bits=in_bits, act_bits=3,
                                      w_bits=4, w_frac_bits=3, rounding=rounding, opset=opset,
                                      float_logits=float_logits)
    info = built.info
    x = np.concatenate(list(built.iter_grid()))
    expected = _ref_fixed_point(x, info["weights"], info["biases"], in_bits, in_bits, 3, 3,
                                info["act_frac_bits"], rounding, float_logits)
    np.testing.assert_array_equal(_run(built, x), expected.astype(np.float32))


def test_fixed_point_mnist_size_model():
    """The AAAI 2021 benchmark shape: 784-64-32-10, 8-bit input, 6-bit weights/activations."""
    built = ob.random_fixed_point_mlp(np.random.default_rng(0), sizes=(784, 64, 32, 10))
    assert built.info["exact_float32"]
    x = built.random_inputs(np.random.default_rng(1), 7)
    info = built.info
    expected = _ref_fixed_point(x, info["weights"], info["biases"], 8, 8, 5, 6,
                                info["act_frac_bits"], "half_up")
    np.testing.assert_array_equal(_run(built, x), expected.astype(np.float32))


# --------------------------------------------------------------------------- other references

def _conv(x, w, stride=1, pad=0, pad_value=0.0):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    n, c, hh, ww = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (hh - kh) // stride + 1, (ww - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out


def _quant(v, s, z, dtype):
    info = np.iinfo(dtype)
    return np.clip(_round_half_even(v / s) + z, info.min, info.max)


def _codes(built, x):
    dt = np.uint8 if built.input_qmin == 0 else np.int8
    return _quant(x.astype(np.float64), built.input_scale, built.input_zero_point, dt), dt


def _ref_qdq(built, x):
    info = built.info
    q, dt = _codes(built, x)
    h = (q - built.input_zero_point) * built.input_scale
    act_dt = np.dtype(info["act_dtype"]).type
    z = info["act_zero_point"]
    layers = []
    if info["builder"] == "qdq_conv":
        for w, s, b, st_, p in zip(info["conv_weights"], info["conv_weight_scales"],
                                   info["conv_biases"], info["strides"], info["pads"]):
            layers.append(("conv", w * np.asarray(s, np.float64).reshape(-1, 1, 1, 1), b, st_, p))
        layers.append(("flatten",))
        for w, s, b in zip(info["dense_weights"], info["dense_weight_scales"],
                           info["dense_biases"]):
            layers.append(("dense", w * np.asarray(s, np.float64), b))
    else:
        for w, s, b in zip(info["weights"], info["weight_scales"], info["biases"]):
            layers.append(("dense", w * np.asarray(s, np.float64), b))
    n_param = sum(1 for layer in layers if layer[0] != "flatten")
    k = 0
    for layer in layers:
        if layer[0] == "flatten":
            h = h.reshape(len(h), -1)
            continue
        if layer[0] == "conv":
            pre = _conv(h, layer[1], layer[3], layer[4])
            pre = pre.astype(np.float32) + np.float32(layer[2]).reshape(-1, 1, 1)
        else:
            pre = (h @ layer[1]).astype(np.float32) + np.float32(layer[2])
        if k == n_param - 1:
            return pre
        s = info["act_scales"][k]
        h = (_quant(np.maximum(pre.astype(np.float64), 0), s, z, act_dt) - z) * s
        k += 1


def _ref_qoperator(built, x):
    info = built.info
    q, dt = _codes(built, x)
    s_prev, z_prev = built.input_scale, built.input_zero_point
    scales = info["act_scales"] + [info["output_scale"]]
    zps = [info["hidden_zero_point"]] * len(info["act_scales"]) + [info["output_zero_point"]]
    k = 0
    if info["builder"] == "qoperator_conv":
        for w, sw, b, st_, p in zip(info["conv_weights"], info["conv_weight_scales"],
                                    info["conv_biases"], info["strides"], info["pads"]):
            acc = _conv(q - z_prev, w, st_, p) + b.reshape(-1, 1, 1)
            mult = s_prev * np.asarray(sw, np.float64).reshape(-1, 1, 1) / scales[k]
            q = _quant(acc * mult, 1.0, zps[k], dt)
            s_prev, z_prev, k = scales[k], zps[k], k + 1
        q = q.reshape(len(q), -1)
        weights, wscales = info["dense_weights"], info["dense_weight_scales"]
    else:
        weights, wscales = info["weights"], info["weight_scales"]
    for w, sw in zip(weights, wscales):
        acc = (q - z_prev) @ w
        q = _quant(acc * (s_prev * np.asarray(sw, np.float64) / scales[k]), 1.0, zps[k], dt)
        s_prev, z_prev, k = scales[k], zps[k], k + 1
    return (q - z_prev) * s_prev


def _ref_integer(built, x):
    info = built.info
    q, dt = _codes(built, x)
    s_prev, z_prev = built.input_scale, built.input_zero_point
    zh, scales, k = info["hidden_zero_point"], info["act_scales"], 0

    def rescale(acc, s_w, b, shape):
        mult = (np.float32(s_prev) * np.asarray(s_w, np.float32)).reshape(shape)
        return (acc.astype(np.float32) * mult) + np.float32(b).reshape(shape)

    def requant(v):
        nonlocal s_prev, z_prev, k
        out = _quant(np.maximum(v, 0).astype(np.float64), scales[k], zh, dt)
        s_prev, z_prev, k = scales[k], zh, k + 1
        return out

    if info["builder"] == "integer_conv":
        for w, sw, b, st_, p in zip(info["conv_weights"], info["conv_weight_scales"],
                                    info["conv_biases"], info["strides"], info["pads"]):
            q = requant(rescale(_conv(q - z_prev, w, st_, p), sw, b, (-1, 1, 1)))
        q = q.reshape(len(q), -1)
        layers = list(zip(info["dense_weights"], info["dense_weight_scales"],
                          info["dense_biases"]))
    else:
        layers = list(zip(info["weights"], info["weight_scales"], info["biases"]))
    for i, (w, sw, b) in enumerate(layers):
        v = rescale((q - z_prev) @ w, sw, b, (-1,))
        if i == len(layers) - 1:
            return v
        q = requant(v)


def _ref_sign(built, x):
    info = built.info
    h = x.astype(np.float32)
    if built.has_input_grid:
        q, _ = _codes(built, x)
        h = ((q - built.input_zero_point) * built.input_scale).astype(np.float32)
    n = len(info["weights"])
    for i, (w, b) in enumerate(zip(info["weights"], info["biases"])):
        pre = (h @ w.astype(np.float32)) + b
        if i == n - 1:
            return pre
        h = np.where(pre >= 0, 1.0, -1.0) if info["idiom"] else np.sign(pre)
        h = h.astype(np.float32)


REFERENCES = {"qdq_mlp": _ref_qdq, "qdq_conv": _ref_qdq, "qoperator_mlp": _ref_qoperator,
              "qoperator_conv": _ref_qoperator, "integer_mlp": _ref_integer,
              "integer_conv": _ref_integer, "sign_mlp": _ref_sign}


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v[0] in REFERENCES
                                     and v[1].get("pow2_scales", True)], ids=_variant_id)
def test_power_of_two_models_match_reference(variant):
    """With power-of-two scales the documented semantics are exactly what ORT computes."""
    name, opts, min_opset = variant
    for seed in range(3):
        built = _build(name, opts, max(13, min_opset), seed)
        x = built.random_inputs(np.random.default_rng(seed), 64)
        got, want = _run(built, x), REFERENCES[name](built, x)
        if name == "sign_mlp" and not built.has_input_grid:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        elif name == "qdq_mlp" and built.info.get("output_scale") is not None:
            s = built.info["output_scale"]
            np.testing.assert_array_equal(got, (_quant(want.astype(np.float64), s, 0, np.int8)
                                                * s).astype(np.float32))
        else:
            np.testing.assert_array_equal(got, np.asarray(want, np.float32))


def _session_default(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v[1].get("pow2_scales", True)
                                     and v[1].get("quantize_bias", True)], ids=_variant_id)
def test_power_of_two_models_agree_with_default_ort_optimisations(variant):
    """Power-of-two scales and int32 biases: ORT's fused kernels (default options, as the
    VNN-COMP checker runs it) give exactly the operator-by-operator results."""
    name, opts, min_opset = variant
    for seed in range(2):
        built = _build(name, opts, max(13, min_opset), seed)
        x = built.random_inputs(np.random.default_rng(seed), 200)
        np.testing.assert_array_equal(_session_default(built.model).run(None, {"input": x})[0],
                                      _run(built, x))


@pytest.mark.parametrize("name", ["qdq_conv", "qoperator_conv", "integer_conv"])
def test_conv_padding_and_stride_match_reference(name):
    """pads/strides: ORT pads quantized convs with the zero point (real zeros)."""
    rng = np.random.default_rng(3)
    built = getattr(ob, "random_" + name)(rng, input_shape=(2, 5, 5), channels=[3],
                                          kernel_sizes=[3], n_out=3)
    info = built.info
    kwargs = dict(strides=2, pads=1, input_scale=built.input_scale,
                  input_zero_point=60 if name != "qdq_conv" else 0)
    if name == "qdq_conv":
        args = ((2, 5, 5), info["conv_weights"], info["conv_weight_scales"],
                [np.ones((27, 3), int)], [2.0 ** -6], info["act_scales"], info["conv_biases"])
    elif name == "qoperator_conv":
        args = ((2, 5, 5), info["conv_weights"], info["conv_weight_scales"],
                [np.ones((27, 3), int)], [2.0 ** -6], info["act_scales"], 2.0 ** -3,
                info["conv_biases"])
    else:
        args = ((2, 5, 5), info["conv_weights"], info["conv_weight_scales"],
                [np.ones((27, 3), int)], [2.0 ** -6], info["act_scales"], info["conv_biases"])
    padded = getattr(ob, name)(*args, **kwargs)
    assert padded.info["layer_shapes"][-1] == (3, 3, 3)
    x = padded.random_inputs(rng, 32)
    np.testing.assert_array_equal(_run(padded, x),
                                  np.asarray(REFERENCES[name](padded, x), np.float32))


def test_sign_zero_semantics():
    w = [np.array([[1, -1], [1, 1]]), np.array([[1, -1], [-1, 1]])]
    x = np.array([[0.5, -0.5], [1.0, 0.5], [0.25, -1.0]], np.float32)  # row 0: pre 0
    plain = _run(ob.sign_mlp(w), x)
    idiom = _run(ob.sign_mlp(w, idiom=True), x)
    # hidden pre-activations [0, -1]: Sign gives [0, -1], the idiom [+1, -1]
    np.testing.assert_array_equal(plain[0], [1.0, -1.0])
    np.testing.assert_array_equal(idiom[0], [2.0, -2.0])
    np.testing.assert_array_equal(plain[1:], idiom[1:])  # no zero pre-activation there
    ops = [n.op_type for n in ob.sign_mlp(w, idiom=True).model.graph.node]
    assert ops == ["MatMul", "Add", "Sign", "Add", "Sign", "MatMul", "Add"]


# --------------------------------------------------------------------------- metadata / grid

def test_input_grid_metadata_round_trips_through_the_model_quantizer():
    for built in (_build("qdq_mlp", {"pow2_scales": False}, 13),
                  _build("qoperator_mlp", {"act_dtype": "int8"}, 13),
                  _build("integer_mlp", {"act_dtype": "int8", "pow2_scales": False}, 13)):
        grid = ob.input_grid(built)
        assert grid.dtype == np.float32 and len(grid) == 256 and np.all(np.diff(grid) > 0)
        k = np.arange(built.input_qmin, built.input_qmax + 1)
        assert np.array_equal(grid, built.grid_values())
        # the model's QuantizeLinear (float32 x / scale, ties to even) maps grid[i] back to k[i]
        q = np.round(grid / np.float32(built.input_scale)).astype(np.int64) \
            + built.input_zero_point
        np.testing.assert_array_equal(np.clip(q, built.input_qmin, built.input_qmax), k)
        # and ORT agrees: run the input quantizer node alone
        first = built.model.graph.node[0]
        assert first.op_type == "QuantizeLinear" and first.input[0] == "input"
        _, (codes,) = _run_with_hidden(built.model, [first.output[0]],
                                       np.tile(grid[:, None], (1, built.input_shape[0])))
        np.testing.assert_array_equal(codes[:, 0].astype(np.int64), k)


def test_sign_without_input_quantizer_has_no_grid():
    built = _build("sign_mlp", {}, 13)
    assert built.input_scale is None and built.input_qmin is None
    with pytest.raises(ValueError):
        ob.input_grid(built)
    x = built.random_inputs(np.random.default_rng(0), 5)
    assert x.shape == (5,) + built.input_shape and np.all(np.abs(x) <= 1)


def test_iter_grid_order_and_limit():
    built = ob.fixed_point_mlp([np.ones((2, 2))], in_bits=2, in_frac_bits=2)
    pts = np.concatenate(list(built.iter_grid(chunk=3)))
    np.testing.assert_array_equal(pts[:5], [[0, 0], [0, .25], [0, .5], [0, .75], [.25, 0]])
    assert len(pts) == 16
    with pytest.raises(ValueError):
        next(ob.random_qdq_mlp(np.random.default_rng(0), sizes=(6, 4, 2)).iter_grid())


# --------------------------------------------------------------------------- errors

def test_invalid_arguments():
    w = [np.array([[1, 2], [3, 4]])]
    with pytest.raises(ValueError, match="integer"):
        ob.fixed_point_mlp([np.array([[0.5]])])
    with pytest.raises(ValueError, match="rounding"):
        ob.fixed_point_mlp(w, rounding="ceil")
    with pytest.raises(ValueError, match="range|lie in"):
        ob.qdq_mlp([np.array([[200]])], [1.0], [])
    with pytest.raises(ValueError, match="per-axis"):
        ob.qdq_mlp(w, [np.array([0.5, 0.25])], [], opset=10)
    with pytest.raises(ValueError, match="positive"):
        ob.qdq_mlp(w, [-1.0], [])
    with pytest.raises(ValueError, match="expected"):
        ob.qdq_mlp([np.ones((2, 3)), np.ones((4, 2))], [1.0, 1.0], [1.0])
    with pytest.raises(ValueError, match=r"\{-1, \+1\}"):
        ob.sign_mlp([np.array([[1, 0]])])
    with pytest.raises(ValueError, match="opset"):
        ob.qdq_mlp(w, [1.0], [], opset=9)
    with pytest.raises(ValueError, match="empty"):
        ob.qdq_conv((1, 2, 2), [np.ones((1, 1, 3, 3))], [1.0], [np.ones((1, 2))], [1.0], [1.0])
    with pytest.raises(ValueError):
        ob.qoperator_mlp(w, [1.0], [], 1.0, act_dtype="int16")
