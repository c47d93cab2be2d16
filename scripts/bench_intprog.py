#!/usr/bin/env python3
"""The exact integer program alone, two ways side by side, on every instance of a VNN-COMP
folder that the root CROWN bound leaves open.

    python scripts/bench_intprog.py FOLDER [--timeout 60] [--match eps4] [--compare union]
                                    [--write-mps DIR]

``--compare inputs`` (default): continuous input columns against integer ones (the two
variants the verifier races), each solving the open polytopes one after the other.
``--compare union``: continuous inputs, the open polytopes one after the other (most violated
first) against what the verifier's continuous-input variant does: the same with an even
share of a quarter of the time for each, then one program over the union of those left open
(a binary per polytope); instances with a single open polytope are skipped (the two are the
same program).

FOLDER holds instances of a network that is exact integer arithmetic on its input codes, e.g.
the AAAI 2021 setting (``python scripts/bench_aaai2021.py --write-folder /tmp/aaai``). For each
instance the program is built once (ranges narrowed by CROWN, as the verifier does) and each
open polytope solved both ways in the same process, one after the other; the table gives the
answer, seconds and branch-and-bound nodes of each, the time ratio (second / first), and
which answered first.
Instances that are not exact integer arithmetic, or that the root bound proves, are skipped.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


# per --compare: the two ways, each (name, input columns, union of the polytopes)
WAYS = {"inputs": (("relaxed", "relaxed", False), ("integer", "integer", False)),
        "union": (("one by one", "relaxed", False), ("union", "relaxed", True))}


def solve_all(prog, problem, order, timeout: float, inputs: str, together: bool):
    """(answer, seconds, nodes) of the verifier's child over the open polytopes."""
    from qnn_plugin.verifier.api import _solve_polytopes

    t = time.monotonic()
    status, _, nodes = _solve_polytopes(prog, problem.A64, problem.b64, problem.poly.numpy(),
                                        order, t + timeout, inputs, together)
    return status, time.monotonic() - t, nodes


def first(results, names) -> str:
    """Which way decided first ("-": neither decided)."""
    decided = [(t, name) for (status, t, _), name in zip(results, names) if status != "unknown"]
    return min(decided)[1] if decided else "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per variant and instance")
    p.add_argument("--match", default="", help="only instances whose VNN-LIB path contains this")
    p.add_argument("--compare", choices=sorted(WAYS), default="inputs",
                   help="inputs: continuous against integer input columns; union: the open "
                        "polytopes one by one against a short pass one by one, then one "
                        "program over the union of those left open")
    p.add_argument("--write-mps", type=Path, metavar="DIR",
                   help="also write each open polytope's program (integer codes) as DIR/NAME_pP.mps "
                        "for other MIP solvers (minimise t: t <= 1/2 is a counterexample, a "
                        "bound above 1/2 a proof)")
    p.add_argument("--no-solve", action="store_true", help="with --write-mps: only write")
    args = p.parse_args(argv)
    if args.no_solve and not args.write_mps:
        p.error("--no-solve needs --write-mps DIR")

    from qnn_plugin.errors import QnnPluginError
    from qnn_plugin.spec import read_vnnlib
    from qnn_plugin.verifier import intprog
    from qnn_plugin.verifier.api import _output_bound, _root_proves, exact_program
    from qnn_plugin.verifier.network import Network
    from qnn_plugin.verifier.problem import Problem
    from qnn_plugin.vnncomp import read_instances

    try:
        instances = read_instances(args.folder)
    except (QnnPluginError, OSError) as exc:
        p.error(str(exc))
    torch.set_num_threads(1)
    nets = {}
    ways = WAYS[args.compare]
    names = [w[0] for w in ways]
    if not args.no_solve:
        print(f"| instance | {names[0]} | s | nodes | {names[1]} | s | nodes | ratio | first |")
        print("|---|---|---:|---:|---|---:|---:|---:|---|")
    ratios, firsts = [], []
    for inst in instances:
        if args.match not in inst.vnnlib_rel:
            continue
        net = nets.setdefault(inst.onnx, Network(inst.onnx, torch.device("cpu")))
        spec = read_vnnlib(inst.vnnlib)
        for i, case in enumerate(spec.cases):
            problem = Problem.from_case(case, i, torch.device("cpu"))
            lo, hi = net.domain_box(problem.lower, problem.upper)
            problem.set_output_bound(_output_bound(net, lo, hi))   # as the verifier does
            if _root_proves(net, problem, lo, hi, "crown", {}):
                continue
            built = exact_program(net, problem, lo, hi)
            if built is None or not built[1]:
                continue
            prog, order = built
            name = (f"{Path(inst.onnx_rel).stem} {Path(inst.vnnlib_rel).stem}"
                    + (f" case {i}" if len(spec.cases) > 1 else ""))
            if args.write_mps:
                args.write_mps.mkdir(parents=True, exist_ok=True)
                for p_ in order:
                    intprog.write_mps(prog, problem.A64, problem.b64,
                                      np.flatnonzero(problem.poly.numpy() == p_),
                                      args.write_mps / f"{name.replace(' ', '_')}_p{p_}.mps")
            if args.no_solve or (args.compare == "union" and len(order) < 2):
                continue
            a, b = (solve_all(prog, problem, order, args.timeout, inputs, together)
                    for _, inputs, together in ways)
            ratios.append(b[1] / a[1])
            firsts.append(first((a, b), names))
            print(f"| {name} | {a[0]} | {a[1]:.1f} | {a[2]} | {b[0]} | {b[1]:.1f} "
                  f"| {b[2]} | {ratios[-1]:.1f}x | {firsts[-1]} |", flush=True)
    if args.write_mps:
        print(f"\nprograms written to {args.write_mps}/")
    if ratios:
        print(f"\n{len(ratios)} programs; time ratio {names[1]} / {names[0]}: median "
              f"{float(np.median(ratios)):.1f}x, min {min(ratios):.2f}x, max {max(ratios):.1f}x; "
              f"first to decide: {names[0]} {firsts.count(names[0])}, {names[1]} "
              f"{firsts.count(names[1])}, neither {firsts.count('-')}")
    elif not args.no_solve:
        print("\nno instance left open by the root bound with an exact integer program")
    return 0


if __name__ == "__main__":
    sys.exit(main())
