"""Branching on hidden activations: what input splitting cannot do on high-dimensional inputs.

Two kinds of neuron are split:

* a ReLU, at 0: one child has the pre-activation <= 0, the other >= 0. The constraint enters
  auto_LiRPA as a reference bound on the pre-activation (so the ReLU is linear or zero there,
  and every later layer's bounds are recomputed with it);
* a quantization step (QuantStep) whose input bounds span several levels k_l..k_u: one child
  keeps levels k_l..m, the other m+1..k_u. The constraint enters twice: as a tighter clamp of
  that step on this domain (on inputs that satisfy it, clamping changes nothing, and the
  clamped staircase is again a staircase whose relaxation the plugin's bound operator
  computes exactly), and as the interval of inputs those levels take (``level_limits``),
  intersected into the step's input bounds, so the step is relaxed over those inputs alone
  (a clamp alone leaves a flat stretch that a sloped line must also stay under or above). No
  split lands on a rounding tie: levels are split, not values. A staircase's relaxation is
  about one level wide however many levels it spans, so a split narrows it only where a
  child keeps one level or part of one: m is the lowest, middle or next-to-highest level,
  whichever narrows the step's CROWN lines most (``_split_gain``).

Both children together cover the parent (every input's level or sign is in one of them), so
dropping a child whose bounds prove it safe is sound. The constraints are not pushed back into
earlier layers (that is beta-CROWN's Lagrangian, not done here): a child may be infeasible.
Infeasibility shows once a neuron's own pre-activation bounds (computed under the earlier
layers' constraints, valid on the domain) exclude the side it was assigned (``empty``); such a
domain holds no input and is dropped. Without that check, a domain whose every neuron is fixed
but which no input reaches would keep an unsafe constant bound until its box is enumerated.
When no neuron is left undecided the verifier splits the input box instead, which ends in
single points evaluated exactly.

Children inherit their parent's bounds of each layer's input (``p{i}``/``q{i}`` in the
state, search option ``inherit``; not for layers affine in the input, which never need them):
a child's inputs are a subset of its parent's, so those bounds hold there too, and each bound
computation keeps the tighter of them and its own (``bounded.py``). Without them a
child can be far looser than its parent: a ReLU fixed active becomes the identity, and CROWN
concretises it over the whole box, where the pre-activation still takes its negative values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..bounds import _WIDEN_ABS, _WIDEN_REL, BoundQuantStep, _MonotoneBound
from ..ops import quant_step
from auto_LiRPA.operators import BoundRelu

RELU, STEP = "relu", "step"
_INF = float("inf")
_BAND = 1e-5  # relative margin by which a ReLU side must be excluded to call a domain empty


@dataclass
class Layer:
    node: object            # the auto_LiRPA node (BoundRelu or BoundQuantStep)
    kind: str               # RELU or STEP
    shape: Tuple[int, ...]  # per-sample shape
    consumer: Optional[str]  # a node reading this layer's output as its first input (for A)

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape))


def find_layers(bm) -> List[Layer]:
    """Splittable activation layers of a BoundedModule, in graph order."""
    nodes = list(bm._modules.values())
    layers = []
    for node in nodes:
        if not getattr(node, "perturbed", False) or not getattr(node, "output_shape", None):
            continue
        if type(node) is BoundRelu:
            kind = RELU
        elif (isinstance(node, BoundQuantStep) and not node._reads_box() and node._on_lattice
              and bool(torch.all(torch.frac(node.zero_point) == 0))):  # integer levels
            kind = STEP
        else:
            continue
        consumer = next((n.name for n in nodes if getattr(n, "inputs", None)
                         and n.inputs[0] is node), None)
        layers.append(Layer(node, kind, tuple(node.output_shape[1:]), consumer))
    return layers


def affine_in_input(node) -> bool:
    """No activation (ReLU or any of the plugin's steps) between the node and the input."""
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        if isinstance(n, (BoundRelu, _MonotoneBound)):
            return False
        todo.extend(i for i in getattr(n, "inputs", []) if getattr(i, "perturbed", False))
    return True


def initial_state(layers: List[Layer], device, inherit: bool = False) -> Dict[str, Tensor]:
    """No constraint: ReLU signs 0, step level ranges (-inf, inf). One row. With ``inherit``
    also the input bounds (-inf, inf) of each layer whose input is not affine in the network's
    input, as ``p{i}``/``q{i}``: a domain's bounds, which its children inherit (see
    ``install``). An affine layer's own bounds are never looser than its parent's: the same
    constraints before it, on the same or a smaller box."""
    state = {}
    for i, layer in enumerate(layers):
        if layer.kind == RELU:
            state[f"r{i}"] = torch.zeros(1, layer.numel, dtype=torch.int8, device=device)
        else:
            state[f"l{i}"] = torch.full((1, layer.numel), -_INF, device=device)
            state[f"h{i}"] = torch.full((1, layer.numel), _INF, device=device)
        if inherit and not affine_in_input(layer.node.inputs[0]):
            state[f"p{i}"] = torch.full((1, layer.numel), -_INF, device=device)
            state[f"q{i}"] = torch.full((1, layer.numel), _INF, device=device)
    return state


def install(layers: List[Layer], state: Dict[str, Tensor]):
    """Put the constraints of a batch of domains in place. Returns the reference bounds to
    pass to compute_bounds (ReLU pre-activations carry their split: 0 or +-inf, which
    auto_LiRPA intersects in exactly) and the inherited bounds (``p{i}``/``q{i}``, a
    parent's, valid on its children: their input boxes and constraints are subsets of its;
    for a step layer, also the interval its split levels take, ``level_limits``), by node
    name, for ``bounded.py`` to intersect with each node's own bounds as they are
    computed (auto_LiRPA's reference-bound formula keeps gradients at the cost of a rounding
    in either direction, which would build up from parent to child)."""
    ref, inherited = {}, {}
    for i, layer in enumerate(layers):
        name = layer.node.inputs[0].name
        if layer.kind == RELU:
            s = state[f"r{i}"]
            n = s.shape[0]
            lo = torch.where(s > 0, 0.0, -_INF).view(n, *layer.shape)
            hi = torch.where(s < 0, 0.0, _INF).view(n, *layer.shape)
            ref[name] = (lo, hi)
        else:
            n = state[f"l{i}"].shape[0]
            layer.node.split_lo = state[f"l{i}"].view(n, *layer.shape)
            layer.node.split_hi = state[f"h{i}"].view(n, *layer.shape)
            # the split's levels confine the step's input: intersect it into the node's bounds,
            # so the step is relaxed over the inputs the domain keeps (a clamp alone leaves a
            # flat stretch that a sloped line must also stay under or above)
            zlo, zhi = (t.view(n, *layer.shape) for t in level_limits(layer, state[f"l{i}"],
                                                                        state[f"h{i}"]))
            if f"p{i}" in state:
                zlo = torch.maximum(zlo, state[f"p{i}"].view(n, *layer.shape))
                zhi = torch.minimum(zhi, state[f"q{i}"].view(n, *layer.shape))
            inherited[name] = (zlo, zhi)
            continue
        if f"p{i}" in state:
            inherited[name] = (state[f"p{i}"].view(n, *layer.shape),
                               state[f"q{i}"].view(n, *layer.shape))
    return ref, inherited


def level_limits(layer: Layer, k_lo: Tensor, k_hi: Tensor) -> Tuple[Tensor, Tensor]:
    """(N, numel) limits on a step layer's input implied by level ranges [k_lo, k_hi]: level k
    takes inputs in [(k - z + d - 1) s, (k - z + d) s] (scale s > 0, zero point z, d the
    rounding's offset; both ends kept, whichever level a tie goes to), widened outward like the
    step's own input bounds (x / s is rounded in float32; the forward pass's own float32
    error). -inf / +inf where a range is open or reaches the clamp's end (saturated inputs
    reach past the edge)."""
    node = layer.node
    flat = lambda t: t.expand(layer.shape).reshape(1, -1)   # per-channel scales too
    s, z = flat(node.scale), flat(node.zero_point)
    lower = (k_lo - z + node.delta - 1) * s
    upper = (k_hi - z + node.delta) * s
    fe = getattr(node, "float_err", None)
    err = 0.0 if fe is None else fe.to(s.device).reshape(1, -1)
    lower = lower - (_WIDEN_REL * lower.abs() + _WIDEN_ABS * s + err)
    upper = upper + (_WIDEN_REL * upper.abs() + _WIDEN_ABS * s + err)
    return (torch.where(torch.isfinite(k_lo) & (k_lo > node.lo), lower, -_INF),
            torch.where(torch.isfinite(k_hi) & (k_hi < node.hi), upper, _INF))


def input_bounds(layers: List[Layer], n: int) -> List[Tuple[Tensor, Tensor]]:
    """After a bound computation of n domains: per layer, its input's (N, numel) bounds."""
    return [(layer.node.inputs[0].lower.reshape(n, -1).detach(),
             layer.node.inputs[0].upper.reshape(n, -1).detach()) for layer in layers]


def uninstall(layers: List[Layer]) -> None:
    for layer in layers:
        if layer.kind == STEP:
            layer.node.split_lo = layer.node.split_hi = None


def ranges(layers: List[Layer], n: int) -> List[Tuple[Tensor, Tensor]]:
    """After a bound computation of n domains: per layer, (N, numel) ranges that decide whether
    a neuron is settled -- ReLU: the pre-activation bounds; step: the reachable levels."""
    out = []
    for layer in layers:
        inp = layer.node.inputs[0]
        lo, hi = inp.lower.reshape(n, -1), inp.upper.reshape(n, -1)
        if layer.kind == STEP:
            l, u = layer.node._widen(inp.lower, inp.upper)
            lo = layer.node.forward(l).reshape(n, -1)
            hi = layer.node.forward(u).reshape(n, -1)
        out.append((lo.detach(), hi.detach()))
    return out


def empty(layers: List[Layer], state: Dict[str, Tensor], n: int) -> Tensor:
    """After a bound computation of n domains (constraints still installed): (N,) bool, the
    domains that no input reaches -- a split ReLU whose pre-activation bounds lie wholly on the
    other side of its assigned sign, or a split step whose unclamped reachable levels miss its
    assigned level range. auto_LiRPA's bounds are float32 without outward rounding, so a ReLU
    counts only beyond a relative band (a pre-activation that is exactly 0 belongs to both
    children anyway); step levels come from the outward-widened bounds, as everywhere else."""
    out = torch.zeros(n, dtype=torch.bool)
    for i, layer in enumerate(layers):
        node = layer.node
        inp = node.inputs[0]
        l, u = inp.lower.reshape(n, -1), inp.upper.reshape(n, -1)
        if layer.kind == RELU:
            s = state[f"r{i}"].to(l.device)
            bad = (((s < 0) & (l > _BAND * (1 + l.abs())))
                   | ((s > 0) & (u < -_BAND * (1 + u.abs()))))
        else:
            if node.split_lo is None:
                continue
            l, u = node._widen(inp.lower, inp.upper)
            levels = lambda x: quant_step(x, node.scale, node.zero_point, node.lo, node.hi,
                                          node.rounding).reshape(n, -1)
            bad = (levels(u) < node.split_lo.reshape(n, -1)) | (levels(l) > node.split_hi.reshape(n, -1))
        out = out.to(bad.device) | bad.any(dim=1)
    return out.detach()


def scores(layers: List[Layer], rngs, state, sens: List[Optional[Tensor]], inputs):
    """Branching priority (N, total neurons), -1 for settled or already split neurons, and per
    layer the level each step splits after (N, numel; None for ReLUs): the relaxation gap a
    split removes (ReLU: the triangle's height -l*u/(u-l); step: see _split_gain, over
    ``inputs``, each layer's (N, numel) input bounds) times the output's sensitivity |A| (from
    the decisive row's linear bound, when available)."""
    parts, at = [], []
    for i, (layer, (lo, hi), a) in enumerate(zip(layers, rngs, sens)):
        cut = None
        if layer.kind == RELU:
            open_ = (lo < 0) & (hi > 0) & (state[f"r{i}"] == 0)
            gap = torch.where(open_, -lo * hi / (hi - lo).clamp(min=1e-30), torch.zeros_like(lo))
        else:
            open_ = hi > lo
            gap, cut = _split_gain(layer, lo, hi, *inputs[i])
            gap = torch.where(open_, gap, torch.zeros_like(lo))
        at.append(cut)
        weight = a.abs() + 1e-6 if a is not None else torch.ones_like(gap)
        parts.append(torch.where(open_, gap * weight + 1e-12, torch.full_like(gap, -1.0)))
    return torch.cat(parts, dim=1), at


def branch(layers: List[Layer], state: Dict[str, Tensor], rngs, flat: Tensor, at=None):
    """Two children per domain, splitting neuron ``flat`` (index into the concatenated layers):
    returns the children's state (2N rows: all first children, then all second children). A
    step splits after level ``at[layer]`` (N, numel) when given, else after its middle level."""
    sizes = torch.tensor([layer.numel for layer in layers], device=flat.device)
    offsets = torch.cumsum(sizes, 0) - sizes
    which = torch.searchsorted(torch.cumsum(sizes, 0), flat, right=True)
    kids = {k: torch.cat([v, v]) for k, v in state.items()}
    n = flat.shape[0]
    rows = torch.arange(n, device=flat.device)
    for i, layer in enumerate(layers):
        sel = which == i
        if not bool(sel.any()):
            continue
        r, j = rows[sel], flat[sel] - offsets[i]
        if layer.kind == RELU:
            kids[f"r{i}"][r, j] = -1          # first child: pre-activation <= 0
            kids[f"r{i}"][r + n, j] = 1       # second child: >= 0
        else:
            kl, ku = rngs[i][0][r, j], rngs[i][1][r, j]
            mid = torch.floor((kl + ku) / 2) if at is None or at[i] is None else at[i][r, j]
            kids[f"h{i}"][r, j] = torch.minimum(kids[f"h{i}"][r, j], mid)
            kids[f"l{i}"][r + n, j] = torch.maximum(kids[f"l{i}"][r + n, j], mid + 1)
    return kids


def _gap(node, l: Tensor, u: Tensor, k_lo: Optional[Tensor] = None,
         k_hi: Optional[Tensor] = None) -> Tensor:
    """Vertical gap between the step's CROWN lines over [l, u] (the best candidate slope), its
    levels clamped to [k_lo, k_hi] when given, as a split installs them: the input limits of
    a level range are closed and widened, so they reach into the next level."""
    saved = node.split_lo, node.split_hi
    if k_lo is not None:
        node.split_lo, node.split_hi = k_lo, k_hi
    try:
        a = node._crown_slope(l, u)
        _, inf, _, sup = node._lines(a, a, l, u)
    finally:
        node.split_lo, node.split_hi = saved
    return (sup - inf).clamp(min=0)


def _split_gain(layer: Layer, k_lo: Tensor, k_hi: Tensor, l: Tensor, u: Tensor):
    """How much a split narrows a step's relaxation, and where: the gap over its input bounds
    minus the children's mean gap (each over the inputs of the levels it keeps), for a split
    after the lowest, the middle or the next-to-highest level; the best of them and its level."""
    node = layer.node
    n = l.shape[0]
    # the node's own shape while it computes (per-channel scales broadcast over it, not over
    # the flattened (N, numel) domains: an audit's per-axis step after a 4-D MaxPool crashed)
    shaped = lambda t: t.reshape(n, *layer.shape)   # noqa: E731
    gap = lambda lo, hi, *ks: _gap(node, shaped(lo), shaped(hi), *map(shaped, ks)).reshape(n, -1)  # noqa: E731
    l, u = (t.reshape(n, -1) for t in node._widen(shaped(l), shaped(u)))
    g = gap(l, u)
    best, cut = None, None
    for m in (k_lo, torch.floor((k_lo + k_hi) / 2), k_hi - 1):
        m = torch.minimum(torch.maximum(m, k_lo), k_hi - 1)
        _, up1 = level_limits(layer, torch.full_like(m, -_INF), m)
        lo2, _ = level_limits(layer, m + 1, torch.full_like(m, _INF))
        gain = g - 0.5 * (gap(l, torch.minimum(u, up1), k_lo, m)
                          + gap(torch.maximum(l, lo2), u, m + 1, k_hi))
        if best is None:
            best, cut = gain, m
        else:
            better = gain > best
            best, cut = torch.where(better, gain, best), torch.where(better, m, cut)
    return best.clamp(min=0), cut
