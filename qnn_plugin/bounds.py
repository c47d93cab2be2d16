"""auto_LiRPA bound operators for the quantization steps (IBP, CROWN, alpha-CROWN).

One idea serves every op here. For a monotone non-decreasing f and any slope a >= 0, the lines

    a * x + inf_{x in [l, u]} (f(x) - a x)   <=   f(x)   <=   a * x + sup_{x in [l, u]} (f(x) - a x)

are sound on [l, u] by construction. Each op supplies ``_inf_sup`` (those two extremes, in closed
form: for a staircase they are reached at the step edges, and the edge values are affine in the
level index, so only the first and last edges matter -- no loop over levels). The slope is then a
free choice:

* CROWN: per neuron, the slope among {0, chord, the op's natural slope} with the smallest gap
  between the two lines. Slope 0 gives [f(l), f(u)], so the relaxation is never looser than IBP.
  A quantizer that reads the (box) input directly always takes slope 0: its image is the grid
  product inside [f(l), f(u)], whose convex hull is exactly that box.
* alpha-CROWN: the lower and upper slopes are optimised (clipped to a >= 0) and the intercepts
  recomputed exactly for every new slope.
* IBP: [f(l), f(u)] -- the exact interval image, tie points included, since f is monotone and
  evaluated with the same float32 ops as the forward pass.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Tuple

import torch
from torch import Tensor

from . import compat

compat.apply()

from auto_LiRPA.operators import (  # noqa: E402  (after compat.apply)
    BoundAdd, BoundDiv, BoundFlatten, BoundInput, BoundMul, BoundOptimizableActivation,
    BoundReshape, BoundSqueeze, BoundSub, BoundUnsqueeze,
)

from .ops import CLIP_OP_NAME, OP_NAME, ROUNDINGS, Const, QuantStepFn, quant_step  # noqa: E402
from .pool_bounds import BoundOnnxPad, BoundWindowMax  # noqa: E402

# relative slack on the intercepts of sloped lines: covers float32 rounding of x / scale near a
# step edge and of the intercept arithmetic (slope-0 lines are exact and get none)
_REL_SLACK = 2.0 ** -20
# outward widening of a step's input bounds (relative, and in units of the step width): see _widen
_WIDEN_REL, _WIDEN_ABS = 2.0 ** -20, 2.0 ** -10
SHAPE_ONLY = (BoundReshape, BoundFlatten, BoundSqueeze, BoundUnsqueeze)  # rearrange elements only
_AFFINE_ELEMENTWISE = (BoundMul, BoundDiv, BoundAdd, BoundSub)


def affine_operand(node):
    """The perturbed operand of x + c, x - c, c - x, x * c or x / c (c constant), else None."""
    if not isinstance(node, _AFFINE_ELEMENTWISE) or len(node.inputs) != 2:
        return None
    perturbed = [i for i in node.inputs if i.perturbed]
    if len(perturbed) != 1:
        return None
    if isinstance(node, BoundDiv) and node.inputs[0] is not perturbed[0]:
        return None  # c / x is not affine
    return perturbed[0]


def reads_input_box(node) -> bool:
    """True if the values ``node`` can take are exactly a product of per-coordinate sets whose
    hull is its interval bounds: the perturbed input seen through reshapes, elementwise affine
    maps with constants and the plugin's elementwise steps (no broadcast copies, which would tie
    coordinates together; not through ReLU, whose alpha-CROWN state needs the backward pass). Over such a node, interval arithmetic is as tight as CROWN."""
    while True:
        if isinstance(node, BoundInput):
            return True
        if isinstance(node, SHAPE_ONLY):
            node = node.inputs[0]
            continue
        if isinstance(node, _MonotoneBound):
            nxt = node.inputs[0]
        else:
            nxt = affine_operand(node)
            if nxt is None:
                return False
        if nxt.output_shape is not None and node.output_shape is not None \
                and tuple(nxt.output_shape) != tuple(node.output_shape):
            return False
        node = nxt


def _box_bias(A, mid: Tensor, rad: Tensor, sign: float):
    """sum over the box of A * y at its min (sign -1) or max (+1): A.mid +- |A|.rad per (spec, batch)."""
    if A is None:
        return 0.0
    dims = "".join(chr(ord("c") + i) for i in range(mid.dim() - 1))
    eq = f"sb{dims},b{dims}->sb"
    return torch.einsum(eq, A, mid) + sign * torch.einsum(eq, A.abs(), rad)


class _MonotoneBound(BoundOptimizableActivation):
    """Shared relaxation machinery; subclasses define forward, _inf_sup and _natural_slope."""

    def __init__(self, attr, inputs, output_index, options):
        super().__init__(attr, inputs, output_index, options)
        self.alpha_batch_dim = 3  # alpha[start] has shape (2 lines, 2 A-sides, spec, batch, ...)
        self._box_input = None

    # ---- to be provided by subclasses ---------------------------------------------------------
    def _inf_sup(self, a: Tensor, l: Tensor, u: Tensor) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _natural_slope(self, l: Tensor, u: Tensor) -> Tensor:
        return self._chord(l, u)

    def _step_width(self):
        """Input distance between neighbouring step edges (sets the absolute widening)."""
        return None

    # (1, *input shape) bound on |float32 input - real input| over the verified box, set by
    # qnn_plugin.float_error.install; None: not computed (0 where the arithmetic is exact)
    float_err = None

    def _margin(self, l: Tensor, u: Tensor) -> Tensor:
        """auto_LiRPA computes linear layers' bounds in float32 without outward rounding (and in
        another order than the forward pass), so a bound that should sit on a step edge can
        land one ulp inside and lose a whole level: a margin relative to the bounds and to the
        step width stands for that arithmetic (not a rigorous error bound)."""
        return _WIDEN_REL * torch.maximum(l.abs(), u.abs()) + _WIDEN_ABS * self._step_width()

    def _pad(self, l: Tensor, u: Tensor) -> Tensor:
        """The outward widening of a step's input bounds: the margin, plus the forward pass's
        own float32 error where it is known (``float_err``: large terms that cancel near an
        edge leave a small value with a large error, which no margin relative to the value
        covers)."""
        pad = self._margin(l, u)
        if self.float_err is not None:
            pad = pad + self._err_like(pad)
        return pad

    def _err_like(self, t: Tensor) -> Tensor:
        """``float_err`` shaped to broadcast over ``t``: (..., *input shape), or (..., numel)
        where the caller flattened each domain (activation branching)."""
        e = self.float_err.to(t.device)
        shape = tuple(e.shape[1:])
        if shape and tuple(t.shape[-len(shape):]) == shape:
            return e.reshape(shape)
        return e.reshape(-1)

    def _widen(self, l: Tensor, u: Tensor):
        """Input bounds pushed outward before a discontinuous step (``_pad``). Not needed where
        the step reads the input box: interval arithmetic there evaluates the very float
        operations of the forward pass at the box ends."""
        if self._step_width() is None or self._reads_box():
            return l, u
        pad = self._pad(l, u)
        return l - pad, u + pad

    # ---- abstractions --------------------------------------------------------------------------
    def interval_propagate(self, *v):
        l, u = self._widen(v[0][0], v[0][1])
        return self.forward(l), self.forward(u)

    def _chord(self, l: Tensor, u: Tensor) -> Tensor:
        width = u - l
        rise = self.forward(u) - self.forward(l)
        return torch.where(width > 0, rise / width.clamp(min=1e-30), torch.zeros_like(width))

    def _lines(self, a_low: Tensor, a_up: Tensor, l: Tensor, u: Tensor):
        """Exact intercepts for the given slopes; infinite input bounds force slope 0."""
        finite = torch.isfinite(l) & torch.isfinite(u)
        a_low = torch.where(finite, a_low.clamp(min=0), torch.zeros_like(a_low))
        a_up = torch.where(finite, a_up.clamp(min=0), torch.zeros_like(a_up))
        lf, uf = torch.where(finite, l, torch.zeros_like(l)), torch.where(finite, u, torch.zeros_like(u))
        inf, _ = self._inf_sup(a_low, lf, uf)
        _, sup = self._inf_sup(a_up, lf, uf)
        mag = torch.maximum(lf.abs(), uf.abs())
        inf = inf - _REL_SLACK * (inf.abs() + a_low * mag) * (a_low > 0)
        sup = sup + _REL_SLACK * (sup.abs() + a_up * mag) * (a_up > 0)
        if self.float_err is not None:
            # the lines bound the step at the float32 value it reads, within float_err of the
            # real value z the backward pass carries: a z + b holds at z +- float_err
            err = self._err_like(inf)
            inf, sup = inf - a_low * err, sup + a_up * err
        # where bounds are infinite, fall back to the constant lines f(l), f(u)
        inf = torch.where(finite, inf, self.forward(l))
        sup = torch.where(finite, sup, self.forward(u))
        return a_low, inf, a_up, sup

    def _crown_slope(self, l: Tensor, u: Tensor) -> Tensor:
        """Per neuron, the candidate slope with the smallest gap between the two lines."""
        cands = torch.stack((torch.zeros_like(l), self._chord(l, u), self._natural_slope(l, u)))
        _, inf, _, sup = self._lines(cands, cands, l, u)  # slope 0 gives the IBP box
        gap = sup - inf
        best_a, best_gap = cands[0], gap[0]  # ties keep the earlier candidate, slope 0 first
        for a, g in zip(cands[1:], gap[1:]):
            better = g < best_gap
            best_a, best_gap = torch.where(better, a, best_a), torch.where(better, g, best_gap)
        return best_a

    def _constant_lines_only(self) -> bool:
        """True where _inf_sup's closed form does not apply; lines of slope 0 are always sound."""
        return False

    def _reads_box(self) -> bool:
        if self._box_input is None:
            self._box_input = reads_input_box(self.inputs[0])
        return self._box_input

    # set by qnn_plugin.bounded.margin_ibp around one bound computation: constant lines
    # [f(l), f(u)] at every step, so a backward pass from the output stops at the last step and
    # is interval arithmetic with the final affine layers folded into the specification
    flat = False

    def _stops_backward(self) -> bool:
        return self.flat or self._reads_box()

    def bound_relax(self, x):
        l, u = self._widen(x.lower, x.upper)
        optimizing = self.opt_stage in ("opt", "reuse")
        if self._stops_backward():
            # slope 0 is optimal on an input box: the constant lines f(l) and f(u) (reached only
            # for non-dense A; bound_backward short-cuts the dense case)
            shape = (2, 1, *l.shape) if optimizing else l.shape  # (A-sides, spec) broadcast
            self.lw = self.uw = torch.zeros(shape, device=l.device)
            self.lb, self.ub = self.forward(l).expand(shape), self.forward(u).expand(shape)
            return
        if self._constant_lines_only():
            shape = (2, 1, *l.shape) if optimizing else l.shape
            a_low = a_up = torch.zeros(shape, device=l.device)
        elif optimizing:
            alpha = self.alpha[self._start]  # (2 lines, 2 A-sides, spec, *l.shape)
            a_low, a_up = alpha[0], alpha[1]
        else:
            a_low = a_up = self._crown_slope(l, u)
        self.lw, self.lb, self.uw, self.ub = self._lines(a_low, a_up, l, u)

    def bound_backward(self, last_lA, last_uA, x, *const_inputs, **kwargs):
        none = [(None, None)] * len(const_inputs)  # constant min/max inputs get no A
        if self._stops_backward() and all(a is None or type(a) is Tensor for a in (last_lA, last_uA)):
            # slope 0 (on an input box, or flat): the A matrix stops here, and only the
            # concretisation over the box [f(l), f(u)] is needed -- two contractions, no A product
            l, u = self._widen(x.lower, x.upper)
            lo, hi = self.forward(l), self.forward(u)
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            lbias = _box_bias(last_lA, mid, rad, -1.0)
            ubias = _box_bias(last_uA, mid, rad, +1.0)
            return [(None, None)] + none, lbias, ubias
        As, lbias, ubias = super().bound_backward(last_lA, last_uA, x, **kwargs)
        return As + none, lbias, ubias

    # ---- alpha-CROWN -----------------------------------------------------------------------------
    def init_opt_parameters(self, start_nodes):
        self.alpha = OrderedDict()
        if self._reads_box() or self._constant_lines_only():
            return  # slope 0 is optimal (input box) or the only slope allowed: nothing to optimise
        l, u = self._widen(self.inputs[0].lower, self.inputs[0].upper)
        init = self._crown_slope(l, u).detach()
        for ns, size_s, _ in start_nodes:
            if isinstance(size_s, torch.Size):
                size_s = int(torch.tensor(size_s).prod())
            self.alpha[ns] = init.expand(2, 2, size_s, *l.shape).clone()

    def clip_alpha_(self):
        for v in self.alpha.values():
            v.data.clamp_(min=0.0)

    def dump_optimized_params(self):
        return self.alpha

    def restore_optimized_params(self, alpha):
        self.alpha = alpha


class BoundQuantStep(_MonotoneBound):
    """qnn::QuantStep: clamp(R(x / scale) + zero_point, lo, hi)."""

    def __init__(self, attr, inputs, output_index, options):
        super().__init__(attr, inputs, output_index, options)
        dev = attr.get("device")
        self.scale = attr["scale"].to(device=dev, dtype=torch.float32)
        self.zero_point = attr["zero_point"].to(device=dev, dtype=torch.float32)
        self.lo, self.hi = float(attr["lo"]), float(attr["hi"])
        self.rounding = attr["rounding"]
        if isinstance(self.rounding, bytes):
            self.rounding = self.rounding.decode()
        self.delta = ROUNDINGS[self.rounding]

        # _inf_sup assumes unit-spaced levels: clamp limits on the lattice zero_point + Z
        self._on_lattice = all(
            abs(lim) == float("inf") or bool(torch.all(torch.frac(lim - self.zero_point) == 0))
            for lim in (self.lo, self.hi))

    # per-domain level ranges set by the verifier's activation branching (verifier/activations.py):
    # (batch, *shape) tensors clamping the levels further; None when not branching
    split_lo = split_hi = None
    # training (qnn_plugin.training.loss): values and interval bounds carry the straight-through
    # gradient, so a loss on the bounds trains the weights; off for verification, where the
    # step's zero gradient keeps alpha-CROWN's slopes from chasing a surrogate
    ste = False

    def forward(self, x):
        if self.ste and torch.is_grad_enabled() and x.requires_grad:
            q = QuantStepFn.apply(x, Const(self.scale), Const(self.zero_point), self.lo, self.hi,
                                  self.rounding)
        else:
            q = quant_step(x, self.scale, self.zero_point, self.lo, self.hi, self.rounding)
        if self.split_lo is not None:
            if q.shape[-self.split_lo.dim():] != self.split_lo.shape:
                raise RuntimeError(f"internal error: level constraints of shape "
                                   f"{tuple(self.split_lo.shape)} for a tensor of shape {tuple(q.shape)}")
            q = torch.maximum(torch.minimum(q, self.split_hi), self.split_lo)
        return q

    def _step_width(self):
        return self.scale

    def _constant_lines_only(self) -> bool:
        return not self._on_lattice

    def _natural_slope(self, l, u):
        return (1.0 / self.scale).expand_as(l)

    def _inf_sup(self, a, l, u):
        s, z, d = self.scale, self.zero_point, self.delta
        kl, ku = self.forward(l), self.forward(u)
        inf = ku - a * u
        sup = kl - a * l
        steps = ku > kl
        # level k ends (upper edge) at (k - z + d) s and starts (lower edge) at (k - z + d - 1) s;
        # k - a * edge(k) is affine in k, so its extremes over the levels crossed are at the ends
        for k in (kl, ku - 1):
            inf = torch.where(steps, torch.minimum(inf, k - a * (k - z + d) * s), inf)
        for k in (kl + 1, ku):
            sup = torch.where(steps, torch.maximum(sup, k - a * (k - z + d - 1) * s), sup)
        return inf, sup


class BoundSign(_MonotoneBound):
    """onnx::Sign: -1 below 0, 0 at 0, +1 above. Every step edge is at x = 0."""

    def forward(self, x):
        return torch.sign(x)

    def _step_width(self):
        return 2.0 ** -10  # no natural unit: widen by 2**-20 absolute (times _WIDEN_ABS)

    def _inf_sup(self, a, l, u):
        kl, ku = torch.sign(l), torch.sign(u)
        steps = ku > kl
        inf = torch.where(steps, torch.minimum(ku - a * u, kl), ku - a * u)
        sup = torch.where(steps, torch.maximum(kl - a * l, ku), kl - a * l)
        return inf, sup


class BoundQClip(_MonotoneBound):
    """Clip(x, lo, hi) with constant bounds (qnn::Clip from the importer, or onnx::Clip)."""

    def __init__(self, attr, inputs, output_index, options):
        super().__init__(attr, inputs, output_index, options)
        self._attr_bounds = ("lo" in attr) and ("hi" in attr)
        if self._attr_bounds:
            self.lo, self.hi = float(attr["lo"]), float(attr["hi"])

    def _limits(self):
        if self._attr_bounds:
            return self.lo, self.hi
        lims = []
        for i, default in ((1, -float("inf")), (2, float("inf"))):
            v = None
            if len(self.inputs) > i:
                v = getattr(self.inputs[i], "value", None)
                if v is None:
                    v = self.inputs[i].forward_value
            if v is None or (isinstance(v, Tensor) and v.numel() == 0):
                lims.append(default)
            else:
                if isinstance(v, Tensor) and v.numel() != 1:
                    raise NotImplementedError("Clip with non-scalar min/max is not supported")
                lims.append(float(v))
        return tuple(lims)

    def forward(self, x, *_bounds):
        lo, hi = self._limits()
        return torch.clamp(x, lo, hi)

    def interval_propagate(self, *v):
        return self.forward(v[0][0]), self.forward(v[0][1])

    def _natural_slope(self, l, u):
        return torch.ones_like(l)

    def _inf_sup(self, a, l, u):
        lo, hi = self._limits()
        # f(x) - a x is piecewise linear with kinks at lo and hi: extremes at l, u and the kinks
        pts = [l, u]
        for c in (lo, hi):
            if abs(c) != float("inf"):
                pts.append(torch.minimum(torch.maximum(torch.full_like(l, c), l), u))
        vals = [self.forward(p) - a * p for p in pts]
        inf, sup = vals[0], vals[0]
        for v in vals[1:]:
            inf, sup = torch.minimum(inf, v), torch.maximum(sup, v)
        return inf, sup


STEP_BOUNDS = (BoundQuantStep, BoundSign, BoundQClip)
BOUND_OPS: Dict[str, type] = {
    OP_NAME: BoundQuantStep,
    CLIP_OP_NAME: BoundQClip,
    "onnx::Sign": BoundSign,
    "onnx::Clip": BoundQClip,
    # replaces auto_LiRPA's MaxPool, which bounds only stride == kernel without padding
    "onnx::MaxPool": BoundWindowMax,
    # auto_LiRPA's Pad leaves a non-zero pad value out of its backward pass and ignores the
    # reflect and edge modes
    "onnx::Pad": BoundOnnxPad,
}


def register() -> Dict[str, type]:
    """Register the plugin's bound operators into auto_LiRPA's global op map (idempotent).

    Other auto_LiRPA-based tools can instead pass ``custom_ops=qnn_plugin.BOUND_OPS`` to
    ``BoundedModule``.
    """
    from auto_LiRPA import register_custom_op

    for name, cls in BOUND_OPS.items():
        register_custom_op(name, cls)
    return dict(BOUND_OPS)
