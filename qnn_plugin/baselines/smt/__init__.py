"""Bit-exact SMT verification of QNNs (Henzinger, Lechner, Zikelic; AAAI 2021): the network's
integer semantics as bit-vector constraints, solved by bitwuzla or z3.

``verify(onnx, vnnlib, timeout=...)`` returns the same ``VerifyResult`` as the plugin's
verifier; ``qnn-verify --engine smt`` runs it from the command line.
"""
from .encode import Options
from .engine import verify

__all__ = ["verify", "Options"]
