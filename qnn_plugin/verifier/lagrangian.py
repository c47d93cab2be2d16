"""Split constraints in the output bound: beta-CROWN's Lagrangian, on linear forms of the input.

The activation branching (activations.py) enforces a split only through the split neuron's own
relaxation: the domain's linear lower bound ``a x + b`` of a margin row is still minimised over
the whole input box, often at a corner that breaks the very constraints the domain was split
on. Every split implies a linear constraint ``g(x) >= 0`` on the domain's inputs, through a
linear form of the neuron's pre-activation p(x) valid on the domain:

* first-layer neurons: p(x) = W_j x + c_j exactly (CROWN's lower and upper forms coincide on
  the root box, so on every sub-box), the same for every domain;
* deeper neurons: L_j(x) <= p(x) <= U_j(x), the forms CROWN computed for the domain's own
  intermediate bounds (under its constraints: valid on every input that meets them).

A step level >= k gives U_j(x) >= (k - z + d - 1) s, the lower edge of level k; level <= k gives
L_j(x) <= (k - z + d) s, its upper edge (scale s > 0, zero point z, d the rounding's offset, as
in ``bounds.BoundQuantStep``; edges widened outward like the step's own input bounds, for
float32); a ReLU sign gives U_j(x) >= 0 or L_j(x) <= 0. A step that reads a ReLU (a QDQ
network's requantizer) passes its limits through it to the ReLU's input: relu(p) >= t > 0
means p >= t, and relu(p) <= t means p <= t. For any multipliers beta >= 0,

    min over the box of  a x + b - sum_k beta_k g_k(x)

is a lower bound of the row on the domain (the subtracted sum is >= 0 there), and it costs one
pass over the coefficients. A few steps of projected gradient ascent (Adam) on beta per domain
and row; every iterate's value is a valid bound, the best multipliers' value is recomputed in
float64 and rounded down, and beta = 0 gives the CROWN bound back, so this never loosens a
bound. Input codes are treated as continuous (sound:
more points).
"""
from __future__ import annotations

import math
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from auto_LiRPA import BoundedTensor, PerturbationLpNorm
from auto_LiRPA.operators import BoundRelu

from . import activations as act

_INF = float("inf")
STEPS = 50          # ascent steps per bound call
LR = 1.0            # Adam's step on the normalised multipliers (see _scale)
# it costs about as much as the bound call itself: after TRIAL open polytopes given to it, it
# stays on only while it refutes at least PAYS of them alone (scripts/bench_lagrangian.py:
# mnist_fc's 256x2 ReLU net 38-67%; the AAAI 2021 QNN, whose steps' own relaxation gaps
# dominate, median 8%)
TRIAL, PAYS = 2000, 0.1
IDLE = 20           # bound calls in which no domain had a usable constraint: then off
_B1, _B2 = 0.9, 0.999
_BAND = act._BAND   # relative widening of a ReLU's threshold 0


class Lagrangian:
    """The forms of the branching layers' pre-activations: global exact ones (first layer) and
    the names of the nodes whose per-domain CROWN forms a bound call must return."""

    def __init__(self, layers: List[act.Layer], exact: Dict[int, Tuple[Tensor, Tensor]]):
        self.layers, self.exact = layers, exact
        self.deep = [i for i in range(len(layers)) if i not in exact
                     and (layers[i].kind == act.RELU or bool((layers[i].node.scale > 0).all()))]
        self.tried = self.refuted = 0   # open polytopes it was given, and refuted by it alone
        self.idle = 0                   # bound calls without a usable constraint

    @classmethod
    def build(cls, net, layers: List[act.Layer], lo: Tensor, hi: Tensor,
              deadline: float = math.inf) -> "Lagrangian":
        """Finds the layers whose pre-activations CROWN bounds exactly on the root box [lo, hi]
        (tried only where no activation lies between them and the input, and while time is
        left: a layer not found exact still gets per-domain forms)."""
        bm = net.bounded_module
        inp = bm.input_name[0]
        shape = (1,) + net.input_shape
        x = BoundedTensor(lo.reshape(shape), PerturbationLpNorm(x_L=lo.reshape(shape),
                                                                 x_U=hi.reshape(shape)))
        exact = {}
        for i, layer in enumerate(layers):
            if layer.kind == act.STEP and not bool((layer.node.scale > 0).all()):
                continue
            pre, _ = _source(layer)
            if time.monotonic() > deadline or not act.affine_in_input(pre):
                continue
            # one specification row per neuron, in the node's own shape (conv outputs too)
            C = torch.eye(layer.numel, device=lo.device).reshape(1, layer.numel, *layer.shape)
            try:
                with torch.no_grad():
                    res = bm.compute_bounds(x=(x,), C=C, method="backward",
                                            final_node_name=pre.name, return_A=True,
                                            needed_A_dict={pre.name: [inp]})
            except Exception:  # noqa: BLE001 -- whatever auto_LiRPA cannot do here, the layer
                continue       # only goes without an exact form (its per-domain forms remain)
            A = res[2].get(pre.name, {}).get(inp, {})
            lA, uA, lb, ub = (A.get(k) for k in ("lA", "uA", "lbias", "ubias"))
            if not all(isinstance(t, Tensor) for t in (lA, uA, lb, ub)):
                continue
            if bool((lA == uA).all()) and bool((lb == ub).all()):
                exact[i] = (lA.reshape(layer.numel, -1).detach(), lb.reshape(-1).detach())
        return cls(layers, exact)

    def record(self, tried: int, refuted: int) -> None:
        """After a bound call: the open polytopes of the domains it ran on, and how many of
        them it refuted where the plain bound did not (0, 0: it found no constraint to use)."""
        self.tried += tried
        self.refuted += refuted
        self.idle += tried == 0

    @property
    def paying(self) -> bool:
        if self.tried == 0:
            return self.idle < IDLE
        return self.tried < TRIAL or self.refuted >= PAYS * self.tried

    def needed(self) -> List[str]:
        """Pre-activation nodes whose forms (w.r.t. the input) the bound call must return."""
        return list(dict.fromkeys(_source(self.layers[i])[0].name for i in self.deep))

    def tighten(self, lA: Tensor, bias: Tensor, lo: Tensor, hi: Tensor, state,
                forms: Dict[str, dict], rows: Tensor,
                steps: int = STEPS) -> Optional[Tuple[Tensor, Tensor]]:
        """Lower bounds (N, R) of the rows with linear lower bounds lA (N, R, n) x + bias (N, R)
        over the boxes [lo, hi] (N, n), under the split constraints in ``state``; ``forms``:
        the bound call's A records of the ``needed`` nodes. Only rows marked in ``rows`` (N, R)
        are computed (the others: -inf); None when none of those has a constraint. Also the
        minimisers (N, R, n) of the best multipliers' Lagrangian (NaN for domains without a
        computed row): box corners that the multipliers push towards the domain's
        constraints, so counterexample candidates likelier to lie in the domain than the
        corner of the plain bound."""
        cons = self._constraints(state, forms, lo.shape[0])
        if cons is None:
            return None
        G, h, mask = cons
        rows = rows & mask.any(dim=1).unsqueeze(1)
        if not bool(rows.any()):
            return None
        dom = torch.nonzero(rows.any(dim=1)).flatten()
        val, x = _ascend(lA[dom].detach(), bias[dom].detach(), lo[dom], hi[dom], G[dom], h[dom],
                         mask[dom], steps)
        out = torch.full(rows.shape, -_INF, device=val.device)
        out[dom] = val
        points = torch.full(lA.shape, float("nan"), device=val.device)
        points[dom] = x
        return torch.where(rows, out, torch.full_like(out, -_INF)), points

    def _constraints(self, state, forms, n) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
        """The domains' constraints G x + h >= 0 packed per domain: G (N, K, n), h (N, K), and
        which of the K slots are in use (N, K)."""
        sources = []   # (rows of G: (m, n) shared or (N, m, n) per domain, h (N, m), used (N, m))
        for i, layer in enumerate(self.layers):
            t_lo, t_hi = self._limits(i, state)
            if i in self.exact:
                W, c = self.exact[i]
                lower = upper = (W, c.unsqueeze(0))
            else:
                rec = forms.get(_source(layer)[0].name)
                # only dense forms of every neuron (not auto_LiRPA's Patches or a subset)
                if rec is None or rec.get("unstable_idx") is not None or not all(
                        isinstance(rec.get(k), Tensor) for k in ("lA", "uA", "lbias", "ubias")):
                    continue
                lower = (rec["lA"].reshape(n, layer.numel, -1), rec["lbias"].reshape(n, -1))
                upper = (rec["uA"].reshape(n, layer.numel, -1), rec["ubias"].reshape(n, -1))
            used = torch.isfinite(t_lo)
            # p >= t_lo, so U(x) - t_lo >= 0
            sources.append((upper[0], torch.where(used, upper[1] - t_lo, 0.0), used))
            used = torch.isfinite(t_hi)
            # p <= t_hi, so t_hi - L(x) >= 0
            sources.append((-lower[0], torch.where(used, t_hi - lower[1], 0.0), used))
        if not sources:
            return None
        count = sum(used.sum(dim=1) for _, _, used in sources)
        k = int(count.max())
        if k == 0:
            return None
        n_in = sources[0][0].shape[-1]
        G = torch.zeros(n, k, n_in, device=sources[0][0].device)
        h = torch.zeros(n, k, device=G.device)
        mask = torch.zeros(n, k, dtype=torch.bool, device=G.device)
        filled = torch.zeros(n, dtype=torch.long, device=G.device)
        for rows_G, rows_h, used in sources:
            dom, j = torch.nonzero(used, as_tuple=True)
            if dom.numel() == 0:
                continue
            slot = filled[dom] + (torch.cumsum(used.long(), dim=1) - 1)[dom, j]
            G[dom, slot] = rows_G[j] if rows_G.dim() == 2 else rows_G[dom, j]
            h[dom, slot] = rows_h[dom, j]
            mask[dom, slot] = True
            filled += used.sum(dim=1)
        return G.detach(), h.detach(), mask

    def _limits(self, i: int, state) -> Tuple[Tensor, Tensor]:
        """(N, numel) limits on layer i's pre-activations implied by the domains' splits
        (-inf / +inf where there is none), widened outward."""
        layer = self.layers[i]
        node = layer.node
        if layer.kind == act.RELU:
            s = state[f"r{i}"]
            pre = node.inputs[0]
            n = s.shape[0]
            pad = _BAND * (1 + torch.maximum(pre.lower.abs(), pre.upper.abs()).reshape(n, -1))
            return (torch.where(s > 0, -pad, -_INF), torch.where(s < 0, pad, _INF))
        t_lo, t_hi = act.level_limits(layer, state[f"l{i}"], state[f"h{i}"])
        if _source(layer)[1]:   # through a ReLU: relu(p) >= t says p >= t only for t > 0
            t_lo = torch.where(t_lo > 0, t_lo, -_INF)
        return t_lo, t_hi


def _source(layer: act.Layer):
    """(node whose linear forms carry the layer's limits, whether a ReLU lies in between)."""
    pre = layer.node.inputs[0]
    if layer.kind == act.STEP and type(pre) is BoundRelu:
        return pre.inputs[0], True
    return pre, False


def _ascend(a, bias, lo, hi, G, h, mask, steps):
    """max over beta >= 0 of min over the box of a x + bias - beta (G x + h), by projected Adam,
    per domain (N) and row (R): a (N, R, n), bias (N, R), boxes (N, n), G (N, K, n), h and mask
    (N, K). Returns the value of the best multipliers seen (N, R), recomputed in float64 and
    rounded down, and the minimiser for them (N, R, n); beta = 0 (the first) is the plain
    bound."""
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    m = mask.unsqueeze(1).float()                                          # (N, 1, K)
    scale = m * _scale(a, G)                                               # (N, R, K)
    beta = torch.zeros_like(scale)
    m1, m2 = torch.zeros_like(scale), torch.zeros_like(scale)
    Gt = G.transpose(1, 2)
    best, best_b = None, None
    for i in range(steps + 1):
        b = beta * scale
        val, x = _lagrangian(a, bias, lo, hi, G, h, b)
        g = torch.bmm(x, Gt) + h.unsqueeze(1)                 # constraints there (N, R, K)
        if best is None:
            best, best_b = val, b
        else:
            better = val > best
            best = torch.where(better, val, best)
            best_b = torch.where(better.unsqueeze(2), b, best_b)
        if i == steps:
            break
        # d val / d beta_hat = -g * scale: raise the multipliers of the constraints broken at x
        grad = -g * scale
        m1.mul_(_B1).add_(grad, alpha=1 - _B1)
        m2.mul_(_B2).addcmul_(grad, grad, value=1 - _B2)
        step = LR * (m1 / (1 - _B1 ** (i + 1))) / ((m2 / (1 - _B2 ** (i + 1))).sqrt() + 1e-12)
        beta = (beta + step).clamp_(min=0) * m
    _, x = _lagrangian(a, bias, lo, hi, G, h, best_b)
    return _value64(a, bias, lo, hi, G, h, best_b), x


def _lagrangian(a, bias, lo, hi, G, h, b):
    """min over the boxes of a x + bias - b (G x + h) (N, R), and the minimiser (N, R, n)."""
    coef = a - torch.bmm(b, G)
    x = torch.where(coef > 0, lo, hi)
    return (coef * x).sum(dim=2) + bias - (b * h.unsqueeze(1)).sum(dim=2), x


def _value64(a, bias, lo, hi, G, h, b) -> Tensor:
    """The Lagrangian's minimum over the box for multipliers b, in float64 (its terms can be
    ten times the result, whose float32 rounding the proof tolerance was not sized for), then
    rounded down to float32."""
    val, _ = _lagrangian(*(t.double() for t in (a, bias, lo, hi, G, h, b)))
    low = val.float()
    return torch.where(low.double() > val, torch.nextafter(low, torch.full_like(low, -_INF)), low)


def _scale(a: Tensor, G: Tensor) -> Tensor:
    """The multiplier's natural size per row and constraint, |a|_1 / |G_k|_1: beta of about
    this much moves the minimiser as much as the row's own coefficients do. (N, R, K)"""
    return a.abs().sum(dim=2, keepdim=True) / G.abs().sum(dim=2).clamp(min=1e-30).unsqueeze(1)
