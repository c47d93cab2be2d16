#!/usr/bin/env python3
"""The QA-IBP report: a plain-QAT QNN and its QA-IBP twin, side by side, per eps.

    python scripts/qaibp_report.py                       # the committed qnn_digits twins
    python scripts/qaibp_report.py --train --epochs 20   # train both twins first (qnn-train)
    python scripts/qaibp_report.py --models a.onnx b.onnx --data mnist

For each model and eps (pixel levels of 1/256), over the first ``--samples`` evaluation samples:
accuracy; IBP-certified accuracy (interval bounds on the exported ONNX model with the final
affine layers folded into the margins, ``qnn_plugin.bounded.margin_ibp``: the bound the QA-IBP
loss trains, checked equal to it by the tests); and the complete verifier's verified /
falsified / timeout counts (a misclassified sample counts as falsified: its own centre violates
the property). Prints a markdown table and saves a PNG of certified accuracy against eps.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "vnncomp_benchmarks" / "qnn_digits" / "onnx"


def _args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs=2, metavar=("QAT", "QAIBP"),
                   default=[str(DIGITS / "digits_qat.onnx"), str(DIGITS / "digits_qaibp.onnx")])
    p.add_argument("--data", default="digits")
    p.add_argument("--train", action="store_true", help="train both twins with qnn-train first")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--train-eps", type=float, default=8.0, help="QA-IBP training radius, pixel levels")
    p.add_argument("--hidden", default="64,32")
    p.add_argument("--out-dir", default="qaibp_report", help="trained models, PNG (default ./qaibp_report)")
    p.add_argument("--eps", default="1,2,4,8,16", help="pixel levels to report")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--timeout", type=float, default=10.0, help="complete verifier, per instance")
    return p.parse_args()


def _train(args, out_dir: Path):
    paths = []
    for name, kappa in (("qat", 0), ("qaibp", 0.5)):
        path = out_dir / f"{args.data}_{name}.onnx"
        cmd = [sys.executable, "-m", "qnn_plugin.cli_train", "--data", args.data, "--hidden",
               args.hidden, "--epochs", str(args.epochs), "--eps", str(args.train_eps),
               "--kappa", str(kappa), "--out", str(path), "--no-progress"]
        print("$", " ".join(cmd[2:]), file=sys.stderr)
        subprocess.run(cmd, check=True)
        paths.append(str(path))
    return paths


def _verify_counts(path, pixels, labels, correct, eps, timeout, n_classes):
    from qnn_plugin.benchmarks import verify_robustness

    counts = dict(verified=0, falsified=int((~correct).sum()), timeout=0, other=0)
    times = []
    for p, y in zip(pixels[correct], labels[correct]):
        res = verify_robustness(path, p, int(y), n_classes, int(eps), timeout)
        times.append(res.stats.get("time_total", 0.0))
        key = {"unsat": "verified", "sat": "falsified", "timeout": "timeout"}.get(res.verdict, "other")
        counts[key] += 1
    counts["median_s"] = float(np.median(times)) if times else 0.0
    return counts


def main():
    args = _args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = _train(args, out_dir) if args.train else args.models
    for p in paths:
        if not Path(p).exists():
            sys.exit(f"qaibp_report: {p} not found (use --train, or vnncomp_benchmarks/qnn_digits/"
                     f"train_models.sh)")
    import onnxruntime as ort
    from qnn_plugin.benchmarks import ibp_certified
    from qnn_plugin.training.data import load_dataset

    ds = load_dataset(args.data)
    n = min(args.samples, len(ds.y_test))
    pixels = ds.x_test[:n].reshape(n, -1).astype(np.int64)
    labels = ds.y_test[:n]
    eps_list = [float(e) for e in args.eps.split(",")]
    rows, curves = [], {}
    for name, path in zip(("plain QAT", "QA-IBP"), paths):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        shape = tuple(int(d) for d in sess.get_inputs()[0].shape[1:])
        feed = (pixels / 256).astype(np.float32).reshape((n,) + shape)
        logits = sess.run(None, {sess.get_inputs()[0].name: feed})[0]
        correct = logits.argmax(1) == labels
        curves[name] = {"ibp": [], "complete": []}
        for eps in eps_list:
            ibp = ibp_certified(path, pixels.reshape((n,) + shape), labels, eps)
            c = _verify_counts(path, pixels, labels, correct, eps, args.timeout, ds.n_classes)
            rows.append((name, eps, correct.mean(), ibp.mean(), c))
            curves[name]["ibp"].append(ibp.mean())
            curves[name]["complete"].append(c["verified"] / n)
            print(f"  {name} eps {eps:g}: {c}", file=sys.stderr, flush=True)
    print(f"\n{args.data}, first {n} evaluation samples, complete verifier timeout {args.timeout:g} s\n")
    print("| model | eps (px) | accuracy | IBP-certified | verified | falsified | timeout | median time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, eps, acc, ibp, c in rows:
        print(f"| {name} | {eps:g} | {acc:.3f} | {ibp:.3f} | {c['verified']} | {c['falsified']} | "
              f"{c['timeout'] + c['other']} | {c['median_s']:.2f} s |")
    png = out_dir / f"{args.data}_certified_vs_eps.png"
    _plot(curves, eps_list, png, f"{args.data}: certified accuracy ({n} samples)")
    print(f"\nplot: {png}")


def _plot(curves, eps_list, png, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for (name, c), colour in zip(curves.items(), ("tab:grey", "tab:blue")):
        ax.plot(eps_list, c["complete"], "-o", color=colour, label=f"{name}: complete verifier")
        ax.plot(eps_list, c["ibp"], "--s", color=colour, label=f"{name}: IBP bound")
    ax.set_xlabel("eps (pixel levels of 1/256)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main()
