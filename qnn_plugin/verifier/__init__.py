"""The complete verifier: VNN-LIB property + ONNX QNN -> sat (validated counterexample) / unsat."""
from .result import VERDICTS, Counterexample, VerifyResult
from .api import verify

__all__ = ["verify", "VerifyResult", "Counterexample", "VERDICTS"]
