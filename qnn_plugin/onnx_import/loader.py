"""load_onnx: read and check an ONNX file, rewrite it (passes), convert it with onnx2torch."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import onnx
import torch
from onnx import defs
from torch import nn

from .. import compat
from ..errors import InputShapeError, ModelLoadError, QnnPluginError, UnsupportedOperatorError

compat.apply()

import onnx2torch  # noqa: E402  (needs the torchvision stand-in from compat)

from . import converters, passes  # noqa: E402
from .converters.contrib import MS_DOMAIN  # noqa: E402
from .converters.registry import PLUGIN_DOMAIN, is_registered  # noqa: E402

MIN_OPSET = 7
# non-default domains with converters (listed in the unsupported-operator message)
CONTRIB_DOMAINS = (MS_DOMAIN,)


def read_model(path_or_model: Union[str, os.PathLike, onnx.ModelProto]) -> Tuple[onnx.ModelProto, str]:
    """The model and a name for messages; clear errors for missing or malformed files."""
    if isinstance(path_or_model, onnx.ModelProto):
        return onnx.ModelProto.FromString(path_or_model.SerializeToString()), "<ModelProto>"
    path = Path(path_or_model)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise ModelLoadError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return model, str(path)


def check_model(model: onnx.ModelProto, name: str) -> int:
    """Validate with onnx.checker; return the default-domain opset."""
    if not model.graph.node:
        raise ModelLoadError(f"{name}: the ONNX graph has no nodes")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        raise ModelLoadError(f"{name}: invalid ONNX model: {msg[0] if msg else exc}") from None
    opset = {o.domain: o.version for o in model.opset_import}.get("", None)
    if opset is None:
        opset = {o.domain: o.version for o in model.opset_import}.get("ai.onnx")
    if opset is None:
        raise ModelLoadError(f"{name}: the model imports no default-domain (ai.onnx) opset")
    newest = defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ModelLoadError(f"{name}: opset {opset} is outside the supported range {MIN_OPSET}..{newest}")
    return opset


def check_operators(model: onnx.ModelProto, name: str, opset: int) -> None:
    """One message listing every node whose operator has no converter at this opset.

    Default-domain operators are looked up by their since-version at the model's opset; other
    domains (onnxruntime's com.microsoft contrib operators) by the version the model imports
    for that domain, keyed by (domain, op, version). The plugin's own domain is always accepted.
    """
    domain_versions = {("" if o.domain == "ai.onnx" else o.domain): o.version
                       for o in model.opset_import}
    bad = []
    for i, node in enumerate(model.graph.node):
        domain = "" if node.domain == "ai.onnx" else node.domain
        if domain == PLUGIN_DOMAIN:
            continue
        if domain != "":
            version = domain_versions.get(domain)
            if version is None or not is_registered(node.op_type, version, domain):
                at = f", version {version}" if version is not None else ", domain not imported"
                bad.append(f"{node.op_type} (domain '{domain}'{at}, node '{node.name or i}')")
            continue
        try:
            since = defs.get_schema(node.op_type, max_inclusive_version=opset).since_version
        except Exception:
            bad.append(f"{node.op_type} (node '{node.name or i}': not an ONNX operator at opset {opset})")
            continue
        if not is_registered(node.op_type, since):
            bad.append(f"{node.op_type} (node '{node.name or i}', opset {opset}, version {since})")
    if bad:
        raise UnsupportedOperatorError(
            f"{name}: unsupported operator{'s' if len(bad) > 1 else ''}: " + "; ".join(bad)
            + ". Supported at opset " + str(opset) + ": " + ", ".join(supported_operators(opset)))


def supported_operators(opset: int) -> List[str]:
    """Default-domain operators with a converter at ``opset``, then the other domains'
    (onnxruntime contrib) operators as ``op (domain)``."""
    out = []
    for op in converters.registered_op_types():
        try:
            since = defs.get_schema(op, max_inclusive_version=opset).since_version
        except Exception:
            continue
        if is_registered(op, since):
            out.append(op)
    for domain in CONTRIB_DOMAINS:
        out.extend(f"{op} ({domain})" for op in converters.registered_op_types(domain))
    return out


def _declared_shape(vi: onnx.ValueInfoProto) -> Tuple[Optional[int], ...]:
    dims = vi.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


class QnnModule(nn.Module):
    """A converted ONNX model: checks its input shape, then runs the onnx2torch graph."""

    def __init__(self, net: nn.Module, source: str, input_names: Sequence[str],
                 input_shapes: Sequence[Tuple[Optional[int], ...]], output_names: Sequence[str],
                 opset: int, rewrites: dict):
        super().__init__()
        self.net = net
        self.source = source
        self.input_names = list(input_names)
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.output_names = list(output_names)
        self.opset = opset
        self.rewrites = dict(rewrites)

    @property
    def input_shape(self) -> Tuple[Optional[int], ...]:
        """Declared shape of the (first) input without its batch dimension."""
        return self.input_shapes[0][1:]

    def check_inputs(self, xs) -> None:
        if len(xs) != len(self.input_shapes):
            raise InputShapeError(f"{self.source}: expected {len(self.input_shapes)} input(s) "
                                  f"({', '.join(self.input_names)}), got {len(xs)}")
        for x, name, shape in zip(xs, self.input_names, self.input_shapes):
            ok = x.dim() == len(shape) and all(d is None or d == s for d, s in zip(shape[1:], x.shape[1:]))
            if not ok:
                want = "x".join("N" if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(shape))
                raise InputShapeError(f"{self.source}: input '{name}' has shape {tuple(x.shape)}, "
                                      f"expected {want} (N = batch)")

    def forward(self, *xs):
        if not torch.jit.is_tracing():
            self.check_inputs(xs)
        return self.net(*xs)


def load_onnx(path_or_model: Union[str, os.PathLike, onnx.ModelProto]) -> QnnModule:
    """Load an ONNX (Q)NN as a torch module that computes the ONNX semantics in float32 and that
    ``qnn_plugin.bounded`` can bound (batch dimension free)."""
    model, name = read_model(path_or_model)
    opset = check_model(model, name)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise ModelLoadError(f"{name}: shape inference failed: {exc}") from None
    check_operators(model, name, opset)
    rewrites = passes.run_all(model)
    init_names = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in init_names]
    try:
        net = onnx2torch.convert(model)
    except QnnPluginError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    except NotImplementedError as exc:
        raise UnsupportedOperatorError(f"{name}: {exc}") from None
    return QnnModule(net, name, [vi.name for vi in inputs], [_declared_shape(vi) for vi in inputs],
                     [o.name for o in model.graph.output], opset, rewrites).eval()


def example_input(module: QnnModule, batch: int = 1) -> torch.Tensor:
    """A zero tensor of the module's first input shape (unknown dims as 1)."""
    return torch.zeros(batch, *[d or 1 for d in module.input_shape])
