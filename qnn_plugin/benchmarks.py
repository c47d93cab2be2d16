"""Writing VNN-COMP benchmark folders: robustness properties on the input grid, instances.csv.

A robustness property of sample x (pixel levels p, label y) at eps pixel levels: the input box
is every grid point within eps levels of p, clipped to 0..255, written as real values p/256
(exact in decimal and in float32, so the box ends on grid points and never on a rounding tie);
the unsafe set is "some other class scores at least as high as y" (``Y_j >= Y_y``), the usual
VNN-COMP form. Such an instance is ``unsat`` exactly when the quantized network classifies every
grid point of the box as y with a strict margin.

The ``generate_properties.py SEED`` scripts in ``vnncomp_benchmarks/`` call ``write_benchmark``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

PIXEL_SCALE = 2.0 ** -8  # pixel level p <-> real input p / 256


def robustness_vnnlib(pixels: np.ndarray, label: int, n_classes: int, eps: int,
                      comment: str = "") -> str:
    """VNN-LIB 1.0 text for the L-inf ball of ``eps`` pixel levels around ``pixels`` (uint8,
    flattened in C order as the model's input)."""
    p = np.asarray(pixels, dtype=np.int64).reshape(-1)
    if p.min() < 0 or p.max() > 255:
        raise ValueError("pixel levels must be in 0..255")
    if not 0 <= int(label) < int(n_classes):
        raise ValueError(f"label {label} outside 0..{n_classes - 1}")
    lo, hi = np.clip(p - int(eps), 0, 255), np.clip(p + int(eps), 0, 255)
    lines = [f"; {line}" for line in comment.splitlines()] if comment else []
    lines += [f"; robustness of class {label}, L-inf radius {eps} pixel level(s) of 1/256", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(p.size)] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_classes)] + [""]
    for i in range(p.size):
        lines.append(f"(assert (>= X_{i} {float(lo[i]) * PIXEL_SCALE!r}))")
        lines.append(f"(assert (<= X_{i} {float(hi[i]) * PIXEL_SCALE!r}))")
    lines += ["", "; unsafe: another class scores at least as high", "(assert (or"]
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in range(n_classes) if j != label]
    lines += ["))", ""]
    return "\n".join(lines)


@dataclass
class Instance:
    onnx: str      # path relative to the benchmark folder
    vnnlib: str
    timeout: float


def pick_samples(predict, x: np.ndarray, y: np.ndarray, n: int, seed: int) -> List[int]:
    """``n`` indices of correctly classified samples, in a random order fixed by ``seed``
    (``predict(x_batch) -> labels``)."""
    order = np.random.default_rng(seed).permutation(len(y))
    picked = []
    for start in range(0, len(order), 256):
        idx = order[start:start + 256]
        ok = idx[predict(x[idx]) == y[idx]]
        picked += [int(i) for i in ok[: n - len(picked)]]
        if len(picked) >= n:
            break
    return picked


def write_benchmark(folder: Path, models: Sequence[str], pixels: np.ndarray, labels: np.ndarray,
                    n_classes: int, eps_list: Sequence[int], timeout: float,
                    comment: str = "", sample_ids: Optional[Sequence[int]] = None) -> List[Instance]:
    """Write ``vnnlib/`` (one property per sample and eps, shared by all ``models``, which are
    ONNX paths relative to ``folder``) and ``instances.csv``; returns the instances. Properties
    are named ``prop_K_epsE`` with K from ``sample_ids`` (e.g. the dataset indices, so names
    stay stable when some samples are left out), by default 0, 1, ..."""
    folder = Path(folder)
    ids = list(range(len(labels))) if sample_ids is None else [int(k) for k in sample_ids]
    if len(ids) != len(labels) or len(set(ids)) != len(ids):
        raise ValueError(f"sample_ids must be {len(labels)} distinct integers, got {len(ids)}")
    (folder / "vnnlib").mkdir(parents=True, exist_ok=True)
    for old in (folder / "vnnlib").glob("*.vnnlib"):
        old.unlink()
    props = []
    for k, px, label in zip(ids, pixels, labels):
        for eps in eps_list:
            name = f"vnnlib/prop_{k}_eps{eps}.vnnlib"
            text = robustness_vnnlib(px, int(label), n_classes, int(eps),
                                     f"{comment}\nsample {k}" if comment else f"sample {k}")
            (folder / name).write_text(text)
            props.append(name)
    instances = [Instance(m, p, float(timeout)) for m in models for p in props]
    with open(folder / "instances.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        for inst in instances:
            w.writerow([inst.onnx, inst.vnnlib, f"{inst.timeout:g}"])
    return instances


def generate_robustness_benchmark(folder: Path, name: str, dataset: str, models: Sequence[str],
                                  n_samples: int, eps_list: Sequence[int], timeout: float,
                                  seed: int) -> List[Instance]:
    """What a benchmark's ``generate_properties.py SEED`` does: pick ``n_samples`` evaluation
    samples of ``dataset`` (``qnn_plugin.training.data.load_dataset``) that every model in
    ``models`` (ONNX paths relative to ``folder``, run by onnxruntime) classifies correctly,
    and write one property per sample and eps for all models."""
    import onnxruntime as ort

    from .training.data import load_dataset

    folder = Path(folder)
    ds = load_dataset(dataset)
    x = ds.x_test.reshape(len(ds.x_test), -1)
    sessions = [ort.InferenceSession(str(folder / m), providers=["CPUExecutionProvider"])
                for m in models]

    def predict(px: np.ndarray) -> np.ndarray:
        """The label all models agree on, else -1 (never a label)."""
        feeds = [(s, (px / 256).astype(np.float32).reshape((len(px),) + _input_shape(s)))
                 for s in sessions]
        preds = [s.run(None, {s.get_inputs()[0].name: f})[0].argmax(1) for s, f in feeds]
        return np.where(np.all([p == preds[0] for p in preds], axis=0), preds[0], -1)

    idx = pick_samples(predict, x, ds.y_test, n_samples, seed)
    if len(idx) < n_samples:
        raise ValueError(f"only {len(idx)} evaluation samples are classified correctly by all models")
    return write_benchmark(folder, models, x[idx], ds.y_test[idx], ds.n_classes, eps_list, timeout,
                           comment=f"{name}, seed {seed}, {dataset} evaluation samples {idx}")


def _input_shape(sess) -> tuple:
    dims = sess.get_inputs()[0].shape[1:]
    return tuple(int(d) for d in dims)


def ibp_certified(onnx_path: str, pixels: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """(N,) bool: for each sample (``pixels`` (N, *input shape), levels 0..255), every margin
    z_y - z_j has a positive interval lower bound over its robustness box, computed on the ONNX
    model itself (load_onnx + bounded) with the final affine layers folded into the margins
    (``qnn_plugin.bounded.margin_ibp``): the bound the QA-IBP loss trains. A misclassified
    sample is never certified (its centre is in the box)."""
    import torch

    from . import bounded, load_onnx
    from .bounded import margin_ibp
    from .training.loss import margin_matrix

    model = load_onnx(onnx_path)
    p = torch.tensor(np.asarray(pixels), dtype=torch.float32)
    lo = torch.clamp(p - eps, 0, 255) * PIXEL_SCALE
    hi = torch.clamp(p + eps, 0, 255) * PIXEL_SCALE
    bm = bounded(model, lo[:1])
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    with torch.no_grad():
        n_out = model(lo[:1]).reshape(-1).shape[0]
        lb = margin_ibp(bm, lo, hi, margin_matrix(y, n_out))
    return (lb > 0).all(dim=1).numpy()


def verify_robustness(onnx_path: str, pixels: np.ndarray, label: int, n_classes: int, eps: int,
                      timeout: float):
    """The complete verifier on one robustness property (see ``robustness_vnnlib``)."""
    from .spec import parse_vnnlib
    from .verifier import verify

    spec = parse_vnnlib(robustness_vnnlib(pixels, label, n_classes, eps))
    return verify(onnx_path, spec, timeout=timeout)
