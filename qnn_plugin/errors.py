"""Errors the plugin raises for bad input: each names the file, node or shape at fault."""


class QnnPluginError(Exception):
    """Base class: a problem with the user's input, reported without a dependency's stack trace."""


class ModelLoadError(QnnPluginError):
    """The ONNX file is missing, unreadable or malformed."""


class UnsupportedOperatorError(QnnPluginError):
    """The model uses an operator (or an operator form) the plugin cannot import or bound."""


class InputShapeError(QnnPluginError, ValueError):
    """An input tensor does not have the shape the model declares."""


class SpecError(QnnPluginError, ValueError):
    """A VNN-LIB property is malformed, unsupported, or does not fit the model."""


class NotIntegerError(UnsupportedOperatorError):
    """The network is not exact integer arithmetic on its input codes (``qnn_plugin.intnet``):
    a scale that is not a power of two, an accumulator float32 cannot hold exactly, an
    operation the integer encoding does not represent."""


class SmtUnsupportedError(UnsupportedOperatorError):
    """The network is outside what the bit-exact SMT baseline encodes (float inputs, scales that
    are not powers of two, accumulators float32 cannot hold exactly, an unknown operation)."""
