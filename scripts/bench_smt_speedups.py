#!/usr/bin/env python3
"""The SMT baseline's speed-ups, each switched off in turn, on small random QNNs.

    python scripts/bench_smt_speedups.py [--sizes 8,12,8,4] [--eps 4] [--instances 12]
                                         [--timeout 20] [--out compare-results/smt-speedups]

Writes a VNN-COMP folder of robustness instances (random fixed-point MLPs of ``--sizes`` from
``qnn_plugin.onnx_builders``, 8-bit inputs, a random centre per instance, the predicted class,
L-inf radius ``--eps`` codes; seeded, so the same folder every run) and runs
``scripts/compare_engines.py`` on it with the reference ``smt`` (every speed-up on) against
``smt-no-dead-branches``, ``smt-fixed-width``, ``smt-chain-sums``, ``smt-plain`` (all off),
``smt-z3`` and the plugin's verifier. The networks are small enough that the solver has to
search (the interval bounds alone decide few of them) and still finishes within the timeout.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

CONFIGS = "smt,smt-no-dead-branches,smt-fixed-width,smt-chain-sums,smt-plain,smt-z3,plugin"


def write_folder(folder: Path, sizes, eps: int, n: int, timeout: float, seed: int = 0) -> None:
    import onnxruntime as ort

    from qnn_plugin import onnx_builders as ob
    from qnn_plugin.benchmarks import robustness_vnnlib

    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    (folder / "vnnlib").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        built = ob.random_fixed_point_mlp(rng, sizes=sizes)
        onnx_rel, vnnlib_rel = f"onnx/net_{i}.onnx", f"vnnlib/prop_{i}_eps{eps}.vnnlib"
        (folder / onnx_rel).write_bytes(built.model.SerializeToString())
        px = rng.integers(0, 256, size=sizes[0])
        sess = ort.InferenceSession(str(folder / onnx_rel), providers=["CPUExecutionProvider"])
        label = int(sess.run(None, {sess.get_inputs()[0].name: (px / 256).astype(np.float32)[None]})[0].argmax())
        (folder / vnnlib_rel).write_text(robustness_vnnlib(px, label, sizes[-1], eps))
        rows.append(f"{onnx_rel},{vnnlib_rel},{timeout:g}")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="8,12,8,4", help="layer widths, input first (default 8,12,8,4)")
    p.add_argument("--eps", type=int, default=4, help="L-inf radius in input codes (default 4)")
    p.add_argument("--instances", type=int, default=12)
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("--configs", default=CONFIGS)
    p.add_argument("--out", default="compare-results/smt-speedups")
    args = p.parse_args(argv)
    try:
        sizes = [int(v) for v in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if len(sizes) < 2 or min(sizes) < 1:
        p.error("--sizes needs at least an input and an output width, all positive")
    folder = Path(args.out) / "instances"
    write_folder(folder, sizes, args.eps, args.instances, args.timeout)
    from qnn_plugin import compare

    return compare.main([str(folder), "--configs", args.configs, "--out", args.out, "--no-progress"])


if __name__ == "__main__":
    sys.exit(main())
