"""Torch-side quantization operators: what the imported model runs and auto_LiRPA traces.

Every rounding, flooring, clamping and binarizing operation of a QNN is expressed with one
monotone step function,

    QuantStep(x) = clamp(R(x / scale) + zero_point, lo, hi)

with R one of ``ROUNDINGS`` (per-element ``scale``/``zero_point`` broadcast against ``x`` without
its batch dimension), and ``torch.sign`` for Sign. Integer-typed ONNX tensors are carried as
float32 tensors holding integers (exact below 2**24; see docs/semantics.md).

``QuantStepFn`` is an autograd Function with a ``symbolic`` so that auto_LiRPA's tracer sees a
single ``qnn::QuantStep`` node (bound by ``qnn_plugin.bounds.BoundQuantStep``); its backward is
the straight-through estimator clipped to the clamp range, as QA-IBP trains.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

# rounding mode -> delta: level k covers x/scale in [k - zp + delta - 1, k - zp + delta]
ROUNDINGS = {"half_even": 0.5, "half_up": 0.5, "floor": 1.0, "ceil": 0.0}
OP_NAME = "qnn::QuantStep"


def round_values(v: torch.Tensor, rounding: str) -> torch.Tensor:
    """Round in place (callers pass a fresh tensor)."""
    if rounding == "half_even":
        return v.round_()  # round half to even, as ONNX Round/QuantizeLinear
    if rounding == "half_up":
        return v.add_(0.5).floor_()
    if rounding == "floor":
        return v.floor_()
    if rounding == "ceil":
        return v.ceil_()
    raise ValueError(f"unknown rounding {rounding!r}; expected one of {sorted(ROUNDINGS)}")


def quant_step(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
               lo: float, hi: float, rounding: str) -> torch.Tensor:
    """clamp(R(x / scale) + zero_point, lo, hi); never differentiated (steps have zero gradient;
    training uses QuantStepFn's straight-through backward), so it works in place."""
    with torch.no_grad():
        q = round_values(torch.div(x, scale), rounding)
        q.add_(zero_point)
        return q.clamp_(lo, hi)


class Const:
    """A tensor passed to an autograd Function as a non-tensor argument, so that the ONNX
    symbolic sees its value (a tensor argument would arrive as a graph Value)."""

    __slots__ = ("value",)

    def __init__(self, value: torch.Tensor):
        self.value = value


class QuantStepFn(torch.autograd.Function):
    """apply(x, Const(scale), Const(zero_point), lo, hi, rounding)"""

    @staticmethod
    def forward(ctx, x, scale, zero_point, lo, hi, rounding):
        scale, zero_point = scale.value, zero_point.value
        ctx.save_for_backward(x, scale, zero_point)
        ctx.lo, ctx.hi = lo, hi
        return quant_step(x, scale, zero_point, lo, hi, rounding)

    @staticmethod
    def backward(ctx, grad):
        x, scale, zero_point = ctx.saved_tensors
        # straight-through estimator d(x/scale)/dx, zero where the clamp saturates
        v = x / scale + zero_point
        inside = (v >= ctx.lo - 0.5) & (v <= ctx.hi + 0.5)
        return grad * inside / scale, None, None, None, None, None

    @staticmethod
    def symbolic(g, x, scale, zero_point, lo, hi, rounding):
        out = g.op(OP_NAME, x, scale_t=scale.value.detach().cpu(),
                   zero_point_t=zero_point.value.detach().cpu(),
                   lo_f=float(lo), hi_f=float(hi), rounding_s=rounding)
        out.setType(x.type())  # elementwise: same shape and type (spares torch a warning)
        return out


class QuantStep(nn.Module):
    """clamp(R(x / scale) + zero_point, lo, hi) as one traceable, boundable op.

    ``scale`` and ``zero_point`` are scalars or tensors broadcastable to one sample of ``x``
    (no batch dimension), e.g. shape (C, 1, 1) for per-channel quantization of NCHW tensors.
    ``lo``/``hi`` may be infinite (no clamp on that side).
    """

    def __init__(self, scale, zero_point=0.0, lo: float = -math.inf, hi: float = math.inf,
                 rounding: str = "half_even"):
        super().__init__()
        if rounding not in ROUNDINGS:
            raise ValueError(f"unknown rounding {rounding!r}; expected one of {sorted(ROUNDINGS)}")
        scale = torch.as_tensor(scale, dtype=torch.float32)
        if not bool(torch.all(scale > 0)) or not bool(torch.all(torch.isfinite(scale))):
            raise ValueError(f"quantization scale must be positive and finite, got {scale}")
        if lo > hi:
            raise ValueError(f"empty clamp range [{lo}, {hi}]")
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", torch.as_tensor(zero_point, dtype=torch.float32))
        self.lo, self.hi, self.rounding = float(lo), float(hi), rounding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return QuantStepFn.apply(x, Const(self.scale), Const(self.zero_point), self.lo, self.hi,
                                 self.rounding)

    def extra_repr(self) -> str:
        s = self.scale.tolist() if self.scale.numel() <= 4 else f"<{tuple(self.scale.shape)}>"
        return f"scale={s}, zero_point={self.zero_point.tolist() if self.zero_point.numel() <= 4 else '...'}, " \
               f"lo={self.lo}, hi={self.hi}, rounding={self.rounding}"


class Sign(nn.Module):
    """ONNX Sign: -1, 0, +1 (sign(0) = 0). Traced as onnx::Sign, bound by BoundSign."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)


def binarize(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, else -1: the value of the Sign(Sign(x) + c) export idiom, 0 < c < 1."""
    one = Const(torch.ones((), device=x.device))
    h = QuantStepFn.apply(x, one, one, 0.0, 1.0, "floor")
    return 2.0 * h - 1.0


class Binarize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize(x)


def trunc_to_int(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Cast float -> integer type: truncation toward zero, saturated to [lo, hi].

    Written as a sum of two monotone steps so that each one is bounded exactly:
    trunc(x) = clamp(floor(x), 0, hi) + clamp(ceil(x), lo, 0).
    """
    one, zero = Const(torch.ones((), device=x.device)), Const(torch.zeros((), device=x.device))
    pos = QuantStepFn.apply(x, one, zero, 0.0, max(hi, 0.0), "floor")
    neg = QuantStepFn.apply(x, one, zero, min(lo, 0.0), 0.0, "ceil")
    return pos + neg


class TruncToInt(nn.Module):
    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.hi = float(lo), float(hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return trunc_to_int(x, self.lo, self.hi)


def fake_quantize(x: torch.Tensor, scale, zero_point, lo: float, hi: float,
                  rounding: str = "half_even", per_axis_shape: Optional[tuple] = None) -> torch.Tensor:
    """Quantize then dequantize: (QuantStep(x) - zero_point) * scale (QDQ pair)."""
    scale = torch.as_tensor(scale, dtype=torch.float32)
    zero_point = torch.as_tensor(zero_point, dtype=torch.float32)
    if per_axis_shape is not None:
        scale, zero_point = scale.reshape(per_axis_shape), zero_point.reshape(per_axis_shape)
    q = QuantStepFn.apply(x, Const(scale.to(x.device)), Const(zero_point.to(x.device)), lo, hi, rounding)
    return (q - zero_point) * scale


CLIP_OP_NAME = "qnn::Clip"


class ClipFn(torch.autograd.Function):
    """clamp(x, lo, hi) traced as one qnn::Clip node with its bounds as attributes."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.lo) & (x <= ctx.hi)), None, None

    @staticmethod
    def symbolic(g, x, lo, hi):
        out = g.op(CLIP_OP_NAME, x, lo_f=float(lo), hi_f=float(hi))
        out.setType(x.type())
        return out


class Clip(nn.Module):
    def __init__(self, lo: float = -math.inf, hi: float = math.inf):
        super().__init__()
        # min > max: every output is max (ONNX Clip and torch.clamp agree)
        self.lo, self.hi = float(min(lo, hi)), float(hi)

    def forward(self, x):
        return ClipFn.apply(x, self.lo, self.hi)

    def extra_repr(self) -> str:
        return f"lo={self.lo}, hi={self.hi}"
