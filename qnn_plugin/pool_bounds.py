"""MaxPool for auto_LiRPA at any stride, padding, dilation and ceil mode (IBP and CROWN).

auto_LiRPA 0.3's own ``BoundMaxPool`` back-substitutes only when the stride equals the kernel
and nothing is padded, and its alpha-CROWN set-up fails under torch 2 (a ``torch.Size`` inside
a shape list). This op keeps its relaxation (DeepPoly's) and drops the restrictions. Per
window, with input bounds l_j <= x_j <= u_j:

* lower line ``y >= x_i`` for the element i with the largest lower bound (y is the maximum);
* upper line ``y <= x_i`` when ``l_i >= u_j`` for every other element j (then y = x_i),
  otherwise the constant ``y <= max_j u_j``.

Windows come from an index table built once per shape: padded cells point at a slot past the
input, which is -inf and so never chosen and never given a coefficient. Coefficients are
scattered back to the input positions, so the windows of a stride below the kernel add up. No
alpha to optimise: alpha-CROWN keeps these lines.

onnx2torch pads an asymmetric MaxPool with -inf in a separate constant Pad. auto_LiRPA's Pad
drops the padded positions' terms from its backward pass (right only for a pad value of 0), so
CROWN would bound those positions by [0, 0] and a window could "choose" one: ``BoundOnnxPad``
puts the constant's terms in.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import compat

compat.apply()

from auto_LiRPA.operators import Bound, BoundPad  # noqa: E402  (after compat.apply)

from .semantics import window_table  # noqa: E402  (the reference's windows: one definition)


class BoundWindowMax(Bound):
    """onnx::MaxPool (the ONNX operator as torch.onnx exports nn.MaxPool1d/2d/3d)."""

    def __init__(self, attr, inputs, output_index, options):
        super().__init__(attr, inputs, output_index, options)
        self.kernel = list(attr["kernel_shape"])
        rank = len(self.kernel)
        self.stride = list(attr.get("strides") or [1] * rank)
        self.dilation = list(attr.get("dilations") or [1] * rank)
        pads = list(attr.get("pads") or [0] * (2 * rank))
        if pads[:rank] != pads[rank:]:
            raise NotImplementedError(f"MaxPool with asymmetric pads {pads} (torch pads both sides alike)")
        self.padding = pads[:rank]
        self.ceil_mode = bool(attr.get("ceil_mode", 0))
        self.requires_input_bounds = [0]
        self.use_default_ibp = True   # max is monotone in every input: [f(l), f(u)]
        self._tables: Dict[Tuple, Tensor] = {}

    def forward(self, x):
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(self.kernel)]
        return pool(x, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)

    def _table(self, in_size, out_size, device) -> Tensor:
        key = (tuple(in_size), tuple(out_size), str(device))
        if key not in self._tables:
            t = window_table(tuple(in_size), tuple(out_size), self.kernel, self.stride,
                             self.padding, self.dilation)
            self._tables[key] = torch.as_tensor(t, dtype=torch.long, device=device)
        return self._tables[key]

    def bound_backward(self, last_lA, last_uA, x, **kwargs):
        rank = len(self.kernel)
        in_size, out_size = tuple(x.lower.shape[-rank:]), tuple(self.output_shape[-rank:])
        lead = tuple(x.lower.shape[:-rank])            # (batch, channels)
        n_in = int(np.prod(in_size))
        table = self._table(in_size, out_size, x.lower.device)              # (L, K)
        sentinel = torch.full((*lead, 1), -torch.inf, device=x.lower.device, dtype=x.lower.dtype)
        lw = torch.cat([x.lower.reshape(*lead, n_in), sentinel], -1)[..., table]   # (B, C, L, K)
        uw = torch.cat([x.upper.reshape(*lead, n_in), sentinel], -1)[..., table]
        best = lw.argmax(-1, keepdim=True)
        chosen = table.expand(*lead, *table.shape).gather(-1, best).squeeze(-1)   # (B, C, L)
        l_best = lw.gather(-1, best).squeeze(-1)
        others = uw.scatter(-1, best, -torch.inf).amax(-1)
        exact = l_best >= others                       # the window's max is x_chosen
        top = torch.where(exact, torch.zeros_like(l_best), uw.amax(-1))

        def side(A, upper: bool):
            if A is None:
                return None, 0.0
            if not isinstance(A, Tensor):
                raise NotImplementedError("MaxPool bounds need conv_mode='matrix' (got patches)")
            A = A.reshape(A.shape[0], A.shape[1], *lead[1:], -1)           # (spec, B, C, L)
            pos, neg = A.clamp(min=0), A.clamp(max=0)
            line, const = (pos, neg) if upper else (neg, pos)  # the side that needs the upper line
            on_x = const + torch.where(exact, line, torch.zeros_like(line))
            free = torch.where(exact, torch.zeros_like(line), line)
            bias = torch.where(free != 0, free * top, torch.zeros_like(free)).flatten(2).sum(-1)
            shape = torch.broadcast_shapes(on_x.shape, (1, *chosen.shape))
            new = torch.zeros(*shape[:-1], n_in + 1, device=A.device, dtype=A.dtype)
            new.scatter_add_(-1, chosen.expand(shape), on_x.expand(shape))
            return new[..., :n_in].reshape(*shape[:2], *lead[1:], *in_size), bias

        lA, lbias = side(last_lA, upper=False)
        uA, ubias = side(last_uA, upper=True)
        return [(lA, uA)], lbias, ubias


class BoundOnnxPad(BoundPad):
    """onnx::Pad on height and width, in any of ONNX's copy modes:

    * ``constant``: the padded positions' terms ``A * value`` go into the backward pass's bias.
      With an infinite pad value a bound is that infinity (its sign turned by the
      coefficients' common sign), and -inf / +inf where coefficients of both signs meet it:
      only a MaxPool reads such padding, and it never puts a coefficient there.
    * ``reflect`` and ``edge``: every output is a copy of one input (auto_LiRPA's Pad ignores
      the mode and bounded those copies by [0, 0], an audit's wrong ``unsat``). Forward and
      interval bounds pad with torch's own mode; the backward pass scatters each copy's
      coefficient back to its source.
    ``wrap`` (opset 19) is refused."""

    _TORCH_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}

    def __init__(self, attr, inputs, output_index, options):
        super().__init__(attr, inputs, output_index, options)
        mode = attr.get("mode", "constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode not in self._TORCH_MODES:
            raise NotImplementedError(f"Pad mode {mode!r} is not supported (constant, reflect, edge)")
        self.mode = mode

    def forward(self, x, pad, value=0.0):
        # the pad value may come as a tensor constant, which F.pad refuses (empty: ONNX's 0)
        if torch.is_tensor(value):
            value = float(value) if value.numel() else 0.0
        out = super().forward(x, pad, value)     # checks the layout and records the padding
        if self.mode == "constant":
            return out
        return F.pad(x, self.padding, mode=self._TORCH_MODES[self.mode])

    def bound_backward(self, last_lA, last_uA, *x, **kwargs):
        if self.mode != "constant":
            return [(self._scatter_to_sources(last_lA), self._scatter_to_sources(last_uA)),
                    (None, None), (None, None)], 0.0, 0.0
        As, lbias, ubias = super().bound_backward(last_lA, last_uA, *x)
        value = float(self.value)
        if value == 0.0:
            return As, lbias, ubias
        # 1 at the padded positions of one (channels, height, width) output
        inner = torch.zeros(tuple(self.inputs[0].output_shape[1:]), device=self.device)
        mask = F.pad(inner, self.padding, value=1.0)

        def term(A, worst: float):
            if A is None:
                return 0.0
            if not isinstance(A, Tensor):
                raise NotImplementedError("Pad bounds need conv_mode='matrix' (got patches)")
            coef = (A * mask).flatten(2)
            if np.isfinite(value):
                return (coef * value).sum(-1)
            # sum of c * value: value's sign where every c >= 0, the opposite where every c <= 0,
            # undefined (the worst bound) where both occur
            pos, neg = (coef > 0).any(-1), (coef < 0).any(-1)
            out = torch.zeros(pos.shape, dtype=A.dtype, device=A.device)
            out = torch.where(pos & ~neg, torch.full_like(out, value), out)
            out = torch.where(neg & ~pos, torch.full_like(out, -value), out)
            return torch.where(pos & neg, torch.full_like(out, worst), out)

        return As, lbias + term(last_lA, -np.inf), ubias + term(last_uA, np.inf)

    def _scatter_to_sources(self, A):
        """A's coefficients on the padded output, summed onto the inputs they copy."""
        if A is None:
            return None
        if not isinstance(A, Tensor):
            raise NotImplementedError("Pad bounds need conv_mode='matrix' (got patches)")
        shape = tuple(self.inputs[0].output_shape[1:])
        n = int(np.prod(shape))
        # each output's source index: the padding applied to the inputs' own indices
        idx = F.pad(torch.arange(n, dtype=torch.float64, device=A.device).reshape(1, *shape),
                    self.padding, mode=self._TORCH_MODES[self.mode]).reshape(-1).long()
        flat = A.reshape(*A.shape[:2], -1)
        out = torch.zeros(*A.shape[:2], n, dtype=A.dtype, device=A.device)
        return out.index_add_(2, idx, flat).reshape(*A.shape[:2], *shape)
