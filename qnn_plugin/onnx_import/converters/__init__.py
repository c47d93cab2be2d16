"""Converters registered into onnx2torch: importing this package registers them all."""
from . import contrib, elementwise, pooling, qoperator, quantize, versions  # noqa: F401
from .registry import PLUGIN_DOMAIN, is_registered, registered_op_types  # noqa: F401
