#!/usr/bin/env python3
"""Binarized networks on MNIST: the complete verifier with and without its integer program.

    python scripts/bench_bnn.py [--samples 25] [--eps 1,2,4] [--timeout 30] [--hidden 100,100]
                                [--compare-search] [--float-input] [--save-model PATH]
    python scripts/bench_bnn.py --write-folder DIR [same options]

Network: a binarized MLP trained here (straight-through estimators, a few seconds on a CPU) on
the first 8,000 images of the shared MNIST test set, exported with ``onnx_builders.sign_mlp``:
8-bit input codes (QuantizeLinear, scale 1/256), weights in {-1, +1}, ONNX Sign activations,
float32 hidden biases (each Sign's threshold, batch normalisation folded in) and output
biases on a 1/4096 grid (exact sums). With ``--float-input`` the same network has no input
quantizer: the pixels p / 256 enter as floats and the box is continuous (the verifier then runs
its float program, ``milp.py``, beside the search instead of the exact integer one). Samples:
the first ``--samples`` correctly classified images of the held-out 2,000; L-inf robustness at
``--eps`` pixel levels.

``--write-folder DIR`` verifies nothing: it writes the same instances as a VNN-COMP folder
(the model in DIR/onnx/, one property per sample and eps), e.g. for
``scripts/bench_intprog.py DIR --compare union``.

Prints per eps the verifier's unsat / sat / timeout counts with median and maximum time; with
``--compare-search`` also the search alone (``verify(..., milp=False)``: input splitting and
no program, which is what the verifier did for Sign networks before it ran the exact integer
program beside the search), each instance run both ways in the same process.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def train_bnn(x: np.ndarray, y: np.ndarray, hidden, epochs: int = 12, seed: int = 0):
    """(weights in {-1, +1}, float biases, predict) of a binarized MLP trained on pixel levels
    ``x`` (N, D) with labels ``y``: hidden layers Sign(h W + b), output h W + b (b on a 1/4096
    grid: exact sums); ``predict(x)`` gives the trained network's labels (batch normalisation unfolded)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class SignSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return torch.sign(v)

        @staticmethod
        def backward(ctx, g):
            (v,) = ctx.saved_tensors
            return g * (v.abs() <= 1).to(g.dtype)

    n_classes = int(y.max()) + 1
    dims = [x.shape[1], *hidden, n_classes]
    latent = nn.ParameterList([nn.Parameter(torch.randn(a, b) * 0.1) for a, b in zip(dims, dims[1:])])
    norms = nn.ModuleList([nn.BatchNorm1d(b) for b in dims[1:-1]])
    out_bias = nn.Parameter(torch.zeros(n_classes))
    log_temp = nn.Parameter(torch.tensor(-2.0))   # logits scale, kept positive (argmax unchanged)
    params = list(latent) + list(norms.parameters()) + [out_bias, log_temp]
    opt = torch.optim.Adam(params, lr=5e-3)
    xt = torch.as_tensor(x, dtype=torch.float32) / 256
    yt = torch.as_tensor(y, dtype=torch.int64)

    def forward(h):
        for i, w in enumerate(latent):
            pre = h @ SignSTE.apply(w)
            if i == len(latent) - 1:
                return log_temp.exp() * (pre + out_bias)
            h = SignSTE.apply(norms[i](pre))

    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(128):
            loss = nn.functional.cross_entropy(forward(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    # fold each batch normalisation into its Sign: sign(g (v - m) / s + beta) = sign(v - t)
    # with t = m - beta s / g for g > 0; for g < 0 the column's weights and bias change sign
    ws, bs = [], []
    with torch.no_grad():
        for i, w in enumerate(latent):
            wb = torch.sign(w).double()
            wb[wb == 0] = 1
            if i < len(norms):
                bn = norms[i]
                s = torch.sqrt(bn.running_var.double() + bn.eps)
                g, beta, m = bn.weight.double(), bn.bias.double(), bn.running_mean.double()
                t = m - beta * s / torch.where(g == 0, torch.full_like(g, 1e-12), g)
                flip = torch.where(g < 0, -1.0, 1.0).double()
                ws.append((wb * flip).numpy())
                bs.append((-t * flip).numpy())
            else:
                ws.append(wb.numpy())
                bs.append((torch.round(out_bias.double() * 4096) / 4096).numpy())
    norms.eval()

    def predict(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return forward(torch.as_tensor(pixels, dtype=torch.float32) / 256).argmax(1).numpy()

    return ws, bs, predict


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=25)
    p.add_argument("--eps", default="1,2,4")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--hidden", default="100,100")
    p.add_argument("--compare-search", action="store_true")
    p.add_argument("--float-input", action="store_true",
                   help="no input quantizer: a float input and a continuous box")
    p.add_argument("--save-model", metavar="PATH")
    p.add_argument("--write-folder", metavar="DIR", type=Path,
                   help="write the instances as a VNN-COMP folder instead of verifying them")
    args = p.parse_args()
    try:
        eps_list = [int(e) for e in args.eps.split(",")]
        hidden = [int(h) for h in args.hidden.split(",")]
    except ValueError:
        p.error("--eps and --hidden take comma-separated integers")

    import tempfile

    import onnxruntime as ort
    import torch

    from qnn_plugin import onnx_builders as ob
    from qnn_plugin.benchmarks import robustness_vnnlib
    from qnn_plugin.spec import parse_vnnlib
    from qnn_plugin.training.data import load_dataset
    from qnn_plugin.verifier import verify

    ds = load_dataset("mnist")
    x_tr = ds.x_train.reshape(len(ds.y_train), -1).astype(np.int64)
    t0 = time.monotonic()
    ws, bs, _ = train_bnn(x_tr, ds.y_train, hidden)
    built = ob.sign_mlp(ws, bs, input_scale=None if args.float_input else 2.0 ** -8)
    path = args.save_model or str(Path(tempfile.mkdtemp()) / "bnn_mnist.onnx")
    Path(path).write_bytes(built.model.SerializeToString())
    pixels = ds.x_test.reshape(len(ds.y_test), -1).astype(np.int64)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    pred = sess.run(None, {sess.get_inputs()[0].name: (pixels / 256).astype(np.float32)})[0].argmax(1)
    correct = pred == ds.y_test
    print(f"{path}: 784-{'-'.join(map(str, hidden))}-10 BNN trained in "
          f"{time.monotonic() - t0:.0f} s, held-out accuracy {correct.mean():.3f} "
          f"({len(correct)} images); torch {torch.__version__}, {torch.get_num_threads()} threads",
          file=sys.stderr)
    picked = np.nonzero(correct)[0][:args.samples]
    if args.write_folder:
        from qnn_plugin.benchmarks import write_benchmark

        (args.write_folder / "onnx").mkdir(parents=True, exist_ok=True)
        Path(args.write_folder / "onnx" / "bnn_mnist.onnx").write_bytes(built.model.SerializeToString())
        insts = write_benchmark(args.write_folder, ["onnx/bnn_mnist.onnx"], pixels[picked],
                                ds.y_test[picked], 10, eps_list, args.timeout,
                                comment="binarized MLP (scripts/bench_bnn.py), sample = index in "
                                        "the held-out MNIST images", sample_ids=picked)
        print(f"{args.write_folder}: {len(insts)} instances ({len(picked)} samples x eps {eps_list})")
        return
    modes = [("program", True)] + ([("search alone", False)] if args.compare_search else [])
    rows = []
    for eps in eps_list:
        for name, milp in modes:
            counts, times = dict(unsat=0, sat=0, timeout=0, unknown=0, error=0), []
            for i in picked:
                spec = parse_vnnlib(robustness_vnnlib(pixels[i], int(ds.y_test[i]), 10, eps))
                res = verify(path, spec, timeout=args.timeout, milp=milp)
                counts[res.verdict] += 1
                times.append(res.stats.get("time_total", 0.0))
                print(f"  eps {eps} sample {i} ({name}): {res.verdict} {times[-1]:.2f} s",
                      file=sys.stderr, flush=True)
            rows.append((eps, name, counts, times))
    print(f"\nBNN on MNIST ({'float' if args.float_input else '8-bit'} input), {len(picked)} "
          f"samples, timeout {args.timeout:g} s\n")
    print("| eps | verifier | unsat | sat | timeout | other | median | max |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for eps, name, c, t in rows:
        print(f"| {eps} | {name} | {c['unsat']} | {c['sat']} | {c['timeout']} | "
              f"{c['unknown'] + c['error']} | {statistics.median(t):.2f} s | {max(t):.2f} s |")


if __name__ == "__main__":
    main()
