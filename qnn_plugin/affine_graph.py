"""Affine nodes of an auto_LiRPA bound graph as float64 matrices.

Both exact encodings of a network (the verifier's integer program, ``verifier/milp.py``, and the
SMT baseline, ``baselines/smt``) need every affine operation between two nonlinear steps as a
matrix. Rather than one rule per operator, a node is evaluated on basis vectors of its perturbed
input (float64, constants promoted): MatMul, Gemm, Conv, constant Add/Sub/Mul/Div, inference
BatchNormalization and reshapes
all share this one code path. The caller composes the local maps along the graph.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

AFFINE_KINDS = ("BoundMatMul", "BoundLinear", "BoundConv", "BoundAdd", "BoundSub", "BoundMul",
                "BoundDiv", "BoundReshape", "BoundFlatten", "BoundSqueeze", "BoundUnsqueeze",
                "BoundNeg", "BoundIdentity", "BoundBatchNormalization")


class NotAffine(Exception):
    """The node is not an affine function of its perturbed inputs (or not one handled here)."""


def local_map(node) -> Tuple[List[Tuple[int, np.ndarray]], np.ndarray]:
    """``out = sum_p K_p x_p + offset`` for an affine node (tensors flattened without the batch
    dimension): returns ([(input index p, K_p)], offset). Constant inputs must hold their
    ``forward_value`` or a folded ``value`` (``evaluate_constants`` sees to it)."""
    kind = type(node).__name__
    pert = [i for i, n in enumerate(node.inputs) if n.perturbed]
    if kind not in AFFINE_KINDS or not pert:
        raise NotAffine(f"{kind} ({node.name})")
    if kind in ("BoundMul", "BoundDiv") and (len(pert) != 1 or (kind == "BoundDiv" and pert != [0])):
        raise NotAffine(f"{kind} of two perturbed operands ({node.name})")
    if kind in ("BoundMatMul", "BoundLinear", "BoundConv") and pert != [0]:
        raise NotAffine(f"{kind} with a perturbed weight ({node.name})")
    if kind in ("BoundAdd", "BoundSub") and len(pert) == 2:   # x + y, x - y
        shapes = [tuple(node.inputs[i].output_shape[1:]) for i in pert]
        if shapes[0] != shapes[1]:
            raise NotAffine(f"{kind} with broadcasting ({node.name})")
        n = int(np.prod(shapes[0]))
        eye = np.eye(n)
        return [(0, eye), (1, eye if kind == "BoundAdd" else -eye)], np.zeros(n)
    k = pert[0]
    shape = tuple(node.inputs[k].output_shape[1:])
    m = int(np.prod(shape))
    basis = torch.cat([torch.zeros(1, m, dtype=torch.float64),
                       torch.eye(m, dtype=torch.float64)]).reshape(m + 1, *shape)
    args = []
    for i, inp in enumerate(node.inputs):
        if i == k:
            args.append(basis)
        else:
            v = constant(inp, node)
            args.append(v.double() if torch.is_tensor(v) and v.is_floating_point() else v)
    try:
        with torch.no_grad():
            out = node.forward(*args).detach().reshape(m + 1, -1).double().cpu().numpy()
    except RuntimeError as exc:   # e.g. a Reshape to a fixed batch of 1: not batch-free
        raise NotAffine(f"{kind} ({node.name}) cannot be evaluated on a batch: {exc}") from None
    if not (np.all(np.isfinite(out))):
        raise NotAffine(f"{kind} ({node.name}) has non-finite constants")
    offset, K = out[0], (out[1:] - out[0]).T          # out(x) = K x + offset
    return [(k, K)], offset


def evaluate_constants(bm) -> None:
    """Give every unperturbed node of ``bm`` its ``forward_value``. A bound computation leaves
    some without one (a Reshape's target shape folded into ``value``, a Pad's Cast of its pads
    never evaluated); auto_LiRPA evaluates those on demand, and so does this."""
    for node in bm._modules.values():
        if not getattr(node, "perturbed", False):
            bm.get_forward_value(node)


def constant(inp, node):
    """The value of an unperturbed input of ``node`` (see ``evaluate_constants``)."""
    for attr in ("forward_value", "value"):
        v = getattr(inp, attr, None)
        if v is not None:
            return v
    raise NotAffine(f"{type(node).__name__} ({node.name}): constant input {inp.name} has no value")


def compose(node, exprs) -> Tuple[np.ndarray, np.ndarray]:
    """(M, c) of an affine node over the encoding's variables, from its perturbed inputs'
    (M, c) in ``exprs`` (keyed by node name, all with the same number of columns)."""
    parts, offset = local_map(node)
    M = c = None
    for p, K in parts:
        M_in, c_in = exprs[node.inputs[p].name]
        M = K @ M_in if M is None else M + K @ M_in
        c = K @ c_in if c is None else c + K @ c_in
    return M, c + offset
