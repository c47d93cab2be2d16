"""The QA-IBP training loss, on the bounds the verifier uses.

``RobustLoss`` wraps a QNN in the same auto_LiRPA BoundedModule (``qnn_plugin.bounded``, the
plugin's ``BoundQuantStep`` for every rounding and clamp) that ``qnn-verify`` bounds, and turns
its interval (or CROWN-IBP) lower bounds of the margins ``z_y - z_j`` over an L-inf box into a
differentiable loss. Gradients reach the weights through the straight-through estimator of the
quantization steps (``BoundQuantStep.ste``). The module shares the QNN's parameters: an
optimizer over ``model.parameters()`` trains both.

Default recipe (the QA-IBP authors' code)::

    loss = CE(z(x), y) + kappa * mean_{j != y} max(0, m - lb(z_y - z_j))

with m = 0.2. A sample is certified at eps when every lb(z_y - z_j) > 0: the VNN-LIB robustness
property (unsafe: some Y_j >= Y_y) is then unsat for its box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..bounded import bounded
from ..bounds import BoundQuantStep
from .layers import QNN

METHODS = {"ibp": "IBP", "crown-ibp": "CROWN-IBP"}


@dataclass
class LossTerms:
    loss: Tensor            # scalar, differentiable
    ce: Tensor              # cross-entropy of the clean logits (detached scalar)
    hinge: Tensor           # mean hinge on the margin bounds (detached scalar; 0 when kappa = 0)
    logits: Tensor          # clean logits (N, classes), detached
    certified: Optional[Tensor]  # (N,) bool: every margin bound > 0 (None when eps = 0)


def margin_matrix(y: Tensor, n_classes: int) -> Tensor:
    """(N, n_classes - 1, n_classes): rows e_y - e_j for every j != y, in increasing j."""
    n = y.shape[0]
    eye = torch.eye(n_classes, device=y.device)
    C = eye[y].unsqueeze(1) - eye.unsqueeze(0)                      # (N, classes, classes)
    keep = ~torch.nn.functional.one_hot(y, n_classes).bool()         # drop row j == y
    return C[keep].view(n, n_classes - 1, n_classes)


class RobustLoss(nn.Module):
    """``RobustLoss(model)(x, y, eps, kappa)`` -> LossTerms.

    ``eps``: L-inf radius in input units (for 8-bit pixel inputs x = p/256, k pixel levels are
    eps = k/256); the box is [x - eps, x + eps], which the model's input quantizer clamps to its
    grid. ``method``: "ibp" (default) or "crown-ibp". ``margin``: m of the hinge.
    """

    def __init__(self, model: QNN, method: str = "ibp", margin: float = 0.2):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown bound method {method!r}; expected one of {sorted(METHODS)}")
        self.model, self.method, self.margin = model, method, float(margin)
        device = next(model.parameters()).device
        example = torch.zeros((1,) + tuple(model.input_shape), device=device)
        was_training = model.training
        self.bm = bounded(model, example)   # shares the model's parameters
        model.train(was_training)
        for node in self.bm._modules.values():
            if isinstance(node, BoundQuantStep):
                node.ste = True

    def _bounded(self, x: Tensor, eps: float) -> Tensor:
        """Forward pass of the BoundedModule on the box's centre (the clean logits, which the
        bound computation then reuses, as auto_LiRPA's own training loops do)."""
        from auto_LiRPA import BoundedTensor
        from auto_LiRPA.perturbations import PerturbationLpNorm

        return self.bm(BoundedTensor(x, PerturbationLpNorm(x_L=x - eps, x_U=x + eps)))

    def _margin_lb(self, y: Tensor) -> Tensor:
        C = margin_matrix(y, self.model.n_out)
        lb, _ = self.bm.compute_bounds(C=C, method=METHODS[self.method], bound_upper=False)
        return lb

    def margin_bounds(self, x: Tensor, y: Tensor, eps: float) -> Tensor:
        """(N, classes - 1) lower bounds of z_y - z_j over the box, differentiable."""
        self._bounded(x, eps)
        return self._margin_lb(y)

    def forward(self, x: Tensor, y: Tensor, eps: float, kappa: float) -> LossTerms:
        robust = eps > 0 and kappa > 0
        logits = self._bounded(x, eps) if robust else self.model(x)
        ce = F.cross_entropy(logits, y)
        loss, hinge, certified = ce, torch.zeros((), device=x.device), None
        if robust:
            lb = self._margin_lb(y)
            hinge = torch.relu(self.margin - lb).mean()
            loss = ce + kappa * hinge
            certified = (lb > 0).all(dim=1).detach()
        return LossTerms(loss, ce.detach(), hinge.detach(), logits.detach(), certified)

    @torch.no_grad()
    def certified(self, x: Tensor, y: Tensor, eps: float) -> Tensor:
        """(N,) bool: certified robust at eps by this loss's bound method (and correct)."""
        lb = self.margin_bounds(x, y, eps)
        return (lb > 0).all(dim=1)
