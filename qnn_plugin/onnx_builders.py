"""Build small, valid ONNX QNNs in each standard quantization encoding (numpy + onnx only).

Used by the project's tests, benchmarks and examples. Every model built here has

* one float32 input ``"input"`` of shape ``[N, d]`` (MLPs) or ``[N, C, H, W]`` (conv nets), where
  ``N`` is the symbolic dimension ``"batch"`` (``batch=`` another name, or an int such as 1 to
  fix it);
* one float32 output ``"output"`` of shape ``[N, n_out]`` (the logits);
* ``ir_version`` 8 (onnxruntime 1.31 rejects the newer default of onnx 1.23) and the default
  ONNX domain at the opset given by ``opset=`` (default 13); each builder passes
  ``onnx.checker.check_model(full_check=True)`` before returning.

Encodings (``BuiltModel.encoding``), following docs/design.md's semantics contract:

``"fixed_point"``  :func:`fixed_point_mlp`: Mul by powers of two, Floor/Round, Clip.
``"qdq"``          :func:`qdq_mlp`, :func:`qdq_conv`: QuantizeLinear/DequantizeLinear pairs
                   around float MatMul/Gemm/Conv.
``"qoperator"``    :func:`qoperator_mlp`, :func:`qoperator_conv` (QLinearMatMul, QLinearConv)
                   and :func:`integer_mlp`, :func:`integer_conv` (MatMulInteger, ConvInteger);
                   ``info["builder"]`` tells the two families apart.
``"sign"``         :func:`sign_mlp`: binarized activations.

Each builder returns a :class:`BuiltModel` that also describes the input quantizer, so callers
can enumerate or sample the (finite) input grid. ``random_<builder>(rng, ...)`` builds a random
small model of the same family whose hidden quantizers are calibrated on random grid inputs
(biases put each unit's threshold inside its pre-activation range, scales make the activations
span many levels without saturating on most inputs).

Weights are given as numpy arrays. "Integer" weights are integer-valued arrays of any dtype
(checked, and range-checked against the storage type). Dense weights have shape
``(d_in, d_out)`` (the graph computes ``h @ W``); conv weights ``(C_out, C_in, kH, kW)``.

Where float32 evaluation is exact: every builder's graph is evaluated by onnxruntime in float32
(integer-typed ops in integers). Fixed-point models are exact while every accumulator stays
below 2**24 in magnitude (``info["exact_float32"]`` records a worst-case check). QDQ/QOperator
models with power-of-two scales are exact under the same condition; with arbitrary scales the
products ``x * scale`` and requantization multipliers are rounded to float32, so "the" result
is onnxruntime's float32 one, and (per docs/dependencies.md) ORT's default graph optimisations
can differ from operator-by-operator evaluation; run ORT with ``ORT_DISABLE_ALL`` to compare.
Measured with onnxruntime 1.31: with power-of-two scales (and, for QDQ, the default int32
biases) every builder's model gives identical outputs with default optimisations and with
``ORT_DISABLE_ALL``; QDQ models with arbitrary scales or float biases do not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "BuiltModel", "input_grid", "IR_VERSION", "DEFAULT_OPSET", "ENCODINGS",
    "fixed_point_mlp", "qdq_mlp", "qdq_conv", "qoperator_mlp", "qoperator_conv",
    "integer_mlp", "integer_conv", "sign_mlp",
    "random_fixed_point_mlp", "random_qdq_mlp", "random_qdq_conv", "random_qoperator_mlp",
    "random_qoperator_conv", "random_integer_mlp", "random_integer_conv", "random_sign_mlp",
    "MIN_OPSET", "ROUNDINGS",
]

IR_VERSION = 8
DEFAULT_OPSET = 13
ENCODINGS = ("fixed_point", "qdq", "qoperator", "sign")
ROUNDINGS = ("half_up", "floor", "half_even")

# smallest opset at which each builder's operators exist (Round needs 11: fixed-point
# half_even; per-axis QuantizeLinear/DequantizeLinear need 13)
MIN_OPSET = {
    "fixed_point_mlp": 10, "qdq_mlp": 10, "qdq_conv": 10, "qoperator_mlp": 10,
    "qoperator_conv": 10, "integer_mlp": 10, "integer_conv": 10, "sign_mlp": 9,
}

Batch = Union[str, int]
ScaleLike = Union[float, np.ndarray, Sequence[float]]

_QTYPES = {  # name -> (numpy dtype, ONNX elem type, qmin, qmax)
    "uint8": (np.uint8, TensorProto.UINT8, 0, 255),
    "int8": (np.int8, TensorProto.INT8, -128, 127),
}
_F32 = np.float32
_EXACT_LIMIT = 2 ** 24


# --------------------------------------------------------------------------- result type

@dataclass(frozen=True)
class BuiltModel:
    """A built model plus the description of its input quantizer.

    The input grid is ``{(k - input_zero_point) * input_scale : input_qmin <= k <= input_qmax}``
    independently for every coordinate (the values, computed in float64 then rounded to
    float32, are exactly what the model's input quantizer maps back to code ``k``).
    ``input_scale is None`` means the model has no input quantizer (float input; then
    ``input_zero_point``/``input_qmin``/``input_qmax`` are None too).
    ``input_shape`` excludes the batch dimension. ``info`` holds builder-specific details
    (``"builder"``, ``"opset"``, the parameters used, ...).
    """

    model: onnx.ModelProto
    encoding: str
    input_shape: Tuple[int, ...]
    input_scale: Optional[float]
    input_zero_point: Optional[int]
    input_qmin: Optional[int]
    input_qmax: Optional[int]
    output_dim: int = 0
    info: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def has_input_grid(self) -> bool:
        return self.input_scale is not None

    @property
    def grid_size(self) -> int:
        """Number of points of the full input grid (levels ** input dimension)."""
        if not self.has_input_grid:
            raise ValueError("model has no input quantizer (float input): no input grid")
        return (self.input_qmax - self.input_qmin + 1) ** int(np.prod(self.input_shape))

    def grid_values(self) -> np.ndarray:
        """The per-coordinate grid values, ascending, float32."""
        return input_grid(self)

    def codes_to_inputs(self, codes: np.ndarray) -> np.ndarray:
        """Integer codes k (any shape) -> float32 grid values (k - zp) * scale."""
        if not self.has_input_grid:
            raise ValueError("model has no input quantizer (float input): no input grid")
        codes = np.asarray(codes)
        if codes.size and (codes.min() < self.input_qmin or codes.max() > self.input_qmax):
            raise ValueError("codes outside [input_qmin, input_qmax]")
        return ((codes.astype(np.float64) - self.input_zero_point) * self.input_scale).astype(_F32)

    def random_inputs(self, rng: np.random.Generator, n: int, low: float = -1.0,
                      high: float = 1.0) -> np.ndarray:
        """``n`` random inputs of shape (n, *input_shape), float32: uniform grid points, or
        uniform floats in [low, high) for a model without an input quantizer."""
        shape = (n,) + tuple(self.input_shape)
        if not self.has_input_grid:
            return rng.uniform(low, high, size=shape).astype(_F32)
        return self.codes_to_inputs(rng.integers(self.input_qmin, self.input_qmax + 1, size=shape))

    def iter_grid(self, chunk: int = 4096, max_points: int = 1_000_000) -> Iterator[np.ndarray]:
        """Enumerate the whole input grid in batches of at most ``chunk`` points (C order,
        last coordinate fastest); refuses grids larger than ``max_points``."""
        total = self.grid_size
        if total > max_points:
            raise ValueError(f"input grid has {total} points > max_points={max_points}")
        vals = self.grid_values()
        dim = int(np.prod(self.input_shape))
        idx = np.arange(total, dtype=np.int64)
        levels = len(vals)
        for start in range(0, total, chunk):
            block = idx[start:start + chunk]
            digits = np.empty((len(block), dim), dtype=np.int64)
            rest = block.copy()
            for j in range(dim - 1, -1, -1):
                digits[:, j] = rest % levels
                rest //= levels
            yield vals[digits].reshape((len(block),) + tuple(self.input_shape))


def input_grid(built: BuiltModel) -> np.ndarray:
    """Per-coordinate input grid values ``(k - zp) * scale`` for ``qmin <= k <= qmax``
    (ascending, float32). Raises ValueError for a model without an input quantizer."""
    if not built.has_input_grid:
        raise ValueError("model has no input quantizer (float input): no input grid")
    return built.codes_to_inputs(np.arange(built.input_qmin, built.input_qmax + 1))


# --------------------------------------------------------------------------- graph helper

class _Graph:
    """Accumulates nodes and initializers; knows the opset so it emits the right op forms."""

    def __init__(self, opset: int, batch: Batch, builder: str):
        max_opset = onnx.defs.onnx_opset_version()
        opset = int(opset)
        if opset < MIN_OPSET[builder] or opset > max_opset:
            raise ValueError(f"{builder}: opset {opset} unsupported; need "
                             f"{MIN_OPSET[builder]} <= opset <= {max_opset}")
        if isinstance(batch, (bool, np.bool_)) or not isinstance(batch, (str, int, np.integer)):
            raise TypeError(f"batch must be a dimension name or a positive int, got {batch!r}")
        if isinstance(batch, (int, np.integer)) and batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.opset, self.batch, self.builder = opset, batch, builder
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self._count = 0

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, dtype, hint: str = "c") -> str:
        name = self._fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: Optional[str] = None, **attrs) -> str:
        out = self._fresh(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out],
                                           name=f"{op_type}_{len(self.nodes)}", **attrs))
        return out

    def clip(self, x: str, lo: float, hi: float) -> str:
        if self.opset < 11:  # Clip-6: bounds are attributes
            return self.op("Clip", [x], min=float(lo), max=float(hi))
        return self.op("Clip", [x, self.const(lo, _F32, "clip_lo"),
                                self.const(hi, _F32, "clip_hi")])

    def _qparams(self, scale: np.ndarray, zero_point, np_dtype, what: str):
        scale = np.asarray(scale, dtype=_F32)
        zp = np.broadcast_to(np.asarray(zero_point), scale.shape).astype(np_dtype)
        attrs = {}
        if scale.ndim == 1:
            if self.opset < 13:
                raise ValueError(f"{self.builder}: per-axis {what} needs opset >= 13, "
                                 f"got {self.opset}")
        elif scale.ndim != 0:
            raise ValueError(f"{what} scale must be a scalar or 1-D, got shape {scale.shape}")
        return scale, zp, attrs

    def quantize(self, x: str, scale, zero_point, qtype: str, axis: Optional[int] = None) -> str:
        np_dtype = _QTYPES[qtype][0]
        scale, zp, attrs = self._qparams(scale, zero_point, np_dtype, "QuantizeLinear")
        if scale.ndim == 1:
            attrs["axis"] = int(axis)
        return self.op("QuantizeLinear", [x, self.const(scale, _F32, "q_scale"),
                                          self.const(zp, np_dtype, "q_zp")], "q", **attrs)

    def dequantize(self, q: str, scale, zero_point, np_dtype, axis: Optional[int] = None) -> str:
        scale, zp, attrs = self._qparams(scale, zero_point, np_dtype, "DequantizeLinear")
        if scale.ndim == 1:
            attrs["axis"] = int(axis)
        return self.op("DequantizeLinear", [q, self.const(scale, _F32, "dq_scale"),
                                            self.const(zp, np_dtype, "dq_zp")], "dq", **attrs)

    def finish(self, out: str, input_dims: Sequence[int], output_dim: int,
               doc: str = "") -> onnx.ModelProto:
        for node in self.nodes:
            for i, name in enumerate(node.output):
                if name == out:
                    node.output[i] = "output"
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                            [self.batch] + [int(d) for d in input_dims])
        outp = helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                             [self.batch, int(output_dim)])
        graph = helper.make_graph(self.nodes, self.builder, [inp], [outp], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="qnn_plugin.onnx_builders", doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


# --------------------------------------------------------------------------- validation

def _int_array(a, name: str, lo: Optional[int] = None, hi: Optional[int] = None) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array")
    f = arr.astype(np.float64)
    if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
        raise ValueError(f"{name} must be integer-valued")
    ints = np.round(f).astype(np.int64)
    if lo is not None and ints.size and (ints.min() < lo or ints.max() > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got [{ints.min()}, {ints.max()}]")
    return ints


def _float_array(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr.astype(_F32)


def _scale(s, name: str, length: Optional[int] = None) -> np.ndarray:
    """A positive finite float32 scale: scalar, or 1-D of ``length`` (per-axis)."""
    arr = np.asarray(s, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D")
    if arr.ndim == 1:
        if length is not None and arr.shape[0] != length:
            raise ValueError(f"{name} has {arr.shape[0]} entries, expected {length}")
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty")
    f32 = arr.astype(_F32)
    if not np.all(np.isfinite(f32)) or not np.all(f32 > 0):
        raise ValueError(f"{name} must be positive and finite (in float32), got {arr}")
    return f32


def _qtype(name: str, what: str) -> Tuple[Any, int, int, int]:
    if name not in _QTYPES:
        raise ValueError(f"{what} must be one of {sorted(_QTYPES)}, got {name!r}")
    return _QTYPES[name]


def _zero_point(zp, qtype: str, what: str, default: str = "bottom") -> int:
    _, _, qmin, qmax = _QTYPES[qtype]
    if zp is None:
        return qmin if default == "bottom" else (0 if qtype == "int8" else 128)
    z = int(_int_array(zp, what))
    if not qmin <= z <= qmax:
        raise ValueError(f"{what}={z} outside the {qtype} range [{qmin}, {qmax}]")
    return z


def _per_layer(value, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries, expected {n}")
        return list(value)
    return [value] * n


def _check_chain(weights: Sequence[np.ndarray], first_dim: Optional[int] = None) -> List[int]:
    """Dense (d_in, d_out) chain: returns the widths [d0, d1, ..., dL]."""
    if len(weights) < 1:
        raise ValueError("need at least one layer")
    dims = [int(weights[0].shape[0])] if first_dim is None else [int(first_dim)]
    for i, w in enumerate(weights):
        if w.ndim != 2:
            raise ValueError(f"weights[{i}] must be 2-D (d_in, d_out), got shape {w.shape}")
        if w.shape[0] != dims[-1]:
            raise ValueError(f"weights[{i}] has {w.shape[0]} inputs, expected {dims[-1]}")
        dims.append(int(w.shape[1]))
    return dims


def _biases(biases, dims: Sequence[int], name: str, integer: bool = False,
            lo: Optional[int] = None, hi: Optional[int] = None) -> list:
    n = len(dims) - 1
    if biases is None:
        return [np.zeros(dims[i + 1], dtype=np.int64 if integer else _F32) for i in range(n)]
    if len(biases) != n:
        raise ValueError(f"{name} has {len(biases)} entries, expected {n}")
    out = []
    for i, b in enumerate(biases):
        arr = _int_array(b, f"{name}[{i}]", lo, hi) if integer else _float_array(b, f"{name}[{i}]")
        arr = arr.reshape(-1)
        if arr.shape[0] != dims[i + 1]:
            raise ValueError(f"{name}[{i}] has {arr.shape[0]} entries, expected {dims[i + 1]}")
        out.append(arr)
    return out


def _is_pow2(s) -> bool:
    s = np.asarray(s, dtype=np.float64)
    m, _ = np.frexp(s)
    return bool(np.all(m == 0.5))


def _input_quantizer(g: _Graph, scale, zero_point, qtype: str) -> Tuple[str, float, int, int, int]:
    """QuantizeLinear on "input"; returns (q, scale, zp, qmin, qmax)."""
    _, _, qmin, qmax = _qtype(qtype, "input dtype")
    s = _scale(scale, "input_scale")
    if s.ndim != 0:
        raise ValueError("input_scale must be a scalar (per-tensor)")
    zp = _zero_point(zero_point, qtype, "input_zero_point")
    return g.quantize("input", s, zp, qtype), float(s), zp, qmin, qmax


def _conv_geometry(input_shape, conv_weights, strides, pads) -> Tuple[List[Tuple[int, int, int]],
                                                                     List[int], List[int]]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
    n = len(conv_weights)
    if n < 1:
        raise ValueError("need at least one conv layer")
    strides = [int(s) for s in _per_layer(strides, n, "strides")]
    pads = [int(p) for p in _per_layer(pads, n, "pads")]
    shapes = [shape]
    for i, w in enumerate(conv_weights):
        c, hgt, wid = shapes[-1]
        if w.ndim != 4 or w.shape[1] != c:
            raise ValueError(f"conv_weights[{i}] must have shape (C_out, {c}, kH, kW), "
                             f"got {w.shape}")
        if strides[i] < 1 or pads[i] < 0:
            raise ValueError("strides must be >= 1 and pads >= 0")
        ho = (hgt + 2 * pads[i] - w.shape[2]) // strides[i] + 1
        wo = (wid + 2 * pads[i] - w.shape[3]) // strides[i] + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"conv layer {i} produces an empty output")
        shapes.append((int(w.shape[0]), int(ho), int(wo)))
    return shapes, strides, pads


def _conv_attrs(w: np.ndarray, stride: int, pad: int) -> Dict[str, Any]:
    return {"kernel_shape": [int(w.shape[2]), int(w.shape[3])], "strides": [stride, stride],
            "pads": [pad] * 4}


def _flat_dim(shape: Tuple[int, int, int]) -> int:
    return int(shape[0] * shape[1] * shape[2])


def _conv_net_args(input_shape, conv_weights, strides, pads, dense_weights, conv_weight_scales,
                   dense_weight_scales, act_scales):
    """Validate the arguments every conv-net builder shares: int8 conv and dense weights, the
    conv geometry, one weight scale per layer (per output channel allowed) and one activation
    scale per hidden layer."""
    cws = [_int_array(w, f"conv_weights[{i}]", -128, 127) for i, w in enumerate(conv_weights)]
    shapes, strides, pads = _conv_geometry(input_shape, cws, strides, pads)
    dws = [_int_array(w, f"dense_weights[{i}]", -128, 127) for i, w in enumerate(dense_weights)]
    dims = _check_chain(dws, _flat_dim(shapes[-1]))
    n_conv, n_dense = len(cws), len(dws)
    if len(conv_weight_scales) != n_conv or len(dense_weight_scales) != n_dense:
        raise ValueError("one weight scale per layer expected")
    cwsc = [_scale(s, f"conv_weight_scales[{i}]", cws[i].shape[0])
            for i, s in enumerate(conv_weight_scales)]
    dwsc = [_scale(s, f"dense_weight_scales[{i}]", dims[i + 1])
            for i, s in enumerate(dense_weight_scales)]
    if len(act_scales) != n_conv + n_dense - 1:
        raise ValueError(f"act_scales has {len(act_scales)} entries, "
                         f"expected {n_conv + n_dense - 1}")
    return cws, shapes, strides, pads, dws, dims, n_conv, n_dense, cwsc, dwsc


# --------------------------------------------------------------------------- 1. fixed point

def fixed_point_mlp(weights: Sequence[np.ndarray], biases: Optional[Sequence[np.ndarray]] = None,
                    in_frac_bits: int = 8, in_bits: int = 8,
                    w_frac_bits: Union[int, Sequence[int]] = 5, act_bits: int = 6,
                    act_frac_bits: Union[int, Sequence[int]] = 4, rounding: str = "half_up",
                    opset: int = DEFAULT_OPSET, batch: Batch = "batch", *,
                    float_logits: bool = False) -> BuiltModel:
    """Fixed-point MLP with power-of-two scales (the AAAI 2021 QNN benchmark idiom).

    ``weights[l]``: integer-valued (d_l, d_{l+1}); ``biases[l]``: integer-valued (d_{l+1},) in
    accumulator units (default 0). ``w_frac_bits`` (int or one per layer) and
    ``act_frac_bits`` (int or one per hidden layer) only fix the power-of-two rescales.

    Exact semantics (every intermediate value is an integer held in float32; R is the rounding):

        q_0 = Clip(R(x * 2**in_frac_bits), 0, 2**in_bits - 1)                  input codes
        a_l = q_{l-1} @ W_l + b_l                                              l = 1..L
        q_l = Clip(R(a_l * 2**-s_l), 0, 2**act_bits - 1)                      l = 1..L-1
              with s_l = f_{l-1} + w_frac_bits_l - act_frac_bits_l,
              f_0 = in_frac_bits, f_l = act_frac_bits_l
        y   = a_L                      (float_logits=False, default)
        y   = a_L * 2**-(f_{L-1} + w_frac_bits_L)   (float_logits=True: real-valued logits)

    R is ``"floor"``: Floor(v); ``"half_up"``: Floor(v + 0.5) (round half up, two nodes);
    ``"half_even"``: Round(v) (ties to even; Round needs opset >= 11). The same R is used for
    the input quantizer and the hidden rescales. The lower clamp at 0 is the ReLU.
    Graph: Mul -> R -> Clip, then per layer MatMul -> Add -> [Mul -> R -> Clip] (hidden) or
    [Mul] (last, only with float_logits). Clip uses attributes below opset 11, inputs from 11.
    The input grid is k * 2**-in_frac_bits, 0 <= k < 2**in_bits (zero point 0); an input in
    [0, 2**(in_bits - in_frac_bits)) maps to the code R(x * 2**in_frac_bits), saturated.
    Float32 is exact while |a_l| < 2**24; ``info["exact_float32"]`` records the worst case.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if rounding == "half_even" and int(opset) < 11:
        raise ValueError(f"rounding='half_even' needs Round (opset >= 11), got opset {opset}")
    if not (1 <= int(in_bits) <= 24 and 1 <= int(act_bits) <= 24):
        raise ValueError("in_bits and act_bits must be in [1, 24]")
    g = _Graph(opset, batch, "fixed_point_mlp")
    ws = [_int_array(w, f"weights[{i}]") for i, w in enumerate(weights)]
    dims = _check_chain(ws)
    n_layers = len(ws)
    bs = _biases(biases, dims, "biases", integer=True)
    w_frac = [int(v) for v in _per_layer(w_frac_bits, n_layers, "w_frac_bits")]
    a_frac = [int(v) for v in _per_layer(act_frac_bits, n_layers - 1, "act_frac_bits")]
    in_max, act_max = 2 ** int(in_bits) - 1, 2 ** int(act_bits) - 1

    def rnd(v: str) -> str:
        if rounding == "floor":
            return g.op("Floor", [v])
        if rounding == "half_up":
            return g.op("Floor", [g.op("Add", [v, g.const(0.5, _F32, "half")])])
        return g.op("Round", [v])

    h = g.op("Mul", ["input", g.const(2.0 ** int(in_frac_bits), _F32, "in_scale")])
    h = g.clip(rnd(h), 0, in_max)
    frac, top, shifts, exact = int(in_frac_bits), in_max, [], True
    for li in range(n_layers):
        bound = top * np.abs(ws[li]).sum(axis=0) + np.abs(bs[li])
        exact = exact and bool(np.all(bound < _EXACT_LIMIT))
        h = g.op("MatMul", [h, g.const(ws[li], _F32, f"W{li}")])
        h = g.op("Add", [h, g.const(bs[li], _F32, f"b{li}")])
        if li < n_layers - 1:
            s = frac + w_frac[li] - a_frac[li]
            shifts.append(s)
            h = g.op("Mul", [h, g.const(2.0 ** -s, _F32, f"rescale{li}")])
            h = g.clip(rnd(h), 0, act_max)
            frac, top = a_frac[li], act_max
        elif float_logits:
            h = g.op("Mul", [h, g.const(2.0 ** -(frac + w_frac[li]), _F32, "out_scale")])
    model = g.finish(h, (dims[0],), dims[-1], "fixed-point QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="fixed_point_mlp", opset=g.opset, rounding=rounding, weights=ws,
                biases=bs, shifts=shifts, in_frac_bits=int(in_frac_bits), in_bits=int(in_bits),
                w_frac_bits=w_frac, act_bits=int(act_bits), act_frac_bits=a_frac,
                float_logits=bool(float_logits),
                logit_scale=2.0 ** -(frac + w_frac[-1]) if float_logits else 1.0,
                exact_float32=exact)
    return BuiltModel(model, "fixed_point", (dims[0],), 2.0 ** -int(in_frac_bits), 0, 0, in_max,
                      dims[-1], info)


# --------------------------------------------------------------------------- 2. QDQ

def _qdq_weight(g: _Graph, w: np.ndarray, scale: np.ndarray, axis: int, name: str) -> str:
    """int8 initializer -> DequantizeLinear (per-tensor, or per-axis along ``axis``)."""
    wq = g.const(w, np.int8, name)
    return g.dequantize(wq, scale, 0, np.int8, axis=axis)


def _qdq_bias(g: _Graph, b: np.ndarray, in_scale: float, w_scale: np.ndarray, quantize: bool,
              name: str) -> Tuple[str, np.ndarray]:
    """Float bias initializer, or int32 codes round(b / (in_scale * w_scale)) -> DQ (per-axis
    along axis 0 when ``w_scale`` is per-axis). Returns (tensor name, effective float bias)."""
    if not quantize:
        return g.const(b, _F32, name), b
    bscale = (np.float32(in_scale) * w_scale).astype(_F32)
    codes = np.round(b.astype(np.float64) / bscale.astype(np.float64))
    if np.any(np.abs(codes) > 2 ** 31 - 1):
        raise ValueError(f"{name}: quantized bias overflows int32")
    codes = codes.astype(np.int32)
    out = g.dequantize(g.const(codes, np.int32, name), bscale, 0, np.int32, axis=0)
    return out, (codes * bscale).astype(_F32)


def qdq_mlp(weights: Sequence[np.ndarray], weight_scales: Sequence[ScaleLike],
            act_scales: Sequence[float], biases: Optional[Sequence[np.ndarray]] = None, *,
            input_scale: float = 2.0 ** -8, input_zero_point: Optional[int] = None,
            input_dtype: str = "uint8", act_dtype: str = "uint8",
            act_zero_point: Optional[int] = None, use_gemm: bool = False,
            quantize_bias: bool = True, output_scale: Optional[float] = None,
            opset: int = DEFAULT_OPSET, batch: Batch = "batch") -> BuiltModel:
    """MLP in QDQ form.

    ``weights[l]``: integer-valued (d_l, d_{l+1}) in [-128, 127], stored as int8 initializers
    followed by DequantizeLinear with ``weight_scales[l]``: a float (per-tensor) or a 1-D array
    of d_{l+1} floats (per-axis, one per output unit; needs opset >= 13). ``act_scales``: one
    float per hidden layer. ``biases[l]``: float (d_{l+1},), default 0.

    Semantics (Q = QuantizeLinear: saturate(round_half_even(v / s) + z); DQ: (q - z) * s):

        h_0 = DQ(Q(x; input_scale, input_zero_point, input_dtype))
        h_l = DQ(Q(Relu(h_{l-1} @ DQ(W_l) + b_l); act_scales[l], act_zero_point, act_dtype))
        y   = h_{L-1} @ DQ(W_L) + b_L      [-> DQ(Q(y; output_scale, 0, int8)) if output_scale]

    Zero points default to the bottom of the range (0 for uint8, -128 for int8), so the
    quantizer's lower saturation coincides with the Relu. ``use_gemm=True`` uses
    Gemm(h, DQ(W^T), b, transB=1) instead of MatMul + Add (weights then stored (out, in),
    per-axis along axis 0). ``quantize_bias=True`` (default) stores biases as int32 codes
    round(b / (s_prev * s_w)) followed by DequantizeLinear (as onnxruntime's quantizer does;
    s_prev is the scale of the layer's input); the effective biases are in ``info["biases"]``.
    ``quantize_bias=False`` keeps float32 biases (then onnxruntime with default optimisations,
    which fuses the pattern into QGemm with an int32 bias, differs from this semantics on a few
    % of inputs even with power-of-two scales; with int32 biases and power-of-two scales the
    default and the unoptimised session agree exactly).
    """
    g = _Graph(opset, batch, "qdq_mlp")
    ws = [_int_array(w, f"weights[{i}]", -128, 127) for i, w in enumerate(weights)]
    dims = _check_chain(ws)
    n_layers = len(ws)
    if len(weight_scales) != n_layers:
        raise ValueError(f"weight_scales has {len(weight_scales)} entries, expected {n_layers}")
    wsc = [_scale(s, f"weight_scales[{i}]", dims[i + 1]) for i, s in enumerate(weight_scales)]
    if len(act_scales) != n_layers - 1:
        raise ValueError(f"act_scales has {len(act_scales)} entries, expected {n_layers - 1}")
    asc = [_scale(s, f"act_scales[{i}]") for i, s in enumerate(act_scales)]
    if any(s.ndim for s in asc):
        raise ValueError("act_scales must be scalars (per-tensor)")
    bs = _biases(biases, dims, "biases")
    _qtype(act_dtype, "act_dtype")
    azp = _zero_point(act_zero_point, act_dtype, "act_zero_point")
    act_np = _QTYPES[act_dtype][0]

    q, s_in, zp_in, qmin, qmax = _input_quantizer(g, input_scale, input_zero_point, input_dtype)
    h = g.dequantize(q, s_in, zp_in, _QTYPES[input_dtype][0])
    prev_scale, eff_biases = s_in, []
    for li in range(n_layers):
        if use_gemm:
            wdq = _qdq_weight(g, ws[li].T, wsc[li], 0, f"W{li}")
            bname, beff = _qdq_bias(g, bs[li], prev_scale, wsc[li], quantize_bias, f"b{li}")
            h = g.op("Gemm", [h, wdq, bname], transB=1)
        else:
            wdq = _qdq_weight(g, ws[li], wsc[li], 1, f"W{li}")
            bname, beff = _qdq_bias(g, bs[li], prev_scale, wsc[li], quantize_bias, f"b{li}")
            h = g.op("Add", [g.op("MatMul", [h, wdq]), bname])
        eff_biases.append(beff)
        if li < n_layers - 1:
            h = g.op("Relu", [h])
            h = g.dequantize(g.quantize(h, asc[li], azp, act_dtype), asc[li], azp, act_np)
            prev_scale = float(asc[li])
    if output_scale is not None:
        so = _scale(output_scale, "output_scale")
        h = g.dequantize(g.quantize(h, so, 0, "int8"), so, 0, np.int8)
    model = g.finish(h, (dims[0],), dims[-1], "QDQ QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="qdq_mlp", opset=g.opset, weights=ws, weight_scales=wsc,
                act_scales=[float(s) for s in asc], biases=eff_biases, act_dtype=act_dtype,
                act_zero_point=azp, input_dtype=input_dtype, use_gemm=bool(use_gemm),
                quantize_bias=bool(quantize_bias), output_scale=output_scale,
                pow2_scales=_is_pow2([s_in] + [float(s) for s in asc])
                and all(_is_pow2(s) for s in wsc))
    return BuiltModel(model, "qdq", (dims[0],), s_in, zp_in, qmin, qmax, dims[-1], info)


def qdq_conv(input_shape: Sequence[int], conv_weights: Sequence[np.ndarray],
             conv_weight_scales: Sequence[ScaleLike], dense_weights: Sequence[np.ndarray],
             dense_weight_scales: Sequence[ScaleLike], act_scales: Sequence[float],
             conv_biases: Optional[Sequence[np.ndarray]] = None,
             dense_biases: Optional[Sequence[np.ndarray]] = None, *,
             strides: Union[int, Sequence[int]] = 1, pads: Union[int, Sequence[int]] = 0,
             input_scale: float = 2.0 ** -8, input_zero_point: Optional[int] = None,
             input_dtype: str = "uint8", act_dtype: str = "uint8",
             act_zero_point: Optional[int] = None, quantize_bias: bool = True,
             opset: int = DEFAULT_OPSET, batch: Batch = "batch") -> BuiltModel:
    """Conv net in QDQ form: conv layers, Flatten, dense layers (the last gives the logits).

    ``conv_weights[l]``: integer-valued (C_out, C_in, kH, kW) in [-128, 127], int8 + DQ with
    ``conv_weight_scales[l]`` a float or 1-D of C_out (per output channel, axis 0; opset >= 13).
    ``dense_weights[l]``: integer-valued (d_in, d_out) as in :func:`qdq_mlp` (the first d_in
    is C*H*W of the last conv output, flattened in C order). ``act_scales``: one per layer
    except the last (len = n_conv + n_dense - 1). Biases are float (default 0), quantized to
    int32 + DQ as in :func:`qdq_mlp` unless ``quantize_bias=False``; conv biases go to Conv's
    B input.

        h = DQ(Q(x)); per conv layer: h = DQ(Q(Relu(Conv(h, DQ(W), b))));
        h = DQ(Q(Flatten(h, axis=1)))     (same scale/zero point as the last conv: an identity)
        per dense layer: h = DQ(Q(Relu(h @ DQ(W) + b))) except the last: logits h @ DQ(W) + b

    The Q/DQ pair after Flatten changes no value; without it onnxruntime's default
    optimisations turn DQ(W) + MatMul into a weight-only MatMulNBits kernel whose float results
    differ (argmax flips seen), with it they fuse into QGemm and agree exactly (power-of-two
    scales, int32 biases). Conv pads (zeros in the dequantized domain) and strides are ints or
    one per conv layer.
    """
    g = _Graph(opset, batch, "qdq_conv")
    (cws, shapes, strides, pads, dws, dims, n_conv, n_dense, cwsc, dwsc) = _conv_net_args(
        input_shape, conv_weights, strides, pads, dense_weights, conv_weight_scales,
        dense_weight_scales, act_scales)
    asc = [_scale(s, f"act_scales[{i}]") for i, s in enumerate(act_scales)]
    if any(s.ndim for s in asc):
        raise ValueError("act_scales must be scalars (per-tensor)")
    cbs = _biases(conv_biases, [0] + [w.shape[0] for w in cws], "conv_biases")
    dbs = _biases(dense_biases, dims, "dense_biases")
    _qtype(act_dtype, "act_dtype")
    azp = _zero_point(act_zero_point, act_dtype, "act_zero_point")
    act_np = _QTYPES[act_dtype][0]

    q, s_in, zp_in, qmin, qmax = _input_quantizer(g, input_scale, input_zero_point, input_dtype)
    h = g.dequantize(q, s_in, zp_in, _QTYPES[input_dtype][0])
    prev, layer = s_in, 0
    eff_cb, eff_db = [], []

    def act(v: str) -> str:
        nonlocal prev, layer
        v = g.op("Relu", [v])
        v = g.dequantize(g.quantize(v, asc[layer], azp, act_dtype), asc[layer], azp, act_np)
        prev, layer = float(asc[layer]), layer + 1
        return v

    for li, w in enumerate(cws):
        wdq = _qdq_weight(g, w, cwsc[li], 0, f"conv_W{li}")
        bname, beff = _qdq_bias(g, cbs[li], prev, cwsc[li], quantize_bias, f"conv_b{li}")
        eff_cb.append(beff)
        h = act(g.op("Conv", [h, wdq, bname], **_conv_attrs(w, strides[li], pads[li])))
    h = g.op("Flatten", [h], axis=1)
    # re-quantize after Flatten with the same parameters (an identity on the DQ values), as
    # onnxruntime's quantizer does, so that the dense MatMul reads a DequantizeLinear output
    h = g.dequantize(g.quantize(h, asc[n_conv - 1], azp, act_dtype), asc[n_conv - 1], azp, act_np)
    for li, w in enumerate(dws):
        wdq = _qdq_weight(g, w, dwsc[li], 1, f"W{li}")
        bname, beff = _qdq_bias(g, dbs[li], prev, dwsc[li], quantize_bias, f"b{li}")
        eff_db.append(beff)
        h = g.op("Add", [g.op("MatMul", [h, wdq]), bname])
        if li < n_dense - 1:
            h = act(h)
    model = g.finish(h, shapes[0], dims[-1], "QDQ conv QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="qdq_conv", opset=g.opset, conv_weights=cws, conv_weight_scales=cwsc,
                dense_weights=dws, dense_weight_scales=dwsc, act_scales=[float(s) for s in asc],
                conv_biases=eff_cb, dense_biases=eff_db, strides=strides, pads=pads,
                act_dtype=act_dtype, act_zero_point=azp, layer_shapes=shapes,
                quantize_bias=bool(quantize_bias))
    return BuiltModel(model, "qdq", tuple(shapes[0]), s_in, zp_in, qmin, qmax, dims[-1], info)


# --------------------------------------------------------------------------- 3. QOperator

def _qlinear_matmul(g: _Graph, a: str, a_scale: float, a_zp: int, w: np.ndarray, w_scale,
                    y_scale, y_zp: int, act: str, name: str) -> str:
    np_dtype = _QTYPES[act][0]
    w_scale = np.asarray(w_scale, _F32)
    return g.op("QLinearMatMul", [
        a, g.const(a_scale, _F32, "a_scale"), g.const(a_zp, np_dtype, "a_zp"),
        g.const(w, np.int8, name), g.const(w_scale, _F32, "b_scale"),
        g.const(np.zeros(w_scale.shape, np.int8), np.int8, "b_zp"),
        g.const(y_scale, _F32, "y_scale"), g.const(y_zp, np_dtype, "y_zp")])


def _qop_common(act_dtype: str, input_zero_point, output_zero_point):
    _qtype(act_dtype, "act_dtype")
    zp_hidden = _QTYPES[act_dtype][2]  # bottom of the range: the lower saturation is the ReLU
    zp_out = _zero_point(output_zero_point, act_dtype, "output_zero_point", default="middle")
    return zp_hidden, zp_out


def qoperator_mlp(weights: Sequence[np.ndarray], weight_scales: Sequence[ScaleLike],
                  act_scales: Sequence[float], output_scale: float, *,
                  input_scale: float = 2.0 ** -8, input_zero_point: Optional[int] = None,
                  act_dtype: str = "uint8", output_zero_point: Optional[int] = None,
                  opset: int = DEFAULT_OPSET, batch: Batch = "batch") -> BuiltModel:
    """Bias-free MLP in QOperator form (QLinearMatMul has no bias input).

    ``weights[l]``: integer-valued (d_l, d_{l+1}) in [-128, 127], int8 with zero point 0 and
    ``weight_scales[l]`` a float or 1-D of d_{l+1} (per column). One ``act_dtype`` for the
    input, hidden and output codes (onnxruntime implements QLinearMatMul only with output type
    = input type, and int8 inputs only with int8 weights).

        q_0 = QuantizeLinear(x; input_scale, input_zero_point)      (zp default: bottom)
        q_l = QLinearMatMul(q_{l-1}, W_l; y_scale=act_scales[l], y_zp=bottom of the range)
            = saturate(round_half_even((q_{l-1} - z_{l-1}) @ W_l * s_{l-1} * s_w / s_l) + z_l)
        y   = DequantizeLinear(QLinearMatMul(q_{L-1}, W_L; output_scale, output_zero_point))

    The hidden zero point at the bottom of the range (0 for uint8, -128 for int8) makes the
    lower saturation the ReLU; the output zero point defaults to the middle (128 / 0).
    """
    g = _Graph(opset, batch, "qoperator_mlp")
    ws = [_int_array(w, f"weights[{i}]", -128, 127) for i, w in enumerate(weights)]
    dims = _check_chain(ws)
    n_layers = len(ws)
    if len(weight_scales) != n_layers or len(act_scales) != n_layers - 1:
        raise ValueError("need one weight scale per layer and one act scale per hidden layer")
    wsc = [_scale(s, f"weight_scales[{i}]", dims[i + 1]) for i, s in enumerate(weight_scales)]
    asc = [float(_scale(s, f"act_scales[{i}]")) for i, s in enumerate(act_scales)]
    so = float(_scale(output_scale, "output_scale"))
    zp_h, zp_out = _qop_common(act_dtype, input_zero_point, output_zero_point)

    h, s_in, zp_in, qmin, qmax = _input_quantizer(g, input_scale, input_zero_point, act_dtype)
    prev_s, prev_z = s_in, zp_in
    for li in range(n_layers):
        last = li == n_layers - 1
        ys, yz = (so, zp_out) if last else (asc[li], zp_h)
        h = _qlinear_matmul(g, h, prev_s, prev_z, ws[li], wsc[li], ys, yz, act_dtype, f"W{li}")
        prev_s, prev_z = ys, yz
    h = g.dequantize(h, so, zp_out, _QTYPES[act_dtype][0])
    model = g.finish(h, (dims[0],), dims[-1], "QOperator QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="qoperator_mlp", opset=g.opset, weights=ws, weight_scales=wsc,
                act_scales=asc, output_scale=so, output_zero_point=zp_out, act_dtype=act_dtype,
                hidden_zero_point=zp_h)
    return BuiltModel(model, "qoperator", (dims[0],), s_in, zp_in, qmin, qmax, dims[-1], info)


def qoperator_conv(input_shape: Sequence[int], conv_weights: Sequence[np.ndarray],
                   conv_weight_scales: Sequence[ScaleLike], dense_weights: Sequence[np.ndarray],
                   dense_weight_scales: Sequence[ScaleLike], act_scales: Sequence[float],
                   output_scale: float, conv_biases: Optional[Sequence[np.ndarray]] = None, *,
                   strides: Union[int, Sequence[int]] = 1, pads: Union[int, Sequence[int]] = 0,
                   input_scale: float = 2.0 ** -8, input_zero_point: Optional[int] = None,
                   act_dtype: str = "uint8", output_zero_point: Optional[int] = None,
                   opset: int = DEFAULT_OPSET, batch: Batch = "batch") -> BuiltModel:
    """Conv net in QOperator form: QuantizeLinear, QLinearConv layers (int32 bias), Flatten of
    the quantized tensor, bias-free QLinearMatMul layers, DequantizeLinear.

    ``conv_weights[l]`` integer-valued (C_out, C_in, kH, kW) in [-128, 127] (int8, zp 0) with
    ``conv_weight_scales[l]`` a float or 1-D of C_out (per output channel; allowed at any
    opset by QLinearConv). ``conv_biases[l]``: integer-valued int32 codes (C_out,) with scale
    s_x * s_w (real bias = code * s_x * s_w), default 0. Dense layers as in
    :func:`qoperator_mlp`; ``act_scales`` has n_conv + n_dense - 1 entries.

        q = saturate(round_half_even((Conv(x_q - z_x, W) + B) * s_x * s_w / s_y) + z_y)

    Hidden zero points are the bottom of the range (the ReLU), the output's the middle.
    Padding (``pads``) pads with the input zero point, i.e. with real zeros, in onnxruntime.
    """
    g = _Graph(opset, batch, "qoperator_conv")
    (cws, shapes, strides, pads, dws, dims, n_conv, n_dense, cwsc, dwsc) = _conv_net_args(
        input_shape, conv_weights, strides, pads, dense_weights, conv_weight_scales,
        dense_weight_scales, act_scales)
    asc = [float(_scale(s, f"act_scales[{i}]")) for i, s in enumerate(act_scales)]
    so = float(_scale(output_scale, "output_scale"))
    cbs = _biases(conv_biases, [0] + [w.shape[0] for w in cws], "conv_biases", integer=True,
                  lo=-2 ** 31, hi=2 ** 31 - 1)
    zp_h, zp_out = _qop_common(act_dtype, input_zero_point, output_zero_point)
    np_dtype = _QTYPES[act_dtype][0]
    ys_all = asc + [so]
    yz_all = [zp_h] * (n_conv + n_dense - 1) + [zp_out]

    h, s_in, zp_in, qmin, qmax = _input_quantizer(g, input_scale, input_zero_point, act_dtype)
    prev_s, prev_z = s_in, zp_in
    for li, w in enumerate(cws):
        wscale = cwsc[li]
        h = g.op("QLinearConv", [
            h, g.const(prev_s, _F32, "x_scale"), g.const(prev_z, np_dtype, "x_zp"),
            g.const(w, np.int8, f"conv_W{li}"), g.const(wscale, _F32, "w_scale"),
            g.const(np.zeros(wscale.shape, np.int8), np.int8, "w_zp"),
            g.const(ys_all[li], _F32, "y_scale"), g.const(yz_all[li], np_dtype, "y_zp"),
            g.const(cbs[li], np.int32, f"conv_b{li}")], **_conv_attrs(w, strides[li], pads[li]))
        prev_s, prev_z = ys_all[li], yz_all[li]
    h = g.op("Flatten", [h], axis=1)
    for li in range(n_dense):
        k = n_conv + li
        h = _qlinear_matmul(g, h, prev_s, prev_z, dws[li], dwsc[li], ys_all[k], yz_all[k],
                            act_dtype, f"W{li}")
        prev_s, prev_z = ys_all[k], yz_all[k]
    h = g.dequantize(h, so, zp_out, np_dtype)
    model = g.finish(h, shapes[0], dims[-1], "QOperator conv QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="qoperator_conv", opset=g.opset, conv_weights=cws,
                conv_weight_scales=cwsc, conv_biases=cbs, dense_weights=dws,
                dense_weight_scales=dwsc, act_scales=asc, output_scale=so,
                output_zero_point=zp_out, hidden_zero_point=zp_h, act_dtype=act_dtype,
                strides=strides, pads=pads, layer_shapes=shapes)
    return BuiltModel(model, "qoperator", tuple(shapes[0]), s_in, zp_in, qmin, qmax, dims[-1],
                      info)


# --------------------------------------------------------------------------- 4. integer ops

def _int_rescale(g: _Graph, acc: str, mult: np.ndarray, bias: np.ndarray,
                 shape: Tuple[int, ...]) -> str:
    """int32 accumulator -> Cast(float) -> Mul(multiplier) -> Add(bias)."""
    h = g.op("Cast", [acc], to=TensorProto.FLOAT)
    m = mult if mult.ndim == 0 else mult.reshape(shape)
    h = g.op("Mul", [h, g.const(m, _F32, "mult")])
    return g.op("Add", [h, g.const(bias.reshape(shape), _F32, "bias")])


def integer_mlp(weights: Sequence[np.ndarray], weight_scales: Sequence[ScaleLike],
                act_scales: Sequence[float], biases: Optional[Sequence[np.ndarray]] = None, *,
                input_scale: float = 2.0 ** -8, input_zero_point: Optional[int] = None,
                act_dtype: str = "uint8", weight_dtype: str = "int8",
                opset: int = DEFAULT_OPSET, batch: Batch = "batch") -> BuiltModel:
    """MLP with MatMulInteger (dynamic-quantization style integer ops).

    ``weights[l]``: integer-valued (d_l, d_{l+1}); stored as ``weight_dtype`` ("int8": values
    in [-128, 127], zero point 0; "uint8": values in [-128, 127] stored as value + 128 with
    b_zero_point 128). ``weight_scales[l]``: float or 1-D per column. ``act_scales``: one float
    per hidden layer; ``biases``: float, default 0.

        q_0 = QuantizeLinear(x; input_scale, input_zero_point, act_dtype)
        a_l = MatMulInteger(q_{l-1}, W_l, z_{l-1}, w_zp)                       (int32)
        v_l = Cast<float>(a_l) * (s_{l-1} * s_w_l) + b_l                       (float32)
        q_l = QuantizeLinear(Relu(v_l); act_scales[l], z = bottom of the range)  l < L
        y   = v_L

    ``s_{l-1} * s_w_l`` is computed in float32 at build time (``info["multipliers"]``).
    """
    g = _Graph(opset, batch, "integer_mlp")
    ws = [_int_array(w, f"weights[{i}]", -128, 127) for i, w in enumerate(weights)]
    dims = _check_chain(ws)
    n_layers = len(ws)
    if len(weight_scales) != n_layers or len(act_scales) != n_layers - 1:
        raise ValueError("need one weight scale per layer and one act scale per hidden layer")
    wsc = [_scale(s, f"weight_scales[{i}]", dims[i + 1]) for i, s in enumerate(weight_scales)]
    asc = [float(_scale(s, f"act_scales[{i}]")) for i, s in enumerate(act_scales)]
    bs = _biases(biases, dims, "biases")
    _qtype(act_dtype, "act_dtype")
    _qtype(weight_dtype, "weight_dtype")
    zp_h = _QTYPES[act_dtype][2]
    act_np = _QTYPES[act_dtype][0]
    w_np = _QTYPES[weight_dtype][0]
    w_off = 128 if weight_dtype == "uint8" else 0

    h, s_in, zp_in, qmin, qmax = _input_quantizer(g, input_scale, input_zero_point, act_dtype)
    prev_s, prev_z, mults = s_in, zp_in, []
    for li in range(n_layers):
        acc = g.op("MatMulInteger", [h, g.const(ws[li] + w_off, w_np, f"W{li}"),
                                     g.const(prev_z, act_np, "a_zp"),
                                     g.const(w_off, w_np, "b_zp")])
        mult = (np.float32(prev_s) * wsc[li]).astype(_F32)
        mults.append(mult)
        h = _int_rescale(g, acc, mult, bs[li], (-1,))
        if li < n_layers - 1:
            h = g.quantize(g.op("Relu", [h]), asc[li], zp_h, act_dtype)
            prev_s, prev_z = asc[li], zp_h
    model = g.finish(h, (dims[0],), dims[-1], "integer-op QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="integer_mlp", opset=g.opset, weights=ws, weight_scales=wsc,
                act_scales=asc, biases=bs, multipliers=mults, act_dtype=act_dtype,
                weight_dtype=weight_dtype, hidden_zero_point=zp_h)
    return BuiltModel(model, "qoperator", (dims[0],), s_in, zp_in, qmin, qmax, dims[-1], info)


def integer_conv(input_shape: Sequence[int], conv_weights: Sequence[np.ndarray],
                 conv_weight_scales: Sequence[ScaleLike], dense_weights: Sequence[np.ndarray],
                 dense_weight_scales: Sequence[ScaleLike], act_scales: Sequence[float],
                 conv_biases: Optional[Sequence[np.ndarray]] = None,
                 dense_biases: Optional[Sequence[np.ndarray]] = None, *,
                 strides: Union[int, Sequence[int]] = 1, pads: Union[int, Sequence[int]] = 0,
                 input_scale: float = 2.0 ** -8, input_zero_point: Optional[int] = None,
                 act_dtype: str = "uint8", weight_dtype: str = "int8",
                 opset: int = DEFAULT_OPSET, batch: Batch = "batch") -> BuiltModel:
    """Conv net with ConvInteger (then Flatten of the quantized codes and MatMulInteger).

    Per conv layer: ConvInteger(q, W, z, w_zp) -> Cast -> Mul(s * s_w, per channel shaped
    (C, 1, 1)) -> Add(b, shaped (C, 1, 1)) -> Relu -> QuantizeLinear(act scale, bottom zp);
    then Flatten(axis=1) and dense layers as in :func:`integer_mlp`, the last giving float
    logits. Shapes and argument conventions as in :func:`qdq_conv`; biases are float.
    Padding pads the codes with the zero point (real zeros) in onnxruntime.
    """
    g = _Graph(opset, batch, "integer_conv")
    (cws, shapes, strides, pads, dws, dims, n_conv, n_dense, cwsc, dwsc) = _conv_net_args(
        input_shape, conv_weights, strides, pads, dense_weights, conv_weight_scales,
        dense_weight_scales, act_scales)
    asc = [float(_scale(s, f"act_scales[{i}]")) for i, s in enumerate(act_scales)]
    cbs = _biases(conv_biases, [0] + [w.shape[0] for w in cws], "conv_biases")
    dbs = _biases(dense_biases, dims, "dense_biases")
    _qtype(act_dtype, "act_dtype")
    _qtype(weight_dtype, "weight_dtype")
    zp_h = _QTYPES[act_dtype][2]
    act_np, w_np = _QTYPES[act_dtype][0], _QTYPES[weight_dtype][0]
    w_off = 128 if weight_dtype == "uint8" else 0

    h, s_in, zp_in, qmin, qmax = _input_quantizer(g, input_scale, input_zero_point, act_dtype)
    prev_s, prev_z, layer = s_in, zp_in, 0

    def requant(v: str) -> str:
        nonlocal prev_s, prev_z, layer
        q = g.quantize(g.op("Relu", [v]), asc[layer], zp_h, act_dtype)
        prev_s, prev_z, layer = asc[layer], zp_h, layer + 1
        return q

    for li, w in enumerate(cws):
        acc = g.op("ConvInteger", [h, g.const(w + w_off, w_np, f"conv_W{li}"),
                                   g.const(prev_z, act_np, "x_zp"), g.const(w_off, w_np, "w_zp")],
                   **_conv_attrs(w, strides[li], pads[li]))
        mult = (np.float32(prev_s) * cwsc[li]).astype(_F32)
        h = requant(_int_rescale(g, acc, mult, cbs[li], (-1, 1, 1)))
    h = g.op("Flatten", [h], axis=1)
    for li, w in enumerate(dws):
        acc = g.op("MatMulInteger", [h, g.const(w + w_off, w_np, f"W{li}"),
                                     g.const(prev_z, act_np, "a_zp"), g.const(w_off, w_np, "b_zp")])
        mult = (np.float32(prev_s) * dwsc[li]).astype(_F32)
        h = _int_rescale(g, acc, mult, dbs[li], (-1,))
        if li < n_dense - 1:
            h = requant(h)
    model = g.finish(h, shapes[0], dims[-1], "integer-op conv QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="integer_conv", opset=g.opset, conv_weights=cws,
                conv_weight_scales=cwsc, conv_biases=cbs, dense_weights=dws,
                dense_weight_scales=dwsc, dense_biases=dbs, act_scales=asc, act_dtype=act_dtype,
                weight_dtype=weight_dtype, hidden_zero_point=zp_h, strides=strides, pads=pads,
                layer_shapes=shapes)
    return BuiltModel(model, "qoperator", tuple(shapes[0]), s_in, zp_in, qmin, qmax, dims[-1],
                      info)


# --------------------------------------------------------------------------- 5. binarized

def sign_mlp(weights: Sequence[np.ndarray], biases: Optional[Sequence[np.ndarray]] = None, *,
             idiom: bool = False, input_scale: Optional[float] = None,
             input_zero_point: Optional[int] = None, input_dtype: str = "uint8",
             opset: int = DEFAULT_OPSET, batch: Batch = "batch") -> BuiltModel:
    """Binarized MLP: weights in {-1, +1}, Sign activations.

        h_0 = x                       (float input; or DQ(Q(x)) when input_scale is given)
        h_l = B(h_{l-1} @ W_l + b_l)  l < L,   y = h_{L-1} @ W_L + b_L

    B is ONNX Sign (-1, 0, +1: Sign(0) = 0) by default; with ``idiom=True`` it is
    Sign(Sign(v) + 0.1), the export idiom that maps 0 to +1 (values in {-1, +1}).
    Biases are float (default 0). Without ``input_scale`` the model has no input quantizer
    (``BuiltModel.input_scale`` is None); with it, QuantizeLinear/DequantizeLinear on the input
    (``input_dtype``, zero point default bottom of the range), which needs opset >= 10.
    """
    g = _Graph(opset, batch, "sign_mlp")
    ws = [_int_array(w, f"weights[{i}]") for i, w in enumerate(weights)]
    for i, w in enumerate(ws):
        if not np.all(np.abs(w) == 1):
            raise ValueError(f"weights[{i}] must have entries in {{-1, +1}}")
    dims = _check_chain(ws)
    bs = _biases(biases, dims, "biases")
    if input_scale is not None:
        if g.opset < 10:
            raise ValueError("an input quantizer (QuantizeLinear) needs opset >= 10")
        q, s_in, zp_in, qmin, qmax = _input_quantizer(g, input_scale, input_zero_point,
                                                      input_dtype)
        h = g.dequantize(q, s_in, zp_in, _QTYPES[input_dtype][0])
    else:
        h, s_in, zp_in, qmin, qmax = "input", None, None, None, None
    for li in range(len(ws)):
        h = g.op("Add", [g.op("MatMul", [h, g.const(ws[li], _F32, f"W{li}")]),
                         g.const(bs[li], _F32, f"b{li}")])
        if li < len(ws) - 1:
            h = g.op("Sign", [h])
            if idiom:
                h = g.op("Sign", [g.op("Add", [h, g.const(0.1, _F32, "tenth")])])
    model = g.finish(h, (dims[0],), dims[-1], "binarized QNN (qnn_plugin.onnx_builders)")
    info = dict(builder="sign_mlp", opset=g.opset, weights=ws, biases=bs, idiom=bool(idiom),
                input_dtype=input_dtype if input_scale is not None else None)
    return BuiltModel(model, "sign", (dims[0],), s_in, zp_in, qmin, qmax, dims[-1], info)


# --------------------------------------------------------------------------- random models
# Calibration: evaluate each layer in numpy on random grid inputs, put every unit's threshold
# inside its pre-activation range (bias = -quantile) and choose the activation scale so that
# the 95th percentile of the positive part lands in the upper half of the code range.

_N_CAL = 256


def _random_sizes(rng: np.random.Generator, sizes) -> List[int]:
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list >= 2 positive widths, got {sizes}")
        return sizes
    hidden = [int(rng.integers(2, 9)) for _ in range(int(rng.integers(1, 3)))]
    return [int(rng.integers(2, 7))] + hidden + [int(rng.integers(2, 5))]


def _random_conv_geometry(rng, input_shape, channels, kernel_sizes):
    if input_shape is None:
        input_shape = [(1, 4, 4), (2, 5, 5)][int(rng.integers(0, 2))]
    input_shape = tuple(int(d) for d in input_shape)
    if channels is None:
        n_conv = int(rng.integers(1, 3)) if min(input_shape[1:]) >= 5 else 1
        channels = [int(rng.integers(2, 4)) for _ in range(n_conv)]
    channels = [int(c) for c in channels]
    if kernel_sizes is None:
        kernel_sizes, side = [], min(input_shape[1:])
        for _ in channels:
            k = int(rng.integers(2, 4)) if side >= 4 else min(2, side)
            kernel_sizes.append(k)
            side = side - k + 1
    kernel_sizes = [int(k) for k in _per_layer(kernel_sizes, len(channels), "kernel_sizes")]
    return input_shape, channels, kernel_sizes


def _bias_for(pre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-unit bias putting the threshold at a random quantile (20-60 %) of ``pre``."""
    moved = np.moveaxis(pre, 1, -1).reshape(-1, pre.shape[1])
    u = rng.uniform(0.2, 0.6, size=pre.shape[1])
    return -np.array([np.quantile(moved[:, j], u[j]) for j in range(pre.shape[1])])


def _top(z: np.ndarray) -> float:
    pos = np.maximum(z, 0.0)
    t = float(np.quantile(pos, 0.95))
    if t <= 0:
        t = float(pos.max())
    return t if t > 0 else 1.0


def _choose_scale(top: float, levels: int, pow2: bool, rng: np.random.Generator) -> float:
    """Scale so that ``top`` maps to a code in the upper half of [0, levels]."""
    if pow2:
        return float(2.0 ** math.ceil(math.log2(top / levels)))
    return float(np.float32(top / (levels * rng.uniform(0.55, 0.95))))


def _weight_scale(w: np.ndarray, per_axis: bool, pow2: bool, rng, axis: int) -> np.ndarray:
    m = np.abs(w).max(axis=axis) if per_axis else np.abs(w).max()
    m = np.maximum(m, 1e-3) / 127.0
    if pow2:
        return (2.0 ** np.ceil(np.log2(m))).astype(_F32)
    return (m * rng.uniform(1.0, 1.2, size=np.shape(m))).astype(_F32)


def _np_q(v, s, z, qmin, qmax):
    return np.clip(np.round(v / s) + z, qmin, qmax)


def _np_conv(x: np.ndarray, w: np.ndarray, stride: int = 1, pad: int = 0) -> np.ndarray:
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, hh, ww = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (hh - kh) // stride + 1, (ww - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out


def _cal_codes(rng, qmin, qmax, shape) -> np.ndarray:
    return rng.integers(qmin, qmax + 1, size=(_N_CAL,) + tuple(shape)).astype(np.float64)


def random_fixed_point_mlp(rng: np.random.Generator, sizes: Optional[Sequence[int]] = None, *,
                           w_bits: int = 6, **opts) -> BuiltModel:
    """Random :func:`fixed_point_mlp` (weights uniform in the signed ``w_bits`` range; biases
    and per-layer ``act_frac_bits`` calibrated). ``opts`` go to the builder (in_bits,
    in_frac_bits, w_frac_bits (int), act_bits, rounding, float_logits, opset, batch)."""
    dims = _random_sizes(rng, sizes)
    in_bits = int(opts.get("in_bits", 8))
    in_frac = int(opts.get("in_frac_bits", 8))
    w_frac = int(opts.get("w_frac_bits", 5))
    act_bits = int(opts.get("act_bits", 6))
    act_max = 2 ** act_bits - 1
    lo, hi = -2 ** (w_bits - 1), 2 ** (w_bits - 1) - 1
    ws = [rng.integers(lo, hi + 1, size=(dims[i], dims[i + 1])) for i in range(len(dims) - 1)]
    h = _cal_codes(rng, 0, 2 ** in_bits - 1, (dims[0],))
    frac, bs, a_fracs = in_frac, [], []
    for li, w in enumerate(ws):
        acc = h @ w
        b = np.round(_bias_for(acc, rng))
        bs.append(b.astype(np.int64))
        if li == len(ws) - 1:
            break
        z = acc + b
        s = int(math.ceil(math.log2(_top(z) / act_max)))
        a_frac = frac + w_frac - s
        a_fracs.append(a_frac)
        h = np.clip(np.floor(z * 2.0 ** -s + 0.5), 0, act_max)  # calibration only
        frac = a_frac
    opts = dict(opts)
    opts.setdefault("rounding", "half_up")
    return fixed_point_mlp(ws, bs, in_frac_bits=in_frac, in_bits=in_bits, w_frac_bits=w_frac,
                           act_bits=act_bits, act_frac_bits=a_fracs,
                           **{k: v for k, v in opts.items()
                              if k not in ("in_bits", "in_frac_bits", "w_frac_bits",
                                           "act_bits")})


def _random_input_quant(rng, opts, dtype_key: str, pow2: bool):
    qtype = opts.get(dtype_key, "uint8")
    _, _, qmin, qmax = _qtype(qtype, dtype_key)
    s_in = opts.get("input_scale", 2.0 ** -8 if pow2 else float(np.float32(1.0 / 255.0)))
    zp = _zero_point(opts.get("input_zero_point"), qtype, "input_zero_point")
    return qtype, float(s_in), zp, qmin, qmax


def random_qdq_mlp(rng: np.random.Generator, sizes: Optional[Sequence[int]] = None, *,
                   pow2_scales: bool = True, per_axis: bool = False, **opts) -> BuiltModel:
    """Random :func:`qdq_mlp`: float weights ~ N(0, 1) quantized to int8 (per-tensor, or
    per-axis with ``per_axis=True``, opset >= 13), power-of-two scales unless
    ``pow2_scales=False`` (then arbitrary positive floats, input scale 1/255). ``opts`` go to
    the builder (input_dtype, act_dtype, use_gemm, quantize_bias, output_scale, opset, ...)."""
    dims = _random_sizes(rng, sizes)
    qtype, s_in, zp_in, qmin, qmax = _random_input_quant(rng, opts, "input_dtype", pow2_scales)
    act_dtype = opts.get("act_dtype", "uint8")
    _, _, aqmin, aqmax = _qtype(act_dtype, "act_dtype")
    azp = _zero_point(opts.get("act_zero_point"), act_dtype, "act_zero_point")
    h = (_cal_codes(rng, qmin, qmax, (dims[0],)) - zp_in) * s_in
    ws, wsc, bs, asc = [], [], [], []
    for li in range(len(dims) - 1):
        wf = rng.normal(size=(dims[li], dims[li + 1]))
        s_w = _weight_scale(wf, per_axis, pow2_scales, rng, axis=0)
        w = np.clip(np.round(wf / s_w), -127, 127).astype(np.int64)
        pre = h @ (w * s_w.astype(np.float64))
        b = _bias_for(pre, rng).astype(_F32)
        ws.append(w)
        wsc.append(s_w if per_axis else float(s_w))
        bs.append(b)
        if li < len(dims) - 2:
            z = np.maximum(pre + b, 0)
            s = _choose_scale(_top(z), aqmax - azp, pow2_scales, rng)
            asc.append(s)
            h = (_np_q(z, s, azp, aqmin, aqmax) - azp) * s
    kw = {k: v for k, v in opts.items() if k not in ("input_scale", "input_zero_point")}
    return qdq_mlp(ws, wsc, asc, bs, input_scale=s_in, input_zero_point=zp_in, **kw)


def _random_conv_weights(rng, input_shape, channels, kernel_sizes, per_axis, pow2):
    cws, cwsc = [], []
    c_in = input_shape[0]
    for c_out, k in zip(channels, kernel_sizes):
        wf = rng.normal(size=(c_out, c_in, k, k))
        s_w = _weight_scale(wf, per_axis, pow2, rng, axis=(1, 2, 3))
        w = np.clip(np.round(wf / s_w.reshape(-1, 1, 1, 1) if per_axis else wf / s_w),
                    -127, 127).astype(np.int64)
        cws.append(w)
        cwsc.append(s_w if per_axis else float(s_w))
        c_in = c_out
    return cws, cwsc


def _calibrate_float_bias_convs(rng, h, cws, cwsc, zp, qmin, qmax, pow2_scales):
    """Float conv biases and activation scales calibrated on the float calibration batch ``h``
    (biases put each channel's threshold inside its pre-activation range); returns the last
    layer's dequantized activations, the biases and the scales."""
    cbs, asc = [], []
    for w, s_w in zip(cws, cwsc):
        s_w64 = np.asarray(s_w, np.float64)
        pre = _np_conv(h, w * s_w64.reshape(-1, 1, 1, 1) if s_w64.ndim else w * s_w64)
        b = _bias_for(pre, rng)
        cbs.append(b.astype(_F32))
        z = np.maximum(pre + b.reshape(-1, 1, 1), 0)
        s = _choose_scale(_top(z), qmax - zp, pow2_scales, rng)
        asc.append(s)
        h = (_np_q(z, s, zp, qmin, qmax) - zp) * s
    return h, cbs, asc


def _random_dense_head(rng, h, n_out, per_axis, pow2_scales):
    """Flattened calibration activations and a random int8 dense output layer with its scale."""
    flat = h.reshape(_N_CAL, -1)
    wf = rng.normal(size=(flat.shape[1], n_out))
    s_w = _weight_scale(wf, per_axis, pow2_scales, rng, axis=0)
    w = np.clip(np.round(wf / s_w), -127, 127).astype(np.int64)
    return flat, w, s_w


def random_qdq_conv(rng: np.random.Generator, input_shape: Optional[Sequence[int]] = None,
                    channels: Optional[Sequence[int]] = None,
                    kernel_sizes: Optional[Union[int, Sequence[int]]] = None,
                    n_out: Optional[int] = None, *, pow2_scales: bool = True,
                    per_axis: bool = False, **opts) -> BuiltModel:
    """Random :func:`qdq_conv`: input (1, 4, 4) or (2, 5, 5), 1-2 conv layers of 2-3 channels
    with 2x2/3x3 kernels (stride 1, no padding), one dense layer to 2-4 logits."""
    input_shape, channels, kernel_sizes = _random_conv_geometry(rng, input_shape, channels,
                                                                kernel_sizes)
    n_out = int(rng.integers(2, 5)) if n_out is None else int(n_out)
    qtype, s_in, zp_in, qmin, qmax = _random_input_quant(rng, opts, "input_dtype", pow2_scales)
    act_dtype = opts.get("act_dtype", "uint8")
    _, _, aqmin, aqmax = _qtype(act_dtype, "act_dtype")
    azp = _zero_point(opts.get("act_zero_point"), act_dtype, "act_zero_point")
    cws, cwsc = _random_conv_weights(rng, input_shape, channels, kernel_sizes, per_axis,
                                     pow2_scales)
    h = (_cal_codes(rng, qmin, qmax, input_shape) - zp_in) * s_in
    h, cbs, asc = _calibrate_float_bias_convs(rng, h, cws, cwsc, azp, aqmin, aqmax, pow2_scales)
    flat, w, s_w = _random_dense_head(rng, h, n_out, per_axis, pow2_scales)
    b = _bias_for(flat @ (w * s_w.astype(np.float64)), rng).astype(_F32)
    kw = {k: v for k, v in opts.items() if k not in ("input_scale", "input_zero_point")}
    return qdq_conv(input_shape, cws, cwsc, [w], [s_w if per_axis else float(s_w)], asc, cbs,
                    [b], input_scale=s_in, input_zero_point=zp_in, **kw)


def random_qoperator_mlp(rng: np.random.Generator, sizes: Optional[Sequence[int]] = None, *,
                         pow2_scales: bool = True, per_axis: bool = False,
                         **opts) -> BuiltModel:
    """Random bias-free :func:`qoperator_mlp` (scales calibrated as in
    :func:`random_qdq_mlp`; ``per_axis`` gives per-column weight scales)."""
    dims = _random_sizes(rng, sizes)
    qtype, s_in, zp_in, qmin, qmax = _random_input_quant(rng, opts, "act_dtype", pow2_scales)
    zp_h = qmin
    zp_out = _zero_point(opts.get("output_zero_point"), qtype, "output_zero_point", "middle")
    h = (_cal_codes(rng, qmin, qmax, (dims[0],)) - zp_in) * s_in
    ws, wsc, asc, so = [], [], [], 1.0
    for li in range(len(dims) - 1):
        wf = rng.normal(size=(dims[li], dims[li + 1]))
        if li < len(dims) - 2:  # no bias: redraw columns whose unit is (almost) never active
            for j in range(dims[li + 1]):
                for _ in range(50):
                    if 0.15 <= float(np.mean(h @ wf[:, j] > 0)) <= 0.95:
                        break
                    wf[:, j] = rng.normal(size=dims[li])
        s_w = _weight_scale(wf, per_axis, pow2_scales, rng, axis=0)
        w = np.clip(np.round(wf / s_w), -127, 127).astype(np.int64)
        ws.append(w)
        wsc.append(s_w if per_axis else float(s_w))
        pre = h @ (w * s_w.astype(np.float64))
        if li < len(dims) - 2:
            s = _choose_scale(_top(pre), qmax - zp_h, pow2_scales, rng)
            asc.append(s)
            h = (_np_q(pre, s, zp_h, qmin, qmax) - zp_h) * s
        else:
            room = min(qmax - zp_out, zp_out - qmin)
            so = _choose_scale(float(np.abs(pre).max()) or 1.0, room, pow2_scales, rng)
    kw = {k: v for k, v in opts.items() if k not in ("input_scale", "input_zero_point")}
    return qoperator_mlp(ws, wsc, asc, so, input_scale=s_in, input_zero_point=zp_in, **kw)


def random_qoperator_conv(rng: np.random.Generator, input_shape: Optional[Sequence[int]] = None,
                          channels: Optional[Sequence[int]] = None,
                          kernel_sizes: Optional[Union[int, Sequence[int]]] = None,
                          n_out: Optional[int] = None, *, pow2_scales: bool = True,
                          per_axis: bool = False, **opts) -> BuiltModel:
    """Random :func:`qoperator_conv` (geometry as :func:`random_qdq_conv`; int32 conv biases
    calibrated; ``per_axis`` gives per-output-channel conv and per-column dense scales)."""
    input_shape, channels, kernel_sizes = _random_conv_geometry(rng, input_shape, channels,
                                                                kernel_sizes)
    n_out = int(rng.integers(2, 5)) if n_out is None else int(n_out)
    qtype, s_in, zp_in, qmin, qmax = _random_input_quant(rng, opts, "act_dtype", pow2_scales)
    zp_h = qmin
    zp_out = _zero_point(opts.get("output_zero_point"), qtype, "output_zero_point", "middle")
    cws, cwsc = _random_conv_weights(rng, input_shape, channels, kernel_sizes, per_axis,
                                     pow2_scales)
    h = (_cal_codes(rng, qmin, qmax, input_shape) - zp_in) * s_in
    prev_s, cbs, asc = s_in, [], []
    for w, s_w in zip(cws, cwsc):
        s_w64 = np.asarray(s_w, np.float64)
        pre = _np_conv(h, w * s_w64.reshape(-1, 1, 1, 1) if s_w64.ndim else w * s_w64)
        bscale = np.float32(prev_s) * np.broadcast_to(s_w64, (w.shape[0],))
        codes = np.round(_bias_for(pre, rng) / bscale).astype(np.int64)
        cbs.append(codes)
        z = np.maximum(pre + (codes * bscale).reshape(-1, 1, 1), 0)
        s = _choose_scale(_top(z), qmax - zp_h, pow2_scales, rng)
        asc.append(s)
        h = (_np_q(z, s, zp_h, qmin, qmax) - zp_h) * s
        prev_s = s
    flat, w, s_w = _random_dense_head(rng, h, n_out, per_axis, pow2_scales)
    pre = flat @ (w * s_w.astype(np.float64))
    room = min(qmax - zp_out, zp_out - qmin)
    so = _choose_scale(float(np.abs(pre).max()) or 1.0, room, pow2_scales, rng)
    kw = {k: v for k, v in opts.items() if k not in ("input_scale", "input_zero_point")}
    return qoperator_conv(input_shape, cws, cwsc, [w], [s_w if per_axis else float(s_w)], asc,
                          so, cbs, input_scale=s_in, input_zero_point=zp_in, **kw)


def random_integer_mlp(rng: np.random.Generator, sizes: Optional[Sequence[int]] = None, *,
                       pow2_scales: bool = True, per_axis: bool = False,
                       **opts) -> BuiltModel:
    """Random :func:`integer_mlp` (float biases and activation scales calibrated)."""
    dims = _random_sizes(rng, sizes)
    qtype, s_in, zp_in, qmin, qmax = _random_input_quant(rng, opts, "act_dtype", pow2_scales)
    zp_h = qmin
    h = (_cal_codes(rng, qmin, qmax, (dims[0],)) - zp_in) * s_in
    ws, wsc, asc, bs = [], [], [], []
    for li in range(len(dims) - 1):
        wf = rng.normal(size=(dims[li], dims[li + 1]))
        s_w = _weight_scale(wf, per_axis, pow2_scales, rng, axis=0)
        w = np.clip(np.round(wf / s_w), -127, 127).astype(np.int64)
        ws.append(w)
        wsc.append(s_w if per_axis else float(s_w))
        pre = h @ (w * s_w.astype(np.float64))
        b = _bias_for(pre, rng)
        bs.append(b.astype(_F32))
        if li < len(dims) - 2:
            z = np.maximum(pre + b, 0)
            s = _choose_scale(_top(z), qmax - zp_h, pow2_scales, rng)
            asc.append(s)
            h = (_np_q(z, s, zp_h, qmin, qmax) - zp_h) * s
    kw = {k: v for k, v in opts.items() if k not in ("input_scale", "input_zero_point")}
    return integer_mlp(ws, wsc, asc, bs, input_scale=s_in, input_zero_point=zp_in, **kw)


def random_integer_conv(rng: np.random.Generator, input_shape: Optional[Sequence[int]] = None,
                        channels: Optional[Sequence[int]] = None,
                        kernel_sizes: Optional[Union[int, Sequence[int]]] = None,
                        n_out: Optional[int] = None, *, pow2_scales: bool = True,
                        per_axis: bool = False, **opts) -> BuiltModel:
    """Random :func:`integer_conv` (geometry as :func:`random_qdq_conv`)."""
    input_shape, channels, kernel_sizes = _random_conv_geometry(rng, input_shape, channels,
                                                                kernel_sizes)
    n_out = int(rng.integers(2, 5)) if n_out is None else int(n_out)
    qtype, s_in, zp_in, qmin, qmax = _random_input_quant(rng, opts, "act_dtype", pow2_scales)
    zp_h = qmin
    cws, cwsc = _random_conv_weights(rng, input_shape, channels, kernel_sizes, per_axis,
                                     pow2_scales)
    h = (_cal_codes(rng, qmin, qmax, input_shape) - zp_in) * s_in
    h, cbs, asc = _calibrate_float_bias_convs(rng, h, cws, cwsc, zp_h, qmin, qmax, pow2_scales)
    flat, w, s_w = _random_dense_head(rng, h, n_out, per_axis, pow2_scales)
    b = _bias_for(flat @ (w * s_w.astype(np.float64)), rng).astype(_F32)
    kw = {k: v for k, v in opts.items() if k not in ("input_scale", "input_zero_point")}
    return integer_conv(input_shape, cws, cwsc, [w], [s_w if per_axis else float(s_w)], asc,
                        cbs, [b], input_scale=s_in, input_zero_point=zp_in, **kw)


def random_sign_mlp(rng: np.random.Generator, sizes: Optional[Sequence[int]] = None,
                    **opts) -> BuiltModel:
    """Random :func:`sign_mlp`: weights uniform in {-1, +1}; first-layer biases calibrated on
    inputs uniform in [-1, 1] (or on the input grid with ``input_scale``); later biases are
    calibrated integers, so zero pre-activations (the Sign(0) case) do occur."""
    dims = _random_sizes(rng, sizes)
    if opts.get("input_scale") is not None:
        qtype = opts.get("input_dtype", "uint8")
        _, _, qmin, qmax = _qtype(qtype, "input_dtype")
        zp = _zero_point(opts.get("input_zero_point"), qtype, "input_zero_point")
        h = (_cal_codes(rng, qmin, qmax, (dims[0],)) - zp) * float(opts["input_scale"])
    else:
        h = rng.uniform(-1, 1, size=(_N_CAL, dims[0]))
    ws, bs = [], []
    for li in range(len(dims) - 1):
        w = rng.choice(np.array([-1, 1]), size=(dims[li], dims[li + 1]))
        pre = h @ w
        b = _bias_for(pre, rng)
        if li > 0:
            b = np.round(b)
        ws.append(w)
        bs.append(b.astype(_F32))
        h = np.where(pre + b >= 0, 1.0, -1.0) if opts.get("idiom") else np.sign(pre + b)
    return sign_mlp(ws, bs, **opts)
