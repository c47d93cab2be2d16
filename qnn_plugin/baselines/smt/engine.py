"""verify(): the bit-exact SMT baseline on an ONNX QNN and a VNN-LIB property.

Per case of the spec (an input box and its unsafe set): the network becomes exact integer
arithmetic on the box's input codes (``intnet``), then one bit-vector formula (``encode``)
asking for codes whose output lies in the unsafe set, solved by bitwuzla or z3. ``unsat`` for
every case gives ``unsat``; a model gives input codes whose representative input is checked
exactly as the main verifier checks its counterexamples (exact semantics and onnxruntime), and
an ``unsat`` is withheld (``unknown``) where onnxruntime with default options computes other
outputs than the exact semantics on the boxes, as the main verifier does.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Union

import numpy as np
import torch

from ... import intnet
from ...errors import NotIntegerError, SmtUnsupportedError
from ...spec import Spec, read_vnnlib
from ...verifier.check import Checker, onnxruntime_disagrees
from ...verifier.network import Network
from ...verifier.problem import Problem
from ...verifier.result import Counterexample, VerifyResult
from . import solvers
from .encode import Encoder, Options


def verify(model: Union[str, os.PathLike], spec: Union[str, os.PathLike, Spec], *,
           timeout: float = 60.0, device: Optional[str] = None, seed: int = 0,
           backend: str = "bitwuzla", dead_branches: bool = True, minimal_widths: bool = True,
           balanced_sums: bool = True) -> VerifyResult:
    """Decide ``spec`` on ``model`` with a bit-vector SMT solver within ``timeout`` seconds.

    ``backend``: ``bitwuzla`` or ``z3``; ``dead_branches``, ``minimal_widths``,
    ``balanced_sums``: the speed-ups of the encoding (see ``encode.Options``). ``device`` is
    accepted for the common runner interface and not used (the solver runs on the CPU);
    ``seed`` draws the random inputs of the onnxruntime agreement check before an ``unsat``. Networks outside the engine's reach (float inputs, scales that
    are not powers of two, ...) raise ``SmtUnsupportedError`` naming the node.
    """
    t0 = time.monotonic()
    deadline = t0 + max(0.0, timeout - max(0.5, min(2.0, 0.05 * timeout)))
    if backend not in solvers.BACKENDS:
        raise ValueError(f"backend must be one of {solvers.BACKENDS}, got {backend!r}")
    opts = Options(dead_branches, minimal_widths, balanced_sums)
    if not isinstance(spec, Spec):
        spec = read_vnnlib(spec)
    net = Network(model, torch.device("cpu"))
    spec.check_model(net.n_in, net.n_out)
    if net.grid is None:
        raise SmtUnsupportedError(
            f"{net.path}: not supported by the SMT engine: the network has no input quantizer "
            "(or one too fine to enumerate its codes), so its inputs are floats rather than "
            "integer codes")
    checker = Checker(net)
    stats = dict(time_load=time.monotonic() - t0, time_encode=0.0, time_solve=0.0)
    undecided = []
    for i, case in enumerate(spec.cases):
        if not case.unsafe:   # an empty disjunction: nothing is unsafe in this box
            continue
        problem = Problem.from_case(case, i, torch.device("cpu"))
        verdict, found = _decide_case(net, problem, checker, backend, opts, deadline, stats)
        if verdict == "sat":
            return _finish(VerifyResult("sat", found), t0, stats)
        if verdict == "timeout":
            return _finish(VerifyResult("timeout", message=f"case {i}: {found}"), t0, stats)
        if verdict == "unknown":
            undecided.append(f"case {i}: {found}")
    if undecided:
        return _finish(VerifyResult("unknown", message="; ".join(undecided)), t0, stats)
    odd = onnxruntime_disagrees(net, spec, checker, torch.Generator().manual_seed(seed), stats)
    if odd is not None:
        return _finish(VerifyResult("unknown", message=odd), t0, stats)
    return _finish(VerifyResult("unsat"), t0, stats)


def _decide_case(net, problem, checker, backend, opts, deadline, stats):
    """(verdict, Counterexample or message) for one case: encode, then solve until the solver
    says unsat or gives a model whose input the checker confirms. A model that is not
    confirmed (its codes are reachable only from a box end rounded to float32, which the
    search includes to be sound) is excluded and the solver asked again."""
    t = time.monotonic()
    lo, hi = net.domain_box(problem.lower, problem.upper)
    try:
        inet = intnet.extract(net.bounded_module, net.input_shape,
                              lo.cpu().numpy().astype(np.int64), hi.cpu().numpy().astype(np.int64),
                              deadline)
        enc = Encoder(inet, solvers.make(backend), opts)
        outs = enc.encode_network(deadline)
        enc.bk.assert_(enc.unsafe(outs, problem.A64, problem.b64, problem.poly.cpu().numpy(),
                                  problem.n_poly))
    except intnet.OutOfTime as exc:
        return "timeout", str(exc)
    except NotIntegerError as exc:   # name the file too (the node names are the bound graph's)
        raise SmtUnsupportedError(f"{net.path}: {exc}") from None
    finally:
        stats["time_encode"] += time.monotonic() - t
    for k, v in enc.stats.items():
        stats[k] = stats.get(k, 0.0) + v
    rejected = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout", "before the solver finished"
        t = time.monotonic()
        answer, values = solvers.solve(enc.bk, left, enc.free_inputs())
        stats["time_solve"] += time.monotonic() - t
        if answer == "unknown":
            return "timeout", f"{backend} time limit"
        if answer == "error":
            return "unknown", values
        if answer == "unsat":
            if rejected:
                return "unknown", (f"{len(rejected)} solver model(s) not confirmed "
                                   f"({rejected[0]}) and no other model")
            return "unsat", ""
        codes = enc.model_codes(values)
        pts = torch.tensor([codes], dtype=torch.float32)
        x = net.to_inputs(pts, problem.inner_lower, problem.inner_upper)[0].cpu().numpy()
        v = checker.check(x, problem)
        if v.confirmed:
            return "sat", Counterexample(x.astype(np.float32), v.y, problem.case_index, v.polytope)
        rejected.append(v.reason)
        stats["smt_models_rejected"] = stats.get("smt_models_rejected", 0.0) + 1
        enc.exclude(values)


def _finish(res: VerifyResult, t0: float, stats: dict) -> VerifyResult:
    stats["time_total"] = time.monotonic() - t0
    res.stats = {k: float(v) for k, v in stats.items()}
    return res
