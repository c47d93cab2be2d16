"""Export a trained ``QNN`` to standard ONNX through the builders the test-suite trusts.

Two forms (``qnn_plugin.onnx_builders`` documents each graph and its exact semantics):

* ``"qdq"``: QuantizeLinear/DequantizeLinear around float MatMul/Conv, int8 weights, int32
  biases, uint8 activations -- what onnxruntime's own quantizer emits. Needs round half to even
  (QuantizeLinear's rounding), a uint8 or int8 input, weights within int8 and activations with
  codes 0..255 (zero point 0). MLPs and conv nets.
* ``"fixed_point"``: the integer idiom of the AAAI 2021 benchmarks (Mul by a power of two,
  Floor / Floor(x + 0.5) / Round, Clip), any bit widths, power-of-two scales. MLPs.

The exported network computes exactly what the torch model computes (both are integer arithmetic
held in float32, exact while ``QNN.accumulator_bound() < 2**24``; with a scale that is not a
power of two, float32 rounding may differ between the two at a few points).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from .. import onnx_builders as ob
from ..errors import QnnPluginError
from .layers import QNN, QuantConv2d, QuantLinear

FORMS = ("qdq", "fixed_point")


class ExportError(QnnPluginError, ValueError):
    """The model cannot be written in the requested ONNX form."""


def export_onnx(model: QNN, path: Union[str, Path, None] = None, form: str = "qdq") -> ob.BuiltModel:
    """Write ``model`` as ONNX (``path`` may be None: build only) and return the BuiltModel
    (its ``model`` is the ONNX ModelProto, ``info`` the integer weights written)."""
    if form not in FORMS:
        raise ExportError(f"unknown export form {form!r}; expected one of {FORMS}")
    built = _qdq(model) if form == "qdq" else _fixed_point(model)
    top = model.accumulator_bound()
    built.info["accumulator_bound"] = top
    built.info["exact_float32"] = top < 2 ** 24
    if path is not None:
        Path(path).write_bytes(built.model.SerializeToString())
    return built


def _layers(model: QNN):
    convs = [m for m in model if isinstance(m, QuantConv2d)]
    dense = [m for m in model if isinstance(m, QuantLinear)]
    return convs, dense


def _codes(layer) -> tuple:
    w, b = layer.codes()
    w = w.cpu().numpy().astype(np.int64)
    b = np.zeros(w.shape[0], dtype=np.int64) if b is None else b.cpu().numpy().astype(np.int64)
    return w, b


def _fixed_point(model: QNN) -> ob.BuiltModel:
    convs, dense = _layers(model)
    if convs:
        raise ExportError("the fixed-point form covers MLPs; export conv QNNs with form='qdq'")
    fin, acts = model.input_format, model.act_formats()
    for what, fmt in [("input", fin)] + [(f"activation {i}", f) for i, f in enumerate(acts)]:
        if not fmt.pow2 or fmt.zero_point != 0 or fmt.qmin != 0 or fmt.qmax != 2 ** fmt.bits - 1:
            raise ExportError(f"fixed-point export needs unsigned power-of-two formats with zero "
                              f"point 0 and codes 0..2**bits-1; the {what} format is {fmt}")
    if len({(f.bits) for f in acts}) > 1:
        raise ExportError("fixed-point export needs one activation bit width for all layers")
    for i, layer in enumerate(dense):
        if not layer.w_fmt.pow2:
            raise ExportError(f"fixed-point export needs power-of-two weight scales (layer {i})")
    ws, bs = zip(*[_codes(m) for m in dense])
    return ob.fixed_point_mlp(
        [w.T for w in ws], list(bs), in_frac_bits=fin.frac, in_bits=fin.bits,
        w_frac_bits=[m.w_fmt.frac for m in dense],
        act_bits=acts[0].bits if acts else 8, act_frac_bits=[f.frac for f in acts],
        rounding=model.rounding, float_logits=True)


def _qdq(model: QNN) -> ob.BuiltModel:
    if model.rounding != "half_even":
        raise ExportError(f"QDQ export needs rounding 'half_even' (QuantizeLinear's), the model "
                          f"rounds {model.rounding!r}; use form='fixed_point'")
    fin, acts = model.input_format, model.act_formats()
    if (fin.qmin, fin.qmax) == (0, 255):
        in_dtype = "uint8"
    elif (fin.qmin, fin.qmax) == (-128, 127):
        in_dtype = "int8"
    else:
        raise ExportError(f"QDQ export needs an 8-bit input format (codes 0..255 or -128..127), "
                          f"got {fin}")
    for i, f in enumerate(acts):
        if (f.qmin, f.qmax, f.zero_point) != (0, 255, 0):
            raise ExportError(f"QDQ export needs 8-bit unsigned activations (codes 0..255, zero "
                              f"point 0; QuantizeLinear saturates to uint8), activation {i} is {f}; "
                              f"use form='fixed_point' for other widths")
    convs, dense = _layers(model)
    for i, m in enumerate(convs + dense):
        if m.w_fmt.qmin < -128 or m.w_fmt.qmax > 127:
            raise ExportError(f"QDQ export needs weights within int8; layer {i} has {m.w_fmt}")
    scales = [fin.scale] + [f.scale for f in acts]   # input scale of each affine layer
    ws, bs = [], []
    for i, m in enumerate(convs + dense):
        w, b = _codes(m)
        ws.append(w)
        bs.append((b.astype(np.float64) * scales[i] * m.w_fmt.scale).astype(np.float32))
    common = dict(input_scale=fin.scale, input_zero_point=fin.zero_point, input_dtype=in_dtype,
                  act_dtype="uint8", act_zero_point=0, quantize_bias=True)
    if not convs:
        return ob.qdq_mlp([w.T for w in ws], [m.w_fmt.scale for m in dense],
                          [f.scale for f in acts], bs, **common)
    n = len(convs)
    return ob.qdq_conv(model.input_shape, ws[:n], [m.w_fmt.scale for m in convs],
                       [w.T for w in ws[n:]], [m.w_fmt.scale for m in dense],
                       [f.scale for f in acts], bs[:n], bs[n:],
                       strides=[m.stride for m in convs], pads=[m.padding for m in convs], **common)
