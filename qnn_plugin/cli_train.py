"""qnn-train: train a QNN with quantization-aware interval bounds (QA-IBP) or plain QAT, export it
to standard ONNX, and write a JSON record of the run.

    qnn-train                                  # digits, 64-32 MLP, QA-IBP at 8 pixel levels
    qnn-train --data mnist --hidden 64,32 --eps 2 --epochs 15 --out mnist.onnx
    qnn-train --kappa 0                        # the plain QAT twin
    qnn-train --conv 8,16 --hidden 32          # a conv QNN (3x3 kernels, stride 2)

eps is in input grid steps (pixel levels of an 8-bit input). The ONNX file is checked against
the torch model with onnxruntime on the whole evaluation set before the command reports success.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch


def _ints(text: str) -> List[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return vals


def _floats(text: str) -> List[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qnn-train",
        description="Train a quantized network with QA-IBP (or plain QAT with --kappa 0) on the "
                    "plugin's own bounds, export it to ONNX and record the run as JSON.")
    d = p.add_argument_group("data")
    d.add_argument("--data", default="digits",
                   help="digits (scikit-learn's 8x8 set, default), mnist (the shared MNIST test "
                        "set, split 8,000 / 2,000), or a folder / .npz file of your own")
    d.add_argument("--n-train", type=int, default=None, help="use only the first N training samples")
    d.add_argument("--n-test", type=int, default=None, help="use only the first N evaluation samples")
    a = p.add_argument_group("architecture")
    a.add_argument("--hidden", type=_ints, default=[64, 32], help="hidden dense widths (default 64,32)")
    a.add_argument("--conv", type=_ints, default=[], help="conv channels before the dense layers "
                   "(3x3 kernels, stride 2, padding 1); default none (an MLP)")
    a.add_argument("--in-bits", type=int, default=8)
    a.add_argument("--in-frac", type=int, default=8, help="input fraction bits (8: pixel p is p/256)")
    a.add_argument("--w-bits", type=int, default=8)
    a.add_argument("--w-frac", type=int, default=7)
    a.add_argument("--act-bits", type=int, default=8)
    a.add_argument("--act-frac", type=int, default=5)
    a.add_argument("--rounding", default="half_even", choices=["half_even", "half_up", "floor"],
                   help="rounding of the input and activation quantizers (QDQ export needs half_even)")
    t = p.add_argument_group("training")
    t.add_argument("--eps", type=float, default=8.0,
                   help="training radius in pixel levels of 1/256 (default 8: half a step of the "
                        "digits set's 17 intensities)")
    t.add_argument("--kappa", type=float, default=0.5, help="final weight of the robust loss; 0 = plain QAT")
    t.add_argument("--method", default="ibp", choices=["ibp", "crown-ibp"])
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--warmup", type=float, default=0.1, help="fraction of steps of plain QAT first")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="qnn.onnx", help="ONNX file to write (default qnn.onnx)")
    o.add_argument("--form", default="qdq", choices=["qdq", "fixed_point"], help="ONNX form")
    o.add_argument("--record", default=None, help="JSON record (default: the ONNX path with .json)")
    o.add_argument("--eval-eps", type=_floats, default=None,
                   help="pixel levels at which to report IBP-certified accuracy (default: 1..eps)")
    o.add_argument("--no-progress", action="store_true")
    return p


def build_model(args, input_shape, n_classes):
    from .training.layers import QNN, QFormat

    fmts = dict(in_fmt=QFormat.fixed(args.in_bits, args.in_frac, False),
                w_fmt=QFormat.fixed(args.w_bits, args.w_frac, True),
                act_fmt=QFormat.fixed(args.act_bits, args.act_frac, False), rounding=args.rounding)
    if args.conv:
        return QNN.conv(input_shape, args.conv, args.hidden, n_classes, **fmts)
    return QNN.mlp(int(np.prod(input_shape)), args.hidden, n_classes, **fmts)


def _flat(x: torch.Tensor, model) -> torch.Tensor:
    return x.reshape((x.shape[0],) + tuple(model.input_shape))


def check_export(model, built, x: torch.Tensor) -> int:
    """Number of evaluation inputs on which onnxruntime's output differs from the torch model's
    (bit for bit)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(built.model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    model = model.cpu().eval()
    bad = 0
    for i in range(0, x.shape[0], 1000):
        xb = x[i:i + 1000]
        with torch.no_grad():
            ref = model(xb).numpy()
        out = sess.run(None, {name: xb.numpy()})[0]
        bad += int((~np.all(out == ref, axis=1)).sum())
    return bad


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import QnnPluginError
    from .training.data import load_dataset, subset
    from .training.export import export_onnx
    from .training.trainer import TrainConfig, evaluate, history_dicts, train

    if args.epochs < 1 or args.batch_size < 1 or args.eps < 0 or args.kappa < 0:
        print("qnn-train: error: epochs and batch size must be positive, eps and kappa >= 0",
              file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    try:
        ds = load_dataset(args.data)
        if args.n_train is not None or args.n_test is not None:
            ds = subset(ds, args.n_train, args.n_test)
        model = build_model(args, ds.input_shape, ds.n_classes).to(args.device)
    except (QnnPluginError, ValueError) as exc:
        print(f"qnn-train: error: {exc}", file=sys.stderr)
        return 2
    scale = model.input_format.scale
    x_tr, y_tr = ds.tensors("train")
    x_te, y_te = ds.tensors("test")
    x_tr, x_te = _flat(x_tr, model), _flat(x_te, model)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      eps=args.eps * scale, kappa=args.kappa, method=args.method,
                      warmup=args.warmup, seed=args.seed)
    kind = "QA-IBP" if args.kappa > 0 and args.eps > 0 else "plain QAT"
    print(f"qnn-train: {kind} on {ds.source}; {sum(p.numel() for p in model.parameters())} "
          f"parameters, {args.epochs} epochs", file=sys.stderr)
    t0 = time.monotonic()
    history = train(model, x_tr, y_tr, cfg, eval_data=(x_te, y_te), progress=not args.no_progress)
    train_s = time.monotonic() - t0
    eval_eps = args.eval_eps or [float(k) for k in range(1, int(max(args.eps, 1)) + 1)]
    model.eval()
    final = evaluate(model.cpu(), x_te, y_te, [e * scale for e in eval_eps], "ibp")
    final = {"acc": final["acc"], **{f"ibp_cert@{e:g}px": final[f"cert@{e * scale:g}"]
                                     for e in eval_eps if e > 0}}
    try:
        built = export_onnx(model, args.out, args.form)
    except QnnPluginError as exc:
        print(f"qnn-train: error: {exc}", file=sys.stderr)
        return 2
    mismatches = check_export(model, built, x_te)
    data = Path(args.out).read_bytes()
    record = dict(
        command="qnn-train " + " ".join(sys.argv[1:] if argv is None else argv),
        dataset=dict(spec=args.data, source=ds.source, n_train=int(x_tr.shape[0]),
                     n_test=int(x_te.shape[0]), input_shape=list(ds.input_shape),
                     n_classes=ds.n_classes),
        model=dict(repr=repr(model), conv=args.conv, hidden=args.hidden, rounding=args.rounding,
                   in_bits=args.in_bits, in_frac=args.in_frac, w_bits=args.w_bits,
                   w_frac=args.w_frac, act_bits=args.act_bits, act_frac=args.act_frac),
        training=dict(kind=kind, eps_px=args.eps, **{k: v for k, v in vars(cfg).items()}),
        history=history_dicts(history), final_test=final, train_seconds=round(train_s, 2),
        onnx=dict(path=str(args.out), form=args.form, sha256=hashlib.sha256(data).hexdigest(),
                  accumulator_bound=built.info["accumulator_bound"],
                  exact_float32=built.info["exact_float32"],
                  onnxruntime_mismatches=mismatches, checked_inputs=int(x_te.shape[0])),
        environment=dict(python=platform.python_version(), torch=torch.__version__,
                         machine=platform.machine(), device=args.device))
    rec_path = Path(args.record) if args.record else Path(args.out).with_suffix(".json")
    rec_path.write_text(json.dumps(record, indent=2) + "\n")
    summary = ", ".join(f"{k} {v:.3f}" for k, v in final.items())
    print(f"qnn-train: {summary}; wrote {args.out} ({args.form}) and {rec_path} "
          f"({train_s:.0f} s)", file=sys.stderr)
    if mismatches:
        print(f"qnn-train: error: onnxruntime disagrees with the torch model on {mismatches} of "
              f"{x_te.shape[0]} evaluation inputs (accumulator bound "
              f"{built.info['accumulator_bound']:.0f}; exact below 2**24)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
