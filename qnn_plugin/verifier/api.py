"""verify(model, spec): the library entry point of the complete verifier.

Phases, per case of the spec (an input box with its unsafe set):
  1. random points of the box; a bound on the forward pass's float32 error at every step's
     input (float_error; 0 on fixed-point networks), which the bounds are widened by; one
     bound computation on the whole box (proves most robust cases at once); PGD with
     straight-through gradients when that did not;
  2. where the search will branch on activations, an integer program solved in forked child
     processes while the search runs: the exact one (intprog, two variants racing) or the
     float one (milp);
  3. branch and bound (bab.search) on the input grid, or on the float box when the network
     has no input quantizer; beside the exact program, between its rounds, exact programs on
     neighbourhoods of its near misses (neighbourhood.py); every candidate counterexample is
     confirmed by the exact semantics and by onnxruntime before the answer is sat.
The answer is sat as soon as one case has a confirmed counterexample, unsat when every case's
search space was exhausted, else timeout/unknown.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Optional, Union

import numpy as np
import torch

from .. import float_error
from ..bounded import lirpa_unsupported
from ..forked import Forked
from ..spec import Spec, read_vnnlib
from . import attack, bab, intprog
from .check import Checker, onnxruntime_disagrees
from .neighbourhood import Neighbourhoods
from .network import Network
from .problem import Problem
from .result import Counterexample, VerifyResult


def _device(device: Optional[Union[str, torch.device]]) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def verify(model: Union[str, os.PathLike], spec: Union[str, os.PathLike, Spec], *,
           timeout: float = 60.0, device: Optional[str] = None, seed: int = 0,
           method: str = "crown", split: str = "strong", branch: str = "auto",
           batch: Optional[int] = None,
           attack_starts: int = 64, attack_steps: int = 50, milp: bool = True,
           lagrangian: bool = True, progress: bool = False) -> VerifyResult:
    """Verify the VNN-LIB property ``spec`` (path or parsed Spec) on the ONNX network ``model``
    within ``timeout`` seconds, counted from the call (the answer comes back before it expires).

    ``method``: bound method inside branch and bound (``crown``, ``crown-ibp``: interval bounds
    for hidden layers, ``ibp``);
    ``split``: split rule (``strong``: bound the children of candidate dimensions and keep the
    best split; ``gain``: |A_d| * width_d from CROWN; ``widest``: longest edge); ``batch``: boxes
    per bound call (default: sized to a 1 GiB budget); ``branch``: ``input`` (split the input
    box only), ``activation`` (split undecided hidden ReLUs and quantization steps first, the
    input box when none is left), ``auto`` (activation for inputs of more than 16 values);
    ``milp``: with activation branching or an input of more than 16 values, also solve an
    integer program (HiGHS) in forked children beside the search: the exact one of
    ``intprog`` for integer networks, the float one of ``milp`` otherwise; ``lagrangian``: with activation branching, the splits
    also enter each domain's output bound as constraints on the input (beta-CROWN's
    multipliers, ``lagrangian.py``), for as long as that refutes enough to pay. Bad input
    raises a QnnPluginError subclass whose message names the file and what is wrong.
    ``attack_starts``/``attack_steps``: PGD's random starts and steps (0 turns PGD off, its
    second phase from the best of many random samples included).
    """
    t0 = time.monotonic()
    # stop early enough to return (and write results) before the timeout expires
    deadline = t0 + max(0.0, timeout - max(0.5, min(2.0, 0.05 * timeout)))
    if method not in bab.LIRPA_METHODS:
        raise ValueError(f"method must be one of {sorted(bab.LIRPA_METHODS)}, got {method!r}")
    if branch not in bab.BRANCH_MODES:
        raise ValueError(f"branch must be one of {bab.BRANCH_MODES}, got {branch!r}")
    if split not in bab.SPLIT_RULES:
        raise ValueError(f"split must be one of {bab.SPLIT_RULES}, got {split!r}")
    dev = _device(device)
    if not isinstance(spec, Spec):
        spec = read_vnnlib(spec)
    net = Network(model, dev)
    spec.check_model(net.n_in, net.n_out)
    opts = bab.Options(method=method, split=split, branch=branch, batch=batch,
                       progress=_reporter() if progress else None, lagrangian=lagrangian)
    # an operator auto_LiRPA has no bound for with the method asked (NotImplementedError on
    # the first bound computation that reaches it), or an operator form its backward pass
    # does not handle (an audit's x -> Transpose -> MatMul(W, x^T) -> Transpose: a
    # RuntimeError in its Transpose): an unsupported-operator error, not a crash
    with lirpa_unsupported(net.path, catch=(NotImplementedError, RuntimeError, AssertionError,
                                            IndexError)):
        return _verify(net, spec, opts, t0=t0, deadline=deadline, seed=seed,
                       attack_starts=attack_starts, attack_steps=attack_steps, milp=milp)


def _verify(net: Network, spec: Spec, opts: bab.Options, *, t0: float, deadline: float,
            seed: int, attack_starts: int, attack_steps: int, milp: bool) -> VerifyResult:
    """verify's cases, one after the other, on the loaded network."""
    dev, method = net.device, opts.method
    checker = Checker(net)
    stats = dict(time_load=time.monotonic() - t0, time_attack=0.0, time_bab=0.0,
                 input_grid=float(net.grid is not None), input_cells=float(net.cells is not None),
                 cases=float(len(spec.cases)))
    gen = torch.Generator().manual_seed(seed)
    verdicts = []
    unbounded = set()   # steps whose input's float32 error float_error could not bound
    unbounded_ops = set()   # and the operators that stopped the analysis
    for i, case in enumerate(spec.cases):
        if not case.unsafe:  # an empty disjunction: nothing is unsafe in this box
            continue
        problem = Problem.from_case(case, i, dev)
        lo, hi = net.domain_box(problem.lower, problem.upper)
        # cheap first: random points, then the root bound (most robust boxes end here), and
        # PGD only when the root does not prove the case; the attacks get at most a fifth of
        # the time left, the search the rest
        attack_deadline = min(deadline, time.monotonic() + 0.2 * (deadline - time.monotonic()))
        found = _random_attack(net, problem, checker, gen, stats)
        errors = _float_errors(net, problem, lo, hi, stats)
        missing = [name for name, e in errors.steps.items() if e is None]
        if missing:
            unbounded.update(missing)
            unbounded_ops.update(errors.unbounded)
        if found is None:
            problem.set_output_bound(_output_bound(net, lo, hi))
            if _root_proves(net, problem, lo, hi, method, stats):
                verdicts.append(("unsat", ""))
                continue
            found = _pgd_attack(net, problem, checker, gen, attack_starts, attack_steps,
                                attack_deadline, stats)
        if found is not None:
            return _finish(VerifyResult("sat", found), t0, stats, checker)
        if time.monotonic() > deadline:
            return _finish(VerifyResult("timeout", message=f"during the attack on case {i}"),
                           t0, stats, checker)
        program = None
        if milp and (bab.uses_activation_branching(net, opts) or net.n_in > opts.input_split_max_dims):
            # integer networks: the exact program, others the float one; in child processes,
            # beside the search (also where it cannot branch on activations and the input is
            # too big for input splitting to finish: a binarized network's Signs)
            program = _start_exact_program(net, problem, lo, hi, checker, deadline, stats)
            if program is None:
                program = _start_float_program(net, problem, lo, hi, checker, deadline, stats)
        near = None
        if program is not None and program.kind == "intprog":
            near = Neighbourhoods(lo, hi, _neighbourhood_solver(net, problem, checker), seed=seed)
        t1 = time.monotonic()
        threads = torch.get_num_threads()
        if program is not None and lo.device.type == "cpu" and threads > 1:
            torch.set_num_threads(threads - 1)   # a core for the program's processes
        try:
            judge = _Judge(net, problem, checker,
                           _float_sensitive(net, errors, lo, hi, deadline, stats))
            out = bab.search(net, problem, lo, hi, deadline, judge,
                             _search_options(opts, program, near, deadline))
            if out.status in ("timeout", "unknown") and program is not None:
                program.decided(wait=deadline - time.monotonic())
        finally:
            torch.set_num_threads(threads)
            if program is not None:
                program.stop()
        stats["time_bab"] += time.monotonic() - t1
        for k, v in out.stats.items():
            stats[k] = max(stats.get(k, 0), v) if k == "max_depth" else stats.get(k, 0) + v
        if near is not None:
            for k, v in near.stats().items():
                stats[k] = stats.get(k, 0.0) + v
            if near.found is not None:   # confirmed: it stands whatever the program says
                if program.answer == "unsat":
                    program._conflict()
                stats["neighbourhoods_decided"] = stats.get("neighbourhoods_decided", 0.0) + 1
                return _finish(VerifyResult("sat", _counterexample(net, problem, checker,
                                                                   near.found)),
                               t0, stats, checker)
        if program is not None and program.answer is not None:
            key = f"{program.kind}_decided"
            stats[key] = stats.get(key, 0.0) + 1
            if program.answer == "unsat":
                verdicts.append(("unsat", ""))
                continue
            return _finish(VerifyResult("sat", program.answer), t0, stats, checker)
        if out.status == "sat":
            return _finish(VerifyResult("sat", _counterexample(net, problem, checker, out.points)),
                           t0, stats, checker)
        verdicts.append((out.status, out.message))
        if out.status == "timeout":
            return _finish(VerifyResult("timeout", message=f"case {i}: {out.message}"), t0, stats, checker)
    bad = [(s, m) for s, m in verdicts if s != "unsat"]
    if bad:
        return _finish(VerifyResult("unknown", message="; ".join(m for _, m in bad)), t0, stats, checker)
    if unbounded:
        # a proof through such a step rests on the bound operators' margin alone, which large
        # terms cancelling near an edge defeat (an audit's LeakyRelu nets, before it was
        # bounded): not a proof the verifier stands behind
        return _finish(VerifyResult("unknown", message=(
            f"every case is proven, but the float32 error at the input of step(s) "
            f"{', '.join(sorted(unbounded))} could not be bounded (an operator the analysis "
            f"does not cover: {'; '.join(sorted(unbounded_ops))}), so the proof rests on a "
            f"margin alone")), t0, stats, checker)
    odd = onnxruntime_disagrees(net, spec, checker, gen, stats)
    if odd is not None:
        return _finish(VerifyResult("unknown", message=odd), t0, stats, checker)
    return _finish(VerifyResult("unsat"), t0, stats, checker)


def _random_attack(net, problem, checker, gen, stats) -> Optional[Counterexample]:
    t = time.monotonic()
    try:
        lo, hi = net.domain_box(problem.inner_lower, problem.inner_upper)
        pts = attack.candidates(net, problem, attack.random_points(net, lo, hi, 256, gen))
        found = _confirm(net, problem, checker, pts)
        return _counterexample(net, problem, checker, found) if found is not None else None
    finally:
        stats["time_attack"] += time.monotonic() - t


def _root_proves(net, problem, lo, hi, method, stats) -> bool:
    """One bound computation on the whole box (CROWN unless the user chose IBP)."""
    t = time.monotonic()
    with torch.no_grad():
        lb = bab.bound_rows(net, problem, lo.unsqueeze(0), hi.unsqueeze(0), method, False).lb
    stats["time_root"] = stats.get("time_root", 0.0) + time.monotonic() - t
    return bool(problem.refuted(lb).all())


def _pgd_attack(net, problem, checker, gen, starts, steps, deadline, stats) -> Optional[Counterexample]:
    t = time.monotonic()
    try:
        # from random starts, then from the best of many random points (a budget of about
        # 2**22 input values: a million points of a 5-input network, 5,000 of a 784-input
        # one) with small steps; starts=0 or steps=0 turns PGD off altogether
        xs = attack.pgd(net, problem, starts, steps, gen, deadline)
        if xs.shape[0] == 0 and starts > 0 and steps > 0:
            n_in = net.n_in
            near = attack.seeds(net, problem, int(min(1 << 20, max(4096, (1 << 22) // n_in))),
                                int(min(1024, max(starts, (1 << 16) // n_in))), gen,
                                time.monotonic() + 0.5 * (deadline - time.monotonic()))
            xs = attack.pgd(net, problem, 0, 2 * steps, gen, deadline, starts=near,
                            first_step=0.003)
        for x in xs[:8]:
            v = checker.check(x.detach().cpu().numpy(), problem)
            if v.confirmed:
                return Counterexample(x.detach().cpu().numpy().astype(np.float32), v.y,
                                      problem.case_index, v.polytope)
        return None
    finally:
        stats["time_attack"] += time.monotonic() - t


def _search_options(opts, program, near, deadline) -> bab.Options:
    """The search's options with the hooks of the methods running beside it: the program's
    answer ends the search, and so does a neighbourhood program's counterexample (run between
    rounds, fed with the search's near misses)."""
    if near is None:
        return dataclasses.replace(opts, interrupt=program and program.decided)

    def interrupt() -> bool:
        return program.decided() or near.step(deadline)

    return dataclasses.replace(opts, interrupt=interrupt, near_misses=near.near.offer)


def _neighbourhood_solver(net, problem, checker):
    """neighbourhood.Solver of the case: the exact program of a code box (continuous input
    codes, polytopes most violated first), its solution confirmed by the checker."""
    A, b, poly = problem.A64, problem.b64, problem.poly.cpu().numpy()

    def solve(lo, hi, end):
        built = exact_program(net, problem, lo, hi, end)
        if built is None:
            return "unknown", None
        prog, order = built
        status, codes, _ = _solve_polytopes(prog, A, b, poly, order, end, "relaxed")
        if status != "feasible":
            return status, None
        pt = torch.as_tensor(codes, dtype=torch.float32, device=lo.device).reshape(1, -1)
        found = _confirm(net, problem, checker, torch.minimum(torch.maximum(pt, lo), hi))
        return ("feasible", found) if found is not None else ("unknown", None)

    return solve


class _ProgramBeside:
    """An integer program of one case, solved in forked child processes while branch and bound
    runs here: on a multi-core CPU, or beside a GPU search, neither waits for the other. Each
    child answers (status, domain point(s) or None, branch-and-bound nodes or None). The
    exact program (intprog) races two variants (``_EXACT_VARIANTS``): continuous input codes,
    a short pass one polytope at a time and then the union of those left open (faster
    proofs), and, at a lower CPU priority, integer codes one polytope at a time (some
    counterexamples it finds at once, where the relaxed one searches long); the float program
    (milp) runs one. ``answer`` becomes "unsat"
    or a confirmed Counterexample once a child decides the case; ``kind`` ("intprog" or
    "milp") prefixes its statistics."""

    def __init__(self, kind, jobs, net, problem, lo, hi, checker, stats):
        self.kind = kind
        self.pending, self.net, self.problem, self.checker = list(jobs), net, problem, checker
        self.stats, self.lo, self.hi = stats, lo, hi
        self.answer = None
        self.t0 = time.monotonic()

    def decided(self, wait: float = 0.0) -> bool:
        """Whether the program has decided the case (waiting up to ``wait`` seconds)."""
        end = time.monotonic() + max(0.0, wait)
        while self.answer is None and self.pending:
            for job in [j for j in self.pending if j.poll(0.0)]:
                self.pending.remove(job)
                self._take(job.result)
            left = end - time.monotonic()
            if self.answer is not None or not self.pending or left <= 0:
                break
            self.pending[0].poll(min(0.05, left))
        if self.answer is not None:
            self.stop()
        elif not self.pending:
            self._record()
        return self.answer is not None

    def _take(self, result) -> None:
        kind, value = result
        if kind == "error":
            self.stats[f"{self.kind}_error"] = 1.0
            return
        status, codes, nodes = value
        if nodes is not None:
            key = f"{self.kind}_nodes"
            self.stats[key] = self.stats.get(key, 0.0) + nodes
        if status == "infeasible":
            if isinstance(self.answer, Counterexample):   # both answered at once, and disagree
                self._conflict()                          # the confirmed point stands
            else:
                self.answer = "unsat"
        elif status == "feasible" and not isinstance(self.answer, Counterexample):
            pt = torch.as_tensor(codes, dtype=torch.float32, device=self.lo.device).reshape(
                -1, self.lo.numel())
            if self.net.grid is not None:   # codes from the float program carry float64 noise
                pt = torch.round(pt)
            found = _confirm(self.net, self.problem, self.checker,
                             torch.minimum(torch.maximum(pt, self.lo), self.hi))
            if found is not None:
                if self.answer == "unsat":
                    self._conflict()
                self.answer = _counterexample(self.net, self.problem, self.checker, found)
            else:   # a point of the program's outward margins only: the search goes on
                key = f"{self.kind}_rejected"
                self.stats[key] = self.stats.get(key, 0.0) + 1

    def _conflict(self) -> None:
        """One variant proved the case while the other's point is confirmed: a bug in the
        program's encoding, which the verifier reports rather than hides."""
        self.stats[f"{self.kind}_conflict"] = 1.0
        print("qnn_plugin: internal error: the integer program proved a case that has a "
              "confirmed counterexample; please report it with the model and property",
              file=sys.stderr, flush=True)

    def stop(self) -> None:
        for job in self.pending:
            job.stop()
        self.pending = []
        self._record()

    def _record(self) -> None:
        if self.t0 is not None:
            self.stats["time_milp"] = self.stats.get("time_milp", 0.0) + time.monotonic() - self.t0
            self.t0 = None


# the integer-codes variant's niceness: it takes what CPU the relaxed one and the search leave
_SIDE_NICE = 10
# HiGHS's sub-MIP heuristics (RINS, RENS) at half the effort: they slow proofs (intprog turns
# them off), but the integer variant is there for counterexamples. On the AAAI programs
# (eps 3 and 4, 20 s each) it found every counterexample the plain integer variant found, about as
# fast, and two more (eps 4 sample 62 in 14 s; eps 3 sample 84 in 34 s of 60)
_FIND_HEURISTICS = {"mip_heuristic_run_rins": True, "mip_heuristic_run_rens": True,
                    "mip_heuristic_effort": 0.5}
# the exact program's variants (input columns, the union of the polytopes a first pass leaves
# open, niceness, HiGHS options): continuous codes with the union for proofs (it decided
# programs of a binarized network that one polytope after the other did not;
# scripts/bench_intprog.py --compare union), integer codes one polytope at a time, most
# violated first, for counterexamples (a union program found some later on a binarized network)
_EXACT_VARIANTS = (("relaxed", True, 0, None), ("integer", False, _SIDE_NICE, _FIND_HEURISTICS))


def _start_exact_program(net, problem, lo, hi, checker, deadline, stats) -> Optional[_ProgramBeside]:
    """Start solving the case's exact program (see ``exact_program``) in forked children. None
    when the network has no input grid or is not exact integer arithmetic (the float program
    is used instead), or when no child could be forked."""
    t = time.monotonic()
    built = exact_program(net, problem, lo, hi, deadline, stats)
    stats["time_milp_build"] = stats.get("time_milp_build", 0.0) + time.monotonic() - t
    if built is None:
        return None
    prog, order = built
    A, b, poly = problem.A64, problem.b64, problem.poly.cpu().numpy()
    jobs = []
    try:
        for mode, together, nice, options in _EXACT_VARIANTS:
            jobs.append(Forked(lambda m=mode, u=together, o=options: _solve_polytopes(
                prog, A, b, poly, order, deadline, m, u, o), deadline - t, nice=nice))
    except BaseException as exc:   # a failed fork: no child left behind
        for job in jobs:
            job.stop()
        if not isinstance(exc, OSError):
            raise
        stats["intprog_error"] = 1.0   # no fork (out of memory, process limit): the search alone
        return None
    return _ProgramBeside("intprog", jobs, net, problem, lo, hi, checker, stats)


def exact_program(net, problem, lo, hi, deadline=math.inf, stats=None):
    """(intprog.Program, open polytopes most violated first) of the code box, integer ranges
    narrowed by CROWN bounds; None when the network has no input grid, is not exact integer
    arithmetic (``stats["intprog_unsupported"]``) or the deadline passes while extracting."""
    from .. import intnet
    from ..bounds import BoundQuantStep, BoundSign
    from ..errors import NotIntegerError

    if net.grid is None:
        return None
    bm = net.bounded_module
    with torch.no_grad():   # CROWN bounds of every step's and Sign's input narrow the integer ranges
        lb = bab.bound_rows(net, problem, lo.unsqueeze(0), hi.unsqueeze(0), "crown", False).lb
        pre = {}
        for node in bm._modules.values():
            if isinstance(node, (BoundQuantStep, BoundSign)) and getattr(node, "perturbed", False):
                l, u = node._widen(node.inputs[0].lower, node.inputs[0].upper)
                pre[node.name] = (l.reshape(-1).double().cpu().numpy(),
                                  u.reshape(-1).double().cpu().numpy())
    try:
        inet = intnet.extract(bm, net.input_shape, lo.cpu().numpy().astype(np.int64),
                              hi.cpu().numpy().astype(np.int64), deadline, pre_bounds=pre,
                              relax_signs=True)   # solutions are checked; proofs stay sound
    except NotIntegerError:
        if stats is not None:
            stats["intprog_unsupported"] = 1.0
        return None
    except intnet.OutOfTime:
        return None
    open_ = ~problem.refuted(lb)[0]
    order = [p for p in torch.argsort(problem.poly_max(lb - problem.b)[0]).tolist() if bool(open_[p])]
    return intprog.build(inet), order


# with ``together``: the share of the time left that the first pass, one polytope after the
# other, gets before the union program takes the polytopes it left open (0: no first pass)
_FIRST_PASS_SHARE = 0.25


def _solve_polytopes(prog, A, b, poly, order, deadline, inputs, together=False, options=None):
    """(status, codes, nodes): "infeasible" when every open polytope is, else a feasible
    solution's codes or "unknown". One program per polytope, most violated first, up to the
    first that is not infeasible; with ``together`` each gets an even share of a quarter of
    the time left, and those it leaves undecided are solved as one program over their union
    (a binary per polytope). ``options``: further HiGHS options. Runs in the child process:
    numpy and HiGHS only."""
    groups = {p: np.flatnonzero(poly == p) for p in order}
    nodes, rest = 0, []
    share = _FIRST_PASS_SHARE * (deadline - time.monotonic()) / max(1, len(order))
    if together and share <= 0:                  # no first pass: the union of all
        order, rest = [], list(order)
    for p in order:
        left = deadline - time.monotonic()
        ans = intprog.solve(prog, A, b, groups[p], min(share, left) if together else left,
                            options, inputs=inputs)
        nodes += ans.nodes
        if ans.status == "feasible" or (ans.status == "unknown" and not together):
            return ans.status, ans.codes, nodes
        if ans.status == "unknown":
            rest.append(p)
    if not rest:
        return "infeasible", None, nodes
    ans = intprog.solve(prog, A, b, [groups[p] for p in rest] if len(rest) > 1 else groups[rest[0]],
                        deadline - time.monotonic(), options, inputs=inputs)
    return ans.status, ans.codes, nodes + ans.nodes


def _start_float_program(net, problem, lo, hi, checker, deadline, stats) -> Optional[_ProgramBeside]:
    """Start solving milp's program of the box (float64 rows with outward margins) in a forked
    child; None when the network has an operation it does not encode."""
    from . import milp as milp_mod

    t = time.monotonic()
    try:
        with torch.no_grad():   # node bounds of this box for the program's big-M constants
            bab.bound_rows(net, problem, lo.unsqueeze(0), hi.unsqueeze(0), "crown", False)
        if time.monotonic() > deadline:
            return None
        try:
            prog, out = milp_mod.encode(net.bounded_module, lo.double().cpu().numpy(),
                                        hi.double().cpu().numpy(), net.grid is not None, deadline)
        except milp_mod.Unsupported:   # an operation the program does not encode
            stats["milp_unsupported"] = 1.0
            return None
        except milp_mod.OutOfTime:
            return None
    finally:
        stats["time_milp_build"] = stats.get("time_milp_build", 0.0) + time.monotonic() - t
    A, b, poly, tol = problem.A64, problem.b64, problem.poly.cpu().numpy(), problem.tolerance64()
    import scipy.optimize  # noqa: F401  (once here, not in every child)

    def solve():
        res = milp_mod.solve(prog, out, A, b, poly, tol, deadline - time.monotonic())
        return res.status, res.points, None   # scipy's HiGHS reports no node count

    try:
        job = Forked(solve, deadline - time.monotonic())
    except OSError:   # no fork (out of memory, process limit): the search alone
        stats["milp_error"] = 1.0
        return None
    return _ProgramBeside("milp", [job], net, problem, lo, hi, checker, stats)


def _confirm(net: Network, problem: Problem, checker: Checker, points) -> Optional[torch.Tensor]:
    """The first of the candidate domain points that the checker confirms (as a 1-row tensor)."""
    if points is None or points.shape[0] == 0:
        return None
    xs = net.to_inputs(points, problem.inner_lower, problem.inner_upper)
    for i in range(min(8, xs.shape[0])):
        if checker.check(xs[i].cpu().numpy(), problem).confirmed:
            return points[i:i + 1]
    return None


class _Judge:
    """Exact decisions on domain points for the search (see bab.search). With
    ``check_every_point`` no point counts as safe on torch's evaluation alone."""

    def __init__(self, net: Network, problem: Problem, checker: Checker,
                 check_every_point: bool = False):
        self.net, self.problem, self.checker = net, problem, checker
        self.check_every_point = check_every_point

    def confirm(self, points):
        return _confirm(self.net, self.problem, self.checker, points)

    def exactly_safe(self, points) -> torch.Tensor:
        xs = self.net.to_inputs(points, self.problem.inner_lower, self.problem.inner_upper)
        return torch.tensor([self.checker.safe_exactly(x.cpu().numpy(), self.problem)
                             for x in xs], dtype=torch.bool, device=points.device)


def _float_errors(net, problem, lo, hi, stats) -> float_error.FloatErrors:
    """Bound the forward pass's float32 error over the case's box and widen every step's input
    bounds by it (``qnn_plugin.float_error``; 0 where the arithmetic is exact, as on
    fixed-point networks). On a network with steps the output's error joins the proof
    threshold too; on one without, outputs keep the relative margin (``set_output_bound``)."""
    bm = net.bounded_module
    shape = (1, *net.input_shape)
    errors = float_error.analyse(bm, lo.reshape(shape).cpu(), hi.reshape(shape).cpu(),
                                 1.0 if net.grid is not None else None)
    float_error.install(bm, errors)
    if errors.steps and errors.output is not None:
        problem.set_output_error(errors.output.reshape(-1).cpu().numpy())
    known = [float(e.max()) for e in errors.steps.values() if e is not None and e.numel()]
    stats["float_error_max"] = max([stats.get("float_error_max", 0.0)] + known)
    if errors.unbounded:
        stats["float_error_unbounded"] = float(len(errors.unbounded))
    return errors


def _float_sensitive(net, errors: float_error.FloatErrors, lo, hi, deadline, stats) -> bool:
    """Whether a step or Sign of the network reads a value whose float32 evaluation can
    differ from the exact one on the code box [lo, hi] (a float input, non-power-of-two
    scales, a BatchNormalization node, a float threshold within rounding error of a reachable
    sum): there torch's, the reference semantics' and onnxruntime's rounding can put an
    input on different sides of an edge (an independent audit's BatchNormalization-before-
    Sign networks: torch -1 or +1, the reference 0, onnxruntime +1 or -1 at one input), so
    single points are decided by the checker, not by torch. False for networks without
    steps, where ``errors`` shows every step input exact, and where ``intnet`` reads the
    network as exact integer arithmetic (finer: a float bias whose sums stay clear of every
    edge is not exact in float32, but no rounding of it moves a level)."""
    from .. import intnet
    from ..errors import NotIntegerError

    if not errors.steps:
        return False
    sensitive = net.grid is None
    if not sensitive and not errors.exact:
        try:
            intnet.extract(net.bounded_module, net.input_shape, lo.cpu().numpy().astype(np.int64),
                           hi.cpu().numpy().astype(np.int64), deadline)
        except (NotIntegerError, intnet.OutOfTime):
            sensitive = True
    stats["points_checked_by_checker"] = float(sensitive)
    return sensitive


def _counterexample(net, problem, checker, points) -> Counterexample:
    x = net.to_inputs(points[:1], problem.inner_lower, problem.inner_upper)[0].cpu().numpy()
    v = checker.check(x, problem)
    assert v.confirmed, "internal error: a confirmed counterexample no longer checks"
    return Counterexample(x.astype(np.float32), v.y, problem.case_index, v.polytope)


def _output_bound(net: Network, lo, hi) -> float:
    """max |y_j| over the root box, by CROWN bounds (intersected with IBP's; IBP alone can be
    orders of magnitude looser, and this bound scales the proof threshold)."""
    from ..bounded import compute_bounds

    with torch.no_grad():
        l, u = compute_bounds(net.bounded_module, lo.reshape(1, *net.input_shape),
                              hi.reshape(1, *net.input_shape), "crown")
    return float(torch.maximum(l.abs(), u.abs()).max().detach())


def _finish(res: VerifyResult, t0: float, stats: dict, checker: Checker) -> VerifyResult:
    stats["candidates_checked"] = float(checker.checked)
    stats["time_total"] = time.monotonic() - t0
    res.stats = {k: float(v) for k, v in stats.items()}
    return res


def _reporter():
    def report(s):
        print(f"  bounded {int(s['boxes_bounded'])} boxes, {int(s['open'])} open, depth "
              f"{int(s['max_depth'])}", file=sys.stderr, flush=True)
    return report
