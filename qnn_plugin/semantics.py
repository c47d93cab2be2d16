"""Reference semantics of the quantization operators: the exact meaning of a QNN, in numpy.

This module is the project's single reference for what the quantization operators of an ONNX
graph compute. The verifier's counterexample checker and the SMT baseline call it; nothing here
imports torch. Every function takes and returns numpy arrays.

Operators covered (each as the ONNX specification defines it, opsets 10 to 28, and evaluated
the way onnxruntime 1.31's CPU kernels evaluate it with graph optimisations disabled, which was
checked bit for bit by ``tests/test_semantics.py``):

* ``QuantizeLinear``  -> :func:`quantize_linear`  (per tensor, per axis, blocked; 2/4/8/16-bit)
* ``DequantizeLinear`` -> :func:`dequantize_linear`
* ``MatMulInteger`` / ``ConvInteger`` -> :func:`matmul_integer` / :func:`conv_integer`
* ``QLinearMatMul`` / ``QLinearConv`` -> :func:`qlinear_matmul` / :func:`qlinear_conv`
* onnxruntime's contrib ``QGemm`` / ``QLinearAdd`` (domain ``com.microsoft``, what
  ``onnxruntime.quantization.quantize_static`` emits in QOperator format) -> :func:`qgemm` /
  :func:`qlinear_add` (the latter with its two fused multiply-adds, :func:`fma32`)
* the fixed-point idiom and binarised activations: :func:`round_half_even`, :func:`floor`,
  :func:`ceil`, :func:`clip`, :func:`relu`, :func:`sign`, :func:`cast`, and :func:`argmax`
  (the classification decision; ties go to the smaller index).

:func:`run_reference` evaluates a whole ONNX model operator by operator with
``onnx.reference.ReferenceEvaluator``, with the operators above replaced by this module's
implementations.

Integer types
-------------
Quantized tensors are held in the smallest numpy integer type that contains them: int4 values
(in [-8, 7]) in ``np.int8`` arrays, uint4 values (in [0, 15]) in ``np.uint8`` arrays, likewise
int2/uint2. :func:`qtype` maps a type name, a numpy dtype or an ``onnx.TensorProto`` enum to a
:class:`QType` (name, numpy dtype, lo, hi, onnx enum). Arrays of the ``ml_dtypes`` 4-bit types
(what ``onnx.numpy_helper`` produces for INT4/UINT4 initializers) are accepted as inputs.

Where float32 evaluation and exact real arithmetic part
--------------------------------------------------------
The specification states each operator in real arithmetic: QuantizeLinear is
``saturate(round_half_even(x / scale) + zero_point)``, QLinearMatMul/QLinearConv are
``saturate(round_half_even(acc * a_scale * b_scale / y_scale) + y_zero_point)`` with ``acc`` the
exact integer accumulator. onnxruntime, and therefore the VNN-COMP counterexample checker,
evaluates them in float32. This module mirrors onnxruntime's float32 evaluation exactly (so that
a counterexample it confirms is one onnxruntime confirms); the two readings part only here:

1. **Division near rounding ties (QuantizeLinear).** onnxruntime computes ``q = fl(x / scale)``,
   one correctly rounded float32 *division* (not a multiplication by a precomputed reciprocal;
   ``x * fl(1/scale)`` disagrees with it on a few hundred of every ~36,000 values within 30 ulps
   of a tie), then rounds ``q`` half to even. When ``scale`` is not a power of two the exact
   quotient is generally not a float32, and ``fl`` can move it onto or across a half-integer
   ``k + 1/2``: the results (then one quantum apart) can differ only where
   ``|x / scale - (k + 1/2)| <= ulp(x / scale) / 2 <= 2**-24 * |x / scale|``.
   A float32 ``x`` "on a tie" ``(k + 1/2) * scale`` is itself rounded, so exact arithmetic
   rounds it by which side ``x`` fell on, while float32 often lands exactly on ``k + 1/2`` and
   rounds to even. With a power-of-two scale, ``x / scale`` is exact (or overflows to +-inf,
   or underflows far below 1/2, where saturation and rounding give the exact answer anyway), so
   the two always agree.
2. **Requantization (QLinearMatMul, QLinearConv).** onnxruntime computes the multiplier
   ``M = fl(fl(a_scale * b_scale) / y_scale)`` (per output column/channel), converts the exact
   int32 accumulator (bias included) to float32, ``A = fl(acc)``, and rounds ``fl(A * M)`` half
   to even. Three roundings separate this from the real ``acc * a_scale * b_scale / y_scale``:
   the two in ``M`` (absent when the scales are powers of two: ``M`` is then a power of two),
   the conversion ``fl(acc)`` (exact for ``|acc| <= 2**24``; beyond, only if ``acc`` has at
   most 24 significant bits), and ``fl(A * M)`` (exact when ``M`` is a power of two).
3. **Integer accumulators carried in float32.** A QDQ graph (DequantizeLinear -> float MatMul /
   Conv / Gemm / Add -> QuantizeLinear) carries its accumulators in float32. With power-of-two
   scales every dequantized value is an integer multiple of a common power of two ``u``, so every
   product and every partial sum is exact as long as its magnitude stays below ``2**24 * u``
   (float32 has a 24-bit significand); beyond that, partial sums round and the result depends on
   the summation order of the kernel. DequantizeLinear itself computes ``fl(fl(x - zp) * scale)``
   with ``x - zp`` exact in integer arithmetic: exact for 8/16-bit inputs with power-of-two
   scales, and for int32 inputs only while ``|x - zp| <= 2**24``.

Consequently: **with power-of-two scales and every accumulator below 2**24 (in units of its
grid), float32 evaluation is exact** -- it equals the real-arithmetic specification bit for bit
(and docs/dependencies.md reports onnxruntime agreeing with or without graph optimisations).
With other scales, the functions here reproduce onnxruntime's float32 results (with
``ORT_DISABLE_ALL``), not the real ones; default graph optimisations fuse QDQ patterns into
integer kernels whose requantization differs again (see docs/dependencies.md).

Out-of-range and special values (observed on onnxruntime 1.31, CPU, x86-64)
---------------------------------------------------------------------------
* QuantizeLinear / requantization: values beyond the type range saturate, ``+inf`` to ``hi``,
  ``-inf`` to ``lo``, and NaN to ``lo`` (the low end of the type, whatever the zero point);
  this module does the same.
* Cast float -> integer: the specification leaves out-of-range values undefined. onnxruntime
  truncates toward zero into a 32-bit integer (NaN, +-inf and values beyond int32 become
  INT32_MIN) and keeps the low bits for narrower types (300.7 -> int8 44, 255.9 -> int8 -1,
  1e10 -> int8 0). For int4/uint4 targets it even rounds half away from zero before wrapping
  (2.5 -> 3, 7.7 -> int4 -8). :func:`cast` instead truncates toward zero and **saturates** to the
  target range (NaN -> 0); in range, for 8/16/32/64-bit targets, it equals onnxruntime.
* Before onnxruntime 1.32 (which saturates as specified), two onnxruntime QuantizeLinear
  kernels -- 2-bit outputs, and blocked quantization along a non-last axis -- convert
  ``round(x / scale)`` to int32 *before* adding the zero point and
  saturating; for ``|x / scale| >= 2**31``, +-inf and NaN that conversion is undefined (x86-64
  gives INT32_MIN, so the result is the low end, or, with a negative zero point, wraps to the
  high end). This module saturates as the specification says; below 2**31 they agree.
* Relu keeps ``-0.0`` and NaN as onnxruntime does (``x < 0 ? 0 : x``); ArgMax scans with a
  strict ``>``, so ties go to the smaller index and a NaN only wins if it comes first. Clip's
  missing bounds are the type's finite limits (+-inf clip to +-FLT_MAX; onnxruntime's Clip-11
  float16 kernel alone leaves them). Sign(NaN) is NaN (onnxruntime's float16 kernel gives 0).

What onnxruntime 1.31 (CPU) does not run, and this module does
---------------------------------------------------------------
Opsets above 26 (onnx 1.23 defines 28); QuantizeLinear with int32 ``x``; MatMulInteger with a
per-row ``a_zero_point``; ConvInteger with a per-channel ``w_zero_point``; QLinearMatMul with a
per-row ``a_scale``/``a_zero_point``; QLinearMatMul and QLinearConv for type combinations other
than (uint8, uint8, uint8), (uint8, int8, uint8) and (int8, int8, int8) (for (a|x, b|w, y));
Relu on int16/int64, Clip on int16/uint16, ArgMax on 16-bit and unsigned 32/64-bit integers.
Float8/float4 types are not supported here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "QType",
    "qtype",
    "quantize_linear",
    "dequantize_linear",
    "matmul_integer",
    "conv_integer",
    "qlinear_matmul",
    "qlinear_conv",
    "qgemm",
    "qlinear_add",
    "fma32",
    "round_half_even",
    "floor",
    "ceil",
    "clip",
    "relu",
    "sign",
    "cast",
    "argmax",
    "run_reference",
]

_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1


# ----------------------------------------------------------------------------------------------
# Integer types
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QType:
    """An ONNX integer type: its name, the numpy dtype holding it, its range and onnx enum."""

    name: str
    dtype: np.dtype
    lo: int
    hi: int
    onnx_type: int  # onnx.TensorProto.DataType value

    @property
    def bits(self) -> int:
        return int(self.hi - self.lo).bit_length()

    @property
    def signed(self) -> bool:
        return self.lo < 0

    @property
    def quantizable(self) -> bool:
        """Whether QuantizeLinear may produce this type (2-, 4-, 8- and 16-bit integers)."""
        return self.bits <= 16


def _make_types() -> Dict[str, QType]:
    # TensorProto enum values (stable across onnx releases; checked against onnx in the tests).
    table = [
        ("uint8", np.uint8, 0, 255, 2),
        ("int8", np.int8, -128, 127, 3),
        ("uint16", np.uint16, 0, 65535, 4),
        ("int16", np.int16, -32768, 32767, 5),
        ("int32", np.int32, _INT32_MIN, _INT32_MAX, 6),
        ("int64", np.int64, -(2 ** 63), 2 ** 63 - 1, 7),
        ("uint32", np.uint32, 0, 2 ** 32 - 1, 12),
        ("uint64", np.uint64, 0, 2 ** 64 - 1, 13),
        ("uint4", np.uint8, 0, 15, 21),
        ("int4", np.int8, -8, 7, 22),
        ("uint2", np.uint8, 0, 3, 25),
        ("int2", np.int8, -2, 1, 26),
    ]
    return {n: QType(n, np.dtype(d), lo, hi, e) for n, d, lo, hi, e in table}


_TYPES: Dict[str, QType] = _make_types()
_BY_ENUM: Dict[int, QType] = {t.onnx_type: t for t in _TYPES.values()}
_FLOAT_NAMES = {"float": "float32", "float32": "float32", "double": "float64",
                "float64": "float64", "float16": "float16", "half": "float16"}
_FLOAT_ENUMS = {1: "float32", 11: "float64", 10: "float16"}


def qtype(name_or_enum: Any) -> QType:
    """The :class:`QType` for an integer type given as a name (``"int8"``, ``"INT4"``,
    ``"tensor(uint8)"``), an ``onnx.TensorProto`` enum value, a numpy dtype or scalar type
    (``np.int8`` gives int8, never int4), an ``ml_dtypes`` 4-/2-bit dtype, or a QType."""
    t = name_or_enum
    if isinstance(t, QType):
        return t
    if isinstance(t, (bool, np.bool_)):
        raise TypeError(f"not an integer type: {t!r}")
    if isinstance(t, (int, np.integer)):
        if int(t) in _BY_ENUM:
            return _BY_ENUM[int(t)]
        raise ValueError(f"onnx type enum {int(t)} is not an integer type known here "
                         f"(known: {sorted(_BY_ENUM)})")
    if isinstance(t, str):
        key = t.strip().lower()
        if key.startswith("tensor(") and key.endswith(")"):
            key = key[7:-1]
        if key in _TYPES:
            return _TYPES[key]
        raise ValueError(f"unknown integer type {t!r}; expected one of {sorted(_TYPES)}")
    try:
        dt = np.dtype(t)
    except TypeError:
        raise TypeError(f"cannot interpret {t!r} as an integer type") from None
    if dt.name in _TYPES and (dt.kind in "iu" or dt.name in ("int4", "uint4", "int2", "uint2")):
        return _TYPES[dt.name]
    raise ValueError(f"dtype {dt} is not an integer type known here")


def _qtype_of_array(a: np.ndarray) -> QType:
    return qtype(a.dtype)


def _int64(a: Any, what: str) -> np.ndarray:
    """An integer array (numpy or ml_dtypes 4-bit) as int64, exactly."""
    arr = np.asarray(a)
    if arr.dtype.kind in "iu":
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > 2 ** 63 - 1:
            raise OverflowError(f"{what}: uint64 values beyond int64 are not supported")
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64)
    if arr.dtype.name in ("int4", "uint4", "int2", "uint2"):
        return arr.astype(np.int64)
    raise TypeError(f"{what} must be an integer array, got dtype {arr.dtype}")


def _float32(a: Any, what: str) -> np.ndarray:
    """A float array as float32. float16/bfloat16 widen exactly; float64 (e.g. Python floats)
    is rounded to float32, as storing it in an ONNX float tensor would; integers convert."""
    arr = np.asarray(a)
    if arr.dtype == np.float32:
        return arr
    if arr.dtype.kind in "fiub" or arr.dtype.name == "bfloat16":
        return arr.astype(np.float32)
    raise TypeError(f"{what} must be a float array, got dtype {arr.dtype}")


def _norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {rank}")
    return axis % rank


def _expand_param(p: np.ndarray, shape: Tuple[int, ...], axis: int, block_size: int,
                  what: str) -> np.ndarray:
    """Broadcast a scale / zero point against ``shape`` per QuantizeLinear's granularities:
    per tensor (a scalar or a 1-element 1-D tensor), per axis (1-D of length shape[axis]) or
    blocked (same rank as x, ``ceil(shape[axis] / block_size)`` along axis)."""
    if block_size is None:
        block_size = 0
    block_size = int(block_size)
    if block_size < 0:
        raise ValueError(f"block_size must be >= 0, got {block_size}")
    rank = len(shape)
    if block_size > 0:
        if p.ndim != rank:
            raise ValueError(f"blocked quantization: {what} must have the rank of x "
                             f"({rank}), got shape {p.shape}")
        ax = _norm_axis(axis, rank)
        for i in range(rank):
            if i != ax and p.shape[i] != shape[i]:
                raise ValueError(f"blocked quantization: {what} shape {p.shape} must equal x "
                                 f"shape {shape} except along axis {ax}")
        if -(-shape[ax] // block_size) != p.shape[ax]:
            raise ValueError(f"blocked quantization: {what} has {p.shape[ax]} blocks along axis "
                             f"{ax}, but ceil({shape[ax]}/{block_size}) blocks are needed")
        rep = np.repeat(p, block_size, axis=ax)
        index = [slice(None)] * rank
        index[ax] = slice(0, shape[ax])
        return rep[tuple(index)]
    if p.ndim == 0 or (p.ndim == 1 and p.size == 1):
        return p.reshape(())
    if p.ndim == 1:
        ax = _norm_axis(axis, rank)
        if p.shape[0] != shape[ax]:
            raise ValueError(f"per-axis quantization: {what} has {p.shape[0]} elements but x "
                             f"has {shape[ax]} along axis {ax}")
        new_shape = [1] * rank
        new_shape[ax] = p.shape[0]
        return p.reshape(new_shape)
    raise ValueError(f"{what} must be a scalar or 1-D (per axis) unless block_size > 0; "
                     f"got shape {p.shape}")


def _saturate(v: np.ndarray, qt: QType) -> np.ndarray:
    """Float64 integer-valued ``v`` (NaN allowed) -> ``qt`` values, saturating; NaN -> lo."""
    v = np.clip(v, qt.lo, qt.hi)
    v = np.where(np.isnan(v), qt.lo, v)
    return np.asarray(v).astype(qt.dtype)


def _check_int32(acc: np.ndarray, what: str) -> np.ndarray:
    if acc.size and (int(acc.min()) < _INT32_MIN or int(acc.max()) > _INT32_MAX):
        raise OverflowError(f"{what}: the exact integer accumulator leaves the int32 range "
                            f"(min {int(acc.min())}, max {int(acc.max())}); onnxruntime would "
                            f"wrap it around")
    return acc


# ----------------------------------------------------------------------------------------------
# QuantizeLinear / DequantizeLinear
# ----------------------------------------------------------------------------------------------
def quantize_linear(x: Any, scale: Any, zero_point: Any = None, axis: int = 1,
                    block_size: int = 0, output_dtype: Any = None,
                    saturate: bool = True) -> np.ndarray:
    """ONNX QuantizeLinear: ``y = saturate(round_half_even(x / scale) + zero_point)``.

    Granularity follows ``scale``'s shape: a scalar (per tensor), a 1-D tensor of length
    ``x.shape[axis]`` (per axis, opset 13+; negative ``axis`` counts from the back), or, with
    ``block_size > 0`` (opset 21+), a tensor of x's rank with ``ceil(x.shape[axis]/block_size)``
    entries along ``axis``, each repeated ``block_size`` times. ``zero_point`` has scale's
    shape and defaults to 0.

    The output type is ``zero_point``'s type if given, else ``output_dtype`` (a name, onnx enum
    or dtype, see :func:`qtype`), else uint8: one of uint8, int8, uint16, int16, uint4, int4,
    uint2, int2 (4- and 2-bit results are held in int8/uint8 arrays). An int8/uint8
    ``zero_point`` together with ``output_dtype`` int4/uint4 (or int2/uint2) means a 4-bit
    (2-bit) zero point; a zero point given as a Python int or list carries no type, so
    ``output_dtype`` (or uint8) decides. Integer outputs always saturate; ``saturate`` only
    concerns float8 outputs, which are not supported here.

    Arithmetic, as onnxruntime does it (verified bit for bit, opsets 10 to 26, every type): x
    and scale are taken as float32 (float16/bfloat16 widen exactly, float64 and int32 inputs
    are rounded to float32), the quotient is one IEEE float32 **division** ``fl(x / scale)``
    -- onnxruntime does not multiply by a reciprocal, and ``x * fl(1/scale)`` rounds
    differently next to ties -- rounded half to even, offset by the zero point and saturated.
    NaN gives the type's lower bound, +-inf saturate (two onnxruntime kernels differ beyond
    ``|x / scale| >= 2**31``, see the module docstring). For float16 scales the specification
    (opset 23+) asks for a float16 division; onnxruntime divides in float32, and so does this
    function. int32 ``x`` (schema-legal, not run by onnxruntime) is converted to float32 first.
    See the module docstring for where all this departs from exact arithmetic (non-power-of-two
    scales, within 2**-24 relative of a tie).
    """
    xf = _float32(x, "x")
    sf = _float32(scale, "scale")
    if zero_point is not None and not isinstance(zero_point, (np.ndarray, np.generic)):
        # an untyped (Python) zero point: the type comes from output_dtype (default uint8)
        qt = _output_qtype(None, output_dtype)
        zero_point = np.asarray(zero_point, dtype=np.int64)
    else:
        qt = _output_qtype(zero_point, output_dtype)
    s = _expand_param(sf, xf.shape, axis, block_size, "scale")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        q = np.rint(np.divide(xf, s, dtype=np.float32))
    v = q.astype(np.float64)
    if zero_point is not None:
        zp = _int64(zero_point, "zero_point")
        if zp.size and (zp.min() < qt.lo or zp.max() > qt.hi):
            raise ValueError(f"zero_point outside the {qt.name} range [{qt.lo}, {qt.hi}]")
        v = v + _expand_param(zp, xf.shape, axis, block_size, "zero_point")
    return _saturate(v, qt)


def _output_qtype(zero_point: Any, output_dtype: Any) -> QType:
    out = None
    if output_dtype is not None and not (isinstance(output_dtype, (int, np.integer))
                                         and int(output_dtype) == 0):
        out = qtype(output_dtype)
    if zero_point is not None:
        zq = _qtype_of_array(np.asarray(zero_point))
        if out is not None and out != zq and out.dtype != zq.dtype:
            raise ValueError(f"output_dtype {out.name} does not match zero_point type {zq.name}")
        if out is None or out.dtype != zq.dtype:
            out = zq
    if out is None:
        out = _TYPES["uint8"]
    if not out.quantizable:
        raise ValueError(f"QuantizeLinear cannot produce {out.name}")
    return out


def dequantize_linear(x: Any, scale: Any, zero_point: Any = None, axis: int = 1,
                      block_size: int = 0) -> np.ndarray:
    """ONNX DequantizeLinear: ``y = (x - zero_point) * scale`` as float32.

    Same granularities as :func:`quantize_linear`. ``x`` is any integer array (8/16-bit,
    4/2-bit held in int8/uint8 or ml_dtypes arrays, int32). As onnxruntime does it (verified):
    ``x - zero_point`` in exact integer arithmetic, converted to float32 (exact while
    ``|x - zero_point| <= 2**24``, i.e. always for 16-bit and narrower types), then one float32
    multiplication by ``scale``. For int32 ``x`` with a non-zero zero point (which the
    specification does not foresee) onnxruntime subtracts with int32 wrap-around; this function
    subtracts exactly. float16 scales are widened: the float32 product of a 16-bit integer and a
    float16 rounds to the same float16 as a float16 multiplication would.
    """
    xi = _int64(x, "x")
    sf = _float32(scale, "scale")
    s = _expand_param(sf, xi.shape, axis, block_size, "scale")
    d = xi
    if zero_point is not None:
        d = xi - _expand_param(_int64(zero_point, "zero_point"), xi.shape, axis, block_size,
                               "zero_point")
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        return np.asarray(np.multiply(d.astype(np.float32), s, dtype=np.float32))


# ----------------------------------------------------------------------------------------------
# Integer matmul / convolution
# ----------------------------------------------------------------------------------------------
def _row_param(p: Any, a_ndim: int, what: str) -> np.ndarray:
    """A per-row parameter of A ([M] or [..., M, 1]) or scalar, broadcastable against A."""
    arr = np.asarray(p)
    if arr.size == 1 and arr.ndim <= 1:
        return arr.reshape(())
    if arr.ndim == 1:
        if a_ndim < 2:
            raise ValueError(f"{what}: a per-row parameter needs A of rank >= 2")
        return arr.reshape(-1, 1)
    return arr


def _col_param(p: Any, what: str) -> np.ndarray:
    """A per-column parameter of B ([N] or [..., 1, N]) or scalar: broadcasts as is."""
    arr = np.asarray(p)
    if arr.size == 1 and arr.ndim <= 1:
        return arr.reshape(())
    return arr


def _matmul_acc(a: Any, b: Any, a_zero_point: Any, b_zero_point: Any) -> np.ndarray:
    A = _int64(a, "a")
    B = _int64(b, "b")
    if a_zero_point is not None:
        A = A - _row_param(_int64(a_zero_point, "a_zero_point"), A.ndim, "a_zero_point")
    if b_zero_point is not None:
        B = B - _col_param(_int64(b_zero_point, "b_zero_point"), "b_zero_point")
    return np.matmul(A, B)  # int64: exact (numpy integer matmul does not go through BLAS)


def matmul_integer(a: Any, b: Any, a_zero_point: Any = None,
                   b_zero_point: Any = None) -> np.ndarray:
    """ONNX MatMulInteger: ``(a - a_zero_point) @ (b - b_zero_point)`` as int32 (numpy matmul
    broadcasting). ``a_zero_point`` is a scalar or per row ([M], or [..., M, 1]),
    ``b_zero_point`` a scalar or per column ([N], or [..., 1, N]). Accumulated exactly in int64;
    raises OverflowError if a result leaves int32 (where onnxruntime would wrap)."""
    acc = _matmul_acc(a, b, a_zero_point, b_zero_point)
    return _check_int32(acc, "MatMulInteger").astype(np.int32)


def _conv_geometry(x_shape: Sequence[int], w_shape: Sequence[int], auto_pad: Any,
                   dilations: Optional[Sequence[int]], group: int,
                   kernel_shape: Optional[Sequence[int]], pads: Optional[Sequence[int]],
                   strides: Optional[Sequence[int]]):
    if len(x_shape) < 3:
        raise ValueError(f"conv input must have rank >= 3 (N, C, spatial...), got {tuple(x_shape)}")
    if len(w_shape) != len(x_shape):
        raise ValueError(f"conv weight rank {len(w_shape)} != input rank {len(x_shape)}")
    nsp = len(x_shape) - 2
    n, c = x_shape[0], x_shape[1]
    m, cg = w_shape[0], w_shape[1]
    group = int(group or 1)
    ks = tuple(int(k) for k in w_shape[2:])
    if kernel_shape is not None and len(kernel_shape) and tuple(int(k) for k in kernel_shape) != ks:
        raise ValueError(f"kernel_shape {tuple(kernel_shape)} != weight spatial shape {ks}")
    if c % group or m % group or cg * group != c:
        raise ValueError(f"group={group} incompatible with {c} input channels and weight "
                         f"shape {tuple(w_shape)}")
    strides = tuple(int(s) for s in strides) if strides is not None and len(strides) else (1,) * nsp
    dilations = (tuple(int(d) for d in dilations) if dilations is not None and len(dilations)
                 else (1,) * nsp)
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    auto_pad = (auto_pad or "NOTSET").upper()
    insp = tuple(int(s) for s in x_shape[2:])
    eff = tuple((k - 1) * d + 1 for k, d in zip(ks, dilations))
    if auto_pad == "NOTSET":
        pads = tuple(int(p) for p in pads) if pads is not None and len(pads) else (0,) * (2 * nsp)
    elif auto_pad == "VALID":
        pads = (0,) * (2 * nsp)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nsp):
            out = -(-insp[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + eff[i] - insp[i])
            small, large = total // 2, total - total // 2
            if auto_pad == "SAME_UPPER":
                begin.append(small); end.append(large)
            else:
                begin.append(large); end.append(small)
        pads = tuple(begin + end)
    else:
        raise ValueError(f"unknown auto_pad {auto_pad!r}")
    if len(pads) != 2 * nsp or min(pads) < 0:
        raise ValueError(f"pads must be 2*{nsp} non-negative integers, got {pads}")
    if len(strides) != nsp or len(dilations) != nsp or min(strides) < 1 or min(dilations) < 1:
        raise ValueError(f"bad strides {strides} or dilations {dilations}")
    outsp = tuple((insp[i] + pads[i] + pads[nsp + i] - eff[i]) // strides[i] + 1
                  for i in range(nsp))
    if min(outsp) < 1:
        raise ValueError(f"empty convolution output {outsp}")
    return group, ks, strides, dilations, pads, outsp


def _conv_acc(x: Any, w: Any, x_zero_point: Any, w_zero_point: Any, auto_pad: Any,
              dilations: Any, group: Any, kernel_shape: Any, pads: Any, strides: Any) -> np.ndarray:
    """Exact int64 convolution of (x - x_zero_point) with (w - w_zero_point). Padding adds
    zeros after the zero point is subtracted, i.e. pads with x_zero_point (as onnxruntime)."""
    X = _int64(x, "x")
    W = _int64(w, "w")
    group, ks, strides, dilations, pads, outsp = _conv_geometry(
        X.shape, W.shape, auto_pad, dilations, group, kernel_shape, pads, strides)
    nsp = X.ndim - 2
    if x_zero_point is not None:
        xz = _int64(x_zero_point, "x_zero_point")
        if xz.size != 1:
            raise ValueError("x_zero_point must be a scalar (per tensor)")
        X = X - xz.reshape(())
    if w_zero_point is not None:
        wz = _int64(w_zero_point, "w_zero_point")
        if wz.size == 1:
            W = W - wz.reshape(())
        elif wz.ndim == 1 and wz.shape[0] == W.shape[0]:
            W = W - wz.reshape((-1,) + (1,) * (W.ndim - 1))
        else:
            raise ValueError(f"w_zero_point must be a scalar or have {W.shape[0]} elements")
    X = np.pad(X, [(0, 0), (0, 0)] + [(pads[i], pads[nsp + i]) for i in range(nsp)])
    n, c = X.shape[:2]
    m, cg = W.shape[:2]
    mg = m // group
    Xg = X.reshape((n, group, cg) + X.shape[2:])
    Wg = W.reshape((group, mg, cg) + W.shape[2:])
    out = np.zeros((n, group, mg) + outsp, dtype=np.int64)
    for kidx in np.ndindex(*ks):
        sl = tuple(slice(kidx[i] * dilations[i],
                         kidx[i] * dilations[i] + (outsp[i] - 1) * strides[i] + 1, strides[i])
                   for i in range(nsp))
        patch = Xg[(slice(None), slice(None), slice(None)) + sl]  # n, g, cg, *out
        wk = Wg[(slice(None), slice(None), slice(None)) + kidx]  # g, mg, cg
        out += np.einsum("ngc...,gmc->ngm...", patch, wk)
    return out.reshape((n, m) + outsp)


def conv_integer(x: Any, w: Any, x_zero_point: Any = None, w_zero_point: Any = None,
                 auto_pad: Any = "NOTSET", dilations: Any = None, group: int = 1,
                 kernel_shape: Any = None, pads: Any = None, strides: Any = None) -> np.ndarray:
    """ONNX ConvInteger (any number of spatial dimensions): the convolution of
    ``x - x_zero_point`` (scalar zero point; padding contributes 0, i.e. pads with the zero
    point) with ``w - w_zero_point`` (scalar or per output channel), as int32. Attributes as in
    ONNX Conv. Exact int64 accumulation; OverflowError if a result leaves int32."""
    acc = _conv_acc(x, w, x_zero_point, w_zero_point, auto_pad, dilations, group,
                    kernel_shape, pads, strides)
    return _check_int32(acc, "ConvInteger").astype(np.int32)


# ----------------------------------------------------------------------------------------------
# QLinearMatMul / QLinearConv
# ----------------------------------------------------------------------------------------------
def _requantize(acc: np.ndarray, multiplier: np.ndarray, y_zero_point: Any,
                default: QType, what: str) -> np.ndarray:
    """onnxruntime's requantization: ``saturate(rne(fl(fl(acc) * M)) + zp)``, NaN -> lo."""
    _check_int32(acc, what)
    if y_zero_point is None:
        qt, zp = default, np.zeros((), np.int64)
    elif not isinstance(y_zero_point, (np.ndarray, np.generic)):  # untyped Python int
        qt, zp = default, np.asarray(y_zero_point, dtype=np.int64)
    else:
        qt = _qtype_of_array(np.asarray(y_zero_point))
        zp = _int64(y_zero_point, "y_zero_point")
    if not qt.quantizable:
        raise ValueError(f"{what}: cannot produce {qt.name}")
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        v = np.rint(np.multiply(acc.astype(np.float32), multiplier, dtype=np.float32))
    return _saturate(v.astype(np.float64) + zp, qt)


def _multiplier(s1: np.ndarray, s2: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """``fl(fl(s1 * s2) / sy)`` in float32, the order onnxruntime uses (verified)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return np.divide(np.multiply(s1, s2, dtype=np.float32), sy, dtype=np.float32)


def qlinear_matmul(a: Any, a_scale: Any, a_zero_point: Any, b: Any, b_scale: Any,
                   b_zero_point: Any, y_scale: Any, y_zero_point: Any) -> np.ndarray:
    """ONNX QLinearMatMul: ``saturate(rne(acc * a_scale * b_scale / y_scale) + y_zero_point)``
    with ``acc = (a - a_zero_point) @ (b - b_zero_point)`` exact.

    a's scale/zero point are scalars or per row ([M] or [..., M, 1]); b's are scalars or per
    column ([N] or [..., 1, N]); y's are scalars (or broadcast against the output). Output type:
    y_zero_point's (int8 or uint8; None, or an untyped Python int, means a's type).

    Requantization exactly as onnxruntime (verified, disable-all and its only kernel): the exact
    accumulator (int32, else OverflowError) is converted to float32 (``fl(acc)``, which rounds
    once ``|acc| > 2**24``), multiplied in float32 by ``M = fl(fl(a_scale * b_scale) / y_scale)``
    (that order: ``a_scale * fl(b_scale / y_scale)`` and multiplying by ``fl(1 / y_scale)``
    round differently), rounded half to even, offset by y_zero_point and saturated.
    """
    A = np.asarray(a)
    acc = _matmul_acc(a, b, a_zero_point, b_zero_point)
    sa = _row_param(_float32(a_scale, "a_scale"), A.ndim, "a_scale")
    sb = _col_param(_float32(b_scale, "b_scale"), "b_scale")
    sy = _col_param(_float32(y_scale, "y_scale"), "y_scale")
    yz = y_zero_point
    if isinstance(y_zero_point, (np.ndarray, np.generic)):
        yz = _col_param(y_zero_point, "y_zero_point")
    return _requantize(acc, _multiplier(sa, sb, sy), yz, _qtype_of_array(A), "QLinearMatMul")


def qlinear_conv(x: Any, x_scale: Any, x_zero_point: Any, w: Any, w_scale: Any,
                 w_zero_point: Any, y_scale: Any, y_zero_point: Any, B: Any = None,
                 auto_pad: Any = "NOTSET", dilations: Any = None, group: int = 1,
                 kernel_shape: Any = None, pads: Any = None, strides: Any = None) -> np.ndarray:
    """ONNX QLinearConv: ``saturate(rne((conv(x - xz, w - wz) + B) * x_scale * w_scale /
    y_scale) + y_zero_point)``.

    x's and y's scale/zero point are scalars; w's are scalars or per output channel (1-D of
    length M). ``B`` is an optional int32 bias of length M (scale x_scale*w_scale, zero point
    0), added to the exact accumulator. Padding contributes 0 after subtracting x's zero point.
    Output type: y_zero_point's (int8/uint8; None, or an untyped Python int, means x's type).

    Requantization as onnxruntime does it (verified, including per-channel scales, bias,
    grouped/depthwise and padded convolutions): per output channel ``c`` the multiplier is
    ``M_c = fl(fl(x_scale * w_scale[c]) / y_scale)``; the accumulator (bias included, int32,
    else OverflowError) is converted to float32, multiplied by ``M_c`` in float32, rounded half
    to even, offset by y_zero_point and saturated.
    """
    X = np.asarray(x)
    acc = _conv_acc(x, w, x_zero_point, w_zero_point, auto_pad, dilations, group,
                    kernel_shape, pads, strides)
    m = acc.shape[1]
    spatial = (1,) * (acc.ndim - 2)
    if B is not None:
        bias = _int64(B, "B")
        if bias.ndim != 1 or bias.shape[0] != m:
            raise ValueError(f"B must be 1-D with {m} elements, got shape {bias.shape}")
        acc = acc + bias.reshape((1, m) + spatial)
    sx = _float32(x_scale, "x_scale")
    sw = _float32(w_scale, "w_scale")
    sy = _float32(y_scale, "y_scale")
    if sx.size != 1 or sy.size != 1:
        raise ValueError("x_scale and y_scale must be scalars")
    if sw.size == 1:
        sw = sw.reshape(())
    elif sw.ndim == 1 and sw.shape[0] == m:
        sw = sw.reshape((1, m) + spatial)
    else:
        raise ValueError(f"w_scale must be a scalar or have {m} elements")
    mult = _multiplier(sx.reshape(()), sw, sy.reshape(()))
    yz = y_zero_point
    if isinstance(y_zero_point, (np.ndarray, np.generic)):
        if y_zero_point.size != 1:
            raise ValueError("y_zero_point must be a scalar")
        yz = np.asarray(y_zero_point).reshape(())
    return _requantize(acc, mult, yz, _qtype_of_array(X), "QLinearConv")


# ----------------------------------------------------------------------------------------------
# onnxruntime contrib operators (domain com.microsoft, version 1): QGemm, QLinearAdd
# ----------------------------------------------------------------------------------------------
def fma32(a: Any, b: Any, c: Any) -> np.ndarray:
    """float32 fused multiply-add ``fl(a * b + c)``: one rounding of the exact value (what the
    x86 FMA instructions onnxruntime's AVX2 kernels use compute). Exact emulation: the product
    of two float32 is exact in float64; the float64 sum is rounded to odd (TwoSum error term),
    and rounding a round-to-odd 53-bit value to 24 bits equals rounding the exact value."""
    a64 = np.asarray(a, dtype=np.float32).astype(np.float64)
    b64 = np.asarray(b, dtype=np.float32).astype(np.float64)
    c64 = np.asarray(c, dtype=np.float32).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        p = a64 * b64
        s = np.asarray(p + c64)
        bv = s - p
        err = (p - (s - bv)) + (c64 - bv)
        fix = np.isfinite(s) & (err != 0) & ((s.view(np.int64) & 1) == 0)
        s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
        return np.asarray(s.astype(np.float32))


def _scalar_param(p: Any, what: str, conv: Callable[[Any, str], np.ndarray]) -> np.ndarray:
    arr = conv(p, what)
    if arr.size != 1:
        raise ValueError(f"{what} must be a scalar or a 1-element tensor, got shape {arr.shape}")
    return arr.reshape(())


def qgemm(a: Any, a_scale: Any, a_zero_point: Any, b: Any, b_scale: Any, b_zero_point: Any,
          c: Any = None, y_scale: Any = None, y_zero_point: Any = None, alpha: float = 1.0,
          trans_a: int = 0, trans_b: int = 0) -> np.ndarray:
    """onnxruntime's QGemm (com.microsoft): ``alpha * A' @ B' + C`` on quantized 2-D operands,
    ``A' = op(a) - a_zero_point`` (scalar), ``B' = op(b) - b_zero_point`` (scalar or per column
    of B', length N), ``op`` the transpose where ``trans_a``/``trans_b`` is set; ``c`` an optional
    int32 bias (scale ``a_scale * b_scale``) broadcast as (), (1,), (N,), (1, N), (M, 1) or (M, N).

    As onnxruntime 1.31 computes it (verified bit for bit): the exact integer accumulator
    ``acc = A' @ B' + c`` (int32, else OverflowError), the float32 output scale per column
    ``S_j = fl(fl(alpha * a_scale) * b_scale[j])``, divided (``fl(S_j / y_scale)``) when
    ``y_scale`` is given. With ``y_zero_point``: ``saturate(rne(fl(fl(acc) * S_j)) +
    y_zero_point)`` in y_zero_point's type (int8/uint8). Without it the output is float32
    ``fl(fl(acc) * S_j)`` (dequantized, or scaled by 1/y_scale if only y_scale is given).
    """
    A = _int64(a, "a")
    B = _int64(b, "b")
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"QGemm needs 2-D a and b, got shapes {A.shape} and {B.shape}")
    if trans_a:
        A = A.T
    if trans_b:
        B = B.T
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"QGemm: inner dimensions differ ({A.shape} @ {B.shape})")
    m, n = A.shape[0], B.shape[1]
    A = A - _scalar_param(a_zero_point, "a_zero_point", _int64)
    bz = _int64(b_zero_point, "b_zero_point")
    if bz.size == 1:
        B = B - bz.reshape(())
    elif bz.ndim == 1 and bz.shape[0] == n:
        B = B - bz.reshape(1, n)
    else:
        raise ValueError(f"b_zero_point must be a scalar or have N={n} elements")
    acc = np.matmul(A, B)
    if c is not None:
        bias = _int64(c, "c")
        if bias.size == 1:
            bias = bias.reshape(())
        elif bias.ndim == 1 and bias.shape[0] != n:
            raise ValueError(f"c of shape {bias.shape} does not broadcast to ({m}, {n})")
        acc = acc + np.broadcast_to(bias, (m, n))
    _check_int32(acc, "QGemm")
    sa = _scalar_param(a_scale, "a_scale", _float32)
    sb = _float32(b_scale, "b_scale")
    if sb.size == 1:
        sb = sb.reshape(())
    elif not (sb.ndim == 1 and sb.shape[0] == n):
        raise ValueError(f"b_scale must be a scalar or have N={n} elements")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        scale = np.multiply(np.multiply(np.float32(alpha), sa, dtype=np.float32), sb,
                            dtype=np.float32)
        if y_scale is not None:
            scale = np.divide(scale, _scalar_param(y_scale, "y_scale", _float32),
                              dtype=np.float32)
    if y_zero_point is None:
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            return np.asarray(np.multiply(acc.astype(np.float32), scale, dtype=np.float32))
    yz = np.asarray(y_zero_point)
    if yz.size != 1:
        raise ValueError("y_zero_point must be a scalar")
    return _requantize(acc, scale, yz.reshape(()), _qtype_of_array(yz), "QGemm")


def qlinear_add_swaps(a_shape: Sequence[int], b_shape: Sequence[int]) -> bool:
    """Whether onnxruntime's QLinearAdd passes B to its kernel first, for these input shapes.

    onnxruntime's broadcaster walks the dimensions from the innermost one, skipping dimensions
    where both inputs are 1 except the last of the shorter shape; the first dimension it keeps
    decides: if A's extent there is 1, A counts as a scalar per span and the kernel gets the run
    of B first (so also whenever A has a single element, or its innermost extent is 1 and B's
    innermost extent is 1 too). Otherwise A comes first."""
    a, b = tuple(int(d) for d in a_shape), tuple(int(d) for d in b_shape)
    if not a:
        return True
    if not b:
        return a[-1] == 1
    shortest = min(len(a), len(b))
    for i in range(shortest):
        da, db = a[-1 - i], b[-1 - i]
        if max(da, db) == 1 and i + 1 < shortest:
            continue
        return da == 1
    return False  # not reached


def qlinear_add_terms(a_scale: Any, a_zero_point: Any, b_scale: Any, b_zero_point: Any,
                      c_scale: Any, c_zero_point: Any, swap: bool = False):
    """The float32 constants of onnxruntime's QLinearAdd kernel, in its operand order (B first
    when ``swap``): ``(r_first, r_second, K)`` with ``r_x = fl(x_scale / c_scale)`` and
    ``K = fl(c_zero_point - fma(r_first, zp_first, fl(r_second * zp_second)))``, so that
    ``C = saturate(rne(fma(first, r_first, fma(second, r_second, K))))``."""
    sa = _scalar_param(a_scale, "A_scale", _float32)
    sb = _scalar_param(b_scale, "B_scale", _float32)
    sc = _scalar_param(c_scale, "C_scale", _float32)
    za = np.float32(0 if a_zero_point is None else _scalar_param(a_zero_point, "A_zero_point", _int64))
    zb = np.float32(0 if b_zero_point is None else _scalar_param(b_zero_point, "B_zero_point", _int64))
    zc = np.float32(0 if c_zero_point is None else _scalar_param(c_zero_point, "C_zero_point", _int64))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        ra = np.float32(sa / sc)
        rb = np.float32(sb / sc)
        (r1, z1), (r2, z2) = ((rb, zb), (ra, za)) if swap else ((ra, za), (rb, zb))
        k = np.float32(zc - fma32(r1, z1, np.float32(r2 * z2)))
    return r1, r2, k


def _cvtps_saturate(v: np.ndarray, qt: QType) -> np.ndarray:
    """x86 cvtps2dq (round half to even; NaN and |v| >= 2**31 give INT32_MIN), then the
    saturating packs to 16 and 8 bits."""
    r = np.rint(np.asarray(v, dtype=np.float64))
    r = np.where(np.isnan(r) | (r >= 2.0 ** 31) | (r < -(2.0 ** 31)), float(_INT32_MIN), r)
    return _saturate(r, qt)


def qlinear_add(a: Any, a_scale: Any, a_zero_point: Any, b: Any, b_scale: Any,
                b_zero_point: Any, c_scale: Any, c_zero_point: Any = None) -> np.ndarray:
    """onnxruntime's QLinearAdd (com.microsoft): ``C = saturate(rne((a_scale * (a - a_zp) +
    b_scale * (b - b_zp)) / c_scale) + c_zp)`` on int8 or uint8 tensors (numpy broadcasting),
    every scale and zero point a scalar; missing zero points are 0.

    As onnxruntime 1.31's x86-64 AVX2 kernel computes it (verified bit for bit on every
    operand pair, random and tie-heavy scales, all broadcast patterns, in
    ``tests/onnx_import/test_contrib.py``): with ``x`` the operand
    the kernel takes first (``a``, or ``b`` when :func:`qlinear_add_swaps`), ``y`` the other,
    ``r_x = fl(x_scale / c_scale)``, ``r_y = fl(y_scale / c_scale)`` and
    ``K = fl(c_zp - fma(r_x, x_zp, fl(r_y * y_zp)))`` (the compiler fuses that multiply-add),

        ``C = saturate(rne(fma(x, r_x, fma(y, r_y, K))))``

    -- two fused multiply-adds on the raw integers (not on ``x - x_zp``), each rounded once to
    float32. NaN or ``|.| >= 2**31`` before rounding (only with scale ratios beyond 2**23)
    give the type's low end, as the kernel's float-to-int32 conversion does.
    """
    A = np.asarray(a)
    B = np.asarray(b)
    qt = _qtype_of_array(A)
    if qt.name not in ("int8", "uint8") or _qtype_of_array(B) != qt:
        raise ValueError(f"QLinearAdd needs two int8 or two uint8 tensors, got {A.dtype} and {B.dtype}")
    swap = qlinear_add_swaps(A.shape, B.shape)
    r1, r2, k = qlinear_add_terms(a_scale, a_zero_point, b_scale, b_zero_point, c_scale,
                                  c_zero_point, swap)
    x, y = (B, A) if swap else (A, B)
    x, y = np.broadcast_arrays(x.astype(np.float32), y.astype(np.float32))
    v = fma32(x, r1, fma32(y, r2, k))
    return _cvtps_saturate(v, qt)


# ----------------------------------------------------------------------------------------------
# Fixed-point idiom, activations, cast, argmax
# ----------------------------------------------------------------------------------------------
def round_half_even(x: Any) -> np.ndarray:
    """ONNX Round: to the nearest integer, ties to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2); keeps
    the float dtype, -0.0 and NaN (bit-identical to onnxruntime)."""
    return np.asarray(np.rint(np.asarray(x)))


def floor(x: Any) -> np.ndarray:
    """ONNX Floor (exact in any float type)."""
    return np.asarray(np.floor(np.asarray(x)))


def ceil(x: Any) -> np.ndarray:
    """ONNX Ceil (exact in any float type)."""
    return np.asarray(np.ceil(np.asarray(x)))


def _type_limits(dtype: np.dtype) -> Tuple[Any, Any]:
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    return dtype.type(info.min), dtype.type(info.max)


def clip(x: Any, lo: Any = None, hi: Any = None) -> np.ndarray:
    """ONNX Clip: ``min(hi, max(x, lo))``; when lo > hi everything becomes hi; NaN stays NaN.
    A missing bound (None) is, as the specification says, the type's lowest / largest finite
    value, so +-inf become the largest finite floats (as onnxruntime does). Keeps x's dtype."""
    arr = np.asarray(x)
    tlo, thi = _type_limits(arr.dtype)
    lo = tlo if lo is None else np.asarray(lo).astype(arr.dtype)
    hi = thi if hi is None else np.asarray(hi).astype(arr.dtype)
    return np.asarray(np.minimum(np.maximum(arr, lo), hi), dtype=arr.dtype)


def relu(x: Any) -> np.ndarray:
    """ONNX Relu as onnxruntime computes it: ``x < 0 ? 0 : x`` (so -0.0 and NaN pass through)."""
    arr = np.asarray(x)
    return np.asarray(np.where(arr < 0, np.zeros((), arr.dtype), arr), dtype=arr.dtype)


def sign(x: Any) -> np.ndarray:
    """ONNX Sign: -1, 0 or 1 (sign(0) = sign(-0.0) = +0), NaN stays NaN; keeps the dtype.
    (onnxruntime agrees bit for bit except for float16 NaN, which its float16 kernel maps to 0.)"""
    return np.asarray(np.sign(np.asarray(x)))


def cast(x: Any, to: Any) -> np.ndarray:
    """ONNX Cast to an integer type (name, onnx enum or dtype; see :func:`qtype`) or to
    float16/float32/float64.

    float -> integer: truncation toward zero, then **saturation** to the target range, NaN -> 0.
    In range this is what onnxruntime does for 8/16/32/64-bit targets. Out of range the
    specification says "undefined"; onnxruntime wraps (truncates into int32, INT32_MIN for
    NaN/inf/beyond, then keeps the low bits), and for int4/uint4 it rounds half away from zero
    before wrapping -- see the module docstring. This function saturates instead, by design.
    integer -> integer: two's-complement wrap-around (keep the low bits), as the specification
    and onnxruntime do. bool -> 0/1. -> float: IEEE round to nearest even.
    """
    arr = np.asarray(x)
    if isinstance(to, str) and to.strip().lower() in _FLOAT_NAMES:
        return arr.astype(_FLOAT_NAMES[to.strip().lower()])
    if isinstance(to, (int, np.integer)) and not isinstance(to, bool) and int(to) in _FLOAT_ENUMS:
        return arr.astype(_FLOAT_ENUMS[int(to)])
    if not isinstance(to, (str, int, np.integer, QType)):
        try:
            dt = np.dtype(to)
            if dt.kind == "f":
                return arr.astype(dt)
        except TypeError:
            pass
    qt = qtype(to)
    if arr.dtype.kind == "f" or arr.dtype.name == "bfloat16":
        t = np.trunc(arr.astype(np.float64))
        over = t >= float(qt.hi) + 1.0  # hi + 1 is a power of two: exact in float64
        under = t < float(qt.lo)
        bad = np.isnan(t) | over | under
        safe = np.where(bad, 0.0, t)
        if qt.hi > 2 ** 63 - 1:
            out = safe.astype(np.uint64)
        else:
            out = safe.astype(np.int64)
        out = np.where(over, qt.hi, np.where(under, qt.lo, out))
        return np.asarray(out).astype(qt.dtype)
    if arr.dtype.kind not in "iub":
        arr = arr.astype(np.int64)  # ml_dtypes 4-/2-bit integers
    if qt.bits >= 8:
        return np.asarray(arr.astype(qt.dtype))  # numpy integer casts wrap (keep the low bits)
    mod = qt.hi - qt.lo + 1  # 2**bits divides 2**64, so wrapping through int64 first is harmless
    return np.asarray((arr.astype(np.int64) - qt.lo) % mod + qt.lo).astype(qt.dtype)


def _argmax_scan(y: np.ndarray, axis: int, last: bool) -> np.ndarray:
    arr = np.moveaxis(np.asarray(y), _norm_axis(axis, max(np.ndim(y), 1)), -1)
    if arr.shape[-1] == 0:
        raise ValueError("argmax of an empty axis")
    best = arr[..., 0]
    idx = np.zeros(best.shape, dtype=np.int64)
    for i in range(1, arr.shape[-1]):
        v = arr[..., i]
        better = (v >= best) if last else (v > best)
        best = np.where(better, v, best)
        idx = np.where(better, i, idx)
    return idx


def argmax(y: Any, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """ONNX ArgMax (select_last_index=0): index of the largest value along ``axis`` (int64);
    ties go to the smaller index. Scans like onnxruntime with a strict ``>``: a NaN is never
    greater, so it wins only in first position. ``keepdims`` as in ONNX (default False, like
    numpy)."""
    arr = np.asarray(y)
    idx = _argmax_scan(arr, axis, last=False)
    if keepdims:
        idx = np.expand_dims(idx, _norm_axis(axis, arr.ndim))
    return idx


# ----------------------------------------------------------------------------------------------
# Whole-model evaluation with onnx.reference
# ----------------------------------------------------------------------------------------------
_OVERRIDES: List[type] = []


def window_table(in_size: Sequence[int], out_size: Sequence[int], kernel: Sequence[int],
                 strides: Sequence[int], pad_begin: Sequence[int],
                 dilations: Sequence[int]) -> np.ndarray:
    """(outputs, kernel cells): the flat spatial input index each pooling window cell reads,
    ``prod(in_size)`` where the cell lies in the padding. Outputs and cells in row-major order."""
    rank = len(in_size)
    outs = np.stack(np.meshgrid(*[np.arange(o) for o in out_size], indexing="ij"), -1).reshape(-1, rank)
    cells = np.stack(np.meshgrid(*[np.arange(k) for k in kernel], indexing="ij"), -1).reshape(-1, rank)
    coords, valid = [], np.ones((len(outs), len(cells)), bool)
    for d in range(rank):
        c = outs[:, d, None] * strides[d] - pad_begin[d] + cells[None, :, d] * dilations[d]
        valid &= (c >= 0) & (c < in_size[d])
        coords.append(np.clip(c, 0, in_size[d] - 1))
    flat = np.ravel_multi_index(tuple(coords), tuple(in_size))
    return np.where(valid, flat, int(np.prod(in_size)))


def pool_geometry(in_size: Sequence[int], kernel: Sequence[int], strides: Any = None,
                  pads: Any = None, dilations: Any = None, ceil_mode: int = 0,
                  auto_pad: Any = "NOTSET", ends: bool = False) -> Tuple[Tuple[int, ...], ...]:
    """(output size, begin pads) of a pooling op as onnxruntime computes them: explicit pads, or
    auto_pad SAME_* (padding for ceil(in / stride) windows of the undilated kernel, the odd
    pad at the end for SAME_UPPER) or VALID; ceil_mode rounds the window count up but drops a
    last window that would start in the end padding. ``ends``: the end pads too."""
    rank = len(in_size)
    strides = tuple(int(v) for v in strides) if strides is not None and len(strides) else (1,) * rank
    dil = tuple(int(v) for v in dilations) if dilations is not None and len(dilations) else (1,) * rank
    span = [(int(k) - 1) * d + 1 for k, d in zip(kernel, dil)]
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    auto_pad = (auto_pad or "NOTSET").upper()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # onnxruntime sizes SAME padding with the undilated kernel, then pools with the dilated one
        target = [-(-int(n) // s) for n, s in zip(in_size, strides)]
        total = [max(0, (o - 1) * s + int(k) - int(n))
                 for o, s, k, n in zip(target, strides, kernel, in_size)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        pads = tuple(begin) + tuple(t - b for t, b in zip(total, begin))
        auto_pad = "NOTSET"
    if auto_pad == "VALID":
        pads = (0,) * (2 * rank)
    elif auto_pad != "NOTSET":
        raise ValueError(f"unknown auto_pad {auto_pad!r}")
    pads = tuple(int(p) for p in pads) if pads is not None and len(pads) else (0,) * (2 * rank)
    out = []
    for d in range(rank):
        room = int(in_size[d]) + pads[d] + pads[rank + d] - span[d]
        # C++ integer division (towards zero): a window longer than the padded input still
        # gives one output when the stride exceeds the shortfall
        n = (-(-room // strides[d]) if ceil_mode else int(room / strides[d])) + 1
        if ceil_mode and (n - 1) * strides[d] >= int(in_size[d]) + pads[d]:
            n -= 1
        out.append(max(n, 0))
    return (tuple(out), pads[:rank], pads[rank:]) if ends else (tuple(out), pads[:rank])


def max_pool(x: Any, kernel_shape: Sequence[int], strides: Any = None, pads: Any = None,
             dilations: Any = None, ceil_mode: int = 0, auto_pad: Any = "NOTSET",
             storage_order: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """MaxPool (any spatial rank, float or 8-bit) and its Indices output, as onnxruntime:
    from the window's first cell inside the input, a strict ``>`` scan over the others in
    row-major order, so padding never takes part, ties go to the first cell, and a NaN wins
    only as the first cell. Indices count over the whole tensor, row-major
    (``storage_order`` 1: the spatial part column-major)."""
    x = np.asarray(x)
    rank = len(kernel_shape)
    in_size = x.shape[2:]
    dil = tuple(int(v) for v in dilations) if dilations is not None and len(dilations) else (1,) * rank
    st = tuple(int(v) for v in strides) if strides is not None and len(strides) else (1,) * rank
    out, begin = pool_geometry(in_size, kernel_shape, st, pads, dil, ceil_mode, auto_pad)
    table = window_table(in_size, out, [int(k) for k in kernel_shape], st, begin, dil)
    n_sp = int(np.prod(in_size))
    lowest = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    flat = np.concatenate([x.reshape(*x.shape[:2], n_sp),
                           np.full((*x.shape[:2], 1), lowest, x.dtype)], -1)
    valid = table < n_sp
    first = np.where(valid.any(1), table[np.arange(len(table)), valid.argmax(1)], n_sp)
    y, arg = flat[..., first], np.broadcast_to(np.minimum(first, n_sp - 1), (*x.shape[:2], len(table)))
    for j in range(table.shape[1]):
        v = flat[..., table[:, j]]
        take = (v > y) & valid[:, j]
        y, arg = np.where(take, v, y), np.where(take, table[:, j], arg)
    if storage_order:   # the spatial index column-major
        coords = np.unravel_index(arg, tuple(in_size))
        arg = np.ravel_multi_index(tuple(reversed(coords)), tuple(reversed(in_size)))
    base = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], 1) * n_sp
    return y.reshape(*x.shape[:2], *out), (arg + base).reshape(*x.shape[:2], *out)


def average_pool(x: Any, kernel_shape: Sequence[int], strides: Any = None, pads: Any = None,
                 dilations: Any = None, ceil_mode: int = 0, auto_pad: Any = "NOTSET",
                 count_include_pad: int = 0) -> np.ndarray:
    """AveragePool (any spatial rank, float32), as onnxruntime: the window's cells inside the
    input summed in float32 in row-major order, divided by the number of cells inside the
    input, or with ``count_include_pad`` by the number inside the padded input."""
    x = np.asarray(x, dtype=np.float32)
    rank = len(kernel_shape)
    in_size = x.shape[2:]
    dil = tuple(int(v) for v in dilations) if dilations is not None and len(dilations) else (1,) * rank
    st = tuple(int(v) for v in strides) if strides is not None and len(strides) else (1,) * rank
    kernel = [int(k) for k in kernel_shape]
    out, begin, end = pool_geometry(in_size, kernel, st, pads, dil, ceil_mode, auto_pad, ends=True)
    table = window_table(in_size, out, kernel, st, begin, dil)
    n_sp = int(np.prod(in_size))
    flat = np.concatenate([x.reshape(*x.shape[:2], n_sp), np.zeros((*x.shape[:2], 1), np.float32)], -1)
    acc = np.zeros((*x.shape[:2], len(table)), np.float32)
    for j in range(table.shape[1]):
        acc = (acc + flat[..., table[:, j]]).astype(np.float32)
    count = pool_counts(in_size, out, kernel, st, begin, end, dil, bool(count_include_pad))
    return (acc / count.astype(np.float32)).astype(np.float32).reshape(*x.shape[:2], *out)


def pool_counts(in_size, out_size, kernel, strides, pad_begin, pad_end, dilations,
                include_pad: bool) -> np.ndarray:
    """AveragePool's divisor per output (flat): window cells inside the input, or with
    ``include_pad`` inside the padded input [-begin, in + end) (the padded input's windows,
    with no padding of their own)."""
    if include_pad:
        in_size = [int(n) + b + e for n, b, e in zip(in_size, pad_begin, pad_end)]
        pad_begin = [0] * len(in_size)
    table = window_table(in_size, out_size, kernel, strides, pad_begin, dilations)
    return (table < int(np.prod(in_size))).sum(1)


def _attr(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _make_overrides() -> List[type]:
    from onnx.reference.op_run import OpRun

    def register(op_type: str):
        def deco(cls):
            cls.__name__ = op_type
            cls.__qualname__ = op_type
            cls.op_domain = ""
            _OVERRIDES.append(cls)
            return cls
        return deco

    def check_precision(precision: Any) -> None:
        if precision not in (None, 0, 1):  # unset or FLOAT
            raise NotImplementedError(f"QuantizeLinear precision={precision} (only float32)")

    @register("QuantizeLinear")
    class _Q(OpRun):
        def _run(self, x, y_scale, y_zero_point=None, axis=1, block_size=0, output_dtype=None,
                 saturate=1, precision=None, **_):
            check_precision(precision)
            return (quantize_linear(x, y_scale, y_zero_point, axis=axis,
                                    block_size=block_size or 0, output_dtype=output_dtype or None,
                                    saturate=bool(saturate)),)

    @register("DequantizeLinear")
    class _DQ(OpRun):
        def _run(self, x, x_scale, x_zero_point=None, axis=1, block_size=0, output_dtype=None,
                 **_):
            y = dequantize_linear(x, x_scale, x_zero_point, axis=axis, block_size=block_size or 0)
            out = np.float32
            if output_dtype:
                out = _FLOAT_ENUMS.get(int(output_dtype))
                if out is None:
                    raise NotImplementedError(f"DequantizeLinear output_dtype={output_dtype}")
            elif np.asarray(x_scale).dtype == np.float16:
                out = np.float16
            return (y.astype(out),)

    @register("MatMulInteger")
    class _MMI(OpRun):
        def _run(self, A, B, a_zero_point=None, b_zero_point=None, **_):
            return (matmul_integer(A, B, a_zero_point, b_zero_point),)

    conv_attrs = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")

    @register("ConvInteger")
    class _CI(OpRun):
        def _run(self, x, w, x_zero_point=None, w_zero_point=None, **kw):
            a = {k: _attr(kw.get(k)) for k in conv_attrs}
            a["group"] = a["group"] or 1
            return (conv_integer(x, w, x_zero_point, w_zero_point, **a),)

    @register("QLinearMatMul")
    class _QMM(OpRun):
        def _run(self, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale,
                 y_zero_point=None, **_):
            return (qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale,
                                   y_zero_point),)

    @register("QLinearConv")
    class _QC(OpRun):
        def _run(self, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
                 y_zero_point=None, B=None, **kw):
            a = {k: _attr(kw.get(k)) for k in conv_attrs}
            a["group"] = a["group"] or 1
            return (qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
                                 y_zero_point, B, **a),)

    def register_ms(op_type: str):  # onnxruntime contrib operators
        def deco(cls):
            cls.__name__ = op_type
            cls.__qualname__ = op_type
            cls.op_domain = "com.microsoft"
            _OVERRIDES.append(cls)
            return cls
        return deco

    @register_ms("QGemm")
    class _QGemm(OpRun):
        def _run(self, A, a_scale, a_zero_point, B, b_scale, b_zero_point, C=None, y_scale=None,
                 y_zero_point=None, alpha=None, transA=None, transB=None, **_):
            alpha = 1.0 if alpha is None else alpha
            return (qgemm(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale,
                          y_zero_point, alpha, int(transA or 0), int(transB or 0)),)

    @register_ms("QLinearAdd")
    class _QLinearAdd(OpRun):
        def _run(self, A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale,
                 C_zero_point=None, **_):
            return (qlinear_add(A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale,
                                C_zero_point),)

    @register("Round")
    class _Round(OpRun):
        def _run(self, x, **_):
            return (round_half_even(x),)

    @register("Floor")
    class _Floor(OpRun):
        def _run(self, x, **_):
            return (floor(x),)

    @register("Ceil")
    class _Ceil(OpRun):
        def _run(self, x, **_):
            return (ceil(x),)

    @register("Clip")
    class _Clip(OpRun):
        def _run(self, x, min=None, max=None, **_):  # noqa: A002 - ONNX input/attribute names
            if self.run_params["opsets"].get("", 13) < 11:  # Clip-6: float attributes
                flt_max = float(np.finfo(np.float32).max)
                min = -flt_max if min is None else min  # noqa: A001
                max = flt_max if max is None else max  # noqa: A001
            return (clip(x, min, max),)

    @register("Relu")
    class _Relu(OpRun):
        def _run(self, x, **_):
            return (relu(x),)

    @register("Sign")
    class _Sign(OpRun):
        def _run(self, x, **_):
            return (sign(x),)

    @register("Cast")
    class _Cast(OpRun):
        def _run(self, x, to=None, saturate=1, round_mode=None, **_):
            arr = np.asarray(x)
            if int(to) in _BY_ENUM or int(to) in _FLOAT_ENUMS:
                if arr.dtype.kind in "fiub" or arr.dtype.name in ("int4", "uint4", "int2",
                                                                  "uint2", "bfloat16"):
                    return (cast(arr, int(to)),)
            from onnx.reference.ops.op_cast import cast_to

            return (cast_to(arr, int(to), bool(saturate), _attr(round_mode) or "up"),)

    @register("MaxPool")
    class _MaxPool(OpRun):
        # onnx's reference MaxPool misplaces asymmetric pads and ceil-mode windows
        def _run(self, x, kernel_shape=None, strides=None, pads=None, dilations=None,
                 ceil_mode=0, auto_pad="NOTSET", storage_order=0, **_):
            y, idx = max_pool(x, kernel_shape, strides, pads, dilations, int(ceil_mode or 0),
                              _attr(auto_pad), int(storage_order or 0))
            return (y, idx) if len(self.output) > 1 else (y,)

    @register("AveragePool")
    class _AveragePool(OpRun):
        def _run(self, x, kernel_shape=None, strides=None, pads=None, dilations=None,
                 ceil_mode=0, auto_pad="NOTSET", count_include_pad=0, **_):
            return (average_pool(x, kernel_shape, strides, pads, dilations, int(ceil_mode or 0),
                                 _attr(auto_pad), int(count_include_pad or 0)),)

    @register("ArgMax")
    class _ArgMax(OpRun):
        def _run(self, data, axis=0, keepdims=1, select_last_index=0, **_):
            arr = np.asarray(data)
            idx = _argmax_scan(arr, int(axis), last=bool(select_last_index))
            if keepdims:
                idx = np.expand_dims(idx, _norm_axis(int(axis), arr.ndim))
            return (idx,)

    return _OVERRIDES


def run_reference(model: Any, feeds: Mapping[str, Any],
                  intermediate: bool = False) -> Union[List[np.ndarray], Dict[str, np.ndarray]]:
    """Evaluate an ONNX model (ModelProto, serialized bytes or a path) operator by operator
    with ``onnx.reference.ReferenceEvaluator``, the quantization operators (QuantizeLinear,
    DequantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv, and
    onnxruntime's com.microsoft QGemm and QLinearAdd) and the
    fixed-point / activation operators (Round, Floor, Ceil, Clip, Relu, Sign, Cast, ArgMax)
    replaced by this module's implementations. Every other operator is onnx's reference
    implementation (numpy; float32 arithmetic for float32 tensors, but summation orders of
    float MatMul/Conv are numpy's, see the module docstring).

    Returns the list of graph outputs, or with ``intermediate=True`` a dict from tensor name to
    value for every tensor of the evaluation (inputs, initializers, intermediates, outputs).
    4-bit results are held in int8/uint8 arrays.
    """
    import onnx
    from onnx.reference import ReferenceEvaluator

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    elif isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    if not _OVERRIDES:
        _make_overrides()
    sess = ReferenceEvaluator(model, new_ops=list(_OVERRIDES))
    feed = {k: np.asarray(v) for k, v in feeds.items()}
    res = sess.run(None, feed, intermediate=intermediate)
    if intermediate:
        return dict(res)
    return list(res)
