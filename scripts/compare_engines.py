#!/usr/bin/env python3
"""Compare verifier configurations (the plugin engine, the SMT baseline and their variants) on
the same VNN-COMP instances: verdict counts, times and time ratios against the first
configuration, a cactus plot, and a FAILURE (exit code 1) for every pair of contradictory
verdicts or rejected counterexample.

    python scripts/compare_engines.py vnncomp_benchmarks/qnn_digits --timeout-cap 10
    python scripts/compare_engines.py DIR --configs smt,smt-plain,smt-z3 --jobs 2 --out cmp/

``--help`` lists the configurations; the logic lives in ``qnn_plugin.compare``.
"""
import sys

from qnn_plugin.compare import main

if __name__ == "__main__":  # the guard matters: the worker processes (spawn) import this file
    sys.exit(main())
