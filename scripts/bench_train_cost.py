#!/usr/bin/env python3
"""Cost of one QA-IBP training step against one plain QAT step, same model and batch.

    python scripts/bench_train_cost.py [--repeats 30] [--device cpu]

A step is forward, loss, backward and AdamW update. QAT: cross-entropy of the clean logits.
QA-IBP: the same plus the interval-bound hinge through the plugin's auto_LiRPA BoundedModule
(RobustLoss, method ibp, and crown-ibp as a second row). Times are medians over ``--repeats``
steps after warm-up, in one process; the table prints each ratio to QAT.
"""
import argparse
import statistics
import time

import torch

from qnn_plugin.training.layers import QNN, QFormat
from qnn_plugin.training.loss import RobustLoss

FMT = dict(in_fmt=QFormat.fixed(8, 8, False), w_fmt=QFormat.fixed(8, 7, True),
           act_fmt=QFormat.fixed(8, 5, False))
MODELS = {
    "digits MLP 64-64-32-10, batch 64": (lambda: QNN.mlp(64, [64, 32], 10, **FMT), (64,), 64),
    "MNIST MLP 784-64-32-10, batch 256": (lambda: QNN.mlp(784, [64, 32], 10, **FMT), (784,), 256),
    "MNIST MLP 784-256-256-10, batch 256": (lambda: QNN.mlp(784, [256, 256], 10, **FMT), (784,), 256),
    "MNIST conv 8-16 + 32, batch 128": (lambda: QNN.conv((1, 28, 28), [8, 16], [32], 10, **FMT),
                                        (1, 28, 28), 128),
}


def _median_step(step, repeats):
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads")
    print("| model, batch | QAT step | QA-IBP (ibp) step | ratio | QA-IBP (crown-ibp) step | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (make, shape, batch) in MODELS.items():
        torch.manual_seed(0)
        model = make().to(args.device)
        x = (torch.randint(0, 256, (batch,) + shape).float() / 256).to(args.device)
        y = torch.randint(0, 10, (batch,)).to(args.device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def qat():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def robust(loss_fn):
            def step():
                terms = loss_fn(x, y, 2 / 256, 0.5)
                opt.zero_grad(set_to_none=True)
                terms.loss.backward()
                opt.step()
            return step

        base = _median_step(qat, args.repeats)
        row = [f"{base * 1e3:.2f} ms"]
        for method in ("ibp", "crown-ibp"):
            t = _median_step(robust(RobustLoss(model, method=method)), args.repeats)
            row += [f"{t * 1e3:.2f} ms", f"{t / base:.1f}x"]
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
