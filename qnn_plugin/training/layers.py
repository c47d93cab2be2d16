"""Trainable QNN layers whose forward pass *is* the exported network's integer arithmetic.

Every tensor between layers holds real values ``(code - zero_point) * scale`` of a quantization
format (``QFormat``). With power-of-two scales (the default, as QA-IBP and the AAAI 2021
benchmarks use), each product of an activation and a weight is a multiple of
``2**-(f_act + f_w)`` and float32 sums such multiples exactly while the integer accumulator
stays below 2**24, so the torch model, the exported ONNX file and onnxruntime agree bit for bit
(``QNN.accumulator_bound`` reports the worst case).

Rounding and clamping go through the plugin's ``QuantStepFn``: auto_LiRPA traces it as one
``qnn::QuantStep`` node (bounded by ``BoundQuantStep``, the operator the verifier uses) and its
backward is the straight-through estimator clipped to the clamp range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..ops import ROUNDINGS, Const, QuantStepFn


@dataclass(frozen=True)
class QFormat:
    """Integer codes ``qmin..qmax``; value of code k: ``(k - zero_point) * scale``."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @staticmethod
    def fixed(bits: int, frac: int, signed: bool) -> "QFormat":
        """Power-of-two fixed point: ``bits`` bits, ``frac`` fraction bits (scale 2**-frac)."""
        if not 1 <= int(bits) <= 24:
            raise ValueError(f"bits must be in [1, 24], got {bits}")
        bits, frac = int(bits), int(frac)
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
        return QFormat(2.0 ** -frac, 0, lo, hi)

    def __post_init__(self):
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be positive and finite, got {self.scale}")
        if not self.qmin < self.qmax:
            raise ValueError(f"empty code range [{self.qmin}, {self.qmax}]")
        if not self.qmin <= self.zero_point <= self.qmax:
            raise ValueError(f"zero point {self.zero_point} outside [{self.qmin}, {self.qmax}]")

    @property
    def pow2(self) -> bool:
        return math.frexp(self.scale)[0] == 0.5

    @property
    def frac(self) -> int:
        """Fraction bits of a power-of-two scale."""
        if not self.pow2:
            raise ValueError(f"scale {self.scale} is not a power of two")
        return -int(math.log2(self.scale))

    @property
    def bits(self) -> int:
        return int(math.ceil(math.log2(self.qmax - self.qmin + 1)))

    @property
    def signed(self) -> bool:
        return self.qmin < 0

    def codes(self, x: Tensor, rounding: str = "half_even") -> Tensor:
        """Integer codes of x (float32 tensor holding integers; straight-through gradient)."""
        s, z = x.new_full((), self.scale), x.new_full((), float(self.zero_point))
        return QuantStepFn.apply(x, Const(s), Const(z), float(self.qmin), float(self.qmax), rounding)

    def fake(self, x: Tensor, rounding: str = "half_even") -> Tensor:
        """Quantize then dequantize: the representable value x rounds to."""
        q = self.codes(x, rounding)
        return (q - self.zero_point) * self.scale if self.zero_point else q * self.scale


def _check_rounding(rounding: str) -> str:
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; expected one of {sorted(ROUNDINGS)}")
    return rounding


class _Quantizer(nn.Module):
    """x -> the value of its code in ``fmt``: clamp(R(x / scale) + zp, qmin, qmax) dequantized."""

    def __init__(self, fmt: QFormat, rounding: str = "half_even"):
        super().__init__()
        self.fmt, self.rounding = fmt, _check_rounding(rounding)

    def forward(self, x: Tensor) -> Tensor:
        return self.fmt.fake(x, self.rounding)

    def extra_repr(self) -> str:
        return f"{self.fmt}, rounding={self.rounding}"


class InputQuant(_Quantizer):
    """The input quantizer: real input -> its grid value (codes ``fmt.qmin..fmt.qmax``)."""


class ActQuant(_Quantizer):
    """Activation requantizer. With an unsigned format (qmin = zero point = 0) the lower clamp
    is the ReLU."""


class _QuantAffine(nn.Module):
    """Shared by QuantLinear and QuantConv2d: weights fake-quantized to ``w_fmt`` (zero point 0,
    round half to even), bias quantized to the accumulator's unit ``in_scale * w_scale`` (set
    by ``QNN`` from the layer feeding this one)."""

    weight: nn.Parameter
    bias: Optional[nn.Parameter]

    def _init_formats(self, w_fmt: QFormat):
        if w_fmt.zero_point != 0:
            raise ValueError("weight formats must have zero point 0 (symmetric)")
        self.w_fmt = w_fmt
        self.in_scale: Optional[float] = None  # set by QNN
        self.bias_bound = 2 ** 23  # bias codes stay well inside float32's exact integers

    def bias_format(self) -> QFormat:
        if self.in_scale is None:
            raise RuntimeError("layer not bound to an input format: build it inside a QNN")
        return QFormat(self.in_scale * self.w_fmt.scale, 0, -self.bias_bound, self.bias_bound)

    def quantized(self) -> Tuple[Tensor, Optional[Tensor]]:
        w = self.w_fmt.fake(self.weight)
        b = None if self.bias is None else self.bias_format().fake(self.bias)
        return w, b

    def codes(self) -> Tuple[Tensor, Optional[Tensor]]:
        """Integer weight and bias codes (detached, float64 holding integers)."""
        with torch.no_grad():
            w = self.w_fmt.codes(self.weight).double()
            b = None if self.bias is None else self.bias_format().codes(self.bias).double()
        return w, b

    def _init_params(self, fan_in: int):
        # Kaiming-uniform weights, small biases; then clipped to the representable range
        bound = math.sqrt(6.0 / fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        w_max = self.w_fmt.qmax * self.w_fmt.scale
        with torch.no_grad():
            self.weight.clamp_(-w_max, w_max)
            if self.bias is not None:
                self.bias.zero_()


class QuantLinear(_QuantAffine):
    def __init__(self, in_features: int, out_features: int, w_fmt: QFormat, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self._init_formats(w_fmt)
        self._init_params(in_features)

    def forward(self, h: Tensor) -> Tensor:
        w, b = self.quantized()
        return F.linear(h, w, b)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, weights {self.w_fmt}"


class QuantConv2d(_QuantAffine):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_fmt: QFormat,
                 stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        k = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, k, k))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._init_formats(w_fmt)
        self._init_params(in_channels * k * k)

    def forward(self, h: Tensor) -> Tensor:
        w, b = self.quantized()
        return F.conv2d(h, w, b, stride=self.stride, padding=self.padding)

    def out_shape(self, in_shape: Tuple[int, int, int]) -> Tuple[int, int, int]:
        _, hgt, wid = in_shape
        k, s, p = self.kernel_size, self.stride, self.padding
        return (self.out_channels, (hgt + 2 * p - k) // s + 1, (wid + 2 * p - k) // s + 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels} -> {self.out_channels}, kernel {self.kernel_size}, "
                f"stride {self.stride}, padding {self.padding}, weights {self.w_fmt}")


class QNN(nn.Sequential):
    """InputQuant, then affine layers each followed by an ActQuant except the last (whose output
    are the logits, real-valued: exact multiples of the last accumulator's unit); conv layers
    come first and a Flatten separates them from the dense ones.

    Build with :meth:`mlp` or :meth:`conv`. ``input_shape`` excludes the batch dimension.
    """

    def __init__(self, layers: Sequence[nn.Module], input_shape: Tuple[int, ...], rounding: str):
        super().__init__(*layers)
        self.input_shape, self.rounding = tuple(input_shape), rounding
        scale = None
        for m in self:
            if isinstance(m, _Quantizer):
                scale = m.fmt.scale
            elif isinstance(m, _QuantAffine):
                if scale is None:
                    raise ValueError("an affine layer must follow a quantizer")
                m.in_scale = scale
        if not isinstance(self[0], InputQuant):
            raise ValueError("a QNN starts with its input quantizer")

    # ------------------------------------------------------------------ builders
    @classmethod
    def mlp(cls, n_in: int, hidden: Sequence[int], n_out: int, *, in_fmt: QFormat,
            w_fmt: QFormat, act_fmt: QFormat, rounding: str = "half_even") -> "QNN":
        _check_rounding(rounding)
        dims = [int(n_in)] + [int(h) for h in hidden] + [int(n_out)]
        layers: List[nn.Module] = [InputQuant(in_fmt, rounding)]
        for i in range(len(dims) - 1):
            layers.append(QuantLinear(dims[i], dims[i + 1], w_fmt))
            if i < len(dims) - 2:
                layers.append(ActQuant(act_fmt, rounding))
        return cls(layers, (int(n_in),), rounding)

    @classmethod
    def conv(cls, input_shape: Tuple[int, int, int], channels: Sequence[int], hidden: Sequence[int],
             n_out: int, *, in_fmt: QFormat, w_fmt: QFormat, act_fmt: QFormat,
             kernel_size: int = 3, stride: int = 2, padding: int = 1,
             rounding: str = "half_even") -> "QNN":
        _check_rounding(rounding)
        if not channels:
            raise ValueError("a conv QNN needs at least one conv layer")
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape}")
        layers: List[nn.Module] = [InputQuant(in_fmt, rounding)]
        cur = shape
        for c in channels:
            conv = QuantConv2d(cur[0], int(c), kernel_size, w_fmt, stride, padding)
            cur = conv.out_shape(cur)
            if min(cur[1:]) < 1:
                raise ValueError(f"input {shape} too small for {len(channels)} conv layers")
            layers += [conv, ActQuant(act_fmt, rounding)]
        layers.append(nn.Flatten())
        dims = [int(math.prod(cur))] + [int(h) for h in hidden] + [int(n_out)]
        for i in range(len(dims) - 1):
            layers.append(QuantLinear(dims[i], dims[i + 1], w_fmt))
            if i < len(dims) - 2:
                layers.append(ActQuant(act_fmt, rounding))
        return cls(layers, shape, rounding)

    # ------------------------------------------------------------------ introspection
    @property
    def input_format(self) -> QFormat:
        return self[0].fmt

    def affine_layers(self) -> List[_QuantAffine]:
        return [m for m in self if isinstance(m, _QuantAffine)]

    def act_formats(self) -> List[QFormat]:
        return [m.fmt for m in self if isinstance(m, ActQuant)]

    @property
    def n_out(self) -> int:
        last = self.affine_layers()[-1]
        return last.out_features if isinstance(last, QuantLinear) else last.out_channels

    def accumulator_bound(self) -> float:
        """Worst-case |integer accumulator| over all inputs, per the current codes: float32
        evaluates the network exactly (any summation order) while this is below 2**24."""
        top = max(abs(self.input_format.qmin - self.input_format.zero_point),
                  abs(self.input_format.qmax - self.input_format.zero_point))
        worst, fmts = 0.0, self.act_formats()
        for i, layer in enumerate(self.affine_layers()):
            w, b = layer.codes()
            per_out = w.abs().reshape(w.shape[0], -1).sum(dim=1) * top
            if b is not None:
                per_out = per_out + b.abs()
            worst = max(worst, float(per_out.max()))
            if i < len(fmts):
                top = max(abs(fmts[i].qmin - fmts[i].zero_point), abs(fmts[i].qmax - fmts[i].zero_point))
        return worst
