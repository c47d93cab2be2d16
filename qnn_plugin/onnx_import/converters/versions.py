"""Newer since-versions of ops onnx2torch converts only at older versions.

Each alias below was checked against the onnx operator changelog: the newer version adds
element types (bfloat16, float8, int4, ...) or nothing a QNN's float/int tensors notice, so the
older converter computes the same function. Ops whose newer versions change semantics (Pad 18
axes, Reduce* 18 axes-as-input, Split 18, Resize 18+) are not aliased and stay unsupported at
those versions.
"""
from __future__ import annotations

from .registry import alias, since_versions

_TYPE_ONLY = {
    # op: version whose converter serves the newer type-only versions
    "Acos": 7, "Asin": 7, "Atan": 7, "Cos": 7, "Sin": 7, "Tan": 7,
    "Constant": 13, "ConstantOfShape": 9, "Conv": 11, "ConvTranspose": 11, "Dropout": 13,
    "Elu": 6, "EyeLike": 9, "Flatten": 13, "GlobalAveragePool": 1, "HardSigmoid": 6,
    "HardSwish": 14, "Identity": 16, "InstanceNormalization": 6, "Reshape": 14,
    "Shape": 15, "Softplus": 1, "Softsign": 1, "Selu": 6, "Squeeze": 21, "Transpose": 13,
    "Unsqueeze": 13, "Gemm": 9, "BatchNormalization": 9, "IsNaN": 13, "NonZero": 13, "Equal": 13,
}


def _newer(op: str, source: int) -> list:
    return [v for v in since_versions(op) if v > source]


for _op, _src in _TYPE_ONLY.items():
    alias(_op, _newer(_op, _src), _src)
# older versions that differ only in types or removed legacy attributes (Flatten-1, Gemm-7, ...)
for _op, _src in {"Flatten": 9, "Gemm": 9, "BatchNormalization": 9, "Dropout": 10,
                  "IsNaN": 13, "NonZero": 13}.items():
    alias(_op, [v for v in since_versions(_op) if v < _src], _src)
