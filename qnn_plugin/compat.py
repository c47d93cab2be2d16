"""Compatibility shims for auto_LiRPA 0.3 and onnx2torch 1.5 on torch 2.x and numpy 2, and for
highspy 1.16.

auto-lirpa 0.3 (the only release on PyPI, 2022) was written for torch 1.12 and numpy 1.x;
onnx2torch imports torchvision, which has no CPU wheel here; highspy 1.16 (2026) prints a
banner and keeps a thread pool that a forked child inherits without its threads. Every fix
for that lives in this one module. Each fix is a small function with

* a *gate* (``needed()``): it only applies where the breakage exists, so a newer auto_LiRPA or
  torch that no longer needs it is left alone;
* an *apply* step, run once;
* a test in ``tests/test_compat.py`` that exercises the broken behaviour.

``apply()`` is idempotent and must run before auto_LiRPA is imported; ``qnn_plugin`` calls it
on import of the modules that touch auto_LiRPA or onnx2torch.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from dataclasses import dataclass
from typing import Callable, List

import numpy as np
import torch

_APPLIED: List[str] = []
_DONE = False


@dataclass(frozen=True)
class Fix:
    name: str
    why: str
    needed: Callable[[], bool]
    apply: Callable[[], None]
    # "pre": before importing auto_LiRPA; "import": imports it; "post": patches its classes
    phase: str = "pre"


FIXES: List[Fix] = []


def _fix(name: str, why: str, needed: Callable[[], bool], phase: str = "pre"):
    def deco(fn: Callable[[], None]) -> Callable[[], None]:
        FIXES.append(Fix(name, why, needed, fn, phase))
        return fn

    return deco


# --------------------------------------------------------------------------------------------
# torch.onnx internals moved around across 2.x; find the exporter globals wherever they are.
# --------------------------------------------------------------------------------------------
def _jit_script_deprecated() -> bool:
    import inspect

    try:
        return "is deprecated" in inspect.getsource(torch.jit.script)
    except (OSError, TypeError):
        return False


@_fix("jit_script_warning", "torch >= 2.10 warns that torch.jit.script is deprecated when "
      "auto_LiRPA calls it at import (after auto_LiRPA sets its own 'once' filter, so a global "
      "filter cannot catch it): import auto_LiRPA recording warnings, and drop that one",
      _jit_script_deprecated, phase="import")
def _jit_script_warning():
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # recorded, whatever the filters say
        warnings.simplefilter("always")
        importlib.import_module("auto_LiRPA")
    for w in caught:  # pass every other warning on
        if "`torch.jit.script` is deprecated" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


_GLOBALS_MODULES = (
    "torch.onnx._internal.torchscript_exporter._globals",  # torch >= 2.9
    "torch.onnx._globals",  # torch 2.0 .. 2.8
)


def onnx_globals():
    """The TorchScript ONNX exporter's GLOBALS object (holds the opset and inlining flags)."""
    for path in _GLOBALS_MODULES:
        try:
            return importlib.import_module(path).GLOBALS
        except (ImportError, AttributeError):
            continue
    raise ImportError("cannot find torch's ONNX exporter GLOBALS; unsupported torch " + torch.__version__)


def _symbolic_package() -> str:
    for pkg in ("torch.onnx._internal.torchscript_exporter", "torch.onnx"):
        try:
            importlib.import_module(pkg + ".symbolic_opset9")
            return pkg
        except ImportError:
            continue
    raise ImportError("cannot find torch's ONNX symbolic modules")


# ---------------------------------------------------------------- numpy 2 ----------------------
@_fix("numpy_arraysetops", "numpy 2 removed numpy.lib.arraysetops (auto_LiRPA.operators.base imports isin)",
      lambda: importlib.util.find_spec("numpy.lib.arraysetops") is None)
def _numpy_arraysetops():
    mod = types.ModuleType("numpy.lib.arraysetops")
    mod.isin = np.isin
    sys.modules["numpy.lib.arraysetops"] = mod


@_fix("numpy_bool", "numpy 1.24..1.26 have no np.bool (auto_LiRPA PerturbationSynonym uses it)",
      lambda: not hasattr(np, "bool"))
def _numpy_bool():
    np.bool = np.bool_  # type: ignore[attr-defined]


# ---------------------------------------------------------------- torch 2.x --------------------
@_fix("set_opset_version", "torch 2 removed symbolic_helper._set_opset_version (used by parse_graph)",
      lambda: not hasattr(importlib.import_module("torch.onnx.symbolic_helper"), "_set_opset_version"))
def _set_opset_version():
    def set_opset(opset: int) -> None:
        onnx_globals().export_onnx_opset_version = opset

    importlib.import_module("torch.onnx.symbolic_helper")._set_opset_version = set_opset


@_fix("node_getitem", "torch 2 removed torch._C.Node.__getitem__ (attribute reading in parse_graph)",
      lambda: not hasattr(torch._C.Node, "__getitem__"))
def _node_getitem():
    def getitem(node, name):
        kind = node.kindOf(name)
        if kind == "c":  # torch 2.13 reports float-list attributes as 'c'
            try:
                return node.fs(name)
            except RuntimeError:
                return node.c(name)
        return getattr(node, kind)(name)

    torch._C.Node.__getitem__ = getitem


@_fix("symbolic_opsets", "torch 2 imports only opset 9/10 symbolics lazily; auto_LiRPA traces at opset 12 "
      "and then gets opset-9 forms (Clip attributes, Pad) and aten::ATen for round",
      lambda: True)
def _symbolic_opsets():
    pkg = _symbolic_package()
    for opset in range(7, 21):
        try:
            importlib.import_module(f"{pkg}.symbolic_opset{opset}")
        except ImportError:
            pass


@_fix("autograd_inlining", "torch >= 2.1 inlines autograd.Function bodies while tracing, which breaks "
      "custom-op symbolics (peephole 'Argument passed to at() was not in the map')",
      lambda: hasattr(onnx_globals(), "autograd_inlining"))
def _autograd_inlining():
    onnx_globals().autograd_inlining = False


@_fix("torch_six", "torch 2 removed torch._six (BoundedModule.register_parameter uses string_classes)",
      lambda: not hasattr(torch, "_six"))
def _torch_six():
    six = types.ModuleType("torch._six")
    six.string_classes = (str, bytes)
    six.inf = float("inf")
    sys.modules["torch._six"] = six
    torch._six = six


# ---------------------------------------------------------------- onnx2torch -------------------
def _torchvision_broken() -> bool:
    if "torchvision" in sys.modules:
        return False
    try:
        importlib.import_module("torchvision")
        return False
    except Exception:  # RuntimeError "operator torchvision::nms does not exist" on torch+cpu
        sys.modules.pop("torchvision", None)
        return True


@_fix("torchvision_stub", "onnx2torch imports torchvision at import time (NMS, RoiAlign); the registry's "
      "torchvision wheels are CUDA builds that fail to import on torch+cpu",
      _torchvision_broken)
def _torchvision_stub():
    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision is not available on this machine; this ONNX operator needs it")

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.batched_nms = ops.roi_align = unavailable
    ops.RoIAlign = type("RoIAlign", (), {"__init__": unavailable})
    tv.ops = ops
    tv.__qnn_plugin_stub__ = True
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.ops"] = ops


# ---------------------------------------------------------------- auto_LiRPA classes ("post") -
def _lirpa(path: str):
    return importlib.import_module(path)


@_fix("named_members", "torch 2 calls Module._named_members(..., remove_duplicate=); BoundedModule's "
      "override lacks it, so CROWN's get_sparse_C (self.parameters()) fails",
      lambda: "remove_duplicate" not in _lirpa("auto_LiRPA.bound_general").BoundedModule._named_members.__code__.co_varnames,
      phase="post")
def _named_members():
    cls = _lirpa("auto_LiRPA.bound_general").BoundedModule
    original = cls._named_members

    def named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix, recurse)

    cls._named_members = named_members


@_fix("parameter_dtype_anchor", "get_sparse_C takes its dtype from list(self.parameters())[0]: a model "
      "whose weights are all buffers (every onnx2torch MatMul model) crashes with IndexError",
      lambda: "list(self.parameters())[0]" in _source("auto_LiRPA.backward_bound", "get_sparse_C"),
      phase="post")
def _parameter_dtype_anchor():
    cls = _lirpa("auto_LiRPA.bound_general").BoundedModule
    original = cls.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not any(True for _ in self.parameters()):
            anchor = torch.nn.Parameter(torch.empty(0, device=self.device), requires_grad=False)
            torch.nn.Module.register_parameter(self, "_qnn_dtype_anchor", anchor)

    cls.__init__ = init


@_fix("buffers_batch_dim", "BoundBuffers inherits from_input=True from BoundInput, so every constant "
      "buffer (each onnx2torch initializer) gets batch dimension 0 and batched CROWN crashes on it",
      lambda: _buffer_from_input(), phase="post")
def _buffers_batch_dim():
    cls = _lirpa("auto_LiRPA.operators.leaf").BoundBuffers
    original = cls.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.from_input = False  # a constant: no batch dimension

    cls.__init__ = init


def _buffer_from_input() -> bool:
    cls = _lirpa("auto_LiRPA.operators.leaf").BoundBuffers
    return cls("probe", torch.zeros(1)).from_input


@_fix("constant_operand_bias", "BoundAdd/BoundSub push the A matrix into a constant operand and then "
      "broadcast it back with a shape assertion that fails for constants with a leading size-1 dim "
      "(e.g. a (1, 1, 1, 5) normalisation offset): fold a constant operand into the bias instead",
      lambda: not getattr(_lirpa("auto_LiRPA.operators").BoundAdd.bound_backward, "_qnn_fixed", False),
      phase="post")
def _constant_operand_bias():
    ops = _lirpa("auto_LiRPA.operators")
    for cls, signs in ((ops.BoundAdd, (1.0, 1.0)), (ops.BoundSub, (1.0, -1.0))):
        cls.bound_backward = _fold_constant_operand(cls.bound_backward, signs)


def _constant_value(node):
    """An unperturbed node's value. A computed constant (beta * C of a Gemm with transA=1,
    an audit's) can lack its forward_value after auto_LiRPA clears values between bound
    computations; it is evaluated from its inputs then (auto_LiRPA's own backward pass through
    such a node gave bounds of 4.9e9 where the network computes 3)."""
    value = getattr(node, "forward_value", None)
    if value is None:
        value = getattr(node, "value", None)
    if value is None:
        value = node.forward(*[_constant_value(i) for i in node.inputs])
        node.forward_value = value
    return value


def _fold_constant_operand(original, signs):
    def bound_backward(self, last_lA, last_uA, x, y):
        dense = all(a is None or isinstance(a, torch.Tensor) for a in (last_lA, last_uA))
        const = [not n.perturbed for n in (x, y)]
        if not dense or const[0] == const[1]:
            return original(self, last_lA, last_uA, x, y)
        var, c = (1, 0) if const[0] else (0, 1)
        value = _constant_value((x, y)[c])

        # a constant without a batch dimension (or with batch 1) enters the bias as one
        # matrix-vector product, without an A-sized temporary
        shape = tuple(last_lA.shape[2:] if last_lA is not None else last_uA.shape[2:])
        v = value[0] if value.dim() == len(shape) + 1 and value.shape[0] == 1 else value
        flat = torch.broadcast_to(v, shape).reshape(-1) if v.dim() <= len(shape) else None

        def one_side(last_A):
            if last_A is None:
                return None, 0.0
            A_var = self.broadcast_backward(signs[var] * last_A, (x, y)[var])
            if flat is not None:
                bias = last_A.reshape(last_A.shape[0], last_A.shape[1], -1) @ flat.to(last_A.dtype)
            else:
                bias = (last_A * value).reshape(last_A.shape[0], last_A.shape[1], -1).sum(-1)
            return A_var, bias * signs[c]

        lA, lbias = one_side(last_lA)
        uA, ubias = one_side(last_uA)
        As = [(None, None), (None, None)]
        As[var] = (lA, uA)
        return As, lbias, ubias

    bound_backward._qnn_fixed = True
    return bound_backward


def _source(module: str, func: str) -> str:
    """The source of ``module``'s ``func`` (dotted for a method: "Class.method")."""
    import functools
    import inspect

    return inspect.getsource(functools.reduce(getattr, func.split("."), _lirpa(module)))


def _dotted_module_names() -> bool:
    from onnx import helper
    from onnx2torch.onnx_graph import OnnxGraph

    return "." in OnnxGraph.generate_node_name(helper.make_node("Probe", [], [], domain="a.b"))


@_fix("onnx2torch_domain_names", "onnx2torch 1.5 names a node's torch module 'domain/name'; torch refuses "
      "the dot of 'com.microsoft/...', so models with contrib ops (QGemm, QLinearAdd) fail to convert",
      _dotted_module_names, phase="post")
def _onnx2torch_domain_names():
    from onnx2torch.onnx_graph import OnnxGraph

    original = OnnxGraph.generate_node_name

    def generate_node_name(node) -> str:
        return original(node).replace(".", "/")

    OnnxGraph.generate_node_name = staticmethod(generate_node_name)


@_fix("div_constant_sign", "BoundDiv.interval_propagate asserts a positive divisor, also when it is a "
      "constant (its constant-operand branch is shadowed by a second definition): interval "
      "bounds of x / c crash for c < 0",
      lambda: "assert (y[0] > 0).all()" in _source("auto_LiRPA.operators",
                                                   "BoundDiv.interval_propagate"),
      phase="post")
def _div_constant_sign():
    cls = _lirpa("auto_LiRPA.operators").BoundDiv
    original = cls.interval_propagate

    def interval_propagate(self, *v):
        (xl, xu), (yl, yu) = v[0], v[1]
        const = yl is yu or not getattr(self.inputs[1], "perturbed", True)
        if not const or not bool((yl != 0).all()):
            return original(self, *v)
        # the model's own division, so each end is exactly x / c at an end of x
        pos = yl > 0
        return torch.where(pos, xl / yl, xu / yl), torch.where(pos, xu / yl, xl / yl)

    cls.interval_propagate = interval_propagate


def _mul_of_two_constants_squares() -> bool:
    cls = _lirpa("auto_LiRPA.operators").BoundMul
    a, b = torch.tensor([3.0]), torch.tensor([5.0])
    lo, _ = cls.interval_propagate_constant((a, a), (b, b))
    return bool(lo[0] != 15.0)


@_fix("mul_two_constants", "BoundMul.interval_propagate_constant takes x as both the constant and the "
      "operand when both operands are constants, so the interval of c1 * c2 is c1 * c1 (an audit's "
      "Gemm with transA=1, whose beta * C is such a node: bounds of 4.9e9 where the network computes "
      "3, and a wrong unsat): the product of the two constants",
      _mul_of_two_constants_squares, phase="post")
def _mul_two_constants():
    cls = _lirpa("auto_LiRPA.operators").BoundMul
    original = cls.interval_propagate_constant

    def interval_propagate_constant(*v, op=lambda x, const: x * const):
        (xl, xu), (yl, yu) = v[0], v[1]
        if xl is xu and yl is yu:
            value = op(xl, yl)
            return value, value
        return original(*v, op=op)

    cls.interval_propagate_constant = staticmethod(interval_propagate_constant)


def _lines_backward(node, last_lA, last_uA, k_l, b_l, k_u, b_u):
    """Back-substitution through an elementwise function bounded by the lines
    k_l x + b_l <= f(x) <= k_u x + b_u: each coefficient's sign picks the line."""
    lA = uA = None
    lbias = ubias = 0.0
    if last_lA is not None:
        pos, neg = last_lA.clamp(min=0), last_lA.clamp(max=0)
        lA = pos * k_l + neg * k_u
        lbias = node.get_bias(pos, b_l) + node.get_bias(neg, b_u)
    if last_uA is not None:
        pos, neg = last_uA.clamp(min=0), last_uA.clamp(max=0)
        uA = pos * k_u + neg * k_l
        ubias = node.get_bias(pos, b_u) + node.get_bias(neg, b_l)
    return lA, uA, lbias, ubias


# relative slack on lines computed in float32 from rounded function values
_LINE_SLACK = 2.0 ** -20


def _leaky_relu_assumes_convex() -> bool:
    return "alpha > 1" not in _source("auto_LiRPA.operators", "BoundLeakyRelu.bound_backward")


@_fix("leaky_relu_any_slope", "BoundLeakyRelu's lines assume a convex function (alpha <= 1): with "
      "alpha > 1 it is concave and its chord is a lower bound, not an upper one (an audit's "
      "LeakyRelu(x - 0.3, 2.5) - 1.75 x got a wrong unsat); with alpha < 0 its interval bound "
      "misses the minimum 0 at x = 0. Concave case: the chord below, a line through 0 of slope 1 "
      "or alpha above; negative slope: the interval's lower end is 0 where l < 0 < u",
      _leaky_relu_assumes_convex, phase="post")
def _leaky_relu_any_slope():
    cls = _lirpa("auto_LiRPA.operators").BoundLeakyRelu
    backward, interval = cls.bound_backward, cls.interval_propagate

    def bound_backward(self, last_lA, last_uA, x=None, start_node=None, start_shape=None):
        alpha = float(self.alpha)
        if alpha <= 1:   # convex: auto_LiRPA's own lines hold (alpha > 1 handled below)
            return backward(self, last_lA, last_uA, x, start_node, start_shape)
        lower, upper = (x.lower, x.upper) if x is not None else (self.lower, self.upper)
        lb_r = lower.clamp(max=0)
        ub_r = torch.max(upper.clamp(min=0), lb_r + 1e-8)
        chord_d = (ub_r - alpha * lb_r) / (ub_r - lb_r)
        chord_b = -lb_r * chord_d + alpha * lb_r
        tangent_d = torch.where(chord_d > (1 + alpha) / 2, torch.full_like(chord_d, alpha),
                                torch.ones_like(chord_d))   # any slope in [1, alpha] through 0
        # the chord below, the line through 0 above
        lA, uA, lbias, ubias = _lines_backward(self, last_lA, last_uA, chord_d, chord_b,
                                               tangent_d, torch.zeros_like(chord_b))
        return [(lA, uA)], lbias, ubias

    def interval_propagate(self, *v):
        lo, hi = interval(self, *v)
        if float(self.alpha) >= 0:
            return lo, hi
        l, u = v[0]
        fl, fu = self.forward(l), self.forward(u)
        return torch.where((l < 0) & (u > 0), torch.zeros_like(fl), torch.minimum(fl, fu)), torch.maximum(fl, fu)

    cls.bound_backward = bound_backward
    cls.interval_propagate = interval_propagate


@_fix("sqrt_tangent", "BoundSqrt's upper line has the slope of x**-0.5 (-0.5 m**-1.5), not of "
      "sqrt (0.5 m**-0.5): CROWN put sqrt(x) on [1, 4] below 1.78 (an audit's wrong unsat). "
      "Lines: the chord below, the tangent at the midpoint above, on the part of the box where "
      "sqrt is defined (x >= 0; elsewhere the network outputs NaN, which meets no property)",
      lambda: "-0.5 * torch.pow(x_m, -1.5)" in _source("auto_LiRPA.operators", "BoundSqrt.bound_backward"),
      phase="post")
def _sqrt_tangent():
    cls = _lirpa("auto_LiRPA.operators").BoundSqrt

    def bound_backward(self, last_lA, last_uA, x):
        lo = x.lower.clamp(min=0)
        hi = torch.maximum(x.upper, lo)
        s_lo, s_hi = torch.sqrt(lo), torch.sqrt(hi)
        width = hi - lo
        k_l = torch.where(width > 0, (s_hi - s_lo) / width.clamp(min=1e-30), torch.zeros_like(lo))
        b_l = s_lo - k_l * lo - _LINE_SLACK * s_hi
        m = ((lo + hi) / 2).clamp(min=1e-12)
        s_m = torch.sqrt(m)
        k_u = 0.5 / s_m
        b_u = s_m / 2 + _LINE_SLACK * s_hi + _LINE_SLACK * s_m
        lA, uA, lbias, ubias = _lines_backward(self, last_lA, last_uA, k_l, b_l, k_u, b_u)
        return [(lA, uA), (None, None)], lbias, ubias

    def interval_propagate(self, *v):
        return torch.sqrt(v[0][0].clamp(min=0)), torch.sqrt(v[0][1].clamp(min=0))

    cls.bound_backward = bound_backward
    cls.interval_propagate = interval_propagate


def _div_by_perturbed_unsound() -> bool:
    return "assert (y[0] > 0).all()\n        return x[0] / y[1], x[1] / y[0]" in _source(
        "auto_LiRPA.operators", "BoundDiv")


@_fix("div_by_perturbed", "BoundDiv with an input-dependent divisor: its interval x_l / y_u, "
      "x_u / y_l holds only for x >= 0 (an audit's x0 / x1 on x0 in [-2, -1], x1 in [1, 2]: "
      "[-1, -1], the truth [-2, -0.5], and a wrong unsat); a constant numerator c / y is "
      "back-substituted as y / c; a Sqrt divisor gets a layer-normalisation formula instead of "
      "x / y. Now: x / y itself; intervals from the four quotients of the ends; lines for c / y "
      "(c * 1/y: tangent and chord) and auto_LiRPA's reciprocal-and-product relaxation for x / y; "
      "a divisor whose range is not positive is refused (interval bounds: one containing 0)",
      _div_by_perturbed_unsound, phase="post")
def _div_by_perturbed():
    ops = _lirpa("auto_LiRPA.operators")
    cls = ops.BoundDiv
    init, interval, backward = cls.__init__, cls.interval_propagate, cls.bound_backward

    def __init__(self, attr, inputs, output_index, options):
        init(self, attr, inputs, output_index, options)
        # c / y: its lines read y's bounds on the box at hand (``perturbed`` is not set yet)
        if self.is_constant_op and len(inputs) == 2 and not isinstance(
                inputs[1], (ops.BoundConstant, ops.BoundBuffers)):
            self.requires_input_bounds = [1]

    def perturbed(node) -> bool:
        return bool(getattr(node, "perturbed", True)) and not isinstance(
            node, (ops.BoundConstant, ops.BoundBuffers))

    def forward(self, x, y):
        self.x, self.y = x, y
        return x / y

    def interval_propagate(self, *v):
        if not perturbed(self.inputs[1]):
            return interval(self, *v)     # x / c (compat.div_constant_sign)
        (xl, xu), (yl, yu) = v[0], v[1]
        # (a divisor fixed at 0, as in the set-up pass at the zero input, divides by it)
        if bool(((yl <= 0) & (yu >= 0) & (yl != yu)).any()):
            raise NotImplementedError(f"Div ({self.name}): the divisor's range contains 0")
        q = torch.stack(torch.broadcast_tensors(xl / yl, xl / yu, xu / yl, xu / yu))
        return q.min(0).values, q.max(0).values

    def bound_backward(self, last_lA, last_uA, x, y, **kwargs):
        if not perturbed(self.inputs[1]):
            return backward(self, last_lA, last_uA, x, y)
        if not bool((y.lower > 0).all()):
            raise NotImplementedError(f"Div ({self.name}): linear bounds need a positive divisor")
        if perturbed(self.inputs[0]):
            return self.bound_backward_both_perturbed(last_lA, last_uA, x, y)
        c = torch.as_tensor(x.value if x.value is not None else x.forward_value,
                            dtype=y.lower.dtype, device=y.lower.device)
        lo, hi = y.lower, torch.maximum(y.upper, y.lower)
        m = (lo + hi) / 2
        tan_k, tan_b = -1 / (m * m), 2 / m                   # below 1/y (convex for y > 0)
        chord_k, chord_b = -1 / (lo * hi), 1 / lo + 1 / hi   # above it
        slack = _LINE_SLACK * c.abs() / lo
        pos = c >= 0
        k_l = torch.where(pos, c * tan_k, c * chord_k)
        b_l = torch.where(pos, c * tan_b, c * chord_b) - slack
        k_u = torch.where(pos, c * chord_k, c * tan_k)
        b_u = torch.where(pos, c * chord_b, c * tan_b) + slack
        lA, uA, lbias, ubias = _lines_backward(self, last_lA, last_uA, k_l, b_l, k_u, b_u)
        return [(None, None), (lA, uA)], lbias, ubias

    cls.__init__ = __init__
    cls.forward = forward
    cls.interval_propagate = interval_propagate
    cls.bound_backward = bound_backward


@_fix("pow_negative_exponent", "BoundPow.interval_propagate treats a negative odd exponent as "
      "increasing (Pow(x, -1) on [1, 2]: [1, 0.5]) and a negative even one as bounded by its "
      "ends (Pow(x, -2) on [-1, 2]: at most 1, where x = 0.01 gives 10,000): negative exponents "
      "take the ends sorted, on a range without 0, and are refused across 0",
      lambda: "if exp % 2 == 1:" in _source("auto_LiRPA.operators", "BoundPow.interval_propagate"),
      phase="post")
def _pow_negative_exponent():
    cls = _lirpa("auto_LiRPA.operators").BoundPow
    original = cls.interval_propagate

    def interval_propagate(self, *v):
        exp = v[1][0]
        if not torch.is_tensor(exp) or exp.numel() != 1 or float(exp) >= 0 \
                or float(exp) != int(exp):
            return original(self, *v)
        (lo, hi), n = v[0], int(exp)
        if bool(((lo <= 0) & (hi >= 0) & (lo != hi)).any()):
            raise NotImplementedError(f"Pow ({self.name}): exponent {n} on a range containing 0")
        a, b = torch.pow(lo, n), torch.pow(hi, n)   # monotone on either side of 0
        return torch.minimum(a, b), torch.maximum(a, b)

    cls.interval_propagate = interval_propagate


@_fix("bound_setattr", "auto_LiRPA's Bound nodes are nn.Modules and every bound computation sets and "
      "clears hundreds of plain attributes (lower, upper, interval, forward_value...) through "
      "nn.Module.__setattr__, whose Parameter/Module/buffer checks cost 40% of a small QA-IBP "
      "training step: take Python's own setattr when the value and the name are none of those",
      lambda: getattr(_lirpa("auto_LiRPA.operators").Bound, "__setattr__") is torch.nn.Module.__setattr__,
      phase="post")
def _bound_setattr():
    from torch.nn import Module

    module_setattr = Module.__setattr__
    # values that are certainly no Parameter, Module or Buffer (exact types: no subclass check,
    # whose metaclass hooks are what makes isinstance(value, Parameter) slow)
    plain = frozenset({torch.Tensor, type(None), bool, int, float, str, tuple, list, dict})

    def __setattr__(self, name, value):
        d = self.__dict__
        # a case in which nn.Module.__setattr__ ends in object.__setattr__
        if (type(value) in plain and name not in d.get("_parameters", ())
                and name not in d.get("_modules", ()) and name not in d.get("_buffers", ())):
            object.__setattr__(self, name, value)
        else:
            module_setattr(self, name, value)

    _lirpa("auto_LiRPA.operators").Bound.__setattr__ = __setattr__


# --------------------------------------------------------------------------------------------
# highspy 1.16 (HiGHS 1.16). The verifier solves its integer programs in forked children.
# --------------------------------------------------------------------------------------------
def _highspy_at_least(version: str) -> bool:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from packaging.version import Version

    try:
        return Version(installed("highspy")) >= Version(version)
    except PackageNotFoundError:
        return False


def _reset_highs_scheduler() -> None:
    highspy = sys.modules.get("highspy")
    if highspy is not None:   # without threads to wait for: not blocking
        highspy.Highs.resetGlobalScheduler(False)


@_fix("highs_scheduler_after_fork", "highspy 1.16 keeps HiGHS's task scheduler (its worker "
      "threads) alive after a solve; a child forked after the parent solved a MIP inherits the "
      "scheduler without its threads and hangs in its first MIP: reset it in every forked child",
      lambda: _highspy_at_least("1.16"))
def _highs_scheduler_after_fork():
    os.register_at_fork(after_in_child=_reset_highs_scheduler)


@_fix("highs_banner", "highspy 1.16 prints a two-line banner to the C stdout the first time a "
      "process builds a Highs object, whatever output_flag says (qnn-verify's stdout, and each "
      "forked child's): build the first one with the stdout descriptor on /dev/null",
      lambda: _highspy_at_least("1.16"))
def _highs_banner():
    import ctypes

    import highspy

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        highspy.Highs()
        libc.fflush(None)   # the banner may still sit in stdio's buffer (stdout a pipe)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def apply() -> List[str]:
    """Apply every needed fix once (idempotent). Returns the names of the fixes applied."""
    global _DONE
    if not _DONE:
        for phase in ("pre", "import", "post"):
            for fix in FIXES:
                if fix.phase == phase and fix.needed():
                    fix.apply()
                    _APPLIED.append(fix.name)
        _DONE = True
    return list(_APPLIED)
