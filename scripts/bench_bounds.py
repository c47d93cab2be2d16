"""Throughput of IBP / CROWN / alpha-CROWN bounds against plain forward passes, in boxes per second.

    python scripts/bench_bounds.py [--batches 1,16,256,1024,4096] [--models mlp,conv]
        [--methods ibp,crown,alpha-crown] [--repeats N] [--threads T] [--device cpu|cuda]
        [--alpha-max-batch B] [--max-call-s S] [--quick]

Boxes are L-inf balls of radius 2 input grid steps around random grid points, clipped to the
input range. Every timing is the median over at least ``--repeats`` runs (and at least
``--min-time`` seconds) after one warm-up call. The warm-up's bounds must contain the model's
outputs at the grid points, so an unsound bound cannot report a fast time.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

import qnn_plugin as qp
from qnn_plugin import onnx_builders as B

METHOD_TITLES = {"ibp": "IBP", "crown": "CROWN", "alpha-crown": "alpha-CROWN"}
EPS_STEPS = 2


def _pow2(x: float) -> float:
    return float(2.0 ** math.ceil(math.log2(x)))


def strided_conv_qnn(rng: np.random.Generator, input_shape=(1, 28, 28), channels=(4, 8),
                     kernel: int = 3, stride: int = 2, n_out: int = 10) -> B.BuiltModel:
    """MNIST-sized QOperator conv QNN (uint8 activations, power-of-two scales, conv biases put
    each channel's threshold at its median) calibrated on random grid inputs.

    Built here because ``random_qoperator_conv``/``random_qdq_conv`` calibrate at stride 1 only,
    and unstrided 28x28 convolutions make matrix-mode CROWN infeasible at large batch.
    """
    w_scale, s_in = 2.0 ** -7, 2.0 ** -8                 # s_in: the input scale, codes 0..255
    h = torch.tensor(rng.integers(0, 256, (256, *input_shape)) * s_in)
    cws, cbs, act_scales = [], [], []
    for c in channels:
        s_b = (act_scales[-1] if act_scales else s_in) * w_scale  # scale of the int32 bias codes
        w = rng.integers(-64, 65, (c, h.shape[1], kernel, kernel))
        pre = F.conv2d(h, torch.tensor(w * w_scale), stride=stride)
        b = np.round(-pre.transpose(0, 1).flatten(1).median(dim=1).values.numpy() / s_b)
        z = torch.relu(pre + torch.tensor(b * s_b).view(-1, 1, 1))
        s = _pow2(float(np.quantile(z.numpy(), 0.95)) / 255)
        h = (z / s).round().clamp(0, 255) * s
        cws.append(w)
        cbs.append(b.astype(np.int64))
        act_scales.append(s)
    wd = rng.integers(-64, 65, (h[0].numel(), n_out))
    out_scale = _pow2(float((h.flatten(1) @ torch.tensor(wd * w_scale)).abs().max()) / 127)
    return B.qoperator_conv(input_shape, cws, [w_scale] * len(cws), [wd], [w_scale],
                            act_scales, out_scale, cbs, strides=stride, input_scale=s_in)


def build_model(name: str, rng: np.random.Generator) -> tuple[B.BuiltModel, str]:
    """The benchmark model ``name`` (mlp or conv) and a one-line description."""
    if name == "mlp":
        return (B.random_fixed_point_mlp(rng, sizes=(784, 64, 32, 10)),
                "fixed-point MLP 784-64-32-10 (8-bit inputs, 6-bit weights/activations)")
    if name == "conv":
        return (strided_conv_qnn(rng),
                "QOperator conv 1x28x28 -> 4x13x13 -> 8x6x6 (3x3, stride 2) -> 10 (uint8)")
    raise ValueError(f"unknown model {name!r}; expected mlp or conv")


def make_boxes(built: B.BuiltModel, rng: np.random.Generator, batch: int, device):
    """``batch`` random grid points and the boxes of radius EPS_STEPS grid steps around them."""
    x = torch.tensor(built.random_inputs(rng, batch), device=device)
    eps = EPS_STEPS * built.input_scale
    lo_in = (built.input_qmin - built.input_zero_point) * built.input_scale
    hi_in = (built.input_qmax - built.input_zero_point) * built.input_scale
    return x, (x - eps).clamp(min=lo_in), (x + eps).clamp(max=hi_in)


def time_call(fn, device, repeats: int, min_time: float):
    """(median wall time of ``fn()``, result of ``fn()``): one warm-up call, whose result is
    returned, then at least ``repeats`` timed runs and at least ``min_time`` seconds of them."""
    def timed():
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0, out

    out = timed()[1]
    times = []
    while len(times) < repeats or sum(times) < min_time:
        times.append(timed()[0])
    return statistics.median(times), out


def assert_sound(method: str, bounds, y) -> None:
    """The bounds of ``method`` must contain the forward outputs ``y`` (at points in the boxes)."""
    lb, ub = bounds
    tol = 1e-5 * (1 + y.abs())
    bad = int(((lb > y + tol) | (ub < y - tol)).sum())
    assert bad == 0, f"{method}: bounds miss {bad} of {y.numel()} forward outputs"


def bench_model(name: str, args, rng: np.random.Generator) -> list[dict]:
    """One row per batch size: boxes/s of the forward pass and of each bound method, or the
    reason it was skipped (a string)."""
    built, desc = build_model(name, rng)
    net = qp.load_onnx(built.model).to(args.device).eval()
    print(f"\nmodel {name}: {desc}", flush=True)
    steps = args.alpha_iterations
    opts = {"optimize_bound_args": {"iteration": steps}} if steps else None
    bm = qp.bounded(net, make_boxes(built, rng, 1, args.device)[0], bound_opts=opts)  # all batches
    rows, last = [], {}  # last: method -> (batch, seconds per call) of its last run
    for batch in args.batches:
        x, lower, upper = make_boxes(built, rng, batch, args.device)

        def forward():
            with torch.no_grad():
                return net(x)

        t, y = time_call(forward, args.device, args.repeats, args.min_time)
        row = {"batch": batch, "forward": batch / t}
        for m in args.methods:
            estimate = last[m][1] * batch / last[m][0] if m in last else 0.0
            if m == "alpha-crown" and batch > args.alpha_max_batch:
                row[m] = "-"
            elif estimate > args.max_call_s:
                row[m] = f"- (~{estimate:,.0f} s)"
            else:
                t, bounds = time_call(lambda: qp.compute_bounds(bm, lower, upper, m),
                                      args.device, args.repeats, args.min_time)
                assert_sound(m, bounds, y)
                row[m], last[m] = batch / t, (batch, t)
        rows.append(row)
        print("  " + "  ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in row.items()), flush=True)
    return rows


def _ratio(r: float) -> str:
    return f"{r:.2f}x" if r >= 1 else f"1/{1 / r:.1f}"


def format_table(rows: list[dict], methods: list[str]) -> str:
    """Markdown table: batch | forward boxes/s | each method's boxes/s (ratio to forward)."""
    head = ["batch", "forward boxes/s"] + [f"{METHOD_TITLES[m]} boxes/s (vs fwd)" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for r in rows:
        cells = [str(r["batch"]), f"{r['forward']:,.0f}"]
        cells += [r[m] if isinstance(r[m], str) else f"{r[m]:,.1f} ({_ratio(r[m] / r['forward'])})"
                  for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_report(rows: list[dict], methods: list[str]) -> list[str]:
    """The project's targets, at the largest batch each method ran: IBP >= 1/3 and CROWN
    >= 1/100 of the forward pass's boxes/s."""
    out = []
    for m, target in (("ibp", 3), ("crown", 100)):
        ran = [r for r in rows if m in methods and not isinstance(r[m], str)]
        if ran:
            r = ran[-1]
            ratio = r[m] / r["forward"]
            out.append(f"target {METHOD_TITLES[m]} >= 1/{target} of forward: "
                       f"{'met' if ratio >= 1 / target else 'MISSED'} at batch {r['batch']} "
                       f"({_ratio(ratio)})")
    return out


def machine_line(device: torch.device) -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        cpu += f"; GPU {torch.cuda.get_device_name(device)}"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"machine: {cpu} ({os.cpu_count()} cores, load average {load}), torch threads "
            f"{torch.get_num_threads()}, torch {torch.__version__}, device {device}")


def code_line() -> str:
    """qnn_plugin's version and, in a git checkout, its commit (+ "dirty" with local changes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(qp.__file__)))
    try:
        rev = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "no git"
    return f"code: qnn_plugin {qp.__version__} ({rev})"


def parse_args(argv=None) -> argparse.Namespace:
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    words = lambda s: [v.strip() for v in s.split(",") if v.strip()]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=ints, default=[1, 16, 256, 1024, 4096])
    p.add_argument("--models", type=words, default=["mlp", "conv"])
    p.add_argument("--methods", type=words, default=["ibp", "crown", "alpha-crown"])
    p.add_argument("--repeats", type=int, default=1, help="minimum timed runs per entry")
    p.add_argument("--min-time", type=float, default=0.5, help="minimum timed seconds per entry")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--alpha-max-batch", type=int, default=256,
                   help="skip alpha-CROWN above this batch size")
    p.add_argument("--alpha-iterations", type=int, default=None,
                   help="alpha-CROWN optimisation steps (default: qnn_plugin's)")
    p.add_argument("--max-call-s", type=float, default=30.0,
                   help="skip a method at a batch if one call would take longer, extrapolated "
                        "linearly from its previous batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: batches 1,64, one run each, "
                   "alpha-CROWN at batch 1 with 2 steps, calls over ~5 s skipped")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.repeats, args.min_time = [1, 64], 1, 0.0
        args.alpha_max_batch, args.alpha_iterations, args.max_call_s = 1, 2, 5.0
    bad = [m for m in args.methods if m not in METHOD_TITLES]
    if bad:
        p.error(f"unknown methods {bad}; expected some of {list(METHOD_TITLES)}")
    args.device = torch.device(args.device)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    print(machine_line(args.device))
    print(code_line())
    print(f"boxes: L-inf radius {EPS_STEPS} input grid steps around random grid points, clipped; "
          f"median of >= {args.repeats} runs and >= {args.min_time} s after a warm-up whose "
          f"bounds are checked to contain the forward outputs")
    print(f"'-': alpha-CROWN skipped above batch {args.alpha_max_batch}; '- (~N s)': skipped, "
          f"one call extrapolated to N s > --max-call-s {args.max_call_s:g}", flush=True)
    tables = []
    for name in args.models:
        rows = bench_model(name, args, rng)
        tables.append("\n".join([f"\n{name}", format_table(rows, args.methods)]
                                + target_report(rows, args.methods)))
    print("\n".join(tables))


if __name__ == "__main__":
    main()
