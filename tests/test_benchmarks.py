"""Benchmark writing: robustness properties read back as the box and unsafe set intended."""
import csv

import numpy as np
import pytest

from qnn_plugin.benchmarks import pick_samples, robustness_vnnlib, write_benchmark
from qnn_plugin.spec import parse_vnnlib


def test_robustness_property_round_trips():
    px = np.array([0, 1, 128, 254, 255], dtype=np.uint8)
    spec = parse_vnnlib(robustness_vnnlib(px, 2, 4, 2, "a comment\nsecond line"))
    (case,) = spec.cases
    assert spec.n_inputs == 5 and spec.n_outputs == 4
    np.testing.assert_array_equal(case.lower, np.array([0, 0, 126, 252, 253]) / 256)
    np.testing.assert_array_equal(case.upper, np.array([2, 3, 130, 255, 255]) / 256)
    assert len(case.unsafe) == 3
    for poly, j in zip(case.unsafe, [0, 1, 3]):   # Y_j - Y_2 >= 0, as A y <= b: Y_2 - Y_j <= 0
        row = np.zeros(4)
        row[2], row[j] = 1, -1
        np.testing.assert_array_equal(poly.A, row[None])
        np.testing.assert_array_equal(poly.b, [0])


def test_bad_property_arguments():
    with pytest.raises(ValueError, match="label"):
        robustness_vnnlib(np.zeros(3), 5, 4, 1)
    with pytest.raises(ValueError, match="0..255"):
        robustness_vnnlib(np.array([256]), 0, 2, 1)


def test_write_benchmark_layout(tmp_path):
    px = np.random.default_rng(0).integers(0, 256, (2, 6))
    inst = write_benchmark(tmp_path, ["onnx/a.onnx", "onnx/b.onnx"], px, np.array([0, 1]), 3,
                           [1, 3], timeout=20)
    assert len(inst) == 8
    rows = list(csv.reader(open(tmp_path / "instances.csv")))
    assert rows[0] == ["onnx/a.onnx", "vnnlib/prop_0_eps1.vnnlib", "20"]
    assert sorted(p.name for p in (tmp_path / "vnnlib").iterdir()) == [
        "prop_0_eps1.vnnlib", "prop_0_eps3.vnnlib", "prop_1_eps1.vnnlib", "prop_1_eps3.vnnlib"]


def test_write_benchmark_sample_ids(tmp_path):
    px = np.random.default_rng(0).integers(0, 256, (2, 6))
    write_benchmark(tmp_path, ["onnx/a.onnx"], px, np.array([0, 1]), 3, [2], timeout=5, sample_ids=[7, 3])
    assert [r[1] for r in csv.reader(open(tmp_path / "instances.csv"))] == [
        "vnnlib/prop_7_eps2.vnnlib", "vnnlib/prop_3_eps2.vnnlib"]
    assert "; sample 3\n" in (tmp_path / "vnnlib" / "prop_3_eps2.vnnlib").read_text()
    with pytest.raises(ValueError, match="2 distinct integers"):
        write_benchmark(tmp_path, ["onnx/a.onnx"], px, np.array([0, 1]), 3, [2], timeout=5, sample_ids=[1, 1])


def test_pick_samples_takes_correct_ones_in_seeded_order():
    y = np.arange(10) % 2
    pred = lambda x: np.where(x[:, 0] >= 5, y[x[:, 0]], 1 - y[x[:, 0]])   # 0..4 misclassified
    x = np.arange(10)[:, None]
    a = pick_samples(pred, x, y, 3, seed=4)
    assert a == pick_samples(pred, x, y, 3, seed=4) and len(a) == 3 and min(a) >= 5


def test_ibp_certified_and_verify_robustness_agree_with_enumeration(tmp_path):
    """On exported QNNs with 3 inputs: a certified sample is robust on every grid point of its
    box, and the complete verifier's verdict is the enumerated truth."""
    import itertools

    import onnxruntime as ort
    import torch

    from qnn_plugin.benchmarks import ibp_certified, verify_robustness
    from qnn_plugin.training import QNN, QFormat, export_onnx

    rng = np.random.default_rng(0)
    seen = set()
    for seed in range(6):
        torch.manual_seed(seed)
        m = QNN.mlp(3, [6], 4, in_fmt=QFormat.fixed(8, 8, False), w_fmt=QFormat.fixed(6, 5, True),
                    act_fmt=QFormat.fixed(6, 3, False), rounding="half_up")
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(4.0)
        path = str(tmp_path / f"m{seed}.onnx")
        export_onnx(m, path, "fixed_point")
        sess = ort.InferenceSession(path)
        px = rng.integers(0, 256, (4, 3))
        labels = sess.run(None, {sess.get_inputs()[0].name: (px / 256).astype(np.float32)})[0].argmax(1)
        eps = 3
        cert = ibp_certified(path, px, labels, eps)
        for k in range(4):
            box = [range(max(0, v - eps), min(255, v + eps) + 1) for v in px[k]]
            pts = np.array(list(itertools.product(*box)), dtype=np.float32) / 256
            y = sess.run(None, {sess.get_inputs()[0].name: pts})[0]
            robust = bool((np.delete(y, labels[k], axis=1) < y[:, [labels[k]]]).all())
            assert robust or not cert[k]
            res = verify_robustness(path, px[k], int(labels[k]), 4, eps, timeout=30)
            assert res.verdict == ("unsat" if robust else "sat"), (res.verdict, res.message)
            seen.add((bool(cert[k]), robust))
    assert {(True, True), (False, True), (False, False)} <= seen, seen
