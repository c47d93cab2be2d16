"""Build auto_LiRPA BoundedModules for QNNs with every option they need, and compute bounds."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import traceback
from typing import Iterator, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from . import compat

compat.apply()

import types  # noqa: E402

import auto_LiRPA  # noqa: E402
from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402
from auto_LiRPA.operators import BoundConv, BoundLinear  # noqa: E402

from .errors import InputShapeError, UnsupportedOperatorError  # noqa: E402
from .bounds import BOUND_OPS, SHAPE_ONLY, STEP_BOUNDS, affine_operand, reads_input_box  # noqa: E402

METHODS = {
    "ibp": "IBP",
    "crown": "CROWN",
    "crown-ibp": "CROWN-IBP",
    "alpha-crown": "CROWN-Optimized",
    "crown-optimized": "CROWN-Optimized",
}

DEFAULT_BOUND_OPTS = {
    # 'patches' mode crashes on elementwise ops of non-image tensors in auto_LiRPA 0.3
    "conv_mode": "matrix",
    # alpha-CROWN asserts on a ReLU feeding a Linear whose output is not a ReLU otherwise
    "sparse_intermediate_bounds": False,
    # auto_LiRPA 0.3 keeps sparse alpha indices with a full alpha when more than this share of
    # a ReLU layer is unstable (an indentation slip), and alpha-CROWN then crashes: at 1.0 the
    # sparse form is always used, which is consistent
    "minimum_sparsity": 1.0,
    "optimize_bound_args": {"iteration": 20, "lr_alpha": 0.1, "enable_beta_crown": False},
}


def bounded(model: nn.Module, example: Tensor, device: Optional[Union[str, torch.device]] = None,
            bound_opts: Optional[dict] = None, source: Optional[str] = None) -> BoundedModule:
    """Wrap ``model`` (e.g. from ``load_onnx``) in an auto_LiRPA BoundedModule that knows the
    plugin's quantization operators.

    ``example`` is one input batch (any batch size; bounds may later use another). A network
    auto_LiRPA cannot bound raises UnsupportedOperatorError naming ``source`` (default: the
    model's file, for a ``load_onnx`` module).
    """
    opts = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_BOUND_OPTS.items()}
    for k, v in (bound_opts or {}).items():
        if isinstance(v, dict) and isinstance(opts.get(k), dict):
            opts[k].update(v)
        else:
            opts[k] = v
    if device is None:
        device = example.device
    check = getattr(model, "check_inputs", None)  # QnnModule: a clear message for a wrong shape
    if check is not None:
        check((example,))
    model = model.eval()
    source = source or getattr(model, "source", None) or type(model).__name__
    with lirpa_unsupported(source):
        bm = BoundedModule(model, example.to(device), bound_opts=opts, device=device,
                           custom_ops=dict(BOUND_OPS))
    bm.qnn_source = source    # compute_bounds names it when auto_LiRPA fails on a box
    # monotone steps take [f(l), f(u)] of their input's bounds: cheaper than a CROWN pass and,
    # for step functions, at least as tight
    bm.ibp_intermediate = list(bm.ibp_intermediate) + [c for c in STEP_BOUNDS
                                                       if c not in bm.ibp_intermediate]
    bm.check_IBP_intermediate = types.MethodType(_check_ibp_intermediate, bm)
    bm.check_IBP_first_linear = types.MethodType(_check_ibp_first_linear, bm)
    # names of nodes carrying the verifier's branching constraints as reference bounds (set by
    # verifier/bab.bound_rows around one bound computation); auto_LiRPA's own internal
    # reference bounds (alpha-CROWN) keep the short-cuts
    bm.qnn_branch_nodes = frozenset()
    # bounds by node name that the verifier's domains inherited from their parents (set by
    # bound_rows like qnn_branch_nodes): intersected with each such node's own, exactly
    bm.qnn_inherited = {}
    bm.compute_intermediate_bounds = types.MethodType(_compute_intermediate_bounds, bm)
    bm.qnn_input_shape = tuple(example.shape[1:])
    return bm


class _UnsupportedNodes(logging.Handler):
    """Collects the operators auto_LiRPA logs as unsupported while it builds a graph."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.ops = []

    def emit(self, record):
        op = getattr(record.args[0], "op", None) if isinstance(record.args, tuple) and record.args else None
        if isinstance(op, str) and op not in self.ops:
            self.ops.append(op)


_LIRPA_DIR = os.path.dirname(os.path.abspath(auto_LiRPA.__file__))


def _raised_in_lirpa(exc: BaseException) -> Optional[str]:
    """'file.py:line' of the innermost auto_LiRPA frame when ``exc`` was raised inside
    auto_LiRPA (or a library it called, or compat's replacements of its operators' methods),
    else None."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = os.path.dirname(os.path.abspath(__file__))
    for f in reversed(frames):
        path = os.path.abspath(f.filename)
        if path == os.path.join(ours, "compat.py"):   # a replacement of an auto_LiRPA method
            return f"qnn_plugin/compat.py:{f.lineno}"
        if path.startswith(ours + os.sep):
            return None       # raised by the plugin's own code (e.g. its bound operators)
        if path.startswith(_LIRPA_DIR + os.sep):
            return f"{os.path.relpath(path, os.path.dirname(_LIRPA_DIR))}:{f.lineno}"
    return None


@contextlib.contextmanager
def lirpa_unsupported(source: str, catch: Tuple[type, ...] = (Exception,)) -> Iterator[None]:
    """auto_LiRPA failing on a network it has no bounds for (an operator it does not support,
    or an operator form its bound code does not handle: it raises NotImplementedError,
    AssertionError, IndexError...) becomes an UnsupportedOperatorError naming ``source`` and
    the operators. Only exceptions of the ``catch`` types raised inside auto_LiRPA count (one
    raised in the plugin's own code stays what it is). auto_LiRPA's log, which goes to stdout,
    is kept out of the output meanwhile."""
    logger = logging.getLogger("auto_LiRPA.utils")
    collect = _UnsupportedNodes()
    logger.addHandler(collect)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    except UnsupportedOperatorError:
        raise
    except catch as exc:
        where = _raised_in_lirpa(exc)
        if where is None or "out of memory" in str(exc).lower():   # not an operator's fault
            raise
        ops = f" (unsupported: {', '.join(collect.ops)})" if collect.ops else ""
        detail = f"{type(exc).__name__}{': ' + str(exc) if str(exc) else ''} at {where}"
        raise UnsupportedOperatorError(f"{source}: auto_LiRPA cannot bound this network{ops}: "
                                       f"{detail}") from exc
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate


def _linear_over_box(node):
    """The input of a Linear/MatMul/Conv with constant weights whose input is an exact box
    (reads_input_box), else None: interval arithmetic there equals CROWN, without CROWN's
    (neurons x batch x inputs) A matrix."""
    if not isinstance(node, (BoundLinear, BoundConv)) or not node.inputs[0].perturbed:
        return None
    if any(i.perturbed for i in node.inputs[1:]):
        return None
    return node.inputs[0] if reads_input_box(node.inputs[0]) else None


def _check_ibp_intermediate(self, node):
    """auto_LiRPA's check_IBP_intermediate, extended: take interval bounds when every node back
    to one with bounds is a listed monotone op, a reshape, an elementwise affine map with a
    constant (each output reads one input element, so intervals are exact), or a
    constant-weight linear layer over an exact input box."""
    if node.name in self.qnn_branch_nodes:
        return False  # a branching constraint: take the CROWN path, which applies it
    chain = []
    while not hasattr(node, "lower") or not hasattr(node, "upper"):
        if type(node) in self.ibp_intermediate or isinstance(node, SHAPE_ONLY):
            nxt = node.inputs[0]  # monotone elementwise, or a pure rearrangement of elements
        else:
            nxt = affine_operand(node)
            if nxt is None:
                nxt = _linear_over_box(node)
            if nxt is None:
                return False
        chain.append(node)
        node = nxt
    for n in reversed(chain):
        self.IBP_general(n)
    return True


def _compute_intermediate_bounds(self, node, prior_checked=False):
    """auto_LiRPA's, then the node's inherited bounds (``qnn_inherited``) intersected in with
    torch.maximum/minimum: exact, where auto_LiRPA's reference-bound formula rounds."""
    type(self).compute_intermediate_bounds(self, node, prior_checked)
    inherited = self.qnn_inherited.get(node.name)
    if inherited is not None and getattr(node, "lower", None) is not None:
        node.lower = torch.maximum(node.lower, inherited[0])
        node.upper = torch.minimum(node.upper, inherited[1])
        node.interval = (node.lower, node.upper)


def _check_ibp_first_linear(self, node):
    """auto_LiRPA's short-cut for a first linear layer returns before reference bounds (the
    verifier's branching constraints) are applied: skip it for constrained nodes."""
    if node.name in self.qnn_branch_nodes:
        return False
    return type(self).check_IBP_first_linear(self, node)


@contextlib.contextmanager
def _optimise_until(bm: BoundedModule, deadline: Optional[float]) -> Iterator[None]:
    """alpha-CROWN's slope optimisation ends at its first iteration past ``deadline``
    (time.monotonic(); None: no limit), keeping the best bounds so far (any slopes give sound
    bounds): its 20 iterations took 9-10 s of a 10 s limit on a 256x6 ReLU net, on one core
    beside the integer program. Its stop criterion is the hook. auto_LiRPA prints "all
    verified" or "Early stop" when it stops early; that is kept out of stdout."""
    args = bm.bound_opts.setdefault("optimize_bound_args", {})
    before = args.get("stop_criterion_func")
    if deadline is not None:
        args["stop_criterion_func"] = lambda lb: (torch.ones_like(lb, dtype=torch.bool)
                                                  if time.monotonic() > deadline else False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if deadline is not None:   # back to auto_LiRPA's own (it fills in a default), or none
            if before is None:
                args.pop("stop_criterion_func", None)
            else:
                args["stop_criterion_func"] = before


def compute_bounds(bm: BoundedModule, lower: Tensor, upper: Tensor, method: str = "crown",
                   C: Optional[Tensor] = None, intersect_ibp: bool = True,
                   chunk: Optional[int] = 256,
                   deadline: Optional[float] = None) -> Tuple[Tensor, Tensor]:
    """Bounds of ``bm``'s output (or of ``C @ output``) over the boxes [lower, upper] (one per row).

    ``method``: ibp, crown, crown-ibp or alpha-crown. ``C`` has shape (batch, n_spec, n_out), or
    (1, n_spec, n_out) for the same specification on every box.
    With ``intersect_ibp`` (default) linear-relaxation bounds are intersected with IBP's: both are
    sound, and at a saturated quantized output IBP's [q(l), q(u)] can be the tighter one.
    Linear-relaxation methods bound at most ``chunk`` boxes per pass: their A matrices grow with
    neurons x batch x inputs, and past a few hundred boxes a larger pass is no faster per box,
    only bigger (None: one pass).
    Where auto_LiRPA cannot bound an operator on these boxes (a form it does not handle, a
    divisor whose range holds 0) the error is an UnsupportedOperatorError naming the model.
    ``deadline`` (a time.monotonic() value): alpha-CROWN stops optimising at its first
    iteration past it, with the best slopes so far.
    """
    key = method.lower()
    if key not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; expected one of {sorted(METHODS)}")
    if lower.shape != upper.shape:
        raise ValueError(f"lower and upper bounds differ in shape: {tuple(lower.shape)} vs {tuple(upper.shape)}")
    expected = getattr(bm, "qnn_input_shape", None)
    if expected is not None and tuple(lower.shape[1:]) != expected:
        raise InputShapeError(f"boxes have shape {tuple(lower.shape)}, expected (batch, "
                              f"{', '.join(map(str, expected))}) as the example given to bounded()")
    w_min, w_max = torch.aminmax(upper - lower)  # NaN and inf propagate into these two
    if not (bool(w_min >= 0) and bool(w_max < float("inf"))):
        raise ValueError("every box must have finite bounds with lower <= upper "
                         "(found NaN, infinity or an inverted interval)")
    # the bounded tensor's value only fixes shapes and forward values: any point of the box does
    x = BoundedTensor(lower, PerturbationLpNorm(x_L=lower, x_U=upper))
    if C is not None and C.shape[0] == 1 and lower.shape[0] > 1:
        C = C.expand(lower.shape[0], *C.shape[1:])
    if C is not None and C.shape[0] != lower.shape[0]:
        raise ValueError(f"C has batch {C.shape[0]} but there are {lower.shape[0]} boxes")
    if key != "ibp" and chunk and lower.shape[0] > chunk:
        parts = [compute_bounds(bm, lower[i:i + chunk], upper[i:i + chunk], method,
                                None if C is None else C[i:i + chunk], intersect_ibp, None,
                                deadline)
                 for i in range(0, lower.shape[0], chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    # an operator auto_LiRPA cannot bound on these boxes (e.g. a divisor whose range holds 0)
    with lirpa_unsupported(getattr(bm, "qnn_source", type(bm).__name__)):
        try:
            with (_optimise_until(bm, deadline) if METHODS[key] == "CROWN-Optimized"
                  else contextlib.nullcontext()):
                lb, ub = bm.compute_bounds(x=(x,), method=METHODS[key], C=C)
        except RuntimeError as exc:  # alpha-CROWN on a model with nothing to optimise
            if key not in ("alpha-crown", "crown-optimized") or "does not require grad" not in str(exc):
                raise
            lb, ub = bm.compute_bounds(x=(x,), method="CROWN", C=C)
        if intersect_ibp and key != "ibp":
            ilb, iub = _ibp(bm, x, C)
            lb, ub = torch.maximum(lb, ilb), torch.minimum(ub, iub)
    return lb, ub


def widen_for_float_error(bm: BoundedModule, lower: Tensor, upper: Tensor,
                          input_grain: Optional[float] = None):
    """Bound the forward pass's float32 error at every quantization step's input over the
    hull of the boxes [lower, upper] (one per row) and widen those steps' input bounds by it
    in every later bound computation (``qnn_plugin.float_error``): without it, large terms
    that cancel near a rounding edge can leave bounds that exclude the level onnxruntime
    computes. 0, and no change, where float32 evaluates the network exactly (integer inputs:
    ``input_grain=1``; power-of-two scales). Call again for boxes outside the hull. Returns
    the ``FloatErrors``."""
    from . import float_error

    lo = lower.detach().min(dim=0, keepdim=True).values.cpu()
    hi = upper.detach().max(dim=0, keepdim=True).values.cpu()
    errors = float_error.analyse(bm, lo, hi, input_grain)
    float_error.install(bm, errors)
    return errors


def _ibp(bm, x, C):
    """IBP bounds of the output, then of C @ output by interval arithmetic (auto_LiRPA's own C
    merging fails when the last node is a MatMul)."""
    lb, ub = bm.compute_bounds(x=(x,), method="IBP")
    if C is None:
        return lb, ub
    lb, ub = lb.reshape(lb.shape[0], -1, 1), ub.reshape(ub.shape[0], -1, 1)
    pos, neg = C.clamp(min=0), C.clamp(max=0)
    return (pos @ lb + neg @ ub).squeeze(-1), (pos @ ub + neg @ lb).squeeze(-1)


def margin_ibp(bm: BoundedModule, lower: Tensor, upper: Tensor, C: Tensor) -> Tensor:
    """Lower bounds of C @ output over the boxes by interval arithmetic, with the affine layers
    after the last quantization step folded into C (as IBP training computes margins: the
    interval of z_y - z_j, not l_y - u_j). Implemented as CROWN-IBP with every step's lines
    flat (slope 0), so the backward pass from the output stops at the last step; on graphs
    whose output is reached from a step only through affine operations this is exactly that
    folded interval bound. Intersected with the plain interval bound (both are sound)."""
    x = BoundedTensor(lower, PerturbationLpNorm(x_L=lower, x_U=upper))
    if C.shape[0] == 1 and lower.shape[0] > 1:
        C = C.expand(lower.shape[0], *C.shape[1:])
    steps = [n for n in bm._modules.values() if isinstance(n, STEP_BOUNDS)]
    for n in steps:
        n.flat = True
    try:
        lb, _ = bm.compute_bounds(x=(x,), C=C, method="CROWN-IBP", bound_upper=False)
    finally:
        for n in steps:
            n.flat = False
    return torch.maximum(lb, _ibp(bm, x, C)[0])
