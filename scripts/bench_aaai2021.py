#!/usr/bin/env python3
"""The AAAI 2021 QNN verification setting, on the project's own network.

    python scripts/bench_aaai2021.py [--samples 100] [--eps 1,2,3,4] [--timeout 60]
    python scripts/bench_aaai2021.py --write-folder DIR [same options]


Network: vnncomp_benchmarks/qnn_mnist/onnx/mnist_mlp_qat.onnx -- a 784-64-32-10 fixed-point
MLP with 8-bit inputs, 6-bit weights and activations, round half up and power-of-two scales
(the shape and formats of Henzinger, Lechner and Zikelic, AAAI 2021), trained with plain QAT
on the first 8,000 images of the shared MNIST test set (train_models.sh there). Samples: the
first ``--samples`` images of the held-out 2,000. Each sample and eps (L-inf, pixel levels)
is one robustness instance, verified with ``--timeout`` seconds. Misclassified samples are
listed but not verified (their centre already violates the property).

Prints per eps: samples classified correctly, how many the interval bounds at the root certify,
the complete verifier's unsat / sat / timeout counts, and median and maximum time; then the
published anchors for comparison (their network, their machines).

``--write-folder DIR`` verifies nothing: it writes the same instances (correctly classified
samples only) as a VNN-COMP benchmark folder -- DIR/instances.csv, DIR/vnnlib/prop_I_epsE.vnnlib
(I: the sample's index in the held-out images), a copy of the model in DIR/onnx/ -- so that
other tools, and ``scripts/compare_engines.py DIR``, run the same setting.
"""
import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "vnncomp_benchmarks" / "qnn_mnist" / "onnx" / "mnist_mlp_qat.onnx"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(MODEL))
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--eps", default="1,2,3,4")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--device", default=None)
    p.add_argument("--write-folder", metavar="DIR",
                   help="write the instances as a VNN-COMP benchmark folder instead of verifying")
    args = p.parse_args()
    try:
        eps_list = [int(e) for e in args.eps.split(",")]
    except ValueError:
        p.error(f"--eps must be comma-separated integers, got {args.eps!r}")
    if not Path(args.model).is_file():
        p.error(f"--model {args.model}: no such file")

    import onnxruntime as ort

    from qnn_plugin.training.data import load_dataset

    ds = load_dataset("mnist")
    n = min(args.samples, len(ds.y_test))
    pixels = ds.x_test[:n].reshape(n, -1).astype(np.int64)
    labels = ds.y_test[:n]
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    pred = sess.run(None, {sess.get_inputs()[0].name: (pixels / 256).astype(np.float32)})[0].argmax(1)
    correct = pred == labels
    if args.write_folder:
        write_folder(Path(args.write_folder), args.model, pixels, labels, correct, eps_list,
                     args.timeout)
        return

    import torch

    from qnn_plugin.benchmarks import ibp_certified, robustness_vnnlib
    from qnn_plugin.spec import parse_vnnlib
    from qnn_plugin.verifier import verify

    print(f"{args.model}: {int(correct.sum())} of {n} samples classified correctly; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    rows = []
    for eps in eps_list:
        ibp = ibp_certified(args.model, pixels, labels, eps)
        counts, times = dict(unsat=0, sat=0, timeout=0, unknown=0, error=0), []
        t_eps = time.monotonic()
        for i in np.nonzero(correct)[0]:
            spec = parse_vnnlib(robustness_vnnlib(pixels[i], int(labels[i]), 10, eps))
            res = verify(args.model, spec, timeout=args.timeout, device=args.device)
            counts[res.verdict] += 1
            times.append(res.stats.get("time_total", 0.0))
            print(f"  eps {eps} sample {i}: {res.verdict} {times[-1]:.2f} s "
                  f"(boxes {int(res.stats.get('boxes_bounded', 0))}, depth "
                  f"{int(res.stats.get('max_depth', 0))})", file=sys.stderr, flush=True)
        rows.append((eps, int(correct.sum()), int(ibp.sum()), counts, times,
                     time.monotonic() - t_eps))
    print(f"\nAAAI 2021 setting, {n} samples, timeout {args.timeout:g} s\n")
    print("| eps | correct | IBP-certified at the root | unsat | sat | timeout | other | median | max | total |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for eps, ok, ibp, c, t, total in rows:
        print(f"| {eps} | {ok} | {ibp} | {c['unsat']} | {c['sat']} | {c['timeout']} | "
              f"{c['unknown'] + c['error']} | {statistics.median(t):.2f} s | {max(t):.2f} s | "
              f"{total:.0f} s |")
    print("\nPublished on their network: bit-vector SMT (AAAI 2021) timed out on 5, 25 and 43 of 100 "
          "at eps 2, 3, 4; QVIP (integer programming, Gurobi) solved all, median 10-190 ms per eps, "
          "hardest 217 s.")


def write_folder(folder: Path, model: str, pixels, labels, correct, eps_list, timeout: float):
    """The instances as a VNN-COMP folder (the model copied into onnx/, one property per
    correctly classified sample and eps, named by the sample's index)."""
    from qnn_plugin.benchmarks import write_benchmark

    keep = np.nonzero(correct)[0]
    onnx_rel = f"onnx/{Path(model).name}"
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, folder / onnx_rel)
    insts = write_benchmark(folder, [onnx_rel], pixels[keep], labels[keep], 10, eps_list, timeout,
                            comment=f"AAAI 2021 setting (scripts/bench_aaai2021.py), {Path(model).name}, "
                                    "sample = index in the held-out MNIST images",
                            sample_ids=keep)
    skipped = [int(i) for i in np.nonzero(~correct)[0]]
    print(f"{folder}: {len(insts)} instances ({len(keep)} samples x eps {eps_list}, timeout "
          f"{timeout:g} s); misclassified samples left out: {skipped or 'none'}")


if __name__ == "__main__":
    main()
