"""What a verification run returns: the verdict, a validated counterexample, statistics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

VERDICTS = ("sat", "unsat", "timeout", "unknown", "error")


@dataclass(frozen=True)
class Counterexample:
    """An input in the spec's box whose output lies in the unsafe set.

    ``x``: the input flattened in C order (float32, exactly what was fed to the model);
    ``y``: the output onnxruntime (default session options, as the VNN-COMP checker runs it)
    computes for ``x``, flattened (float32). ``case``/``polytope``: which input box and which
    disjunct of the unsafe set it hits.
    """

    x: np.ndarray
    y: np.ndarray
    case: int = 0
    polytope: int = 0


@dataclass
class VerifyResult:
    """``verdict`` is one of VERDICTS. ``sat`` always carries a ``counterexample`` that the exact
    semantics and onnxruntime both confirm. ``message`` says why for error/unknown/timeout.
    ``stats``: seconds per phase (``time_load``, ``time_attack``, ``time_bab``, ``time_total``;
    ``time_milp``, the integer program's wall time in its child processes, overlaps
    ``time_bab``), search counters (``boxes_bounded``, ``max_depth``, ...) and the program's
    (``intprog_*`` for the exact one, ``milp_*`` for the float one: ``_decided``, ``_error``,
    ``_rejected``, ...), the neighbourhood programs' (``neighbourhoods``,
    ``time_neighbourhoods``, ``neighbourhoods_decided``, ...) and ``onnxruntime_disagrees``
    (1 when an unsat proof was withheld because onnxruntime computes other outputs)."""

    verdict: str
    counterexample: Optional[Counterexample] = None
    message: str = ""
    stats: Dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.verdict == "sat" and self.counterexample is None:
            raise ValueError("a sat result needs a counterexample")
