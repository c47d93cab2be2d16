"""Register converters into onnx2torch's registry, keyed by (domain, op type, since-version).

onnx2torch looks a node up by the since-version of its op at the model's opset; ours may replace
its own (Round, Clip, Sign, Cast, ...) so that every quantizing op becomes a plugin op.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
from onnx import defs, numpy_helper
from onnx2torch.node_converters.registry import OperationDescription, _CONVERTER_REGISTRY
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

PLUGIN_DOMAIN = "qnn_plugin"


def since_versions(op_type: str, domain: str = "", first: int = 1) -> list:
    """Every since-version of ``op_type`` known to the installed onnx, from ``first`` on."""
    out = set()
    for opset in range(first, defs.onnx_opset_version() + 1):
        try:
            out.add(defs.get_schema(op_type, max_inclusive_version=opset, domain=domain).since_version)
        except Exception:  # op not defined at this opset
            continue
    return sorted(v for v in out if v >= first)


def converter(op_type: str, versions: Iterable[int], domain: str = "") -> Callable:
    """Decorator: register ``fn(node, graph) -> OperationConverterResult`` for these versions,
    replacing onnx2torch's own converter where it has one."""

    def deco(fn):
        for v in versions:
            _CONVERTER_REGISTRY[OperationDescription(domain, op_type, v)] = fn
        return fn

    return deco


def alias(op_type: str, new_versions: Sequence[int], from_version: int, domain: str = "") -> None:
    """Use onnx2torch's converter of ``from_version`` for newer since-versions whose change is
    type support only (same semantics for the float/int tensors a QNN carries)."""
    source = _CONVERTER_REGISTRY[OperationDescription(domain, op_type, from_version)]
    for v in new_versions:
        _CONVERTER_REGISTRY.setdefault(OperationDescription(domain, op_type, v), source)


def is_registered(op_type: str, version: int, domain: str = "") -> bool:
    return OperationDescription(domain, op_type, version) in _CONVERTER_REGISTRY


def registered_op_types(domain: str = "") -> list:
    return sorted({d.operation_type for d in _CONVERTER_REGISTRY if d.domain == domain})


def const_proto(graph: OnnxGraph, name: str):
    """TensorProto of a constant input (initializer or Constant node), else None."""
    if not name:
        return None
    if name in graph.initializers:
        return graph.initializers[name].proto
    try:
        node, _ = graph.value_as_node_output(name)
    except KeyError:
        return None
    if node.operation_type == "Constant":
        for attr in node.proto.attribute:
            if attr.name == "value":
                return attr.t
    return None


def const(graph: OnnxGraph, name: str):
    """Value of a constant input as a numpy array (int4/uint4 widened to int8/uint8), else None."""
    proto = const_proto(graph, name)
    if proto is None:
        if not name:
            return None
        try:  # Constant with value_float(s)/value_int(s)
            return np.asarray(get_const_value(name, graph))
        except (KeyError, TypeError):
            return None
    arr = numpy_helper.to_array(proto)
    if arr.dtype.kind not in "biuf":  # ml_dtypes int4/uint4
        arr = arr.astype(np.int8 if "u" not in str(arr.dtype) else np.uint8)
    return arr


def elem_type(graph: OnnxGraph, name: str) -> int:
    """ONNX element type of a value (0 if unknown)."""
    proto = const_proto(graph, name)
    if proto is not None:
        return proto.data_type
    info = graph.value_info.get(name)
    if info is None:
        for vi in graph.proto.input:
            if vi.name == name:
                info = vi
    return info.type.tensor_type.elem_type if info is not None else 0


def static_shape(graph: OnnxGraph, name: str):
    """Dimensions of a value from shape inference (None for an unknown one), or None when its
    shape is unknown."""
    proto = const_proto(graph, name)
    if proto is not None:
        return list(proto.dims)
    info = graph.value_info.get(name)
    if info is None:
        for vi in list(graph.proto.input) + list(graph.proto.output):
            if vi.name == name:
                info = vi
    if info is None or not info.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]


def rank(graph: OnnxGraph, name: str):
    """Rank of a value from shape inference, or None when unknown."""
    shape = static_shape(graph, name)
    return None if shape is None else len(shape)


def result(module, node: OnnxNode, inputs: Sequence[str]) -> OperationConverterResult:
    """Converter result whose torch module takes only the given (non-constant) inputs."""
    return OperationConverterResult(torch_module=module,
                                    onnx_mapping=OnnxMapping(inputs=tuple(inputs),
                                                             outputs=node.output_values))
