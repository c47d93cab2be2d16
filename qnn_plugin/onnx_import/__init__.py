"""ONNX import: ``load_onnx`` turns a (quantized) ONNX model into a boundable torch module."""
from .loader import QnnModule, example_input, load_onnx, supported_operators  # noqa: F401
