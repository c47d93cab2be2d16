"""Command-line entry points.

qnn-bound: load an ONNX (Q)NN, bound its outputs over L-inf boxes with IBP, CROWN and
alpha-CROWN, check the bounds against sampled points, and print a table. Without a model it
builds the AAAI 2021-shaped demo (784-64-32-10 fixed-point MLP, random weights).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

METHODS = ("ibp", "crown", "alpha-crown")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qnn-bound",
        description="Bound an ONNX (quantized) network's outputs over L-inf boxes with IBP, CROWN "
                    "and alpha-CROWN, and spot-check the bounds on sampled points.")
    p.add_argument("model", nargs="?", help="ONNX model (default: a 784-64-32-10 fixed-point demo QNN)")
    p.add_argument("--eps", type=float, default=None,
                   help="box radius in input units (default: 2 input grid steps for the demo, 0.01 otherwise)")
    p.add_argument("--boxes", type=int, default=8, help="number of boxes, bounded as one batch (default 8)")
    p.add_argument("--low", type=float, default=0.0, help="box centres are drawn uniformly in [low, high]")
    p.add_argument("--high", type=float, default=1.0)
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--samples", type=int, default=256, help="sampled points per box for the soundness check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    return p


def _demo_model(rng: np.random.Generator, folder: Path):
    from . import onnx_builders

    built = onnx_builders.random_fixed_point_mlp(rng, sizes=(784, 64, 32, 10), float_logits=True)
    path = folder / "demo_fixed_point_784_64_32_10.onnx"
    path.write_bytes(built.model.SerializeToString())
    return path, built


def _boxes(net, built, args, rng):
    shape = (args.boxes, *[d or 1 for d in net.input_shape])
    if built is not None:
        centre = torch.tensor(built.random_inputs(rng, args.boxes))
        eps = args.eps if args.eps is not None else 2 * built.input_scale
    else:
        centre = torch.tensor(rng.uniform(args.low, args.high, shape), dtype=torch.float32)
        eps = args.eps if args.eps is not None else 0.01
    return centre - eps, centre + eps, eps


def bound_main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"qnn-bound: error: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}",
              file=sys.stderr)
        return 2
    import qnn_plugin as qp

    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        built = None
        path = args.model
        if path is None:
            path, built = _demo_model(rng, Path(tmp))
        try:
            net = qp.load_onnx(path).to(args.device)
        except qp.QnnPluginError as exc:
            print(f"qnn-bound: error: {exc}", file=sys.stderr)
            return 2
        lower, upper, eps = _boxes(net, built, args, rng)
        lower, upper = lower.to(args.device), upper.to(args.device)
        print(f"model: {path if args.model else 'demo 784-64-32-10 fixed-point MLP (random weights)'}")
        print(f"boxes: {args.boxes} L-inf boxes of radius {eps:g}, device {args.device}, "
              f"torch threads {torch.get_num_threads()}")
        bm = qp.bounded(net, lower)
        qp.widen_for_float_error(bm, lower, upper)
        samples = _samples(net, built, lower, upper, args.samples, rng)
        print(f"{'method':<12} {'seconds':>8} {'mean width':>11} {'max width':>10}  sound on samples")
        ok = True
        for method in methods:
            t0 = time.perf_counter()
            lb, ub = qp.compute_bounds(bm, lower, upper, method)
            dt = time.perf_counter() - t0
            width = (ub - lb).detach()
            sound = bool(torch.all(lb <= samples.min(0).values + 1e-5) and torch.all(ub >= samples.max(0).values - 1e-5))
            ok &= sound
            print(f"{method:<12} {dt:8.3f} {width.mean().item():11.4f} {width.max().item():10.4f}  "
                  f"{'yes' if sound else 'NO -- please report this bug'}")
    return 0 if ok else 1


def _samples(net, built, lower, upper, n, rng):
    """Outputs on random points of each box (grid points when the input grid is known)."""
    lo, hi = lower.cpu().numpy(), upper.cpu().numpy()
    pts = rng.uniform(lo, hi, (n, *lo.shape)).astype(np.float32)
    pts[0], pts[-1] = lo, hi
    if built is not None and built.has_input_grid:  # snap inside the box to grid values
        s, z = built.input_scale, built.input_zero_point
        snapped = ((np.round(pts / s) + z).clip(built.input_qmin, built.input_qmax) - z) * s
        pts = np.clip(snapped, lo, hi).astype(np.float32)
    with torch.no_grad():
        return torch.stack([net(torch.tensor(p, device=lower.device)) for p in pts])


if __name__ == "__main__":
    sys.exit(bound_main())
