"""Counterexample validation: the exact semantics and onnxruntime must both confirm.

onnxruntime runs with default session options, as the VNN-COMP checker does (with power-of-two
scales it agrees with the exact semantics bit for bit; with other scales its fused kernels may
differ by a quantum, and then a candidate one of them rejects is not reported). Before an
``unsat``, ``onnxruntime_disagrees`` samples each box for inputs where the two differ.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .. import semantics
from ..errors import UnsupportedOperatorError
from . import attack
from .network import Network
from .problem import Problem


@dataclass
class Verdict:
    confirmed: bool
    y: Optional[np.ndarray]  # onnxruntime's output, flat float32
    polytope: Optional[int]
    reason: str = ""


class Checker:
    def __init__(self, net: Network):
        import onnxruntime as ort

        self.net = net
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(net.onnx.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # e.g. onnxruntime 1.32 has no opset-28 QuantizeLinear kernel
            raise UnsupportedOperatorError(
                f"{net.path}: onnxruntime {ort.__version__} cannot run this model, so no "
                f"counterexample could be confirmed: {exc}") from None
        self.checked = 0

    def check(self, x: np.ndarray, problem: Problem) -> Verdict:
        """Is the flat float32 input ``x`` a counterexample for ``problem``?"""
        self.checked += 1
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        lo, hi = problem.inner_lower.cpu().numpy(), problem.inner_upper.cpu().numpy()
        if not (np.all(x >= lo) and np.all(x <= hi)):
            return Verdict(False, None, None, "outside the input box")
        feed = self.net.feed(x)
        y_ort = self._ort(feed)
        p_ort = problem.violated_exactly(y_ort)
        if p_ort is None:
            return Verdict(False, y_ort, None, "onnxruntime output is safe")
        if problem.violated_exactly(self._reference(feed)) is None:
            return Verdict(False, y_ort, None, "the exact semantics' output is safe")
        return Verdict(True, y_ort, p_ort)

    def safe_exactly(self, x: np.ndarray, problem: Problem) -> bool:
        """For a single grid point the bounds left undecided: both evaluators say safe."""
        feed = self.net.feed(np.asarray(x, dtype=np.float32))
        return (problem.violated_exactly(self._reference(feed)) is None
                and problem.violated_exactly(self._ort(feed)) is None)

    def disagreement(self, xs) -> Optional[Tuple[np.ndarray, float]]:
        """The first of the flat inputs ``xs`` on which onnxruntime (default options) and the
        exact semantics differ by more than the VNN-COMP checker's tolerance (atol 1e-4 plus
        rtol 1e-3), with the largest difference there; None where they agree on all."""
        for x in xs:
            feed = self.net.feed(np.asarray(x, dtype=np.float32).reshape(-1))
            ort_y = self._ort(feed).astype(np.float64)
            ref_y = self._reference(feed).astype(np.float64)
            diff = np.abs(ort_y - ref_y)
            if not np.all(diff <= 1e-4 + 1e-3 * np.abs(ref_y)):
                return np.asarray(x, dtype=np.float32).reshape(-1), float(diff.max())
        return None

    def _ort(self, feed) -> np.ndarray:
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32).reshape(-1)

    def _reference(self, feed) -> np.ndarray:
        return np.asarray(semantics.run_reference(self.net.onnx, feed)[0]).reshape(-1)


def onnxruntime_disagrees(net: Network, spec, checker: Checker, gen, stats: dict,
                          per_case: int = 32) -> Optional[str]:
    """Before an unsat answer: does onnxruntime with default options (what the VNN-COMP
    checker runs) compute other outputs than the semantics the proof is about, on the centre,
    the two corners and random points of each case's box? Its graph optimisations rewrite some
    models (a QDQ Gemm with a float bias became FusedGemm + QGemm with the bias rounded to
    int32, shifting outputs by a quantum), and then a counterexample could exist for the
    checker that the proof cannot see. Returns the reason to answer unknown, or None."""
    t = time.monotonic()
    try:
        for i, case in enumerate(spec.cases):
            if not case.unsafe:   # checked even past the deadline: an unsat rests on it
                continue
            problem = Problem.from_case(case, i, net.device)
            lo, hi = net.domain_box(problem.inner_lower, problem.inner_upper)
            centre = lo + (hi - lo) / 2
            if net.grid is not None:
                centre = torch.floor(centre)
            pts = torch.cat([torch.stack([centre, lo, hi]),
                             attack.random_points(net, lo, hi, per_case - 3, gen)])
            xs = net.to_inputs(pts, problem.inner_lower, problem.inner_upper).cpu().numpy()
            found = checker.disagreement(xs)
            if found is not None:
                stats["onnxruntime_disagrees"] = 1.0
                x, diff = found
                return (f"every case is unsat under the model's operator-by-operator semantics, "
                        f"but onnxruntime (default session options, as the VNN-COMP checker "
                        f"runs it) computes outputs up to {diff:.3g} away from them on an input "
                        f"of case {i}'s box (its graph optimisations change this model), so the "
                        f"proof need not hold for onnxruntime")
        return None
    finally:
        stats["time_onnxruntime_agreement"] = time.monotonic() - t
