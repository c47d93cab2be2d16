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


class SmtUnsupportedError(UnsupportedOperatorError):
    """The network is outside what the bit-exact SMT baseline encodes (float inputs, scales that
    are not powers of two, accumulators float32 cannot hold exactly, an unknown operation)."""
