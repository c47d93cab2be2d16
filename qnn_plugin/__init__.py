"""qnn_plugin: verify quantized neural networks with auto_LiRPA.

Public API:
    load_onnx(path_or_model)          ONNX (Q)NN -> torch module with the exact ONNX semantics
    register()                        register the quantization bound operators into auto_LiRPA
    bounded(model, example)           auto_LiRPA BoundedModule with every option QNNs need
    compute_bounds(bm, lo, hi, ...)   IBP / CROWN / alpha-CROWN bounds over boxes
    widen_for_float_error(bm, lo, hi) widen step bounds by the forward pass's float32 error
    BOUND_OPS                         {op name: Bound class}, for BoundedModule(custom_ops=...)
"""
from . import compat

compat.apply()

from .bounded import bounded, compute_bounds, widen_for_float_error  # noqa: E402
from .bounds import BOUND_OPS, BoundQClip, BoundQuantStep, BoundSign, register  # noqa: E402
from .errors import (InputShapeError, ModelLoadError, QnnPluginError,  # noqa: E402
                     UnsupportedOperatorError)
from .onnx_import import QnnModule, load_onnx  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "load_onnx", "register", "bounded", "compute_bounds", "widen_for_float_error", "BOUND_OPS",
    "BoundQuantStep",
    "BoundSign", "BoundQClip", "QnnModule", "QnnPluginError", "ModelLoadError",
    "UnsupportedOperatorError", "InputShapeError",
]
