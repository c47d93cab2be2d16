"""Graph rewrites applied to an ONNX model before conversion. Each keeps the model's function
exactly (same value at every remaining tensor) and makes it easier to bound:

* ``fold_constant_quantization``: Quantize/DequantizeLinear of constants (weights, biases)
  become float initializers, evaluated with the exact reference semantics;
* ``fuse_rounding_clamps``: Round/Floor/Ceil followed by a constant Clip or a Relu becomes one
  ``qnn_plugin.QuantStep`` node (a saturated staircase is relaxed far tighter as one op than as
  a staircase followed by a clamp);
* ``fuse_binarize``: the Sign(Sign(x) + c), 0 < c < 1, export idiom becomes ``Binarize``;
* ``free_batch_dim``: Reshape shapes and Flatten axes that hard-code the batch size 1 are made
  batch-agnostic, so that many boxes can be bounded in one batch.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .converters.registry import PLUGIN_DOMAIN


class Graph:
    """Small index over a GraphProto: producers, consumers and constant values."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.g = model.graph
        self.refresh()

    def refresh(self):
        self.producer: Dict[str, onnx.NodeProto] = {}
        self.consumers: Dict[str, List[onnx.NodeProto]] = defaultdict(list)
        for n in self.g.node:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.inits = {t.name: t for t in self.g.initializer}
        self.outputs = {o.name for o in self.g.output}

    def const(self, name: str) -> Optional[np.ndarray]:
        if not name:
            return None
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name == "value_float":
                    return np.array(a.f, dtype=np.float32)
                if a.name == "value_floats":
                    return np.array(list(a.floats), dtype=np.float32)
                if a.name == "value_int":
                    return np.array(a.i, dtype=np.int64)
                if a.name == "value_ints":
                    return np.array(list(a.ints), dtype=np.int64)
        return None

    def single_consumer(self, name: str) -> Optional[onnx.NodeProto]:
        users = self.consumers.get(name, [])
        if len(users) == 1 and name not in self.outputs:
            return users[0]
        return None

    def add_initializer(self, name: str, value: np.ndarray) -> None:
        self.g.initializer.append(numpy_helper.from_array(value, name))

    def replace_nodes(self, remove: List[onnx.NodeProto], add: List[onnx.NodeProto]) -> None:
        """Remove nodes and insert new ones where the first removed node stood (keeps the
        topological order when the new nodes only read inputs of the removed ones).

        Nodes are matched by their outputs: protobuf copies messages on insertion, so node
        objects held from before an earlier rewrite are equal to, but not, the graph's nodes."""
        gone = {tuple(n.output) for n in remove}
        nodes = list(self.g.node)
        idx = min(i for i, n in enumerate(nodes) if tuple(n.output) in gone)
        keep = [n for n in nodes if tuple(n.output) not in gone]
        new = keep[:idx] + list(add) + keep[idx:]
        del self.g.node[:]
        self.g.node.extend(new)
        self.refresh()


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def fold_constant_quantization(model: onnx.ModelProto) -> int:
    g = Graph(model)
    folded = 0
    for node in list(g.g.node):
        if node.op_type not in ("DequantizeLinear", "QuantizeLinear") or node.domain not in ("", "ai.onnx"):
            continue
        from .. import semantics  # here: plain float models never need it
        vals = [g.const(i) for i in node.input]
        if any(v is None for v, name in zip(vals, node.input) if name):
            continue
        kw = dict(axis=_attr(node, "axis", 1), block_size=_attr(node, "block_size", 0))
        zp = vals[2] if len(vals) > 2 else None
        if node.op_type == "DequantizeLinear":
            out = semantics.dequantize_linear(vals[0], vals[1], zp, **kw)
        elif semantics.qtype(zp.dtype if zp is not None else
                             (_attr(node, "output_dtype", 0) or onnx.TensorProto.UINT8)).bits < 8:
            continue  # int4/int2 initializers cannot be written from numpy; converted instead
        else:
            out = semantics.quantize_linear(vals[0], vals[1], zp,
                                            output_dtype=_attr(node, "output_dtype", 0) or None, **kw)
        g.add_initializer(node.output[0], np.asarray(out))
        g.replace_nodes([node], [])
        folded += 1
    return folded


_ROUNDINGS = {"Round": "half_even", "Floor": "floor", "Ceil": "ceil"}


def _clamp_limits(g: Graph, node) -> Optional[tuple]:
    if node.op_type == "Relu":
        return 0.0, float("inf")
    if node.op_type != "Clip":
        return None
    if len(node.input) == 1 and not node.attribute:
        return -float("inf"), float("inf")
    if any(a.name in ("min", "max") for a in node.attribute):
        return float(_attr(node, "min", -float("inf"))), float(_attr(node, "max", float("inf")))
    lims = []
    for i, default in ((1, -float("inf")), (2, float("inf"))):
        name = node.input[i] if len(node.input) > i else ""
        if not name:
            lims.append(default)
            continue
        v = g.const(name)
        if v is None or v.size != 1:
            return None
        lims.append(float(v.reshape(())))
    return tuple(lims)


def fuse_rounding_clamps(model: onnx.ModelProto) -> int:
    g = Graph(model)
    fused = 0
    changed = True
    while changed:
        changed = False
        for node in list(g.g.node):
            is_round = node.op_type in _ROUNDINGS and node.domain in ("", "ai.onnx")
            is_step = node.op_type == "QuantStep" and node.domain == PLUGIN_DOMAIN
            if not (is_round or is_step):
                continue
            user = g.single_consumer(node.output[0])
            lims = _clamp_limits(g, user) if user is not None else None
            if lims is None:
                continue
            if is_round:
                rounding, lo, hi = _ROUNDINGS[node.op_type], -float("inf"), float("inf")
            else:
                rounding, lo, hi = _attr(node, "rounding"), _attr(node, "lo"), _attr(node, "hi")
                if isinstance(rounding, bytes):
                    rounding = rounding.decode()
            new_lo, new_hi = max(lo, lims[0]), min(hi, lims[1])
            if new_lo > new_hi:
                continue  # disjoint clamps: constant output, leave as is
            fusedn = helper.make_node("QuantStep", [node.input[0]], [user.output[0]],
                                      name=(node.name or node.output[0]) + "_clamped",
                                      domain=PLUGIN_DOMAIN, rounding=rounding,
                                      lo=float(new_lo), hi=float(new_hi), scale=1.0, zero_point=0.0)
            g.replace_nodes([node, user], [fusedn])
            fused += 1
            changed = True
            break
    return fused


def fuse_binarize(model: onnx.ModelProto) -> int:
    g = Graph(model)
    fused = 0
    for outer in list(g.g.node):
        if outer.op_type != "Sign":
            continue
        add = g.producer.get(outer.input[0])
        if add is None or add.op_type != "Add" or g.single_consumer(add.output[0]) is not outer:
            continue
        inner = None
        for a, b in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
            p = g.producer.get(a)
            c = g.const(b)
            if p is not None and p.op_type == "Sign" and c is not None and c.size == 1 and c.ndim <= 1 \
                    and 0 < float(c.reshape(())) < 1 and g.single_consumer(p.output[0]) is add:
                inner = p
        if inner is None:
            continue
        node = helper.make_node("Binarize", [inner.input[0]], [outer.output[0]],
                                name=(outer.name or outer.output[0]) + "_binarize", domain=PLUGIN_DOMAIN)
        g.replace_nodes([inner, add, outer], [node])
        fused += 1
    return fused


def _dims(model: onnx.ModelProto, name: str) -> Optional[list]:
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    return None


def free_batch_dim(model: onnx.ModelProto) -> int:
    """Make Reshape/Flatten nodes that fix dimension 0 to 1 follow the batch instead."""
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if not inputs:
        return 0
    first = _dims(model, inputs[0].name)
    if not first or first[0] not in (1, None):
        return 0
    g = Graph(model)
    fixed = 0
    for node in g.g.node:
        if node.op_type == "Reshape" and len(node.input) > 1:
            shape = g.const(node.input[1])
            src = _dims(model, node.input[0])
            if shape is None or shape.ndim != 1 or shape.size == 0 or shape[0] != 1 or not src \
                    or src[0] not in (1, None):
                continue
            new = shape.astype(np.int64).copy()
            rest = [d for d in new[1:]]
            if -1 in rest or 0 in rest:
                if any(d is None for d in src[1:]):
                    continue  # cannot resolve the other dims statically
                total = int(np.prod(src[1:]))
                known = [int(d) if d != 0 else int(src[i + 1]) for i, d in enumerate(rest)]
                if -1 in known:
                    k = known.index(-1)
                    others = int(np.prod([d for j, d in enumerate(known) if j != k]))
                    known[k] = total // others
                new[1:] = known
            new[0] = -1
            name = node.input[1] + f"_batch_free_{fixed}"
            g.add_initializer(name, new)
            node.input[1] = name
            fixed += 1
        elif node.op_type == "Flatten" and _attr(node, "axis", 1) == 0:
            src = _dims(model, node.input[0])
            if src and src[0] == 1:
                for a in node.attribute:
                    if a.name == "axis":
                        a.i = 1
                fixed += 1
    return fixed


def ensure_plugin_opset(model: onnx.ModelProto) -> None:
    used = any(n.domain == PLUGIN_DOMAIN for n in model.graph.node)
    if used and all(o.domain != PLUGIN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))


def run_all(model: onnx.ModelProto) -> Dict[str, int]:
    stats = {
        "folded_constant_quantization": fold_constant_quantization(model),
        "fused_rounding_clamps": fuse_rounding_clamps(model),
        "fused_binarize": fuse_binarize(model),
        "freed_batch_dims": free_batch_dim(model),
    }
    ensure_plugin_opset(model)
    return stats
