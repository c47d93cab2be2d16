"""scripts/compare_engines.py (qnn_plugin.compare): the pure summary functions on synthetic rows,
and whole runs with fake engines on a tiny real network (so the counterexample check is real):
outputs written, contradictory verdicts and rejected counterexamples reported with exit code 1."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from qnn_plugin import compare as cmp
from qnn_plugin.onnx_builders import random_fixed_point_mlp
from qnn_plugin.vnncomp import ResultRow
from tests.shared_data import SHARED

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- pure functions


def _k(i):
    return cmp.Key("b", i, "onnx/n.onnx", f"vnnlib/p{i}.vnnlib")


def _row(i, result, t, ce_valid=None):
    return ResultRow("onnx/n.onnx", f"vnnlib/p{i}.vnnlib", result, t, ce_valid=ce_valid)


def test_summary_counts_and_ratios():
    ref = {_k(0): _row(0, "unsat", 1.0), _k(1): _row(1, "unsat", 2.0), _k(2): _row(2, "sat", 4.0, True),
           _k(3): _row(3, "timeout", 8.0), _k(4): _row(4, "error", 0.5)}
    other = {_k(0): _row(0, "unsat", 3.0), _k(1): _row(1, "unsat", 1.0), _k(2): _row(2, "sat", 2.0, True),
             _k(3): _row(3, "unsat", 0.5), _k(4): _row(4, "sat", 0.1, False)}
    ref_s, s = cmp.summarize({"ref": ref, "other": other}, "ref")
    assert (ref_s.is_reference, ref_s.median_ratio, ref_s.solved) == (True, None, 3)
    assert (ref_s.sat, ref_s.unsat, ref_s.timeout, ref_s.other) == (1, 2, 1, 1)
    assert ref_s.total_time == pytest.approx(15.5) and ref_s.median_time == pytest.approx(2.0)
    # the sat with a rejected counterexample is not solved; instance 3 only here
    assert (s.solved, s.sat, s.unsat, s.both) == (4, 2, 3, 3)
    assert s.median_ratio == pytest.approx(0.5)       # ratios 3, 0.5, 0.5
    assert s.ratio_of_medians == pytest.approx(1.0)   # median(3, 1, 2) / median(1, 2, 4)
    assert s.only_this == [_k(3)] and s.only_reference == []
    text = cmp.format_table([ref_s, s])
    assert "(reference)" in text and "0.5x" in text and "4/5" in text
    md = cmp.format_table([ref_s, s], markdown=True).splitlines()
    assert len(md) == 4 and all(line.count("|") == len(cmp.COLUMNS) + 1 for line in md)
    lines = cmp.difference_lines([ref_s, s])
    assert lines[0] == ("instances the other solves that the reference (ref) does not: 1: "
                        "onnx/n.onnx vnnlib/p3.vnnlib")
    assert lines[1].endswith("does not: 0")


def test_ratio_of_zero_times_and_no_common_instances():
    a = {_k(0): _row(0, "unsat", 0.0), _k(1): _row(1, "timeout", 5.0)}
    b = {_k(0): _row(0, "unsat", 0.002), _k(1): _row(1, "unsat", 1.0)}
    c = {_k(0): _row(0, "unknown", 1.0), _k(1): _row(1, "error", 1.0)}
    _, sb, sc = cmp.summarize({"a": a, "b": b, "c": c}, "a")
    assert sb.median_ratio == pytest.approx(2.0)  # 0 s counts as cmp.MIN_TIME
    assert (sc.both, sc.median_ratio, sc.ratio_of_medians, sc.other) == (0, None, None, 2)
    assert sc.only_reference == [_k(0)]
    c[_k(1)].message = "SmtUnsupportedError: float\n inputs"
    assert cmp.error_lines({"a": a, "c": c}) == [
        "note: c: 1 instance(s) ended in error; first, on onnx/n.onnx vnnlib/p1.vnnlib: "
        "SmtUnsupportedError: float inputs"]


def test_disagreements_and_rejected_counterexamples():
    results = {"x": {_k(0): _row(0, "sat", 1, True), _k(1): _row(1, "unsat", 1)},
               "y": {_k(0): _row(0, "unsat", 1), _k(1): _row(1, "timeout", 1)},
               "z": {_k(0): _row(0, "unsat", 1), _k(1): _row(1, "sat", 1, False)}}
    ds = cmp.disagreements(results)
    assert [(d.key, d.sat, d.unsat) for d in ds] == [(_k(0), ["x"], ["y", "z"]), (_k(1), ["z"], ["x"])]
    assert [(c, k) for c, k, _ in cmp.rejected_counterexamples(results)] == [("z", _k(1))]
    lines = cmp.failure_lines(results)
    assert len(lines) == 3 and all(line.startswith("FAILURE: ") for line in lines)
    assert "onnx/n.onnx vnnlib/p0.vnnlib: sat by x; unsat by y, z" in lines[0]
    assert cmp.failure_lines({"x": results["x"], "y": results["y"]})[0].startswith("FAILURE: contradictory")
    assert cmp.failure_lines({"y": results["y"]}) == []


def test_registry_and_config_parsing():
    assert [c.name for c in cmp.parse_configs("smt,plugin")] == ["smt", "plugin"]
    assert cmp.parse_configs(cmp.DEFAULT_CONFIGS)[0].runner == "qnn_plugin.cli_verify:verify"
    assert cmp.REGISTRY["smt-plain"].options == dict(dead_branches=False, minimal_widths=False,
                                                     balanced_sums=False)
    assert cmp.REGISTRY["smt-z3"].options == {"backend": "z3"}
    assert cmp.REGISTRY["plugin-no-milp"].options == {"milp": False}
    for bad, msg in [("plugin,nope", "unknown configuration 'nope'"), ("smt,smt", "named twice"),
                     (" , ", "no configuration")]:
        with pytest.raises(cmp.CompareError, match=msg):
            cmp.parse_configs(bad)
    assert cmp.parse_config_spec("mine=pkg.mod:fn").runner == "pkg.mod:fn"
    for bad in ("mine", "mine=pkg", "=pkg:fn", "a,b=pkg:fn"):
        with pytest.raises(cmp.CompareError, match="NAME=MODULE:FUNCTION"):
            cmp.parse_config_spec(bad)


# --------------------------------------------------------------------------- whole runs

FAKE_ENGINES = '''
"""Fake engines: "holds" properties are truly unsat (unreachable unsafe set), the others sat."""
import numpy as np
import onnxruntime as ort

from qnn_plugin.spec import read_vnnlib
from qnn_plugin.verifier import Counterexample, VerifyResult


def _sat(onnx, vnnlib):
    x = np.asarray(read_vnnlib(vnnlib).cases[0].lower, np.float32)
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    y = sess.run(None, {inp.name: x.reshape([1] + list(inp.shape[1:]))})[0]
    return VerifyResult("sat", Counterexample(x, y.ravel()))


def honest(onnx, vnnlib, *, timeout, device=None, seed=0):
    return VerifyResult("unsat") if "holds" in vnnlib else _sat(onnx, vnnlib)


def lazy(onnx, vnnlib, *, timeout, device=None, seed=0):
    return VerifyResult("timeout") if "holds_1" in vnnlib else honest(onnx, vnnlib, timeout=timeout)


def liar(onnx, vnnlib, *, timeout, device=None, seed=0):
    return _sat(onnx, vnnlib) if "holds" in vnnlib else VerifyResult("unsat")
'''


def _vnnlib(n_in, n_out, unsafe):
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i in range(n_in):  # a small box on the input grid (k / 256)
        lines += [f"(assert (>= X_{i} 0.25))", f"(assert (<= X_{i} 0.2578125))"]
    return "\n".join(lines + [f"(assert {unsafe})", ""])


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """A tiny benchmark folder (3-5-3 fixed-point MLP, properties that hold / are violated) and
    the fake engines importable (spawned workers inherit sys.path)."""
    folder = tmp_path / "tiny"
    (folder / "onnx").mkdir(parents=True)
    (folder / "vnnlib").mkdir()
    built = random_fixed_point_mlp(np.random.default_rng(0), sizes=[3, 5, 3])
    onnx.save(built.model, folder / "onnx" / "net.onnx")
    rows = []
    for name, unsafe in [("holds_0", "(>= Y_0 1000000.0)"), ("holds_1", "(>= Y_1 1000000.0)"),
                         ("violated_0", "(<= Y_0 1000000.0)")]:
        (folder / "vnnlib" / f"{name}.vnnlib").write_text(_vnnlib(3, 3, unsafe))
        rows.append(f"onnx/net.onnx,vnnlib/{name}.vnnlib,30")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "fake_engines.py").write_text(FAKE_ENGINES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return folder


def _main(bench, out, configs, *extra):
    return cmp.main([str(bench), "--configs", configs, "--out", str(out), "--no-progress", "--grace", "5",
                     "--add-config", "honest=fake_engines:honest", "--add-config", "lazy=fake_engines:lazy",
                     "--add-config", "liar=fake_engines:liar", *extra])


def test_run_writes_table_plot_and_markdown(bench, tmp_path, capsys):
    out = tmp_path / "out"
    assert _main(bench, out, "honest,lazy", "--timeout-cap", "7") == 0
    text = capsys.readouterr().out
    assert "3 instance(s) from tiny, timeout cap 7 s" in text
    assert "configuration" in text and "(reference)" in text
    assert "instances the reference (honest) solves that the lazy does not: 1: onnx/net.onnx " \
           "vnnlib/holds_1.vnnlib" in text
    assert "instances the lazy solves that the reference (honest) does not: 0" in text
    assert "FAILURE" not in text and "no contradictory verdicts" in text
    assert (out / "cactus.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "summary.md").read_text()
    assert "| configuration | solved |" in md and "| honest | 3/3 | 1 | 2 | 0 | 0 |" in md
    assert "| lazy | 2/3 | 1 | 1 | 1 | 0 |" in md
    for c in ("honest", "lazy"):
        assert len((out / f"results-tiny-{c}.csv").read_text().splitlines()) == 3
    per = (out / "per_instance.csv").read_text().splitlines()
    assert per[0] == "benchmark,onnx,vnnlib,honest_result,honest_time,lazy_result,lazy_time"
    assert per[2].startswith("tiny,onnx/net.onnx,vnnlib/holds_1.vnnlib,unsat,") and ",timeout," in per[2]


def test_contradictions_fail(bench, tmp_path, capsys):
    assert _main(bench, tmp_path / "out", "honest,liar", "--filter", "_0") == 1
    text = capsys.readouterr().out
    assert ("FAILURE: contradictory verdicts on onnx/net.onnx vnnlib/holds_0.vnnlib: sat by liar; "
            "unsat by honest") in text
    assert ("FAILURE: contradictory verdicts on onnx/net.onnx vnnlib/violated_0.vnnlib: sat by honest; "
            "unsat by liar") in text
    assert ("FAILURE: liar answered sat on onnx/net.onnx vnnlib/holds_0.vnnlib with a rejected "
            "counterexample") in text
    assert "holds_1" not in text  # filtered out
    assert "FAILURE" in (tmp_path / "out" / "summary.md").read_text()


def test_bad_input(tmp_path, capsys):
    assert cmp.main([str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert cmp.main([str(tmp_path), "--no-progress"]) == 2
    assert "no instances.csv" in capsys.readouterr().err
    (tmp_path / "instances.csv").write_text("")
    assert cmp.main([str(tmp_path), "--configs", "plugin,smt-fast"]) == 2
    assert "unknown configuration 'smt-fast'; known: plugin, plugin-no-milp, smt" in capsys.readouterr().err
    assert cmp.main([str(tmp_path), "--no-progress"]) == 2
    assert "no instances to run" in capsys.readouterr().err


# --------------------------------------------------------------------------- AAAI folder

def test_bench_aaai2021_write_folder(tmp_path):
    if SHARED is None or not (SHARED / "datasets" / "mnist").is_dir():
        pytest.skip("the shared datasets folder (datasets/mnist) is not on this machine")
    out = tmp_path / "aaai"
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_aaai2021.py"), "--samples", "2",
                          "--eps", "2", "--timeout", "15", "--write-folder", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = (out / "instances.csv").read_text().splitlines()
    assert 1 <= len(rows) <= 2
    assert all(r.startswith("onnx/mnist_mlp_qat.onnx,vnnlib/prop_") and r.endswith("_eps2.vnnlib,15")
               for r in rows)
    assert (out / "onnx" / "mnist_mlp_qat.onnx").is_file()
    assert sorted(p.name for p in (out / "vnnlib").iterdir()) == sorted(r.split(",")[1][7:] for r in rows)
    from qnn_plugin.vnncomp import read_instances

    assert len(read_instances(out, decompress=False)) == len(rows)
