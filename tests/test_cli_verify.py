"""qnn-verify with fake verifiers: the single-instance error paths, the benchmark worker pool
(normal, raising, crashing and hanging instances; kill on overrun; Ctrl-C) and the VNN-COMP
shell scripts' argument checking (with a fake qnn-verify on PATH)."""
import csv
import gzip
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qnn_plugin import cli_verify
from qnn_plugin import vnncomp as vc
from qnn_plugin.errors import SpecError
from qnn_plugin.verifier import Counterexample, VerifyResult

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts" / "vnncomp"
FAKE = "tests.test_cli_verify:fake_runner"


def fake_runner(onnx, vnnlib, *, timeout, device=None, seed=0):
    """Behaviour picked by the property's file name (runs in the pool's worker processes)."""
    name = os.path.basename(vnnlib)
    assert os.path.isfile(onnx) and os.path.isfile(vnnlib) and not vnnlib.endswith(".gz")
    if "hang" in name:
        time.sleep(1000)
    if "crash" in name:
        os._exit(3)
    if "spec" in name:
        raise SpecError(f"{vnnlib}:3: unsupported assertion (fake)")
    if "bug" in name:
        raise RuntimeError("fake bug")
    if "sat" in name and "unsat" not in name:
        ce = Counterexample(np.array([0.5, -0.0, 1e-45], np.float32), np.array([0.1], np.float32))
        return VerifyResult("sat", ce, stats={"time_total": 0.01})
    return VerifyResult("unsat", message=f"timeout={timeout:g} seed={seed}",
                        stats={"time_total": 0.01, "time_bab": 0.005, "boxes_bounded": 3})


# --------------------------------------------------------------------------- single instance

@pytest.fixture
def files(tmp_path):
    onnx, vnnlib = tmp_path / "net.onnx", tmp_path / "prop.vnnlib"
    onnx.write_text("fake")
    vnnlib.write_text("fake")
    return str(onnx), str(vnnlib)


def test_single_sat_writes_counterexample(files, tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(onnx, vnnlib, **kw):
        seen.update(kw)
        return VerifyResult("sat", Counterexample(np.array([0.25, 1e-45], np.float32), np.array([-3.0], np.float32)),
                            stats={"time_total": 1.5, "time_load": 0.25, "boxes_bounded": 12})

    monkeypatch.setattr(cli_verify, "verify", fake)
    monkeypatch.setattr(cli_verify, "_process_age", lambda: 2.5)   # interpreter and imports
    rf = tmp_path / "deep" / "er" / "out.txt"
    assert cli_verify.main([*files, "--timeout", "7", "--results-file", str(rf), "--seed", "3",
                            "--device", "cpu"]) == 0
    assert seen == {"timeout": 4.5, "device": "cpu", "seed": 3}
    verdict, x, y = vc.read_results_file(rf)
    assert verdict == "sat" and x.astype(np.float32).tolist() == [0.25, np.float32(1e-45)] and y.tolist() == [-3.0]
    out = capsys.readouterr().out.splitlines()
    assert out == ["sat", "time 1.50 s (load 0.25) | boxes_bounded 12"]


def test_verifier_options_pass_through(files, tmp_path, monkeypatch):
    seen = {}

    def fake(onnx, vnnlib, **kw):
        seen.update(kw)
        return VerifyResult("unsat")

    monkeypatch.setattr(cli_verify, "verify", fake)
    assert cli_verify.main([*files, "--method", "ibp", "--branch", "input", "--split", "widest",
                            "-v"]) == 0
    assert {k: seen[k] for k in ("method", "branch", "split", "progress")} == \
        {"method": "ibp", "branch": "input", "split": "widest", "progress": True}


def test_smt_engine_and_its_options(files, monkeypatch):
    seen = {}

    def fake(onnx, vnnlib, **kw):
        seen.update(kw)
        return VerifyResult("unsat")

    monkeypatch.setattr(cli_verify, "verify_smt", fake)
    monkeypatch.setattr(cli_verify, "verify", None)      # the plugin engine must not run
    assert cli_verify.main([*files, "--engine", "smt", "--smt-backend", "z3", "--smt-fixed-width",
                            "--smt-no-dead-branches", "--smt-chain-sums"]) == 0
    assert {k: seen[k] for k in ("backend", "minimal_widths", "dead_branches", "balanced_sums")} == \
        {"backend": "z3", "minimal_widths": False, "dead_branches": False, "balanced_sums": False}


@pytest.mark.parametrize("argv", [["--engine", "smt", "--method", "ibp"], ["--engine", "smt", "--no-milp"],
                                  ["--smt-backend", "z3"], ["--smt-fixed-width"]])
def test_options_of_the_other_engine_are_refused(files, tmp_path, capsys, argv):
    rf = tmp_path / "out.txt"
    with pytest.raises(SystemExit) as exc:
        cli_verify.main([*files, *argv, "--results-file", str(rf)])
    assert exc.value.code == 2 and "does not apply to --engine" in capsys.readouterr().err
    assert rf.read_text() == "error\n"


@pytest.mark.parametrize("verdict", ["unsat", "timeout", "unknown"])
def test_single_exit_zero(files, tmp_path, monkeypatch, capsys, verdict):
    monkeypatch.setattr(cli_verify, "verify", lambda *a, **k: VerifyResult(verdict, message="why"))
    rf = tmp_path / "out.txt"
    assert cli_verify.main([*files, "--results-file", str(rf)]) == 0
    assert rf.read_text() == verdict + "\n"
    assert capsys.readouterr().out.startswith(verdict + "\n")


def test_single_input_error(files, tmp_path, monkeypatch, capsys):
    def fake(*a, **k):
        raise SpecError("prop.vnnlib:4: unknown variable Z_0")

    monkeypatch.setattr(cli_verify, "verify", fake)
    rf = tmp_path / "out.txt"
    rf.write_text("sat\n((X_0 1) (Y_0 1))")  # a stale answer must not survive
    assert cli_verify.main([*files, "--results-file", str(rf)]) == 2
    assert rf.read_text() == "error\n"
    captured = capsys.readouterr()
    assert captured.out.startswith("error\n")
    assert "qnn-verify: error: prop.vnnlib:4: unknown variable Z_0" in captured.err
    assert "Traceback" not in captured.err


def test_single_internal_error_has_traceback(files, tmp_path, monkeypatch, capsys):
    def fake(*a, **k):
        raise RuntimeError("index out of range in the fake")

    monkeypatch.setattr(cli_verify, "verify", fake)
    rf = tmp_path / "out.txt"
    assert cli_verify.main([*files, "--results-file", str(rf)]) == 2
    assert rf.read_text() == "error\n"
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: index out of range in the fake" in err


def test_single_bad_return_and_not_implemented(files, tmp_path, monkeypatch):
    rf = tmp_path / "out.txt"
    monkeypatch.setattr(cli_verify, "verify", lambda *a, **k: "unsat")  # not a VerifyResult
    assert cli_verify.main([*files, "--results-file", str(rf)]) == 2 and rf.read_text() == "error\n"

    def not_yet(*a, **k):
        raise NotImplementedError("work in progress")

    monkeypatch.setattr(cli_verify, "verify", not_yet)
    assert cli_verify.main([*files, "--results-file", str(rf)]) == 2 and rf.read_text() == "error\n"


def test_single_missing_file_and_gz(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(cli_verify, "verify", lambda o, v, **k: seen.append((o, v)) or VerifyResult("unsat"))
    monkeypatch.setenv("QNN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "net.onnx.gz").write_bytes(gzip.compress(b"onnx"))
    (tmp_path / "p.vnnlib").write_text("spec")
    rf = tmp_path / "out.txt"
    assert cli_verify.main([str(tmp_path / "net.onnx.gz"), str(tmp_path / "p.vnnlib"), "--results-file", str(rf)]) == 0
    assert seen[0][0].startswith(str(tmp_path / "cache")) and open(seen[0][0], "rb").read() == b"onnx"
    assert cli_verify.main([str(tmp_path / "none.onnx"), str(tmp_path / "p.vnnlib"), "--results-file", str(rf)]) == 2
    assert rf.read_text() == "error\n" and "none.onnx: no such file" in capsys.readouterr().err


def test_bad_command_line_still_writes_error(tmp_path, files, capsys):
    rf = tmp_path / "out.txt"
    with pytest.raises(SystemExit) as info:
        cli_verify.main([*files, "--timeout", "soon", "--results-file", str(rf)])
    assert info.value.code == 2 and rf.read_text() == "error\n"
    with pytest.raises(SystemExit):
        cli_verify.main([files[0], f"--results-file={rf}x"])  # VNNLIB missing
    assert Path(f"{rf}x").read_text() == "error\n"
    with pytest.raises(SystemExit):
        cli_verify.main([*files, "--benchmark", str(tmp_path)])
    assert "not both" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli_verify.main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for word in ("--benchmark", "--jobs", "--timeout-cap", "exit codes", "grace", "instances.csv", "-150"):
        assert word in out


# --------------------------------------------------------------------------- benchmark pool

def _bench(tmp_path, rows):
    """rows: (vnnlib name, timeout); one shared onnx."""
    (tmp_path / "onnx").mkdir()
    (tmp_path / "vnnlib").mkdir()
    (tmp_path / "onnx" / "net.onnx").write_text("fake")
    lines = []
    for name, t in rows:
        if name.endswith(".gz"):
            (tmp_path / "vnnlib" / name).write_bytes(gzip.compress(b"spec"))
        else:
            (tmp_path / "vnnlib" / name).write_text("spec")
        lines.append(f"onnx/net.onnx,vnnlib/{name},{t}")
    (tmp_path / "instances.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_pool_mixed_instances(tmp_path):
    b = _bench(tmp_path, [("p_unsat.vnnlib", 30), ("p_sat.vnnlib", 30), ("p_spec.vnnlib", 30),
                          ("p_hang.vnnlib", 1), ("p_crash.vnnlib", 30), ("p_bug.vnnlib", 30),
                          ("p_unsat2.vnnlib.gz", 100)])
    insts = vc.read_instances(b, decompress=False)
    out_csv, rdir = tmp_path / "out" / "res.csv", tmp_path / "rdir"
    t0 = time.monotonic()
    run = cli_verify.run_benchmark(insts, jobs=2, runner=FAKE, grace=1.0, timeout_cap=50, csv_path=out_csv,
                                   results_dir=rdir, cache_dir=tmp_path / "cache", progress=False)
    assert time.monotonic() - t0 < 25
    assert not run.interrupted and run.total == 7
    got = {os.path.basename(r.vnnlib): r for r in run.rows}
    assert {k: r.result for k, r in got.items()} == {
        "p_unsat.vnnlib": "unsat", "p_sat.vnnlib": "sat", "p_spec.vnnlib": "error", "p_hang.vnnlib": "timeout",
        "p_crash.vnnlib": "error", "p_bug.vnnlib": "error", "p_unsat2.vnnlib.gz": "unsat"}
    assert "unsupported assertion (fake)" in got["p_spec.vnnlib"].message
    assert "killed" in got["p_hang.vnnlib"].message and 1.5 < got["p_hang.vnnlib"].run_time < 10
    assert "died (exit code 3)" in got["p_crash.vnnlib"].message
    assert got["p_bug.vnnlib"].message == "RuntimeError: fake bug"
    assert got["p_unsat2.vnnlib.gz"].message == "timeout=50 seed=0"  # capped
    assert got["p_unsat.vnnlib"].message == "timeout=30 seed=0"
    rows = _csv_rows(out_csv)
    assert len(rows) == 7 and all(len(r) == 7 for r in rows)
    assert sorted(r[1] for r in rows) == sorted("vnnlib/" + os.path.basename(i.vnnlib_rel) for i in insts)
    assert {r[3] for r in rows} == {"sat", "unsat", "error", "timeout"}
    assert [r.result for r in vc.read_results_csv(out_csv)] == [r.result for r in run.rows]
    files = sorted(os.listdir(rdir))
    assert len(files) == 7 and files[1] == "0001_net__p_sat.txt"
    assert vc.read_results_file(rdir / files[1])[0] == "sat"
    assert not multiprocessing.active_children()


def test_benchmark_cli(tmp_path, capsys):
    b = _bench(tmp_path, [("a_unsat.vnnlib", 30), ("b_sat.vnnlib", 30), ("c_unsat.vnnlib", 30),
                          ("d_unsat.vnnlib", 30)])
    (tmp_path / "expected.csv").write_text("onnx/net.onnx,vnnlib/a_unsat.vnnlib,unsat\n"
                                           "onnx/net.onnx,vnnlib/c_unsat.vnnlib,sat\n")
    out_csv = tmp_path / "res.csv"
    code = cli_verify.main(["--benchmark", str(b), "--runner", FAKE, "--filter", "unsat", "--limit", "2",
                            "--results-csv", str(out_csv), "--expected", str(tmp_path / "expected.csv"),
                            "--timeout-cap", "5", "--seed", "4", "--no-progress"])
    assert code == 0
    rows = _csv_rows(out_csv)
    assert sorted(r[1] for r in rows) == ["vnnlib/a_unsat.vnnlib", "vnnlib/c_unsat.vnnlib"]
    assert all(r[2] == "0.000" and r[3] == "unsat" and r[6] == "timeout=5 seed=4" for r in rows)
    assert '"boxes_bounded":3.0' in rows[0][5]
    out = capsys.readouterr().out
    assert "2 of 2 instances finished" in out and "unsat         2" in out and "score        -140" in out


def test_benchmark_cli_bad_csv(tmp_path, capsys):
    (tmp_path / "instances.csv").write_text("a.onnx,b.vnnlib\n")
    assert cli_verify.main(["--benchmark", str(tmp_path), "--no-progress"]) == 2
    assert "instances.csv:1: expected 3 columns" in capsys.readouterr().err


def test_benchmark_cli_missing_file_is_that_instance_error(tmp_path, capsys):
    """A row naming a missing file stopped the whole run before any instance (an audit);
    it is now recorded as that instance's error and the others run."""
    b = _bench(tmp_path, [("a_unsat.vnnlib", 30), ("b_sat.vnnlib", 30)])
    (b / "vnnlib" / "b_sat.vnnlib").unlink()
    out_csv = tmp_path / "res.csv"
    code = cli_verify.main(["--benchmark", str(b), "--runner", FAKE, "--results-csv", str(out_csv),
                            "--no-progress"])
    assert code == 0
    rows = {r[1]: r for r in _csv_rows(out_csv)}
    assert rows["vnnlib/a_unsat.vnnlib"][3] == "unsat"
    assert rows["vnnlib/b_sat.vnnlib"][3] == "error" and "no such file" in rows["vnnlib/b_sat.vnnlib"][6]
    assert "line 2: vnnlib/b_sat.vnnlib: no such file" in capsys.readouterr().err


def test_pool_interrupt_keeps_csv(tmp_path):
    b = _bench(tmp_path, [("a_unsat.vnnlib", 30), ("b_hang.vnnlib", 30), ("c_unsat.vnnlib", 30)])
    out_csv = tmp_path / "res.csv"

    def ctrl_c(i, row, out):
        raise KeyboardInterrupt

    t0 = time.monotonic()
    run = cli_verify.run_benchmark(vc.read_instances(b), jobs=1, runner=FAKE, csv_path=out_csv, progress=False,
                                   on_result=ctrl_c)
    assert time.monotonic() - t0 < 15
    assert run.interrupted and [r.result for r in run.rows] == ["unsat"]
    assert [r[3] for r in _csv_rows(out_csv)] == ["unsat"]
    assert not multiprocessing.active_children()


def test_pool_runner_that_does_not_import(tmp_path):
    b = _bench(tmp_path, [("a_unsat.vnnlib", 30)])
    with pytest.raises(cli_verify.PoolError, match="no_such_module_xyz"):
        cli_verify.run_benchmark(vc.read_instances(b), runner="no_such_module_xyz:f", progress=False)
    assert not multiprocessing.active_children()


# --------------------------------------------------------------------------- shell scripts

def _sh(script, *args, env=None, cwd=None):
    e = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    e.update(env or {})
    return subprocess.run(["bash", str(SCRIPTS / script), *map(str, args)], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=30)


@pytest.fixture
def fake_bin(tmp_path):
    """A fake qnn-verify that records its arguments and working directory."""
    d = tmp_path / "bin"
    d.mkdir()
    log = tmp_path / "args.txt"
    exe = d / "qnn-verify"
    exe.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$PWD" "$@" > {log}\necho unsat\nexit 0\n')
    exe.chmod(0o755)
    return d, log


def test_run_instance_calls_qnn_verify(tmp_path, fake_bin):
    d, log = fake_bin
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    r = _sh("run_instance.sh", "v1", "cat", "net.onnx", "p.vnnlib", "out/res.txt", "116.5",
            env={"QNN_VENV": "none", "PATH": f"{d}:/usr/bin:/bin"}, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines() == [str(cwd), "net.onnx", "p.vnnlib", "--timeout", "116.5",
                                            "--results-file", "out/res.txt"]


def test_run_instance_venv_path(tmp_path, fake_bin):
    d, log = fake_bin
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(d / "qnn-verify", venv / "bin" / "qnn-verify")
    r = _sh("run_instance.sh", "v1", "cat", "n.onnx", "p.vnnlib", "r.txt", "5", env={"QNN_VENV": str(venv)},
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert log.read_text().splitlines()[1:] == ["n.onnx", "p.vnnlib", "--timeout", "5", "--results-file", "r.txt"]


def test_run_instance_errors(tmp_path):
    r = _sh("run_instance.sh", "v1", "cat", "n.onnx", "p.vnnlib", "r.txt")
    assert r.returncode == 1 and "usage: " in r.stderr
    r = _sh("run_instance.sh", "v2", "cat", "n.onnx", "p.vnnlib", "r.txt", "5")
    assert r.returncode == 1 and "expected v1" in r.stderr
    res = tmp_path / "r.txt"
    r = _sh("run_instance.sh", "v1", "cat", "n.onnx", "p.vnnlib", res, "soon")
    assert r.returncode == 1 and "TIMEOUT must be a number" in r.stderr and res.read_text() == "error\n"
    res.unlink()
    r = _sh("run_instance.sh", "v1", "cat", "n.onnx", "p.vnnlib", res, "5", env={"QNN_VENV": "none"})
    assert r.returncode == 1 and "qnn-verify not found" in r.stderr and res.read_text() == "error\n"
    r = _sh("run_instance.sh", "v1", "cat", "n.onnx", "p.vnnlib", tmp_path / "x" / "r.txt", "5",
            env={"QNN_VENV": str(tmp_path / "novenv")})
    assert r.returncode == 1 and (tmp_path / "x" / "r.txt").read_text() == "error\n"


def test_prepare_instance(tmp_path):
    (tmp_path / "n.onnx").write_text("x")
    (tmp_path / "p.vnnlib.gz").write_bytes(gzip.compress(b"x"))
    assert _sh("prepare_instance.sh", "v1", "cat", "n.onnx", "p.vnnlib", cwd=tmp_path).returncode == 0
    r = _sh("prepare_instance.sh", "v1", "cat", "missing.onnx", "p.vnnlib", cwd=tmp_path)
    assert r.returncode == 1 and "no such file: missing.onnx" in r.stderr
    r = _sh("prepare_instance.sh", "v1", "cat", "n.onnx")
    assert r.returncode == 1 and "usage: " in r.stderr


def test_install_tool_arguments():
    for args in ([], ["v1", "extra"], ["v2"]):
        r = _sh("install_tool.sh", *args)
        assert r.returncode == 1 and "usage: " in r.stderr


@pytest.mark.parametrize("engine", ["plugin", "smt"])
def test_end_to_end_with_the_real_verifier(tmp_path, engine):
    """qnn-verify (either engine) on a small fixed-point QNN: a sat instance (results file with
    a counterexample that the VNN-COMP-style check accepts) and an unsat one, single-instance
    and benchmark mode."""
    import subprocess

    from qnn_plugin import onnx_builders as ob
    from qnn_plugin.vnncomp import check_counterexample, read_results_file

    rng = np.random.default_rng(3)
    built = ob.random_fixed_point_mlp(rng, sizes=[3, 6, 2])
    (tmp_path / "onnx").mkdir()
    (tmp_path / "vnnlib").mkdir()
    (tmp_path / "onnx" / "net.onnx").write_bytes(built.model.SerializeToString())

    def prop(name, lo, hi, row):
        lines = [f"(declare-const X_{i} Real)" for i in range(3)] + ["(declare-const Y_0 Real)",
                                                                      "(declare-const Y_1 Real)"]
        lines += [f"(assert (>= X_{i} {lo}))\n(assert (<= X_{i} {hi}))" for i in range(3)]
        lines.append(row)
        (tmp_path / "vnnlib" / name).write_text("\n".join(lines) + "\n")

    prop("sat.vnnlib", 0.0, 0.9, "(assert (<= Y_0 1e9))")            # every input is unsafe
    prop("unsat.vnnlib", 0.0, 0.9, "(assert (>= Y_0 1e9))")          # no output that large
    (tmp_path / "instances.csv").write_text("onnx/net.onnx,vnnlib/sat.vnnlib,30\n"
                                            "onnx/net.onnx,vnnlib/unsat.vnnlib,30\n")
    exe = Path(sys.executable).with_name("qnn-verify")
    res_file = tmp_path / "out.txt"
    out = subprocess.run([str(exe), str(tmp_path / "onnx" / "net.onnx"), str(tmp_path / "vnnlib" / "sat.vnnlib"),
                          "--timeout", "30", "--results-file", str(res_file), "--engine", engine],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    verdict, x, y = read_results_file(res_file)
    assert verdict == "sat"
    ok, why = check_counterexample(tmp_path / "onnx" / "net.onnx", tmp_path / "vnnlib" / "sat.vnnlib", x, y)
    assert ok, why
    out = subprocess.run([str(exe), "--benchmark", str(tmp_path), "--results-csv", str(tmp_path / "r.csv"),
                          "--no-progress", "--engine", engine], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split(",") for line in (tmp_path / "r.csv").read_text().splitlines()]
    assert sorted(r[3] for r in rows) == ["sat", "unsat"]
    assert all(("time_solve" in ",".join(r)) == (engine == "smt") for r in rows)
    assert "rejected" not in out.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_the_single_instance_timeout_counts_the_process_start():
    """The interpreter and torch's import took 2-3 s before the verifier's clock started (an
    audit measured 12 s of wall time for --timeout 10): the age of the process is taken off."""
    code = ("import time; time.sleep(1.5); from qnn_plugin.cli_verify import _process_age; "
            "print(_process_age())")
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout.split()[-1])
    assert 1.5 <= age < 60.0
