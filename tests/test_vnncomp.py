"""VNN-COMP formats: results files (exact float32 round trip, atomic write, tolerant reading),
instances.csv (incl. .gz and bad rows), expected verdicts, scoring and the summary table."""
import gzip
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qnn_plugin import vnncomp as vc
from qnn_plugin.errors import QnnPluginError
from qnn_plugin.verifier import Counterexample, VerifyResult

F32 = np.float32
EDGE = np.array([0.0, -0.0, 1e-45, -1e-45, np.finfo(F32).tiny, np.finfo(F32).smallest_subnormal * 3,
                 np.finfo(F32).max, -np.finfo(F32).max, 0.1, 1 / 3, 16777217, 1e-38, 3.4e38, 2.5e-7],
                dtype=F32)


def bits(a):
    return np.asarray(a, dtype=F32).view(np.uint32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


def _roundtrip(folder, x, y):
    path = folder / "r.txt"
    vc.write_results_file(path, VerifyResult("sat", Counterexample(x, y)))
    verdict, x2, y2 = vc.read_results_file(path)
    assert verdict == "sat"
    return x2, y2


def test_edge_values_roundtrip_bit_exact(folder):
    x2, y2 = _roundtrip(folder, EDGE, EDGE[::-1].copy())
    assert (bits(x2) == bits(EDGE)).all() and (bits(y2) == bits(EDGE[::-1])).all()
    # the written doubles are exactly the float32 values: float() alone gives them back
    assert (x2 == EDGE.astype(np.float64)).all()
    assert np.signbit(x2[1]) and x2[2] == F32(1e-45)


def test_nonfinite_values(folder):
    x = np.array([np.inf, -np.inf, np.nan], dtype=F32)
    x2, _ = _roundtrip(folder, x, np.zeros(1, F32))
    assert x2[0] == np.inf and x2[1] == -np.inf and np.isnan(x2[2])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=20),
       st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=5))
def test_roundtrip_any_float32(folder, xs, ys):
    x, y = np.array(xs, dtype=F32), np.array(ys, dtype=F32)
    x2, y2 = _roundtrip(folder, x, y)
    assert (bits(x2) == bits(x)).all() and (bits(y2) == bits(y)).all()
    for v in x:  # what the checker does: Python float() on each token
        assert F32(float(vc.format_value(v))).view(np.uint32) == v.view(np.uint32)


def test_layout_and_shape(tmp_path):
    x = np.arange(6, dtype=F32).reshape(2, 3)
    p = tmp_path / "sub" / "dir" / "out.txt"  # parents created
    vc.write_results_file(p, VerifyResult("sat", Counterexample(x, np.array([1.5], F32))))
    assert p.read_text() == ("sat\n((X_0 0.0)\n (X_1 1.0)\n (X_2 2.0)\n (X_3 3.0)\n (X_4 4.0)\n (X_5 5.0)\n"
                             " (Y_0 1.5))\n")
    for v in ("unsat", "timeout", "unknown", "error"):
        vc.write_results_file(p, v)
        assert p.read_text() == v + "\n" and vc.read_results_file(p) == (v, None, None)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of the temp file
    with pytest.raises(ValueError):
        vc.write_results_file(p, "maybe")
    with pytest.raises(ValueError):
        vc.write_results_file(p, type("R", (), {"verdict": "sat", "counterexample": None})())
    assert p.read_text() == "error\n"


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "out.txt"
    vc.write_results_file(p, "unsat")

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(vc.os, "replace", boom)
    with pytest.raises(OSError):
        vc.write_results_file(p, "timeout")
    assert p.read_text() == "unsat\n"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temp file left behind


@pytest.mark.parametrize("text,expect", [
    ("sat\n((X_0 1.0)\n (X_1 -2e-3)\n (Y_0 3))\n", ([1.0, -2e-3], [3.0])),
    ("  SAT\r\n(\n(X_0   1.0)(X_1 -2e-3)\n\n(Y_0\t3)\n)", ([1.0, -2e-3], [3.0])),
    ("sat ((X_1 -2e-3) (X_0 1.0) (Y_0 3))", ([1.0, -2e-3], [3.0])),
    ("violated\n((X_0 1.0) (X_1 -0.002) (Y_0 3))", ([1.0, -2e-3], [3.0])),
])
def test_read_tolerant(tmp_path, text, expect):
    p = tmp_path / "r.txt"
    p.write_text(text)
    verdict, x, y = vc.read_results_file(p)
    assert verdict == "sat" and x.tolist() == expect[0] and y.tolist() == expect[1]


def test_read_other_verdicts(tmp_path):
    p = tmp_path / "r.txt"
    for text, v in [("unsat", "unsat"), ("\n holds \n", "unsat"), ("TIMEOUT\n", "timeout"), ("sat\n", "sat")]:
        p.write_text(text)
        assert vc.read_results_file(p) == (v, None, None)


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("  \n", "empty"),
    ("proved\n", ":1: expected one of"),
    ("unsat\nsat\n", "unexpected text"),
    ("sat\n((X_0 1.0)\n (X_1 abc)\n (Y_0 1))", r":3: X_1: not a number"),
    ("sat\n((X_0 1) (X_2 1) (Y_0 1))", "X_1 missing"),
    ("sat\n((X_0 1) (X_0 2) (Y_0 1))", "given twice"),
    ("sat\n((X_0 1) junk (Y_0 1))", "unexpected text in the counterexample"),
])
def test_read_garbage(tmp_path, text, match):
    p = tmp_path / "r.txt"
    p.write_text(text)
    with pytest.raises(vc.VnnCompFormatError, match=match) as info:
        vc.read_results_file(p)
    assert str(p) in str(info.value) and isinstance(info.value, QnnPluginError)


def test_read_missing_file(tmp_path):
    with pytest.raises(vc.VnnCompFormatError, match="cannot read"):
        vc.read_results_file(tmp_path / "nope.txt")


# --------------------------------------------------------------------------- instances.csv

def _bench(tmp_path, rows, files=("onnx/a.onnx", "vnnlib/p1.vnnlib", "vnnlib/p2.vnnlib")):
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("content of " + f)
    (tmp_path / "instances.csv").write_text(rows)
    return tmp_path


def test_read_instances(tmp_path):
    b = _bench(tmp_path, "onnx/a.onnx,vnnlib/p1.vnnlib,60\n\n# comment\n onnx/a.onnx , vnnlib/p2.vnnlib , 12.5 \n")
    insts = vc.read_instances(b)
    assert [(i.onnx_rel, i.vnnlib_rel, i.timeout, i.line) for i in insts] == [
        ("onnx/a.onnx", "vnnlib/p1.vnnlib", 60.0, 1), ("onnx/a.onnx", "vnnlib/p2.vnnlib", 12.5, 4)]
    assert all(os.path.isabs(i.onnx) and os.path.isfile(i.vnnlib) for i in insts)
    assert vc.read_instances(b / "instances.csv") == insts  # the CSV itself is accepted too


def test_read_instances_gz(tmp_path):
    b = _bench(tmp_path, "onnx/big.onnx,vnnlib/p1.vnnlib.gz,60\n", files=("vnnlib/x", "onnx/x"))
    (b / "onnx" / "big.onnx.gz").write_bytes(gzip.compress(b"onnx bytes"))
    (b / "vnnlib" / "p1.vnnlib.gz").write_bytes(gzip.compress(b"(declare-const X_0 Real)"))
    lazy = vc.read_instances(b, decompress=False)
    assert lazy[0].onnx.endswith("big.onnx.gz") and lazy[0].vnnlib.endswith("p1.vnnlib.gz")
    cache = tmp_path / "cache"
    (inst,) = vc.read_instances(b, cache_dir=cache)
    assert inst.onnx.startswith(str(cache)) and inst.onnx.endswith("big.onnx")
    assert open(inst.onnx, "rb").read() == b"onnx bytes"
    assert open(inst.vnnlib).read() == "(declare-const X_0 Real)"
    assert vc.read_instances(b, cache_dir=cache) == [inst]  # cached
    (b / "onnx" / "bad.onnx.gz").write_bytes(b"not gzip")
    with pytest.raises(vc.VnnCompFormatError, match="cannot decompress"):
        vc.materialize(b / "onnx" / "bad.onnx", cache)


@pytest.mark.parametrize("row,match", [
    ("onnx/a.onnx,vnnlib/p1.vnnlib", "expected 3 columns"),
    ("onnx/a.onnx,vnnlib/p1.vnnlib,60,extra", "expected 3 columns"),
    ("onnx/a.onnx,vnnlib/p1.vnnlib,sixty", "not a number"),
    ("onnx/a.onnx,vnnlib/p1.vnnlib,-5", "positive"),
    ("onnx/a.onnx,vnnlib/p1.vnnlib,nan", "positive"),
    ("onnx/a.onnx,,60", "empty path"),
    ("onnx/missing.onnx,vnnlib/p1.vnnlib,60", "missing.onnx: no such file"),
])
def test_read_instances_bad_rows(tmp_path, row, match):
    b = _bench(tmp_path, "onnx/a.onnx,vnnlib/p1.vnnlib,60\n" + row + "\n")
    with pytest.raises(vc.VnnCompFormatError, match=match) as info:
        vc.read_instances(b)
    assert f"instances.csv:2:" in str(info.value)


def test_read_instances_no_csv(tmp_path):
    with pytest.raises(vc.VnnCompFormatError, match="instances.csv: cannot read"):
        vc.read_instances(tmp_path)


# --------------------------------------------------------------------------- scoring

def test_score_instance():
    assert vc.score_instance("unsat", "unsat") == (10, "correct")
    assert vc.score_instance("sat", "unsat") == (-150, "wrong")
    assert vc.score_instance("unsat", "sat") == (-150, "wrong")
    assert vc.score_instance("sat", None) == (10, "assumed")
    assert vc.score_instance("sat", "unsat", ce_valid=True) == (10, "correct")  # a valid CE wins
    assert vc.score_instance("sat", "sat", ce_valid=False) == (-150, "invalid_ce")
    for v in ("timeout", "error", "unknown"):
        assert vc.score_instance(v, "sat") == (0, "none")


def test_expected_and_summary(tmp_path):
    exp_csv = tmp_path / "expected.csv"
    exp_csv.write_text("onnx,vnnlib,expected\n./onnx/a.onnx,vnnlib/p1.vnnlib,unsat\n"
                       "onnx/a.onnx.gz,vnnlib/p2.vnnlib,violated\nonnx/a.onnx,vnnlib/p3.vnnlib,unknown\n")
    exp = vc.read_expected(exp_csv)
    assert exp.get("onnx/a.onnx", "vnnlib/p1.vnnlib") == "unsat"
    assert exp.get("onnx/a.onnx", "vnnlib/p2.vnnlib.gz") == "sat"
    assert exp.get("/elsewhere/a.onnx", "/x/p1.vnnlib") == "unsat"  # file-name fallback
    assert exp.get("onnx/a.onnx", "vnnlib/p3.vnnlib") is None
    rows = [vc.ResultRow("onnx/a.onnx", "vnnlib/p1.vnnlib", "unsat", 2.0),
            vc.ResultRow("onnx/a.onnx", "vnnlib/p2.vnnlib", "unsat", 4.0),  # wrong
            vc.ResultRow("onnx/a.onnx", "vnnlib/p3.vnnlib", "sat", 1.0),  # assumed
            {"onnx": "onnx/a.onnx", "vnnlib": "vnnlib/p4.vnnlib", "result": "timeout", "run_time": 60.0}]
    total, why = vc.score(rows, exp)
    assert total == 10 - 150 + 10 and why["wrong"] == 1 and why["assumed"] == 1
    table = vc.summary_table(rows, exp)
    assert "instances       4" in table and "timeout       1" in table
    assert "67.0 s total, 3.00 s median" in table and "-130" in table
    assert "1 answer(s) contradict" in table and "1 of the sat/unsat answers are assumed correct" in table
    plain = vc.summary_table(rows)
    assert "+20" not in plain and " 30 " in plain and "no expected verdicts given" in plain
    assert "instances       0" in vc.summary_table([])


def test_expected_bad_rows(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("a.onnx,p.vnnlib,unsat\nb.onnx,q.vnnlib,perhaps\n")
    with pytest.raises(vc.VnnCompFormatError, match=r"e.csv:2: unknown verdict"):
        vc.read_expected(p)
    p.write_text("a.onnx,unsat\n")
    with pytest.raises(vc.VnnCompFormatError, match=r"e.csv:1: expected onnx,vnnlib,expected"):
        vc.read_expected(p)


def test_results_csv_roundtrip(tmp_path):
    import csv

    rows = [vc.ResultRow("o.onnx", "p.vnnlib", "sat", 1.25, 0.0, {"time_total": 1.2, "boxes_bounded": 7},
                         "found\nby attack, quickly"),
            vc.ResultRow("o.onnx", "q.vnnlib", "error", 0.5, 0.0, {}, 'bad "node" 3')]
    p = tmp_path / "res.csv"
    with open(p, "w", newline="") as f:
        csv.writer(f).writerows(vc.result_row_to_csv(r) for r in rows)
    back = vc.read_results_csv(p)
    assert [(r.onnx, r.result, r.run_time, r.stats, r.message) for r in back] == [
        ("o.onnx", "sat", 1.25, {"boxes_bounded": 7.0, "time_total": 1.2}, "found by attack, quickly"),
        ("o.onnx", "error", 0.5, {}, 'bad "node" 3')]
    assert vc.read_expected(p).get("o.onnx", "p.vnnlib") == "sat"  # a results CSV works as ground truth


def test_check_counterexample_accepts_real_and_rejects_forged(tmp_path):
    """The VNN-COMP-style check: a genuine counterexample passes; a wrong Y, an X outside the
    box, and a safe point fail."""
    import onnx
    from onnx import TensorProto, helper

    from qnn_plugin.vnncomp import check_counterexample

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [onnx.numpy_helper.from_array(np.ones((2, 1), np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx_path, spec_path = tmp_path / "m.onnx", tmp_path / "p.vnnlib"
    onnx.save(model, str(onnx_path))
    spec_path.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                         "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n"
                         "(assert (<= X_1 1.0))\n(assert (>= Y_0 1.5))\n")
    ok, why = check_counterexample(onnx_path, spec_path, [1.0, 0.75], [1.75])
    assert ok, why
    assert not check_counterexample(onnx_path, spec_path, [1.0, 0.75], [1.9])[0]    # Y forged
    assert not check_counterexample(onnx_path, spec_path, [1.2, 0.75], [1.95])[0]   # X outside
    assert not check_counterexample(onnx_path, spec_path, [0.5, 0.5], [1.0])[0]     # safe
