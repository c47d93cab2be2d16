#!/usr/bin/env python3
"""The search alone with and without the split constraints in its bounds (beta-CROWN's
multipliers, ``qnn_plugin/verifier/lagrangian.py``), on the instances of a VNN-COMP folder that
reach the search.

    python scripts/bench_lagrangian.py FOLDER [--timeout 20] [--match 256x2] [--limit K]

Each instance runs twice in this process, one after the other, with activation branching and
no integer program (``verify(..., milp=False)``), once with the multipliers (``lagrangian=True``,
the default) and once without. The table gives each run's verdict, seconds, domains bounded
and domains still open at the end, and for the run with multipliers how many open polytopes
they were given and refuted alone (they switch themselves off when that share stays small).
Instances decided before the search (attack or root bound) are skipped. The first run of
the first instance (with multipliers) also pays the process's warm-up (imports, first bound
calls): compare domains, not seconds, there.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np


def run(inst, timeout: float, lagrangian: bool) -> dict:
    from qnn_plugin.verifier import verify

    t = time.monotonic()
    res = verify(inst.onnx, inst.vnnlib, timeout=timeout, milp=False, branch="activation",
                 lagrangian=lagrangian)
    st = res.stats
    return dict(verdict=res.verdict, seconds=time.monotonic() - t,
                boxes=int(st.get("boxes_bounded", 0)), open=int(st.get("domains_open", 0)),
                tried=int(st.get("lagrangian_tried", 0)),
                refuted=int(st.get("lagrangian_refuted", 0)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per run")
    p.add_argument("--match", default="", help="only instances whose ONNX or VNN-LIB path "
                                               "contains this")
    p.add_argument("--limit", type=int, default=None, help="at most this many instances")
    args = p.parse_args(argv)

    from qnn_plugin.errors import QnnPluginError
    from qnn_plugin.vnncomp import read_instances

    try:
        instances = read_instances(args.folder)
    except (QnnPluginError, OSError) as exc:
        p.error(str(exc))
    chosen = [i for i in instances if args.match in i.onnx_rel + " " + i.vnnlib_rel]
    print("| instance | with: verdict | s | domains | open | refuted / tried "
          "| without: verdict | s | domains | open |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
    rows = []
    for inst in chosen[:args.limit]:
        on = run(inst, args.timeout, True)
        if on["boxes"] == 0:
            continue   # decided before the search
        off = run(inst, args.timeout, False)
        rows.append((on, off))
        name = f"{Path(inst.onnx_rel).stem} {Path(inst.vnnlib_rel).stem}"
        print(f"| {name} | {on['verdict']} | {on['seconds']:.1f} | {on['boxes']} | {on['open']} "
              f"| {on['refuted']} / {on['tried']} | {off['verdict']} | {off['seconds']:.1f} "
              f"| {off['boxes']} | {off['open']} |", flush=True)
    if not rows:
        print("\nno instance reached the search")
        return 0
    decided = lambda r: r["verdict"] in ("sat", "unsat")
    both_open = [(a["open"], b["open"]) for a, b in rows
                 if not decided(a) and not decided(b) and b["open"]]
    print(f"\n{len(rows)} instances reached the search; decided with multipliers "
          f"{sum(decided(a) for a, _ in rows)}, without {sum(decided(b) for _, b in rows)}")
    if both_open:
        ratios = [a / b for a, b in both_open]
        print(f"undecided by both ({len(both_open)}): domains left open with / without, median "
              f"{float(np.median(ratios)):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
